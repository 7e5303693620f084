//! csi-attacher, ours vs upstream, on fresh local test beds with the same
//! flags (a measurement, not a test):
//!
//! * `throughput`: N VolumeAttachments (as kube-controller-manager's
//!   attach/detach controller writes them) created at once, until all are
//!   attached; then all deleted, until all are gone (detached). Time, API
//!   requests per attachment (from the API server's audit log), peak RSS,
//!   CPU seconds.
//! * `kill9`: N VolumeAttachments against a driver answering in 2 s; the
//!   attacher is SIGKILLed 3 s in (publishes in flight), every
//!   VolumeAttachment is deleted, the attacher restarts. Counted at rest:
//!   attachments still published on the driver with no VolumeAttachment
//!   (leaks), and VolumeAttachments left (stuck).
//! * `leader-loss`: as `kill9` with two replicas (distinct leader-election
//!   identities via `unshare --uts`): the leader is SIGKILLed and the standby
//!   takes over once the Lease expires.
//!
//! ```sh
//! cargo run -p external-attacher --release --example compare -- \
//!   --upstream /root/.cache/csi-testbed/bin/<hash>/csi-attacher --vas 500
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use csi_client::csi::v1::volume_capability::access_mode::Mode;
use csi_client::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi_client::csi::v1::{CreateVolumeRequest, ListVolumesRequest, VolumeCapability};
use csi_client::{ConnectOptions, Connection};
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
use testbed::{DelayProxy, DriverHandle, DriverOptions, ProcessHandle, Testbed, TestbedOptions};

const DRIVER: &str = "hostpath.csi.k8s.io";
const NS: &str = "compare";
const NODE: &str = "compare-node";
const USER: &str = "system:serviceaccount:compare:csi-attacher";

#[derive(Parser, Debug)]
struct Args {
    /// Upstream's csi-attacher binary.
    #[arg(long)]
    upstream: PathBuf,
    /// Our csi-attacher [default: target/<profile>/csi-attacher next to this example].
    #[arg(long)]
    ours: Option<PathBuf>,
    /// VolumeAttachments per run.
    #[arg(long, default_value_t = 500)]
    vas: usize,
    /// Scenarios, comma-separated: throughput, kill9, leader-loss.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,kill9,leader-loss"
    )]
    scenario: Vec<String>,
    /// Extra flags for both sidecars (e.g. --kube-api-qps=50).
    #[arg(long = "flag", allow_hyphen_values = true)]
    flags: Vec<String>,
}

struct Bed {
    tb: Testbed,
    driver: DriverHandle,
    kubeconfig: String,
    audit_log: PathBuf,
    binary: PathBuf,
}

impl Bed {
    async fn start(binary: &Path) -> anyhow::Result<Bed> {
        let work = std::env::temp_dir().join(format!("attacher-compare-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let policy = work.join("audit-policy.yaml");
        let audit_log = work.join("audit.log");
        let _ = std::fs::remove_file(&audit_log);
        std::fs::write(
            &policy,
            format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Metadata\n  users: [\"{USER}\"]\n- level: None\n"
            ),
        )?;
        let tb = Testbed::start(TestbedOptions {
            force_local: true,
            extra_apiserver_args: vec![
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-format=json".into(),
            ],
            ..Default::default()
        })
        .await?;
        tb.create_namespace(NS).await?;
        tb.create_csidriver(DRIVER, true).await?;
        let driver = tb
            .start_driver(DriverOptions {
                enable_attach: true,
                ..DriverOptions::named(DRIVER)
            })
            .await?;
        tb.create_node_with_csinode(NODE, DRIVER, driver.node_id(), &[], BTreeMap::new())
            .await?;
        tb.apply_manifest(
            &testbed::manifest_path("rbac-csi-attacher.yaml"),
            &[("NAMESPACE", NS)],
        )
        .await?;
        let kubeconfig = tb.service_account_kubeconfig(NS, "csi-attacher").await?;
        Ok(Bed {
            tb,
            driver,
            kubeconfig: kubeconfig.to_string_lossy().into_owned(),
            audit_log,
            binary: binary.to_path_buf(),
        })
    }

    fn spawn(&self, name: &str, socket: &Path, flags: &[String]) -> anyhow::Result<ProcessHandle> {
        self.spawn_as(name, socket, flags, None)
    }

    /// With `host`, the sidecar runs in its own UTS namespace under that
    /// host name, its leader-election identity (two replicas on one machine
    /// need different ones, as two pods have).
    fn spawn_as(
        &self,
        name: &str,
        socket: &Path,
        flags: &[String],
        host: Option<&str>,
    ) -> anyhow::Result<ProcessHandle> {
        let mut args = vec![
            format!("--csi-address={}", socket.display()),
            format!("--kubeconfig={}", self.kubeconfig),
            "--leader-election".to_string(),
            format!("--leader-election-namespace={NS}"),
        ];
        args.extend(flags.iter().cloned());
        let envs = [("KUBECONFIG", self.kubeconfig.as_str())];
        let Some(host) = host else {
            return Ok(self.tb.spawn(name, &self.binary, args, &envs)?);
        };
        let mut wrapped: Vec<String> = vec![
            "--uts".into(),
            "sh".into(),
            "-c".into(),
            "echo \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"".into(),
            host.into(),
            self.binary.display().to_string(),
        ];
        wrapped.extend(args);
        Ok(self.tb.spawn(name, Path::new("unshare"), &wrapped, &envs)?)
    }

    async fn conn(&self) -> anyhow::Result<Connection> {
        Ok(Connection::connect(ConnectOptions::new(
            self.driver.socket_path().display().to_string(),
            Duration::from_secs(30),
        ))
        .await?)
    }

    /// Requests of the sidecar's ServiceAccount so far, once per audit ID.
    fn requests(&self) -> anyhow::Result<(u64, BTreeMap<String, u64>)> {
        std::thread::sleep(Duration::from_secs(1));
        let text = std::fs::read_to_string(&self.audit_log)?;
        let mut seen = HashSet::new();
        let mut by = BTreeMap::new();
        for line in text.lines() {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if ev["user"]["username"].as_str() != Some(USER) {
                continue;
            }
            if !seen.insert(ev["auditID"].as_str().unwrap_or_default().to_string()) {
                continue;
            }
            let obj = &ev["objectRef"];
            let res = match (obj["resource"].as_str(), obj["subresource"].as_str()) {
                (Some(r), Some(s)) => format!("{r}/{s}"),
                (Some(r), None) => r.to_string(),
                _ => "other".into(),
            };
            *by.entry(format!("{} {res}", ev["verb"].as_str().unwrap_or("?")))
                .or_default() += 1;
        }
        Ok((by.values().sum(), by))
    }

    /// `n` driver volumes and their PVs; returns the PV names.
    async fn volumes(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let conn = self.conn().await?;
        let pvs: Api<PersistentVolume> = Api::all(self.tb.admin_client());
        let cap = VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
        };
        let mut names = Vec::new();
        for i in 0..n {
            let name = format!("pv-{i:04}");
            let id = conn
                .create_volume(CreateVolumeRequest {
                    name: name.clone(),
                    volume_capabilities: vec![cap.clone()],
                    ..Default::default()
                })
                .await?
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
            names.push(name);
        }
        Ok(names)
    }

    async fn create_vas(&self, pvs: &[String]) -> anyhow::Result<()> {
        let vas: Api<VolumeAttachment> = Api::all(self.tb.admin_client());
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

    async fn delete_vas(&self) -> anyhow::Result<()> {
        let vas: Api<VolumeAttachment> = Api::all(self.tb.admin_client());
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
    async fn va_counts(&self) -> anyhow::Result<(usize, usize)> {
        let vas: Api<VolumeAttachment> = Api::all(self.tb.admin_client());
        let list = vas.list(&ListParams::default()).await?.items;
        let attached = list
            .iter()
            .filter(|v| v.status.as_ref().is_some_and(|s| s.attached))
            .count();
        Ok((list.len(), attached))
    }

    /// Volume IDs the driver has published (the test driver records a
    /// publish as `<node>/dev` in the volume context; its ListVolumes
    /// `published_node_ids` always names the node).
    async fn published(&self) -> anyhow::Result<BTreeSet<String>> {
        let resp = self
            .conn()
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
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) as f64 / 100.0)
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

async fn throughput(
    label: &str,
    binary: &Path,
    n: usize,
    flags: &[String],
) -> anyhow::Result<String> {
    let bed = Bed::start(binary).await?;
    let pvs = bed.volumes(n).await?;
    let p = bed.spawn("csi-attacher", bed.driver.socket_path(), flags)?;
    let pid = p.pid();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_requests, _) = bed.requests()?;
    let idle_rss = rss_kib(pid).unwrap_or(0);
    let peak = Arc::new(Mutex::new(idle_rss));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Some(r) = rss_kib(pid) {
                {
                    let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *p = (*p).max(r);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    bed.create_vas(&pvs).await?;
    let attach = wait("all attached", Duration::from_secs(1800), async || {
        Ok(bed.va_counts().await?.1 == n)
    })
    .await?;
    bed.delete_vas().await?;
    let detach = wait("all detached", Duration::from_secs(1800), async || {
        Ok(bed.va_counts().await?.0 == 0)
    })
    .await?;
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    sampler.abort();
    ensure!(p.is_running(), "{label} exited: {}", p.log_tail(30));
    let (total, by) = bed.requests()?;
    let per = (total - idle_requests) as f64 / n as f64;
    let leaked = bed.published().await?.len();
    let peak = *peak.lock().unwrap();
    Ok(format!(
        "| {label} | {:.1} | {:.1} | {per:.2} | {} / {} | {cpu:.1} | {leaked} |\n<!-- {label} requests: {by:?} -->",
        attach.as_secs_f64(),
        detach.as_secs_f64(),
        idle_rss / 1024,
        peak / 1024,
    ))
}

async fn kill9(
    label: &str,
    binary: &Path,
    n: usize,
    flags: &[String],
    standby: bool,
) -> anyhow::Result<String> {
    let bed = Bed::start(binary).await?;
    let pvs = bed.volumes(n).await?;
    let proxy_path = bed.tb.run_dir().join("kill9.sock");
    let proxy = DelayProxy::start(&proxy_path, bed.driver.socket_path(), Duration::ZERO)?;
    let host = |h: &'static str| standby.then_some(h);
    let p = bed.spawn_as(
        "csi-attacher-1",
        proxy.socket_path(),
        flags,
        host("replica-a"),
    )?;
    // The first replica takes the Lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The standby waits for the Lease the first replica holds. Both connect
    // before the driver turns slow: a gRPC handshake held back 2 s fails,
    // and both implementations exit on a lost connection.
    let standby_replica = if standby {
        Some(bed.spawn_as(
            "csi-attacher-2",
            proxy.socket_path(),
            flags,
            host("replica-b"),
        )?)
    } else {
        None
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_delay(Duration::from_secs(2));
    bed.create_vas(&pvs).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, attached_before) = bed.va_counts().await?;
    p.kill9()?;
    let published_at_kill = bed.published().await?.len();
    bed.delete_vas().await?;
    proxy.set_delay(Duration::ZERO);
    let p2 = match standby_replica {
        Some(p2) => p2,
        None => bed.spawn("csi-attacher-2", proxy.socket_path(), flags)?,
    };
    // At rest: nothing changes for 30 s (or everything is gone).
    let mut last = (usize::MAX, usize::MAX);
    let mut stable_since = Instant::now();
    let t0 = Instant::now();
    loop {
        let now = (bed.va_counts().await?.0, bed.published().await?.len());
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        if now == (0, 0)
            // A standby takes over only once the Lease expired (15 s).
            || stable_since.elapsed() > Duration::from_secs(40)
            || t0.elapsed() > Duration::from_secs(600)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        p2.is_running(),
        "{label} restart exited: {}",
        p2.log_tail(30)
    );
    let (stuck, _) = bed.va_counts().await?;
    let leaked = bed.published().await?.len();
    Ok(format!(
        "| {label} | {attached_before} | {published_at_kill} | {leaked} | {stuck} | {:.1} |",
        t0.elapsed().as_secs_f64()
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ours = args.ours.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| {
                e.parent()
                    .and_then(|d| d.parent())
                    .map(|d| d.join("csi-attacher"))
            })
            .unwrap_or_else(|| PathBuf::from("csi-attacher"))
    });
    ensure!(
        ours.is_file(),
        "our csi-attacher not found at {}",
        ours.display()
    );
    let imps = [("upstream", args.upstream.clone()), ("ours", ours)];
    println!(
        "flags for both: {:?}; {} VolumeAttachments; 2 cores, one run each\n",
        args.flags, args.vas
    );
    if args.scenario.iter().any(|s| s == "throughput") {
        println!(
            "| impl | all attached (s) | all detached (s) | API requests per attachment | RSS idle / peak (MiB) | CPU (s) | published at the end |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (label, bin) in &imps {
            println!("{}", throughput(label, bin, args.vas, &args.flags).await?);
        }
        println!();
    }
    for (scenario, standby) in [("kill9", false), ("leader-loss", true)] {
        if !args.scenario.iter().any(|s| s == scenario) {
            continue;
        }
        let after = if standby {
            "the standby replica takes over"
        } else {
            "the sidecar restarted"
        };
        println!(
            "{scenario}: 2 s driver, SIGKILL 3 s after the VolumeAttachments were created, all deleted, {after}"
        );
        println!(
            "| impl | attached before SIGKILL | published at SIGKILL | leaked (published, no VA) | VAs stuck | settled after (s) |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (label, bin) in &imps {
            let row = kill9(label, bin, args.vas.min(100), &args.flags, standby).await?;
            println!("{row}");
        }
        println!();
    }
    Ok(())
}
