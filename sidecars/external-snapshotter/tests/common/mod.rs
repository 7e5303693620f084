//! Setup shared by csi-snapshotter's end-to-end tests: the snapshot CRDs
//! from upstream's client module, a namespace, the test driver, our
//! snapshot-controller (`CSI_E2E_SNAPSHOT_CONTROLLER_BIN=upstream` for
//! upstream v8.6.0's) under upstream's RBAC for it, our csi-provisioner
//! and the csi-snapshotter under test (ours, or the binary named by
//! `CSI_E2E_SNAPSHOTTER_BIN`) under upstream's csi-snapshotter RBAC,
//! talking to the driver through a [`DelayProxy`].
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use csi_client::csi::v1::ListSnapshotsRequest;
use csi_client::{ConnectOptions, Connection, LossPolicy};
use k8s_openapi::api::core::v1::{
    Event, PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use snapshot_api::snapshot::v1::{
    DeletionPolicy, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotClassFields,
    VolumeSnapshotContent, VolumeSnapshotSource, VolumeSnapshotSpec,
};
use testbed::{DelayProxy, DriverHandle, DriverOptions, ProcessHandle, Testbed};

pub use testbed::poll;

pub const DRIVER: &str = "hostpath.csi.k8s.io";
pub const WAIT: Duration = Duration::from_secs(120);
/// The Lease both implementations take.
pub const LEASE: &str = "external-snapshotter-leader-hostpath-csi-k8s-io";

/// The csi-snapshotter under test: ours, or `CSI_E2E_SNAPSHOTTER_BIN`.
pub fn snapshotter_binary() -> PathBuf {
    std::env::var_os("CSI_E2E_SNAPSHOTTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_csi-snapshotter")))
}

/// True when the binary under test is ours.
pub fn testing_ours() -> bool {
    std::env::var_os("CSI_E2E_SNAPSHOTTER_BIN").is_none()
}

/// Our csi-provisioner and snapshot-controller, built with the cargo
/// running the tests: a test may not link another sidecar, only run it. The
/// build names this package and the test bed too, so its feature set is the
/// one `cargo test -p external-snapshotter` uses and the two builds do not
/// undo each other's dependencies. Built once per test process.
fn our_binaries() -> anyhow::Result<BTreeMap<String, PathBuf>> {
    static BUILT: std::sync::OnceLock<Result<BTreeMap<String, PathBuf>, String>> =
        std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_ours().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_ours() -> anyhow::Result<BTreeMap<String, PathBuf>> {
    const BINS: [&str; 2] = ["csi-provisioner", "snapshot-controller"];
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(testbed::repo_root())
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(["-p", "external-provisioner", "-p", "snapshot-controller"])
        .args(["-p", "external-snapshotter", "-p", "testbed"])
        .args(["--bin", BINS[0], "--bin", BINS[1]])
        .output()
        .context("run cargo build of csi-provisioner and snapshot-controller")?;
    if !out.status.success() {
        bail!(
            "cargo build --bin csi-provisioner --bin snapshot-controller failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let built: BTreeMap<String, PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_string();
            let exe = m["executable"].as_str()?;
            BINS.contains(&name.as_str())
                .then(|| (name, PathBuf::from(exe)))
        })
        .collect();
    for b in BINS {
        ensure!(built.contains_key(b), "no {b} in cargo's output");
    }
    Ok(built)
}

/// Our csi-provisioner (`CSI_E2E_PROVISIONER_BIN` overrides it).
pub fn provisioner_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CSI_E2E_PROVISIONER_BIN") {
        return Ok(PathBuf::from(p));
    }
    Ok(our_binaries()?["csi-provisioner"].clone())
}

/// The snapshot-controller next to the sidecar: ours, or with
/// `CSI_E2E_SNAPSHOT_CONTROLLER_BIN` upstream's from the test bed
/// (`upstream`, built by `build.sh upstream`) or the named binary.
pub fn controller_binary(tb: &Testbed) -> anyhow::Result<PathBuf> {
    match std::env::var("CSI_E2E_SNAPSHOT_CONTROLLER_BIN")
        .ok()
        .as_deref()
    {
        None | Some("") => Ok(our_binaries()?["snapshot-controller"].clone()),
        Some("upstream") => {
            let bin = tb.bin("snapshot-controller");
            ensure!(
                bin.exists(),
                "upstream's snapshot-controller is not in the test bed ({}): build it with `bash tests/testbed/build.sh upstream`",
                bin.display()
            );
            Ok(bin)
        }
        Some(path) => Ok(PathBuf::from(path)),
    }
}

/// A namespace with everything running.
pub struct Scenario {
    pub ns: String,
    pub suffix: String,
    pub driver: DriverHandle,
    /// Direct connection to the driver (not through the proxy).
    pub csi: Connection,
    /// What the snapshotter dials.
    pub proxy: DelayProxy,
    pub snapshotter: ProcessHandle,
    pub snapshotter_kubeconfig: String,
    pub controller: ProcessHandle,
    pub provisioner: ProcessHandle,
    pub storage_class: String,
    pub snapshot_class: String,
    pub admin: Client,
    pub pvcs: Api<PersistentVolumeClaim>,
    pub snapshots: Api<VolumeSnapshot>,
    pub contents: Api<VolumeSnapshotContent>,
    pub events: Api<Event>,
}

/// Sets everything up; `snapshotter_args` are added to the sidecar's.
pub async fn scenario(
    tb: &Testbed,
    prefix: &str,
    snapshotter_args: &[&str],
) -> anyhow::Result<Scenario> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let suffix = format!("{:04x}", (nanos ^ std::process::id()) as u16);
    let ns = format!("{prefix}-{suffix}");
    tb.install_snapshot_crds().await?;
    tb.create_namespace(&ns).await?;
    tb.create_csidriver(DRIVER, false).await?;
    let driver = tb.start_driver(DriverOptions::named(DRIVER)).await?;
    if tb.is_local() {
        tb.create_node_with_csinode("e2e-node", DRIVER, driver.node_id(), &[], BTreeMap::new())
            .await?;
    }
    for manifest in [
        "rbac-csi-provisioner.yaml",
        "rbac-csi-snapshotter.yaml",
        "rbac-snapshot-controller.yaml",
    ] {
        tb.apply_manifest(
            &testbed::manifest_path(manifest),
            &[("NAMESPACE", ns.as_str())],
        )
        .await?;
    }
    let kc = |sa: &'static str| {
        let ns = ns.clone();
        async move {
            let p = tb.service_account_kubeconfig(&ns, sa).await?;
            anyhow::Ok(p.to_string_lossy().into_owned())
        }
    };
    let (prov_kc, snap_kc, ctrl_kc) = (
        kc("csi-provisioner").await?,
        kc("csi-snapshotter").await?,
        kc("snapshot-controller").await?,
    );
    let controller_bin = controller_binary(tb)?;
    let controller = tb.spawn(
        "snapshot-controller",
        &controller_bin,
        [
            format!("--kubeconfig={ctrl_kc}"),
            "--v=5".into(),
            "--leader-election".into(),
            format!("--leader-election-namespace={ns}"),
            "--retry-interval-start=500ms".into(),
            "--retry-interval-max=10s".into(),
        ],
        &[("KUBECONFIG", ctrl_kc.as_str())],
    )?;
    let provisioner = tb.spawn(
        "csi-provisioner",
        &provisioner_binary()?,
        [
            format!("--csi-address={}", driver.socket_path().display()),
            format!("--kubeconfig={prov_kc}"),
            "-v=5".into(),
            "--leader-election".into(),
            format!("--leader-election-namespace={ns}"),
        ],
        &[("KUBECONFIG", prov_kc.as_str())],
    )?;
    let proxy_path = tb.run_dir().join(format!("px{}.sock", tb.next_seq()));
    let proxy = DelayProxy::start(&proxy_path, driver.socket_path(), Duration::ZERO)?;
    let snapshotter = spawn_snapshotter(
        tb,
        &ns,
        &snap_kc,
        proxy.socket_path(),
        "csi-snapshotter",
        snapshotter_args,
    )?;
    let admin = tb.admin_client();
    let storage_class = format!("{prefix}-{suffix}");
    Api::<StorageClass>::all(admin.clone())
        .create(
            &PostParams::default(),
            &StorageClass {
                metadata: ObjectMeta {
                    name: Some(storage_class.clone()),
                    ..Default::default()
                },
                provisioner: DRIVER.into(),
                reclaim_policy: Some("Delete".into()),
                volume_binding_mode: Some("Immediate".into()),
                ..Default::default()
            },
        )
        .await?;
    let snapshot_class = format!("{prefix}-{suffix}");
    Api::<VolumeSnapshotClass>::all(admin.clone())
        .create(
            &PostParams::default(),
            &VolumeSnapshotClass {
                metadata: ObjectMeta {
                    name: Some(snapshot_class.clone()),
                    ..Default::default()
                },
                spec: VolumeSnapshotClassFields {
                    driver: DRIVER.into(),
                    parameters: Some(BTreeMap::from([("e2e".to_string(), "yes".to_string())])),
                    deletion_policy: DeletionPolicy::Delete,
                },
            },
        )
        .await?;
    let csi = Connection::connect(ConnectOptions {
        address: driver.socket_path().display().to_string(),
        timeout: Duration::from_secs(10),
        connect_timeout: Some(Duration::from_secs(10)),
        on_loss: LossPolicy::Reconnect,
        metrics: None,
        max_grpc_log_length: None,
    })
    .await?;
    Ok(Scenario {
        pvcs: Api::namespaced(admin.clone(), &ns),
        snapshots: Api::namespaced(admin.clone(), &ns),
        contents: Api::all(admin.clone()),
        events: Api::all(admin.clone()),
        admin,
        ns,
        suffix,
        driver,
        csi,
        proxy,
        snapshotter,
        snapshotter_kubeconfig: snap_kc,
        controller,
        provisioner,
        storage_class,
        snapshot_class,
    })
}

/// Starts a csi-snapshotter (the one under test) as the ServiceAccount.
pub fn spawn_snapshotter(
    tb: &Testbed,
    ns: &str,
    kubeconfig: &str,
    csi_address: &Path,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<ProcessHandle> {
    let mut args = vec![
        format!("--csi-address={}", csi_address.display()),
        format!("--kubeconfig={kubeconfig}"),
        "-v=5".into(),
        "--leader-election".into(),
        format!("--leader-election-namespace={ns}"),
        "--retry-interval-start=500ms".into(),
        "--retry-interval-max=10s".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Ok(tb.spawn(
        name,
        &snapshotter_binary(),
        args,
        &[("KUBECONFIG", kubeconfig)],
    )?)
}

pub fn claim(name: &str, class: &str, from_snapshot: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Mi".into()),
                )])),
                ..Default::default()
            }),
            data_source: from_snapshot.map(|s| TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: "VolumeSnapshot".into(),
                name: s.into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A VolumeSnapshot of claim `pvc` with `class`.
pub fn snapshot_of(name: &str, pvc: &str, class: &str) -> VolumeSnapshot {
    VolumeSnapshot::new(
        name,
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(pvc.into()),
                ..Default::default()
            },
            volume_snapshot_class_name: Some(class.into()),
        },
    )
}

impl Scenario {
    pub async fn wait_bound(&self, name: &str) -> anyhow::Result<()> {
        poll(&format!("claim {name} Bound"), WAIT, || async {
            let c = self.pvcs.get(name).await?;
            Ok((c.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
        })
        .await
    }

    /// Waits until the snapshot's content exists and returns its name.
    pub async fn content_of(&self, snapshot: &str) -> anyhow::Result<String> {
        poll(&format!("content of {snapshot}"), WAIT, || async {
            let s = self.snapshots.get(snapshot).await?;
            Ok(s.status.and_then(|s| s.bound_volume_snapshot_content_name))
        })
        .await
    }

    pub async fn wait_ready(&self, snapshot: &str) -> anyhow::Result<VolumeSnapshot> {
        poll(&format!("snapshot {snapshot} readyToUse"), WAIT, || async {
            let s = self.snapshots.get(snapshot).await?;
            let ready = s.status.as_ref().and_then(|s| s.ready_to_use) == Some(true);
            Ok(ready.then_some(s))
        })
        .await
    }

    pub async fn wait_gone_content(&self, name: &str) -> anyhow::Result<()> {
        poll(&format!("content {name} deleted"), WAIT, || async {
            Ok(self.contents.get_opt(name).await?.is_none().then_some(()))
        })
        .await
    }

    /// The driver's snapshots (IDs) of source volume `volume`, or all.
    /// Listed whole and filtered here: the test driver answers a
    /// `source_volume_id` filter with the first match only.
    pub async fn driver_snapshots(&self, volume: Option<&str>) -> anyhow::Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        let mut token = String::new();
        loop {
            let r = self
                .csi
                .list_snapshots(ListSnapshotsRequest {
                    starting_token: token.clone(),
                    ..Default::default()
                })
                .await?;
            out.extend(
                r.entries
                    .into_iter()
                    .filter_map(|e| e.snapshot)
                    .filter(|s| volume.is_none_or(|v| s.source_volume_id == v))
                    .map(|s| s.snapshot_id),
            );
            if r.next_token.is_empty() {
                return Ok(out);
            }
            token = r.next_token;
        }
    }

    /// The size the driver reports for snapshot `id` (ListSnapshots).
    pub async fn driver_snapshot_size(&self, id: &str) -> anyhow::Result<i64> {
        let r = self
            .csi
            .list_snapshots(ListSnapshotsRequest {
                snapshot_id: id.to_string(),
                ..Default::default()
            })
            .await?;
        r.entries
            .into_iter()
            .find_map(|e| e.snapshot)
            .map(|s| s.size_bytes)
            .context("snapshot not on the driver")
    }

    /// The volume handle of a Bound claim.
    pub async fn volume_handle(&self, claim: &str) -> anyhow::Result<String> {
        let pv = self
            .pvcs
            .get(claim)
            .await?
            .spec
            .and_then(|s| s.volume_name)
            .context("claim not bound")?;
        let pv = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(self.admin.clone())
            .get(&pv)
            .await?;
        pv.spec
            .and_then(|s| s.csi)
            .map(|c| c.volume_handle)
            .context("PV without csi")
    }

    /// Events about content `name` from the snapshotter: `(type, reason, message)`.
    pub async fn content_events(
        &self,
        name: &str,
    ) -> anyhow::Result<Vec<(String, String, String)>> {
        let list = Api::<Event>::namespaced(self.admin.clone(), "default")
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| {
                e.source
                    .as_ref()
                    .and_then(|s| s.component.as_deref())
                    .is_some_and(|c| c.starts_with("csi-snapshotter"))
            })
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect())
    }
}

/// What the comparison with upstream looks at in a content: annotation
/// keys, finalizers, which status fields are set (and `readyToUse`), the
/// error message with the volume handle and times masked.
pub fn content_record(c: &VolumeSnapshotContent) -> Value {
    let status = c.status.as_ref();
    json!({
        "annotations": c.annotations().keys().collect::<Vec<_>>(),
        "finalizers": c.finalizers(),
        "status": status.map(|s| json!({
            "snapshotHandle": s.snapshot_handle.is_some(),
            "creationTime": s.creation_time.is_some(),
            "readyToUse": s.ready_to_use,
            "restoreSize": s.restore_size,
            "error": s.error.as_ref().and_then(|e| e.message.clone()),
            "volumeGroupSnapshotHandle": s.volume_group_snapshot_handle.is_some(),
        })),
    })
}

/// With `CSI_E2E_SNAPSHOTTER_REPORT=<dir>`, writes `value` to
/// `<dir>/<ours|upstream>-<name>.json` for a diff between the two runs.
pub fn report(name: &str, value: &Value) -> anyhow::Result<()> {
    let Some(dir) = std::env::var_os("CSI_E2E_SNAPSHOTTER_REPORT") else {
        return Ok(());
    };
    let who = if testing_ours() { "ours" } else { "upstream" };
    std::fs::create_dir_all(&dir)?;
    let path = Path::new(&dir).join(format!("{who}-{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub fn ids<T: ResourceExt>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| i.name_any()).collect()
}
