//! `compare`: runs upstream's csi-provisioner and ours, each on a fresh local
//! test bed with identical settings, and writes a Markdown report of what was
//! measured (time to Bound, delete time, API requests, RSS, CPU).

mod audit;
mod measure;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, ValueEnum};
use csi_client::csi::v1::ListVolumesRequest;
use csi_client::{ConnectOptions, Connection};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

const DRIVER: &str = "hostpath.csi.k8s.io";
const NS: &str = "compare";
const CLASS: &str = "compare";
const USER: &str = "system:serviceaccount:compare:csi-provisioner";
/// How long the sidecar runs before the claims, to reach its idle state.
const SETTLE: Duration = Duration::from_secs(5);
/// Limit of each wait (all Bound, all deleted).
const PHASE_LIMIT: Duration = Duration::from_secs(1800);

#[derive(Parser, Debug)]
#[command(about = "csi-provisioner: ours vs upstream on the local test bed")]
struct Args {
    /// Claims to create.
    #[arg(long, default_value_t = 100)]
    claims: usize,
    /// --kube-api-qps of both sidecars.
    #[arg(long, default_value = "5")]
    qps: String,
    /// --kube-api-burst of both sidecars.
    #[arg(long, default_value = "10")]
    burst: String,
    /// --worker-threads of both sidecars.
    #[arg(long, default_value = "100")]
    workers: String,
    /// --timeout of both sidecars (Go duration).
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Which implementation(s) to run.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// The Markdown report.
    #[arg(long, default_value = "docs/compare/provisioner-latest.md")]
    out: PathBuf,
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
    let work = std::env::temp_dir().join(format!("csi-compare-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let ours_bin = our_binary()?;
    let mut upstream = None;
    let mut ours = None;
    if args.only != Only::Ours {
        eprintln!("compare: upstream ...");
        upstream = Some(run_one(&args, &work.join("upstream"), None).await?);
    }
    if args.only != Only::Upstream {
        eprintln!("compare: ours ({}) ...", ours_bin.display());
        ours = Some(run_one(&args, &work.join("ours"), Some(&ours_bin)).await?);
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
            if ours_bin.components().any(|c| c.as_os_str() == "release") {
                "release"
            } else {
                "debug"
            },
            ours_bin.display()
        ),
        settings: format!(
            "--kube-api-qps={} --kube-api-burst={} --worker-threads={} --timeout={}, no leader election",
            args.qps, args.burst, args.workers, args.timeout
        ),
    };
    let md = report::render(&header, upstream.as_ref(), ours.as_ref());
    println!("{md}");
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &md).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!("compare: wrote {}", args.out.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
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

/// One implementation on a fresh test bed: `ours` is our binary, `None` upstream's.
async fn run_one(args: &Args, work: &Path, ours: Option<&Path>) -> anyhow::Result<report::Run> {
    std::fs::create_dir_all(work)?;
    let policy = work.join("audit-policy.yaml");
    let log = work.join("audit.log");
    std::fs::write(&policy, audit::policy(USER))?;
    let _ = std::fs::remove_file(&log);
    let tb = Testbed::start(TestbedOptions {
        force_local: true,
        extra_apiserver_args: vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", log.display()),
            "--audit-log-format=json".into(),
        ],
        ..Default::default()
    })
    .await?;
    let binary = match ours {
        Some(p) => p.to_path_buf(),
        None => {
            let p = tb.bin("csi-provisioner");
            ensure!(
                p.is_file(),
                "upstream csi-provisioner not found at {}: run `bash tests/testbed/build.sh upstream`",
                p.display()
            );
            p
        }
    };
    let version = version_of(&binary).await;

    tb.create_namespace(NS).await?;
    tb.create_csidriver(DRIVER, false).await?;
    let driver = tb.start_driver(DriverOptions::named(DRIVER)).await?;
    tb.create_node_with_csinode(
        "compare-node",
        DRIVER,
        driver.node_id(),
        &[],
        BTreeMap::new(),
    )
    .await?;
    tb.apply_manifest(
        &testbed::manifest_path("rbac-csi-provisioner.yaml"),
        &[("NAMESPACE", NS)],
    )
    .await?;
    let kubeconfig = tb.service_account_kubeconfig(NS, "csi-provisioner").await?;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let admin = tb.admin_client();
    Api::<StorageClass>::all(admin.clone())
        .create(&PostParams::default(), &storage_class())
        .await?;

    let sidecar = tb.spawn(
        "csi-provisioner",
        &binary,
        [
            format!("--csi-address={}", driver.socket_path().display()),
            format!("--kubeconfig={kubeconfig}"),
            format!("--kube-api-qps={}", args.qps),
            format!("--kube-api-burst={}", args.burst),
            format!("--worker-threads={}", args.workers),
            format!("--timeout={}", args.timeout),
        ],
        &[("KUBECONFIG", kubeconfig.as_str())],
    )?;
    let pid = sidecar.pid();
    let sampler = measure::Sampler::start(pid);
    tokio::time::sleep(SETTLE).await;
    ensure!(
        sidecar.is_running(),
        "csi-provisioner exited at start: {}",
        sidecar.log_tail(30)
    );
    let rss_idle_kib = measure::rss_kib(pid).context("no RSS")?;

    // Provision.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), NS);
    let cpu0 = measure::cpu_seconds(pid).context("no CPU time")?;
    let (wall0, t0) = (jiff::Timestamp::now(), Instant::now());
    futures::stream::iter(0..args.claims)
        .map(|i| {
            let pvcs = pvcs.clone();
            async move {
                pvcs.create(&PostParams::default(), &claim(&format!("claim-{i}")))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    poll(&format!("{} claims Bound", args.claims), || async {
        let list = pvcs.list(&ListParams::default()).await?;
        let bound = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"));
        Ok(bound.count() == args.claims)
    })
    .await
    .with_context(|| sidecar.log_tail(30))?;
    let bound = t0.elapsed();
    let wall1 = jiff::Timestamp::now();
    let cpu1 = measure::cpu_seconds(pid).context("no CPU time")?;
    eprintln!("compare: {} claims Bound in {bound:.1?}", args.claims);

    // Delete.
    let pvs: Api<PersistentVolume> = Api::all(admin.clone());
    let conn = Connection::connect(ConnectOptions::new(
        driver.socket_path().display().to_string(),
        Duration::from_secs(10),
    ))
    .await?;
    let t1 = Instant::now();
    pvcs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    poll("every PV and driver volume gone", || async {
        let left = pvs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|c| c.namespace.as_deref())
                    == Some(NS)
            });
        Ok(!left && driver_volume_count(&conn).await? == 0)
    })
    .await
    .with_context(|| sidecar.log_tail(30))?;
    let deleted = t1.elapsed();
    let wall2 = jiff::Timestamp::now();
    let cpu2 = measure::cpu_seconds(pid).context("no CPU time")?;
    let rss_end_kib = measure::rss_kib(pid).context("no RSS")?;
    eprintln!("compare: deleted in {deleted:.1?}");
    let (rss_peak_kib, samples) = (sampler.peak_kib(), sampler.count());
    drop(sampler);

    tokio::task::block_in_place(|| sidecar.stop(Duration::from_secs(10)));
    let exit = sidecar
        .exit_status()
        .map_or("still running".to_string(), |s| s.to_string());
    // The log backend writes synchronously; give the closing watches a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = std::fs::read_to_string(&log).with_context(|| format!("read {}", log.display()))?;
    let requests = audit::count(&text, USER);
    drop(tb);
    Ok(report::Run {
        binary: binary.display().to_string(),
        version,
        claims: args.claims,
        bound,
        deleted,
        rss_idle_kib,
        rss_peak_kib: rss_peak_kib.max(rss_idle_kib).max(rss_end_kib),
        rss_end_kib,
        samples,
        cpu_provision: cpu1 - cpu0,
        cpu_delete: cpu2 - cpu1,
        requests_provision: requests.between(wall0, wall1),
        requests_delete: requests.between(wall1, wall2),
        requests,
        exit,
    })
}

async fn poll<F, Fut>(what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + PHASE_LIMIT;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("timed out after {PHASE_LIMIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn driver_volume_count(conn: &Connection) -> anyhow::Result<usize> {
    let (mut n, mut token) = (0, String::new());
    loop {
        let resp = conn
            .list_volumes(ListVolumesRequest {
                starting_token: token,
                ..Default::default()
            })
            .await
            .context("ListVolumes")?;
        n += resp.entries.len();
        if resp.next_token.is_empty() {
            return Ok(n);
        }
        token = resp.next_token;
    }
}

fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

fn claim(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(CLASS.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Mi".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// First line of `<binary> --version`.
async fn version_of(binary: &Path) -> String {
    match tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await
    {
        Ok(o) => String::from_utf8_lossy(if o.stdout.is_empty() {
            &o.stderr
        } else {
            &o.stdout
        })
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string(),
        Err(e) => format!("(--version failed: {e})"),
    }
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
