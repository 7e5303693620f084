//! The Markdown report.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use crate::audit::Requests;

/// Everything measured for one implementation.
#[derive(Debug, Clone)]
pub struct Run {
    /// The binary that ran.
    pub binary: String,
    /// Its `--version` output.
    pub version: String,
    /// Claims created.
    pub claims: usize,
    /// First create → all claims Bound.
    pub bound: Duration,
    /// delete_collection → no PV of the namespace and no driver volume left.
    pub deleted: Duration,
    /// RSS after start, before the claims (KiB).
    pub rss_idle_kib: u64,
    /// Largest sampled RSS (KiB).
    pub rss_peak_kib: u64,
    /// RSS after the delete phase (KiB).
    pub rss_end_kib: u64,
    /// RSS samples taken.
    pub samples: usize,
    /// CPU seconds during the provision phase.
    pub cpu_provision: f64,
    /// CPU seconds during the delete phase.
    pub cpu_delete: f64,
    /// The sidecar's API requests, whole run.
    pub requests: Requests,
    /// Requests received during the provision phase.
    pub requests_provision: u64,
    /// Requests received during the delete phase.
    pub requests_delete: u64,
    /// How the process ended on SIGTERM.
    pub exit: String,
}

/// What the report says about the run as a whole.
#[derive(Debug, Clone)]
pub struct Header {
    /// The command line.
    pub command: String,
    /// Cores and memory.
    pub machine: String,
    /// UTC time of the run.
    pub date: String,
    /// Which build of ours ran and from which commit.
    pub ours_build: String,
    /// QPS, burst, workers, timeout.
    pub settings: String,
}

/// A row of the figures table: name, value of a run, decimals.
type Figure = (&'static str, fn(&Run) -> f64, usize);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn row(out: &mut String, name: &str, up: Option<f64>, ours: Option<f64>, prec: usize) {
    let cell = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.prec$}"));
    let ratio = match (up, ours) {
        (Some(u), Some(o)) if u > 0.0 => format!("{:.2}", o / u),
        _ => "—".into(),
    };
    let _ = writeln!(out, "| {name} | {} | {} | {ratio} |", cell(up), cell(ours));
}

/// Renders the report; either run may be missing (`--only`).
pub fn render(h: &Header, up: Option<&Run>, ours: Option<&Run>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# csi-provisioner: ours vs upstream\n");
    let _ = writeln!(s, "- command: `{}`", h.command);
    let _ = writeln!(s, "- date: {}", h.date);
    let _ = writeln!(s, "- machine: {}", h.machine);
    let _ = writeln!(s, "- settings: {}", h.settings);
    for (name, r) in [("upstream", up), ("ours", ours)] {
        if let Some(r) = r {
            let _ = writeln!(s, "- {name}: `{}` (`{}`)", r.version, r.binary);
        }
    }
    let _ = writeln!(s, "- ours built as: {}", h.ours_build);
    let _ = writeln!(
        s,
        "\nEach implementation ran on a fresh local test bed (etcd, kube-apiserver, \
         kube-controller-manager, csi-testdriver) as the ServiceAccount \
         `compare/csi-provisioner` with upstream's RBAC. Every figure below was \
         measured in this run.\n"
    );
    let _ = writeln!(s, "| figure | upstream | ours | ratio (ours/upstream) |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let f = |g: fn(&Run) -> f64| (up.map(g), ours.map(g));
    let rows: [Figure; 14] = [
        ("claims", |r| r.claims as f64, 0),
        ("time to all Bound (s)", |r| r.bound.as_secs_f64(), 1),
        (
            "throughput (volumes/s)",
            |r| r.claims as f64 / r.bound.as_secs_f64(),
            2,
        ),
        ("delete time (s)", |r| r.deleted.as_secs_f64(), 1),
        ("API requests, whole run", |r| r.requests.total() as f64, 0),
        (
            "API requests per claim, whole run",
            |r| r.requests.total() as f64 / r.claims as f64,
            2,
        ),
        (
            "API requests, provision phase",
            |r| r.requests_provision as f64,
            0,
        ),
        (
            "API requests, delete phase",
            |r| r.requests_delete as f64,
            0,
        ),
        ("RSS idle (MiB)", |r| mib(r.rss_idle_kib), 1),
        ("RSS peak (MiB)", |r| mib(r.rss_peak_kib), 1),
        ("RSS end (MiB)", |r| mib(r.rss_end_kib), 1),
        ("CPU provision phase (s)", |r| r.cpu_provision, 2),
        ("CPU delete phase (s)", |r| r.cpu_delete, 2),
        ("RSS samples (every 200 ms)", |r| r.samples as f64, 0),
    ];
    for (name, g, prec) in rows {
        let (u, o) = f(g);
        row(&mut s, name, u, o, prec);
    }
    let exit = |r: Option<&Run>| r.map_or("—".to_string(), |r| r.exit.clone());
    let _ = writeln!(s, "| exit on SIGTERM | {} | {} | |", exit(up), exit(ours));

    let _ = writeln!(s, "\n## API requests by verb and resource (whole run)\n");
    let _ = writeln!(s, "| verb | resource | code | upstream | ours |");
    let _ = writeln!(s, "|---|---|---|---:|---:|");
    let keys: BTreeSet<_> = [up, ours]
        .into_iter()
        .flatten()
        .flat_map(|r| r.requests.by_verb_resource.keys().cloned())
        .collect();
    let get = |r: Option<&Run>, k| {
        r.map_or("—".to_string(), |r| {
            r.requests
                .by_verb_resource
                .get(k)
                .copied()
                .unwrap_or(0)
                .to_string()
        })
    };
    for k in &keys {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            k.0,
            k.1,
            k.2,
            get(up, k),
            get(ours, k)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secs: u64, req: u64) -> Run {
        let mut requests = Requests::default();
        requests.by_verb_resource.insert(
            ("create".into(), "persistentvolumes".into(), "201".into()),
            req,
        );
        Run {
            binary: "/bin/x".into(),
            version: "x v1".into(),
            claims: 10,
            bound: Duration::from_secs(secs),
            deleted: Duration::from_secs(secs),
            rss_idle_kib: 10240,
            rss_peak_kib: 20480,
            rss_end_kib: 15360,
            samples: 5,
            cpu_provision: 1.0,
            cpu_delete: 0.5,
            requests,
            requests_provision: req,
            requests_delete: 0,
            exit: "exit status: 0".into(),
        }
    }

    #[test]
    fn renders_ratios_and_breakdown() {
        let h = Header {
            command: "compare --claims 10".into(),
            machine: "2 cores".into(),
            date: "today".into(),
            ours_build: "debug".into(),
            settings: "qps 5".into(),
        };
        let md = render(&h, Some(&run(10, 20)), Some(&run(20, 30)));
        assert!(
            md.contains("| time to all Bound (s) | 10.0 | 20.0 | 2.00 |"),
            "{md}"
        );
        assert!(md.contains("| API requests per claim, whole run | 2.00 | 3.00 | 1.50 |"));
        assert!(md.contains("| RSS peak (MiB) | 20.0 | 20.0 | 1.00 |"));
        assert!(md.contains("| create | persistentvolumes | 201 | 20 | 30 |"));
        let only = render(&h, None, Some(&run(20, 30)));
        assert!(only.contains("| time to all Bound (s) | — | 20.0 | — |"));
        assert!(only.contains("| create | persistentvolumes | 201 | — | 30 |"));
    }
}
