//! `compare`: runs upstream's csi-provisioner and ours, each on a fresh local
//! test bed with identical settings, through one or more scenarios and
//! rounds, and writes a Markdown report with SVG charts next to it.

mod audit;
mod bed;
mod charts;
mod measure;
mod objects;
mod plot;
mod report;
mod scenarios;
mod stats;
mod supervisor;
mod tracker;
mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use clap::{Parser, ValueEnum};

use bed::{Bed, Flags, Impl};
use scenarios::{Ctx, Outcome, Scenario};

#[derive(Parser, Debug)]
#[command(about = "csi-provisioner: ours vs upstream on the local test bed")]
struct Args {
    /// Claims per run [default: 1000; 20 with --smoke].
    #[arg(long)]
    claims: Option<usize>,
    /// Rounds; each runs every scenario once per implementation on fresh
    /// test beds, upstream first in odd rounds, ours first in even ones.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "throughput")]
    scenario: Vec<Scenario>,
    /// Bound PVs/PVCs present before the sidecar starts (memory scenario).
    #[arg(long, default_value_t = 5000)]
    existing: usize,
    /// --kube-api-qps of both sidecars [default: 5; 20 with --smoke].
    #[arg(long)]
    qps: Option<String>,
    /// --kube-api-burst of both sidecars [default: 10; 40 with --smoke].
    #[arg(long)]
    burst: Option<String>,
    /// --worker-threads of both sidecars.
    #[arg(long, default_value = "100")]
    workers: String,
    /// --timeout of both sidecars (Go duration).
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Delay of every CSI answer in the crash scenarios.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    csi_delay: Duration,
    /// Crash scenarios: no change for this long ends the wait for quiescence.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    quiet: Duration,
    /// Limit of each wait [default: 30m; 3m with --smoke].
    #[arg(long, value_parser = humantime::parse_duration)]
    limit: Option<Duration>,
    /// Which implementation(s) to run.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// CI smoke test: 20 claims, throughput, one round, QPS 20; upstream
    /// only if its binary is cached; the report goes to a temporary
    /// directory unless --out is given. Fails only if the harness breaks.
    #[arg(long)]
    smoke: bool,
    /// The Markdown report; charts go next to it as `<stem>-<scenario>-<chart>.svg`
    /// [default: docs/compare/provisioner-latest.md].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Only {
    Ours,
    Upstream,
    Both,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let smoke = args.smoke;
    let ctx = Ctx {
        claims: args.claims.unwrap_or(if smoke { 20 } else { 1000 }),
        existing: args.existing,
        flags: Flags {
            qps: args
                .qps
                .clone()
                .unwrap_or(if smoke { "20" } else { "5" }.into()),
            burst: args
                .burst
                .clone()
                .unwrap_or(if smoke { "40" } else { "10" }.into()),
            workers: args.workers.clone(),
            timeout: args.timeout.clone(),
        },
        delay: args.csi_delay,
        quiet: args.quiet,
        limit: args
            .limit
            .unwrap_or(Duration::from_secs(if smoke { 180 } else { 1800 })),
    };
    ensure!(ctx.claims >= 2, "--claims must be at least 2");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let out = match (&args.out, smoke) {
        (Some(p), _) => p.clone(),
        (None, true) => std::env::temp_dir()
            .join(format!("csi-compare-smoke-{}", std::process::id()))
            .join("provisioner-smoke.md"),
        (None, false) => PathBuf::from("docs/compare/provisioner-latest.md"),
    };
    let mut scenarios = args.scenario.clone();
    scenarios.sort();
    scenarios.dedup();

    let ours = Impl {
        label: "ours",
        binary: our_binary()?,
    };
    let mut notes = Vec::new();
    let mut impls = Vec::new();
    if args.only != Only::Ours {
        let binary = upstream_binary()?;
        if binary.is_file() {
            impls.push(Impl {
                label: "upstream",
                binary,
            });
        } else if smoke && args.only == Only::Both {
            let msg = format!(
                "upstream csi-provisioner is not cached ({} missing; `bash tests/testbed/build.sh upstream` builds it): ours ran alone",
                binary.display()
            );
            eprintln!("compare: {msg}");
            notes.push(msg);
        } else {
            anyhow::bail!(
                "upstream csi-provisioner not found at {}: run `bash tests/testbed/build.sh upstream`",
                binary.display()
            );
        }
    }
    if args.only != Only::Upstream {
        impls.push(ours.clone());
    }

    let work = std::env::temp_dir().join(format!("csi-compare-{}", std::process::id()));
    let mut results: BTreeMap<Scenario, BTreeMap<&'static str, Vec<Outcome>>> = BTreeMap::new();
    for round in 0..args.rounds {
        let mut order = impls.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &s in &scenarios {
            for imp in &order {
                eprintln!(
                    "compare: round {}/{}, {}, {} ({})",
                    round + 1,
                    args.rounds,
                    s.name(),
                    imp.label,
                    imp.binary.display()
                );
                let dir = work.join(format!("{}-{}-{round}", s.name(), imp.label));
                let o = run_one(s, &ctx, imp, &dir)
                    .await
                    .with_context(|| format!("{} with {}", s.name(), imp.label))?;
                results
                    .entry(s)
                    .or_default()
                    .entry(imp.label)
                    .or_default()
                    .push(o);
            }
        }
    }

    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut sections = Vec::new();
    for (s, runs) in results {
        let plots = charts::draw(&out, s, &runs)?;
        sections.push(report::Section {
            scenario: s,
            description: s.describe(&ctx),
            runs,
            plots,
        });
    }
    let mut binaries = Vec::new();
    for imp in &impls {
        binaries.push(format!(
            "{}: `{}` (`{}`)",
            imp.label,
            bed::version_of(&imp.binary).await,
            imp.binary.display()
        ));
    }
    let header = report::Header {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        date: jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        ours_build: format!(
            "workspace version {}, commit {}, {} build (`{}`)",
            env!("CARGO_PKG_VERSION"),
            git_commit(),
            build_kind(&ours.binary),
            ours.binary.display()
        ),
        settings: format!(
            "--kube-api-qps={} --kube-api-burst={} --worker-threads={} --timeout={} for both; \
             {} claims; {} round(s), upstream first in odd rounds and ours first in even ones",
            ctx.flags.qps,
            ctx.flags.burst,
            ctx.flags.workers,
            ctx.flags.timeout,
            ctx.claims,
            args.rounds
        ),
        binaries,
        notes,
    };
    let md = report::render(&header, &sections);
    println!("{md}");
    std::fs::write(&out, &md).with_context(|| format!("write {}", out.display()))?;
    eprintln!("compare: wrote {}", out.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// One scenario, one implementation, one fresh test bed.
async fn run_one(s: Scenario, ctx: &Ctx, imp: &Impl, dir: &Path) -> anyhow::Result<Outcome> {
    let kcm: &[&str] = if s == Scenario::Memory {
        &scenarios::memory::KCM_ARGS
    } else {
        &[]
    };
    let mut bed = Bed::start(dir, imp, &ctx.flags, kcm).await?;
    let result = match s {
        Scenario::Throughput => scenarios::throughput::run(ctx, &bed).await,
        Scenario::Memory => scenarios::memory::run(ctx, &bed).await,
        _ => scenarios::crash::run(s, ctx, &mut bed).await,
    };
    if result.is_err() {
        bed.tb.dump_logs();
    }
    result
}

/// `CSI_PROVISIONER_BIN`, else `csi-provisioner` next to this executable.
fn our_binary() -> anyhow::Result<PathBuf> {
    let p = match std::env::var_os("CSI_PROVISIONER_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("csi-provisioner"),
    };
    ensure!(
        p.is_file(),
        "our csi-provisioner not found at {}: run `cargo build -p external-provisioner --bin csi-provisioner` or set CSI_PROVISIONER_BIN",
        p.display()
    );
    Ok(p)
}

/// Where upstream's csi-provisioner is: in `$CSI_TESTBED_BIN`, else in the
/// directory `tests/testbed/build.sh core` prints (it builds only the core
/// set, so upstream's binary is there only if `build.sh upstream` ran).
fn upstream_binary() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var(testbed::BIN_ENV) {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let o = std::process::Command::new("bash")
                .arg(testbed::build_script())
                .arg("core")
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("run tests/testbed/build.sh core")?;
            ensure!(o.status.success(), "tests/testbed/build.sh core failed");
            let text = String::from_utf8_lossy(&o.stdout);
            PathBuf::from(
                text.lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .unwrap_or(""),
            )
        }
    };
    Ok(dir.join("csi-provisioner"))
}

fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(testbed::repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{c} (working tree modified)")
        }
        Some(c) => c,
        None => "unknown".into(),
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    format!(
        "{cores} cores (nproc), {:.1} GiB memory (MemTotal), {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        std::env::consts::ARCH
    )
}

/// `debug` when the binary carries DWARF debug sections (cargo's dev
/// profile), `release` otherwise (cargo strips debug info from release
/// builds), wherever the binary was copied to.
fn build_kind(binary: &Path) -> &'static str {
    use object::{Object as _, ObjectSection as _};
    let Ok(bytes) = std::fs::read(binary) else {
        return "unknown";
    };
    match object::File::parse(&*bytes) {
        Ok(file) if file.sections().any(|s| s.name() == Ok(".debug_info")) => "debug",
        Ok(_) => "release",
        Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::build_kind;

    #[test]
    fn build_kind_reads_the_elf_sections() {
        // This test binary is built by cargo's test profile, with debug info.
        let me = std::env::current_exe().unwrap();
        assert_eq!(build_kind(&me), "debug");
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("not-elf");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        assert_eq!(build_kind(&text), "unknown");
        assert_eq!(build_kind(&dir.path().join("missing")), "unknown");
    }
}
