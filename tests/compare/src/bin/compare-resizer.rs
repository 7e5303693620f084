//! `compare-resizer`: upstream's csi-resizer and ours, each on a fresh
//! local test bed with the same flags, expand the same number of Bound
//! claims; reports the time until every claim shows its new capacity, the
//! sidecar's API requests per claim (from the API server's audit log),
//! its peak RSS and its CPU time, as a Markdown table.
//!
//! ```sh
//! UP=$(bash tests/testbed/build.sh upstream | tail -1)
//! cargo build --release -p external-resizer --bin csi-resizer && cargo build -p compare
//! CSI_RESIZER_BIN=$PWD/target/release/csi-resizer target/debug/compare-resizer --claims 500 --upstream $UP/csi-resizer
//! ```

#[allow(dead_code)]
#[path = "../audit.rs"]
mod audit;
#[allow(dead_code)]
#[path = "../measure.rs"]
mod measure;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use csi_client::csi::v1::volume_capability::{
    AccessMode, AccessType, MountVolume, access_mode::Mode,
};
use csi_client::csi::v1::{CapacityRange, CreateVolumeRequest, VolumeCapability};
use csi_client::{ConnectOptions, Connection};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

const NS: &str = "compare";
const DRIVER: &str = "hostpath.csi.k8s.io";
const USER: &str = "system:serviceaccount:compare:csi-resizer";
const CLASS: &str = "compare-expandable";

#[derive(Parser, Debug)]
#[command(about = "csi-resizer: ours vs upstream on the local test bed")]
struct Args {
    /// Claims to expand.
    #[arg(long, default_value_t = 500)]
    claims: usize,
    /// --kube-api-qps of both sidecars.
    #[arg(long, default_value = "5")]
    qps: String,
    /// --kube-api-burst of both sidecars.
    #[arg(long, default_value = "10")]
    burst: String,
    /// --workers of both sidecars.
    #[arg(long, default_value = "10")]
    workers: String,
    /// Upstream's csi-resizer [default: from `tests/testbed/build.sh upstream`].
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Where the test beds live.
    #[arg(long, default_value = "/tmp/compare-resizer")]
    work: PathBuf,
}

/// One implementation's figures.
struct Figures {
    seconds: f64,
    requests: u64,
    by_verb: BTreeMap<String, u64>,
    peak_rss_mib: f64,
    cpu_seconds: f64,
}

fn storage(q: &str) -> BTreeMap<String, Quantity> {
    [("storage".to_string(), Quantity(q.into()))].into()
}

async fn bound_claims(tb: &Testbed, csi: &Connection, n: usize) -> anyhow::Result<()> {
    let admin = tb.admin_client();
    let pvs: Api<PersistentVolume> = Api::all(admin.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin, NS);
    futures::stream::iter(0..n)
        .map(|i| {
            let (pvs, pvcs) = (pvs.clone(), pvcs.clone());
            async move {
                let name = format!("c-{i}");
                let vol = csi
                    .create_volume(CreateVolumeRequest {
                        name: name.clone(),
                        capacity_range: Some(CapacityRange {
                            required_bytes: 1 << 20,
                            limit_bytes: 0,
                        }),
                        volume_capabilities: vec![VolumeCapability {
                            access_type: Some(AccessType::Mount(MountVolume::default())),
                            access_mode: Some(AccessMode {
                                mode: Mode::SingleNodeWriter as i32,
                            }),
                        }],
                        ..Default::default()
                    })
                    .await
                    .context("CreateVolume")?
                    .volume
                    .context("no volume")?;
                let pv = PersistentVolume {
                    metadata: ObjectMeta {
                        name: Some(format!("pv-{name}")),
                        ..Default::default()
                    },
                    spec: Some(PersistentVolumeSpec {
                        capacity: Some(storage("1Mi")),
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        persistent_volume_reclaim_policy: Some("Retain".into()),
                        storage_class_name: Some(CLASS.into()),
                        claim_ref: Some(ObjectReference {
                            namespace: Some(NS.into()),
                            name: Some(name.clone()),
                            ..Default::default()
                        }),
                        csi: Some(CSIPersistentVolumeSource {
                            driver: DRIVER.into(),
                            volume_handle: vol.volume_id,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                pvs.create(&PostParams::default(), &pv).await?;
                let pvc = PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        storage_class_name: Some(CLASS.into()),
                        volume_name: Some(format!("pv-{name}")),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(storage("1Mi")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                pvcs.create(&PostParams::default(), &pvc).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    wait_all(&pvcs, n, "Bound", |c| {
        c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    })
    .await
}

async fn wait_all(
    pvcs: &Api<PersistentVolumeClaim>,
    n: usize,
    what: &str,
    done: impl Fn(&PersistentVolumeClaim) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let list = pvcs.list(&ListParams::default()).await?;
        let count = list.items.iter().filter(|c| done(c)).count();
        if count >= n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out: {count}/{n} claims {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run(label: &str, binary: &Path, args: &Args) -> anyhow::Result<Figures> {
    ensure!(
        binary.is_file(),
        "{label} csi-resizer not found at {}",
        binary.display()
    );
    let work = args.work.join(label);
    std::fs::create_dir_all(&work)?;
    let policy = work.join("audit-policy.yaml");
    let audit_log = work.join("audit.log");
    std::fs::write(&policy, audit::policy(USER))?;
    let _ = std::fs::remove_file(&audit_log);
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
    tb.create_csidriver(DRIVER, false).await?;
    let driver = tb.start_driver(DriverOptions::named(DRIVER)).await?;
    tb.apply_manifest(
        &testbed::manifest_path("rbac-csi-resizer.yaml"),
        &[("NAMESPACE", NS)],
    )
    .await?;
    let kubeconfig = tb.service_account_kubeconfig(NS, "csi-resizer").await?;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let admin = tb.admin_client();
    Api::<StorageClass>::all(admin.clone())
        .create(
            &PostParams::default(),
            &StorageClass {
                metadata: ObjectMeta {
                    name: Some(CLASS.into()),
                    ..Default::default()
                },
                provisioner: DRIVER.into(),
                allow_volume_expansion: Some(true),
                reclaim_policy: Some("Retain".into()),
                ..Default::default()
            },
        )
        .await?;
    let csi = Connection::connect(ConnectOptions::new(
        driver.socket_path().display().to_string(),
        Duration::from_secs(30),
    ))
    .await?;
    bound_claims(&tb, &csi, args.claims).await?;
    eprintln!("{label}: {} claims Bound", args.claims);

    let sidecar = tb.spawn(
        "csi-resizer",
        binary,
        [
            format!("--csi-address={}", driver.socket_path().display()),
            format!("--kubeconfig={kubeconfig}"),
            format!("--kube-api-qps={}", args.qps),
            format!("--kube-api-burst={}", args.burst),
            format!("--workers={}", args.workers),
        ],
        &[("KUBECONFIG", kubeconfig.as_str())],
    )?;
    let started = Instant::now();
    let sampler = measure::Sampler::start(sidecar.pid(), started);
    // Let it list and settle before the load starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu0 = measure::cpu_seconds(sidecar.pid()).unwrap_or(0.0);
    let from = jiff::Timestamp::now();
    let t0 = Instant::now();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin, NS);
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": "2Mi"}}}});
    futures::stream::iter(0..args.claims)
        .map(|i| {
            let pvcs = pvcs.clone();
            let patch = patch.clone();
            async move {
                pvcs.patch(
                    &format!("c-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    wait_all(&pvcs, args.claims, "expanded", |c| {
        c.status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|m| m.get("storage"))
            .is_some_and(|q| q.0 == "2Mi")
    })
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    // Late requests (events, retries) still belong to the run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_seconds = measure::cpu_seconds(sidecar.pid()).unwrap_or(0.0) - cpu0;
    ensure!(
        sidecar.is_running(),
        "{label} csi-resizer exited: {}",
        sidecar.log_tail(30)
    );
    let text = std::fs::read_to_string(&audit_log)?;
    let all = audit::count(&text, USER);
    let requests = all.between(from, jiff::Timestamp::now());
    let peak_rss_mib = sampler.peak_kib() as f64 / 1024.0;
    eprintln!("{label}: {} claims expanded in {seconds:.1}s", args.claims);
    Ok(Figures {
        seconds,
        requests,
        by_verb: all.by_verb_resource_merged(),
        peak_rss_mib,
        cpu_seconds,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ours = std::env::var_os("CSI_RESIZER_BIN")
        .map(PathBuf::from)
        .context("CSI_RESIZER_BIN must name our csi-resizer (a release build)")?;
    let upstream = match &args.upstream {
        Some(p) => p.clone(),
        None => {
            let dir = std::env::var_os(testbed::BIN_ENV)
                .map(PathBuf::from)
                .context("--upstream or CSI_TESTBED_BIN (with upstream's csi-resizer) needed")?;
            dir.join("csi-resizer")
        }
    };
    let up = run("upstream", &upstream, &args).await?;
    let us = run("ours", &ours, &args).await?;
    let n = args.claims as f64;
    println!(
        "| {} claims, QPS {}, burst {}, {} workers | ours | upstream |",
        args.claims, args.qps, args.burst, args.workers
    );
    println!("|---|---:|---:|");
    println!(
        "| all expanded (s) | {:.1} | {:.1} |",
        us.seconds, up.seconds
    );
    println!(
        "| API requests per claim during the run | {:.2} | {:.2} |",
        us.requests as f64 / n,
        up.requests as f64 / n
    );
    println!(
        "| peak RSS (MiB) | {:.0} | {:.0} |",
        us.peak_rss_mib, up.peak_rss_mib
    );
    println!(
        "| CPU during the run (s) | {:.2} | {:.2} |",
        us.cpu_seconds, up.cpu_seconds
    );
    println!();
    println!("Requests by verb and resource (whole process life):");
    println!();
    println!("| request | ours | upstream |");
    println!("|---|---:|---:|");
    let keys: std::collections::BTreeSet<&String> =
        us.by_verb.keys().chain(up.by_verb.keys()).collect();
    for k in keys {
        println!(
            "| {k} | {} | {} |",
            us.by_verb.get(k).copied().unwrap_or(0),
            up.by_verb.get(k).copied().unwrap_or(0)
        );
    }
    Ok(())
}
