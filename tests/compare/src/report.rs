//! The Markdown report: a header saying what ran where, then one section
//! per scenario with a table (ours, upstream, ratio), API requests per
//! volume by verb and resource, notes and the charts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::scenarios::{Outcome, Scenario};
use crate::stats::{cell, spread};

/// What the report says about the invocation as a whole.
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
    /// Flags, rounds and order.
    pub settings: String,
    /// `label: version (binary)` of each implementation that ran.
    pub binaries: Vec<String>,
    /// Remarks on the invocation (e.g. upstream not run).
    pub notes: Vec<String>,
}

/// One scenario's results.
#[derive(Debug, Clone)]
pub struct Section {
    /// Which scenario.
    pub scenario: Scenario,
    /// What it did, one paragraph.
    pub description: String,
    /// Outcomes by implementation label (`ours`, `upstream`), one per round.
    pub runs: BTreeMap<&'static str, Vec<Outcome>>,
    /// `(title, file name next to the report)` of its charts.
    pub plots: Vec<(String, String)>,
}

const ORDER: [&str; 2] = ["ours", "upstream"];

fn figure_values(runs: Option<&Vec<Outcome>>, name: &str) -> Vec<f64> {
    runs.map(|rs| {
        rs.iter()
            .filter_map(|o| o.figures.iter().find(|f| f.name == name).map(|f| f.value))
            .collect()
    })
    .unwrap_or_default()
}

/// Renders the whole report.
pub fn render(h: &Header, sections: &[Section]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# csi-provisioner: ours vs upstream\n");
    let _ = writeln!(s, "- command: `{}`", h.command);
    let _ = writeln!(s, "- date: {}", h.date);
    let _ = writeln!(s, "- machine: {}", h.machine);
    let _ = writeln!(s, "- settings: {}", h.settings);
    for b in &h.binaries {
        let _ = writeln!(s, "- {b}");
    }
    let _ = writeln!(s, "- ours built as: {}", h.ours_build);
    for n in &h.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    let _ = writeln!(
        s,
        "\nEach run used a fresh local test bed (etcd, kube-apiserver, kube-controller-manager, \
         csi-testdriver), the sidecar running as the ServiceAccount `compare/csi-provisioner` \
         with upstream's RBAC. API requests are the sidecar's, from the API server's audit log. \
         With several rounds a cell reads `median (min–max)`; the ratio is of the medians."
    );
    for sec in sections {
        render_section(&mut s, sec);
    }
    s
}

fn render_section(s: &mut String, sec: &Section) {
    let _ = writeln!(s, "\n## {}\n\n{}\n", sec.scenario.name(), sec.description);
    let rounds: Vec<String> = ORDER
        .iter()
        .filter_map(|l| {
            sec.runs
                .get(l)
                .map(|r| format!("{l}: {} round(s)", r.len()))
        })
        .collect();
    let _ = writeln!(s, "Runs: {}.\n", rounds.join(", "));
    let _ = writeln!(s, "| figure | ours | upstream | ratio (ours/upstream) |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let mut names: Vec<(&'static str, usize)> = Vec::new();
    for f in sec.runs.values().flatten().flat_map(|o| o.figures.iter()) {
        if !names.iter().any(|(n, _)| *n == f.name) {
            names.push((f.name, f.decimals));
        }
    }
    for (name, dec) in names {
        let ours = spread(&figure_values(sec.runs.get("ours"), name));
        let up = spread(&figure_values(sec.runs.get("upstream"), name));
        let ratio = match (ours, up) {
            (Some(o), Some(u)) if u.median != 0.0 => format!("{:.2}", o.median / u.median),
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {ratio} |",
            cell(ours, dec),
            cell(up, dec)
        );
    }

    let keys: BTreeSet<&String> = sec
        .runs
        .values()
        .flatten()
        .flat_map(|o| o.requests_per_volume.keys())
        .collect();
    if !keys.is_empty() {
        let _ = writeln!(
            s,
            "\nAPI requests per volume by verb and resource (whole run, all response codes):\n"
        );
        let _ = writeln!(s, "| verb resource | ours | upstream |");
        let _ = writeln!(s, "|---|---:|---:|");
        for k in keys {
            let per = |label: &str| {
                let v: Vec<f64> = sec
                    .runs
                    .get(label)
                    .map(|rs| {
                        rs.iter()
                            .map(|o| o.requests_per_volume.get(k).copied().unwrap_or(0.0))
                            .collect()
                    })
                    .unwrap_or_default();
                cell(spread(&v), 2)
            };
            let _ = writeln!(s, "| {k} | {} | {} |", per("ours"), per("upstream"));
        }
    }

    let mut notes = Vec::new();
    for label in ORDER {
        for (i, o) in sec.runs.get(label).into_iter().flatten().enumerate() {
            for n in &o.notes {
                notes.push(format!("- {label}, round {}: {n}", i + 1));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n{}", notes.join("\n"));
    }
    for (title, file) in &sec.plots {
        let _ = writeln!(s, "\n![{title}]({file})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(bound: f64, per_volume: f64) -> Outcome {
        let mut o = Outcome::default();
        o.fig("time to all Bound (s)", bound, 1);
        o.requests_per_volume
            .insert("create persistentvolumes".into(), per_volume);
        o.notes.push("exit on SIGTERM: exit status: 0".into());
        o
    }

    fn header() -> Header {
        Header {
            command: "compare --claims 10".into(),
            machine: "2 cores".into(),
            date: "today".into(),
            ours_build: "release".into(),
            settings: "qps 5".into(),
            binaries: vec!["ours: x v1 (`/bin/x`)".into()],
            notes: vec![],
        }
    }

    #[test]
    fn renders_medians_ranges_and_ratios() {
        let sec = Section {
            scenario: Scenario::Throughput,
            description: "N claims.".into(),
            runs: BTreeMap::from([
                (
                    "ours",
                    vec![outcome(10.0, 1.0), outcome(30.0, 1.0), outcome(20.0, 2.0)],
                ),
                ("upstream", vec![outcome(40.0, 1.0)]),
            ]),
            plots: vec![("claims Bound".into(), "x-throughput-bound.svg".into())],
        };
        let md = render(&header(), &[sec]);
        assert!(md.contains("## throughput\n\nN claims."), "{md}");
        assert!(
            md.contains("| time to all Bound (s) | 20.0 (10.0–30.0) | 40.0 | 0.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| create persistentvolumes | 1.00 (1.00–2.00) | 1.00 |"),
            "{md}"
        );
        assert!(md.contains("- ours, round 3: exit on SIGTERM"), "{md}");
        assert!(
            md.contains("![claims Bound](x-throughput-bound.svg)"),
            "{md}"
        );
        assert!(
            md.contains("Runs: ours: 3 round(s), upstream: 1 round(s)."),
            "{md}"
        );
    }

    #[test]
    fn missing_implementation_shows_dashes() {
        let sec = Section {
            scenario: Scenario::Kill,
            description: "d".into(),
            runs: BTreeMap::from([("ours", vec![outcome(5.0, 1.0)])]),
            plots: vec![],
        };
        let md = render(&header(), &[sec]);
        assert!(
            md.contains("| time to all Bound (s) | 5.0 | — | — |"),
            "{md}"
        );
    }
}
