//! `compare-attacher`: upstream's csi-attacher and ours, each on a fresh
//! local test bed with the same flags (a measurement, not a test):
//!
//! * `throughput`: N VolumeAttachments (as kube-controller-manager's
//!   attach/detach controller writes them, one per static PV on a driver
//!   volume) created at once, until all are attached; then all deleted,
//!   until all are gone (detached). Time, the sidecar's API requests per
//!   attachment during the run (from the API server's audit log), RSS idle
//!   and peak, CPU seconds.
//! * `kill9`: up to 100 VolumeAttachments against a driver answering in
//!   2 s; the attacher is SIGKILLed 3 s in (publishes in flight), every
//!   VolumeAttachment is deleted, the attacher restarts. Counted at rest:
//!   attachments still published on the driver with no VolumeAttachment
//!   (leaks) and VolumeAttachments left (stuck).
//! * `leader-loss`: as `kill9` with two replicas (distinct leader-election
//!   identities via `unshare --uts`): the leader is SIGKILLed and the standby
//!   takes over once the Lease expires.
//!
//! Prints Markdown tables.
//!
//! ```sh
//! UP=$(bash tests/testbed/build.sh upstream | tail -1)
//! cargo build --release -p external-attacher --bin csi-attacher && cargo build -p compare
//! CSI_ATTACHER_BIN=$PWD/target/release/csi-attacher target/debug/compare-attacher --vas 500 --upstream $UP/csi-attacher
//! ```

#[allow(dead_code)]
#[path = "../audit.rs"]
mod audit;
#[allow(dead_code)]
#[path = "../bed.rs"]
mod bed;
#[allow(dead_code)]
#[path = "../measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../objects.rs"]
mod objects;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bed::{Bed, Flags, Impl, Sidecar};
use clap::Parser;
use csi_client::csi::v1::volume_capability::access_mode::Mode;
use csi_client::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi_client::csi::v1::{CreateVolumeRequest, ListVolumesRequest, VolumeCapability};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::{
    VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use objects::{DRIVER, NS};
use testbed::DelayProxy;

/// csi-attacher's bed: its RBAC (no Events, as upstream's), an attaching
/// driver, no StorageClass.
const ATTACHER: Sidecar = Sidecar {
    service_account: "csi-attacher",
    rbac: "rbac-csi-attacher.yaml",
    attach: true,
    storage_class: false,
};

/// The Node [`Bed`] creates with the driver's CSINode.
const NODE: &str = "compare-node";

#[derive(Parser, Debug)]
#[command(about = "csi-attacher: ours vs upstream on the local test bed")]
struct Args {
    /// VolumeAttachments in `throughput` (`kill9` and `leader-loss` use at
    /// most 100).
    #[arg(long, default_value_t = 500)]
    vas: usize,
    /// Scenarios, comma-separated: throughput, kill9, leader-loss.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,kill9,leader-loss"
    )]
    scenario: Vec<String>,
    /// --kube-api-qps of both sidecars.
    #[arg(long, default_value = "5")]
    qps: String,
    /// --kube-api-burst of both sidecars.
    #[arg(long, default_value = "10")]
    burst: String,
    /// --worker-threads of both sidecars.
    #[arg(long, default_value = "10")]
    workers: String,
    /// --timeout of both sidecars.
    #[arg(long, default_value = "15s")]
    timeout: String,
    /// Upstream's csi-attacher [default: `$CSI_TESTBED_BIN/csi-attacher`].
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Where the test beds live.
    #[arg(long, default_value = "/tmp/compare-attacher")]
    work: PathBuf,
    /// Run only this implementation (`ours` or `upstream`), e.g. to look
    /// into one figure.
    #[arg(long)]
    only: Option<String>,
    /// Print this many last lines of the restarted (or standby) sidecar's
    /// log after `kill9` and `leader-loss`.
    #[arg(long, default_value_t = 0)]
    log_lines: usize,
}

/// Leader election in the bed's namespace, as a deployment runs it.
fn leader_flags() -> Vec<String> {
    vec![
        "--leader-election".into(),
        format!("--leader-election-namespace={NS}"),
    ]
}

/// `n` driver volumes and their static PVs; returns the PV names.
async fn volumes(bed: &Bed, n: usize) -> anyhow::Result<Vec<String>> {
    let conn = bed.driver_conn().await?;
    let pvs: Api<PersistentVolume> = Api::all(bed.admin.clone());
    let cap = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    };
    let results = futures::stream::iter(0..n)
        .map(|i| {
            let (conn, pvs, cap) = (conn.clone(), pvs.clone(), cap.clone());
            async move {
                let name = format!("pv-{i:04}");
                let id = conn
                    .create_volume(CreateVolumeRequest {
                        name: name.clone(),
                        volume_capabilities: vec![cap],
                        ..Default::default()
                    })
                    .await
                    .context("CreateVolume")?
                    .volume
                    .context("no volume")?
                    .volume_id;
                let pv = PersistentVolume {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: Some(PersistentVolumeSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        capacity: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity("1Mi".into()),
                        )])),
                        csi: Some(CSIPersistentVolumeSource {
                            driver: DRIVER.into(),
                            volume_handle: id,
                            ..Default::default()
                        }),
                        persistent_volume_reclaim_policy: Some("Retain".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                pvs.create(&PostParams::default(), &pv).await?;
                anyhow::Ok(name)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
}

/// One VolumeAttachment per PV, as the attach/detach controller writes them.
async fn create_vas(bed: &Bed, pvs: &[String]) -> anyhow::Result<()> {
    let vas: Api<VolumeAttachment> = Api::all(bed.admin.clone());
    for pv in pvs {
        let va = VolumeAttachment {
            metadata: ObjectMeta {
                name: Some(format!("va-{pv}")),
                ..Default::default()
            },
            spec: VolumeAttachmentSpec {
                attacher: DRIVER.into(),
                node_name: NODE.into(),
                source: VolumeAttachmentSource {
                    persistent_volume_name: Some(pv.clone()),
                    ..Default::default()
                },
            },
            ..Default::default()
        };
        vas.create(&PostParams::default(), &va).await?;
    }
    Ok(())
}

async fn delete_vas(bed: &Bed) -> anyhow::Result<()> {
    let vas: Api<VolumeAttachment> = Api::all(bed.admin.clone());
    for va in vas.list(&ListParams::default()).await?.items {
        let _ = vas
            .delete(
                va.metadata.name.as_deref().unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await;
    }
    Ok(())
}

/// (VolumeAttachments, of which attached).
async fn va_counts(bed: &Bed) -> anyhow::Result<(usize, usize)> {
    let vas: Api<VolumeAttachment> = Api::all(bed.admin.clone());
    let list = vas.list(&ListParams::default()).await?.items;
    let attached = list
        .iter()
        .filter(|v| v.status.as_ref().is_some_and(|s| s.attached))
        .count();
    Ok((list.len(), attached))
}

/// Volume IDs the driver has published. The test driver (Kubernetes' CSI
/// mock) records a publish as `<node ID>/dev` in the volume's context; its
/// ListVolumes `published_node_ids` always names the node.
async fn published(bed: &Bed) -> anyhow::Result<BTreeSet<String>> {
    let resp = bed
        .driver_conn()
        .await?
        .list_volumes(ListVolumesRequest::default())
        .await?;
    Ok(resp
        .entries
        .into_iter()
        .filter_map(|e| e.volume)
        .filter(|v| {
            v.volume_context
                .iter()
                .any(|(k, d)| k.ends_with("/dev") && !d.is_empty())
        })
        .map(|v| v.volume_id)
        .collect())
}

async fn wait(
    what: &str,
    timeout: Duration,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        if done().await? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One implementation's throughput figures.
struct Throughput {
    attach_s: f64,
    detach_s: f64,
    requests: u64,
    by_verb: BTreeMap<String, u64>,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
    cpu_s: f64,
    published_at_end: usize,
}

async fn throughput(bed: &Bed, n: usize) -> anyhow::Result<Throughput> {
    let pvs = volumes(bed, n).await?;
    let args = bed.sidecar_args(bed.driver.socket_path(), &leader_flags());
    let p = bed.spawn("csi-attacher", &args, None)?;
    let pid = p.pid();
    let sampler = measure::Sampler::start(pid, Instant::now());
    // Let it take the Lease, list and settle before the load starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss_mib = measure::rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let cpu0 = measure::cpu_seconds(pid).unwrap_or(0.0);
    let from = jiff::Timestamp::now();
    create_vas(bed, &pvs).await?;
    let attach = wait("all attached", Duration::from_secs(1800), async || {
        Ok(va_counts(bed).await?.1 == n)
    })
    .await?;
    delete_vas(bed).await?;
    let detach = wait("all detached", Duration::from_secs(1800), async || {
        Ok(va_counts(bed).await?.0 == 0)
    })
    .await?;
    // Late requests (events, retries) still belong to the run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_s = measure::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    ensure!(p.is_running(), "csi-attacher exited: {}", p.log_tail(30));
    let all = bed.requests().await?;
    Ok(Throughput {
        attach_s: attach.as_secs_f64(),
        detach_s: detach.as_secs_f64(),
        requests: all.between(from, jiff::Timestamp::now()),
        by_verb: all.by_verb_resource_merged(),
        idle_rss_mib,
        peak_rss_mib: sampler.peak_kib() as f64 / 1024.0,
        cpu_s,
        published_at_end: published(bed).await?.len(),
    })
}

/// One implementation's crash figures.
struct Crash {
    attached_before: usize,
    published_at_kill: usize,
    leaked: usize,
    stuck: usize,
    settled_s: f64,
}

async fn kill9(bed: &Bed, n: usize, standby: bool, log_lines: usize) -> anyhow::Result<Crash> {
    let pvs = volumes(bed, n).await?;
    let proxy_path = bed.tb.run_dir().join("kill9.sock");
    let proxy = DelayProxy::start(&proxy_path, bed.driver.socket_path(), Duration::ZERO)?;
    let args = bed.sidecar_args(proxy.socket_path(), &leader_flags());
    let host = |h: &'static str| standby.then_some(h);
    let p = bed.spawn("csi-attacher-1", &args, host("replica-a"))?;
    // The first replica takes the Lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The standby waits for the Lease the first replica holds. Both connect
    // before the driver turns slow: a gRPC handshake held back 2 s fails,
    // and both implementations exit on a lost connection.
    let standby_replica = if standby {
        Some(bed.spawn("csi-attacher-2", &args, host("replica-b"))?)
    } else {
        None
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_delay(Duration::from_secs(2));
    create_vas(bed, &pvs).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, attached_before) = va_counts(bed).await?;
    p.kill9()?;
    let published_at_kill = published(bed).await?.len();
    delete_vas(bed).await?;
    proxy.set_delay(Duration::ZERO);
    let p2 = match standby_replica {
        Some(p2) => p2,
        None => bed.spawn("csi-attacher-2", &args, None)?,
    };
    // At rest: everything gone, or nothing changed for 40 s (a standby
    // takes over only once the Lease expired, 15 s).
    let mut last = (usize::MAX, usize::MAX);
    let mut stable_since = Instant::now();
    let t0 = Instant::now();
    loop {
        let now = (va_counts(bed).await?.0, published(bed).await?.len());
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        if now == (0, 0)
            || stable_since.elapsed() > Duration::from_secs(40)
            || t0.elapsed() > Duration::from_secs(600)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        p2.is_running(),
        "the second csi-attacher exited: {}",
        p2.log_tail(30)
    );
    if log_lines > 0 {
        eprintln!(
            "--- {} csi-attacher-2 (t0 = {:?} ago):\n{}",
            bed.imp.label,
            t0.elapsed(),
            p2.log_tail(log_lines)
        );
    }
    Ok(Crash {
        attached_before,
        published_at_kill,
        leaked: published(bed).await?.len(),
        stuck: va_counts(bed).await?.0,
        settled_s: t0.elapsed().as_secs_f64(),
    })
}

/// `CSI_ATTACHER_BIN`, else `csi-attacher` next to this executable.
fn our_binary() -> anyhow::Result<PathBuf> {
    let p = match std::env::var_os("CSI_ATTACHER_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("csi-attacher"),
    };
    ensure!(
        p.is_file(),
        "our csi-attacher not found at {}: build it (`cargo build --release -p external-attacher --bin csi-attacher`) and set CSI_ATTACHER_BIN",
        p.display()
    );
    Ok(p)
}

fn upstream_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.upstream {
        return Ok(p.clone());
    }
    let dir = std::env::var_os(testbed::BIN_ENV)
        .map(PathBuf::from)
        .context("--upstream or CSI_TESTBED_BIN (with upstream's csi-attacher) needed")?;
    Ok(dir.join("csi-attacher"))
}

async fn start_bed(imp: &Impl, flags: &Flags, work: &Path, scenario: &str) -> anyhow::Result<Bed> {
    let dir = work.join(format!("{scenario}-{}", imp.label));
    Bed::start_for(&ATTACHER, &dir, imp, flags, &[]).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut impls = Vec::new();
    if args.only.as_deref() != Some("ours") {
        impls.push(Impl {
            label: "upstream",
            binary: upstream_binary(&args)?,
        });
    }
    if args.only.as_deref() != Some("upstream") {
        impls.push(Impl {
            label: "ours",
            binary: our_binary()?,
        });
    }
    for imp in &impls {
        ensure!(
            imp.binary.is_file(),
            "{} csi-attacher not found at {}",
            imp.label,
            imp.binary.display()
        );
    }
    let flags = Flags {
        qps: args.qps.clone(),
        burst: args.burst.clone(),
        workers: args.workers.clone(),
        timeout: args.timeout.clone(),
    };
    println!(
        "--kube-api-qps={} --kube-api-burst={} --worker-threads={} --timeout={} --leader-election for both; one run each\n",
        flags.qps, flags.burst, flags.workers, flags.timeout
    );
    for imp in &impls {
        println!(
            "- {}: `{}` (`{}`)",
            imp.label,
            bed::version_of(&imp.binary).await,
            imp.binary.display()
        );
    }
    println!();
    let want = |s: &str| args.scenario.iter().any(|x| x == s);
    if want("throughput") {
        let mut rows = Vec::new();
        for imp in &impls {
            let bed = start_bed(imp, &flags, &args.work, "throughput").await?;
            let t = throughput(&bed, args.vas).await;
            if t.is_err() {
                bed.tb.dump_logs();
            }
            let t = t.with_context(|| format!("throughput with {}", imp.label))?;
            eprintln!("{}: {} attached in {:.1}s", imp.label, args.vas, t.attach_s);
            rows.push((imp.label, t));
        }
        println!("throughput: {} VolumeAttachments\n", args.vas);
        println!(
            "| impl | all attached (s) | all detached (s) | API requests per attachment | RSS idle / peak (MiB) | CPU (s) | published at the end |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (label, t) in &rows {
            println!(
                "| {label} | {:.1} | {:.1} | {:.2} | {:.0} / {:.0} | {:.1} | {} |",
                t.attach_s,
                t.detach_s,
                t.requests as f64 / args.vas as f64,
                t.idle_rss_mib,
                t.peak_rss_mib,
                t.cpu_s,
                t.published_at_end
            );
        }
        println!("\nRequests by verb and resource (whole process life):\n");
        println!("| request | ours | upstream |");
        println!("|---|---:|---:|");
        let get = |label: &str, k: &String| {
            rows.iter()
                .find(|(l, _)| *l == label)
                .and_then(|(_, t)| t.by_verb.get(k).copied())
                .unwrap_or(0)
        };
        let keys: BTreeSet<&String> = rows.iter().flat_map(|(_, t)| t.by_verb.keys()).collect();
        for k in keys {
            println!("| {k} | {} | {} |", get("ours", k), get("upstream", k));
        }
        println!();
    }
    for (scenario, standby) in [("kill9", false), ("leader-loss", true)] {
        if !want(scenario) {
            continue;
        }
        let n = args.vas.min(100);
        let mut rows = Vec::new();
        for imp in &impls {
            let bed = start_bed(imp, &flags, &args.work, scenario).await?;
            let c = kill9(&bed, n, standby, args.log_lines).await;
            if c.is_err() {
                bed.tb.dump_logs();
            }
            rows.push((
                imp.label,
                c.with_context(|| format!("{scenario} with {}", imp.label))?,
            ));
        }
        let after = if standby {
            "the standby replica takes over"
        } else {
            "the sidecar restarted"
        };
        println!(
            "{scenario}: {n} VolumeAttachments, 2 s driver, SIGKILL 3 s after they were created, all deleted, {after}\n"
        );
        println!(
            "| impl | attached before SIGKILL | published at SIGKILL | leaked (published, no VA) | VAs stuck | settled after (s) |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (label, c) in rows {
            println!(
                "| {label} | {} | {} | {} | {} | {:.1} |",
                c.attached_before, c.published_at_kill, c.leaked, c.stuck, c.settled_s
            );
        }
        println!();
    }
    let _ = std::fs::remove_dir_all(&args.work);
    Ok(())
}
