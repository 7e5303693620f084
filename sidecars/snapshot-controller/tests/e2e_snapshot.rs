//! End to end on the real control plane with upstream's snapshot CRDs:
//! snapshot-controller under test (as a ServiceAccount with upstream's
//! RBAC), our csi-snapshotter sidecar and our csi-provisioner in front of
//! csi-testdriver (`CSI_E2E_SNAPSHOTTER_BIN=upstream` runs upstream's
//! csi-snapshotter v8.6.0 instead, or a path names another binary).
//!
//! Scenarios: a dynamic snapshot of a Bound claim through the default
//! class, ready; a claim restored from it; a snapshot with a Retain class; a
//! pre-provisioned content bound to its snapshot; a snapshot naming a
//! content of the wrong kind; a snapshot while the driver has two default
//! classes (refused, then ready once one goes); then everything deleted
//! (Delete contents gone with their driver snapshots, the Retain content
//! kept).
//!
//! The same test runs upstream's controller with
//! `CSI_E2E_SNAPSHOT_CONTROLLER_BIN=<path to snapshot-controller>`. With
//! `CSI_E2E_SNAPSHOT_REPORT=<dir>` each scenario's snapshot, content, claim
//! finalizers and Events are written there, normalized (names, UIDs, times
//! and handles replaced), for a field-by-field diff of the two runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use csi_client::csi::v1::{CreateSnapshotRequest, ListSnapshotsRequest};
use csi_client::{ConnectOptions, Connection, LossPolicy};
use k8s_openapi::api::core::v1::{
    Event, ObjectReference, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    TypedLocalObjectReference, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use snapshot_api::names::IS_DEFAULT_SNAPSHOT_CLASS;
use snapshot_api::snapshot::v1::{
    DeletionPolicy, VolumeSnapshotClassFields, VolumeSnapshotContentSource,
    VolumeSnapshotContentSpec, VolumeSnapshotSource, VolumeSnapshotSpec,
};
use snapshot_api::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
use testbed::{DriverOptions, Testbed, TestbedOptions, poll};

const DRIVER: &str = "hostpath.csi.k8s.io";
const WAIT: Duration = Duration::from_secs(120);

/// The controller under test: ours, or `CSI_E2E_SNAPSHOT_CONTROLLER_BIN`.
fn controller_binary() -> PathBuf {
    std::env::var_os("CSI_E2E_SNAPSHOT_CONTROLLER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_snapshot-controller")))
}

/// Another of our sidecars, built next to this test (`cargo test
/// --workspace` builds every binary; alone: `cargo build -p <package> --bin
/// <bin>`).
fn our_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("no target dir")?;
    let path = dir.join(bin);
    ensure!(
        path.is_file(),
        "our {bin} is not built at {}: run `cargo build -p {package} --bin {bin}`",
        path.display()
    );
    Ok(path)
}

/// Our csi-provisioner.
fn provisioner_binary() -> anyhow::Result<PathBuf> {
    our_binary("external-provisioner", "csi-provisioner")
}

/// The csi-snapshotter sidecar next to the controller: ours, or with
/// `CSI_E2E_SNAPSHOTTER_BIN` upstream's (`upstream`) or the named binary.
async fn snapshotter_binary(tb: &Testbed) -> anyhow::Result<PathBuf> {
    match std::env::var("CSI_E2E_SNAPSHOTTER_BIN").ok().as_deref() {
        None | Some("") => our_binary("external-snapshotter", "csi-snapshotter"),
        Some("upstream") => upstream_snapshotter(tb).await,
        Some(path) => Ok(PathBuf::from(path)),
    }
}

/// Upstream's csi-snapshotter v8.6.0 from the test bed's bin dir, built
/// with `build.sh upstream` when it is not there yet (CI builds only `core`
/// and `node`; the build is cached).
async fn upstream_snapshotter(tb: &Testbed) -> anyhow::Result<PathBuf> {
    let cached = tb.bin("csi-snapshotter");
    if cached.is_file() {
        return Ok(cached);
    }
    let out = tokio::process::Command::new("bash")
        .arg(testbed::build_script())
        .arg("upstream")
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running build.sh upstream")?;
    ensure!(
        out.status.success(),
        "build.sh upstream failed: {}",
        out.status
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let path = PathBuf::from(dir).join("csi-snapshotter");
    ensure!(
        path.is_file(),
        "upstream csi-snapshotter missing at {}",
        path.display()
    );
    Ok(path)
}

fn claim(name: &str, class: &str, source: Option<&str>) -> PersistentVolumeClaim {
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
            data_source: source.map(|s| TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: "VolumeSnapshot".into(),
                name: s.into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn snapshot_class(name: &str, policy: DeletionPolicy, default: bool) -> VolumeSnapshotClass {
    let mut c = VolumeSnapshotClass::new(
        name,
        VolumeSnapshotClassFields {
            driver: DRIVER.into(),
            parameters: None,
            deletion_policy: policy,
        },
    );
    if default {
        c.metadata.annotations = Some(BTreeMap::from([(
            IS_DEFAULT_SNAPSHOT_CLASS.to_string(),
            "true".to_string(),
        )]));
    }
    c
}

fn snapshot(
    name: &str,
    claim: Option<&str>,
    content: Option<&str>,
    class: Option<&str>,
) -> VolumeSnapshot {
    VolumeSnapshot::new(
        name,
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: claim.map(str::to_string),
                volume_snapshot_content_name: content.map(str::to_string),
            },
            volume_snapshot_class_name: class.map(str::to_string),
        },
    )
}

struct World {
    ns: String,
    suffix: String,
    admin: Client,
    snaps: Api<VolumeSnapshot>,
    contents: Api<VolumeSnapshotContent>,
    pvcs: Api<PersistentVolumeClaim>,
    events: Api<Event>,
    csi: Connection,
}

impl World {
    async fn wait_ready(&self, name: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        poll(&format!("{name} ready"), WAIT, || async {
            let s = self.snaps.get(name).await?;
            Ok(s.status
                .as_ref()
                .and_then(|s| s.ready_to_use)
                .unwrap_or(false)
                .then_some(()))
        })
        .await?;
        Ok(started.elapsed())
    }

    async fn wait_bound(&self, name: &str) -> anyhow::Result<String> {
        poll(&format!("claim {name} Bound"), WAIT, || async {
            let c = self.pvcs.get(name).await?;
            let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            Ok(bound.then(|| c.spec.and_then(|s| s.volume_name)).flatten())
        })
        .await
    }

    /// The snapshot, its content, the source claim's finalizers and the
    /// snapshot's Events, normalized so that two runs compare.
    async fn record(&self, name: &str, claim: Option<&str>) -> anyhow::Result<Value> {
        let vs = self.snaps.get(name).await?;
        let uid = vs.uid().unwrap_or_default();
        let content_name = vs
            .status
            .as_ref()
            .and_then(|s| s.bound_volume_snapshot_content_name.clone())
            .or_else(|| vs.spec.source.volume_snapshot_content_name.clone());
        let content = match &content_name {
            Some(n) => self.contents.get_opt(n).await?,
            None => None,
        };
        let claim_finalizers = match claim {
            Some(c) => self.pvcs.get(c).await?.finalizers().to_vec(),
            None => Vec::new(),
        };
        let mut events: Vec<Value> = self
            .events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await?
            .items
            .into_iter()
            .map(|e| {
                json!({
                    "type": e.type_,
                    "reason": e.reason,
                    "message": e.message,
                    "component": e.source.and_then(|s| s.component),
                    "kind": e.involved_object.kind,
                })
            })
            .collect();
        events.sort_by_key(|e| e.to_string());
        let mut vs_json = serde_json::to_value(&vs)?;
        let mut content_json = serde_json::to_value(&content)?;
        for v in [&mut vs_json, &mut content_json] {
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                for k in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "generation",
                    "managedFields",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                ] {
                    m.remove(k);
                }
            }
            if let Some(s) = v.get_mut("status").and_then(Value::as_object_mut) {
                for k in ["creationTime"] {
                    if s.contains_key(k) {
                        s.insert(k.into(), json!("<set>"));
                    }
                }
                if let Some(e) = s.get_mut("error").and_then(Value::as_object_mut) {
                    e.insert("time".into(), json!("<set>"));
                }
            }
        }
        if let Some(r) = content_json
            .pointer_mut("/spec/volumeSnapshotRef")
            .and_then(Value::as_object_mut)
            && r.contains_key("resourceVersion")
        {
            r.insert("resourceVersion".into(), json!("<set>"));
        }
        let record = json!({
            "snapshot": vs_json,
            "content": content_json,
            "claim_finalizers": claim_finalizers,
            "events": events,
        });
        let mut text = serde_json::to_string(&record)?;
        if !uid.is_empty() {
            text = text.replace(&uid, "<uid>");
        }
        // A content bound to another snapshot (the mismatch case).
        if let Some(other) = content
            .as_ref()
            .and_then(|c| c.spec.volume_snapshot_ref.uid.clone())
            .filter(|u| !u.is_empty() && *u != uid)
        {
            text = text.replace(&other, "<other-uid>");
        }
        text = text
            .replace(&self.ns, "<ns>")
            .replace(&self.suffix, "<sfx>");
        let mut v: Value = serde_json::from_str(&text)?;
        // Driver handles are short numbers: replaced by field, not by text.
        for ptr in [
            "/content/spec/source/volumeHandle",
            "/content/spec/source/snapshotHandle",
            "/content/status/snapshotHandle",
        ] {
            if let Some(h) = v.pointer_mut(ptr) {
                *h = json!("<handle>");
            }
        }
        Ok(v)
    }
}

fn save(name: &str, v: &Value) -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os("CSI_E2E_SNAPSHOT_REPORT") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(v)?,
        )?;
    }
    Ok(())
}

fn reasons(r: &Value) -> Vec<String> {
    r["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["reason"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_preprovisioned_and_delete() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let snapshotter_bin = snapshotter_binary(tb).await?;
            let provisioner_bin = provisioner_binary()?;
            tb.install_snapshot_crds().await?;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .subsec_nanos();
            let suffix = format!("{:04x}", (nanos ^ std::process::id()) as u16);
            let ns = format!("e2e-snap-{suffix}");
            tb.create_namespace(&ns).await?;
            tb.create_csidriver(DRIVER, false).await?;
            let driver = tb.start_driver(DriverOptions::named(DRIVER)).await?;
            if tb.is_local() {
                tb.create_node_with_csinode("e2e-node", DRIVER, driver.node_id(), &[], BTreeMap::new())
                    .await?;
            }
            for (manifest, sa) in [
                ("rbac-csi-provisioner.yaml", "csi-provisioner"),
                ("rbac-snapshot-controller.yaml", "snapshot-controller"),
            ] {
                tb.apply_manifest(&testbed::manifest_path(manifest), &[("NAMESPACE", ns.as_str())])
                    .await?;
                let _ = sa;
            }
            let prov_kc = tb.service_account_kubeconfig(&ns, "csi-provisioner").await?;
            let ctl_kc = tb.service_account_kubeconfig(&ns, "snapshot-controller").await?;
            let prov_kc = prov_kc.to_string_lossy().into_owned();
            let ctl_kc = ctl_kc.to_string_lossy().into_owned();
            let admin_kc = tb.admin_kubeconfig().to_string_lossy().into_owned();
            let socket = driver.socket_path().display().to_string();

            let provisioner = tb.spawn(
                "csi-provisioner",
                &provisioner_bin,
                [
                    format!("--csi-address={socket}"),
                    format!("--kubeconfig={prov_kc}"),
                    "-v=5".into(),
                ],
                &[("KUBECONFIG", prov_kc.as_str())],
            )?;
            // Upstream's sidecar is not under test: it runs as admin.
            let snapshotter = tb.spawn(
                "csi-snapshotter",
                &snapshotter_bin,
                [
                    format!("--csi-address={socket}"),
                    format!("--kubeconfig={admin_kc}"),
                    "-v=5".into(),
                    "--retry-interval-start=500ms".into(),
                ],
                &[],
            )?;
            let port = free_port()?;
            let started = Instant::now();
            let controller = tb.spawn(
                "snapshot-controller",
                &controller_binary(),
                [
                    format!("--kubeconfig={ctl_kc}"),
                    "-v=5".into(),
                    "--leader-election".into(),
                    format!("--leader-election-namespace={ns}"),
                    format!("--http-endpoint=127.0.0.1:{port}"),
                    "--retry-interval-start=500ms".into(),
                    "--retry-interval-max=10s".into(),
                ],
                &[("KUBECONFIG", ctl_kc.as_str())],
            )?;

            let admin = tb.admin_client();
            let w = World {
                snaps: Api::namespaced(admin.clone(), &ns),
                contents: Api::all(admin.clone()),
                pvcs: Api::namespaced(admin.clone(), &ns),
                events: Api::namespaced(admin.clone(), &ns),
                csi: Connection::connect(ConnectOptions {
                    address: socket.clone(),
                    timeout: Duration::from_secs(10),
                    connect_timeout: Some(Duration::from_secs(10)),
                    on_loss: LossPolicy::Reconnect,
                    metrics: None,
                    max_grpc_log_length: None,
                })
                .await?,
                admin: admin.clone(),
                ns: ns.clone(),
                suffix: suffix.clone(),
            };
            let _ = &w.admin;

            // The Lease upstream names.
            let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
                Api::namespaced(admin.clone(), &ns);
            poll("Lease snapshot-controller-leader", WAIT, || async {
                Ok(leases.get_opt("snapshot-controller-leader").await?.map(|_| ()))
            })
            .await?;
            let leader_after = started.elapsed();

            let sc = format!("e2e-snap-{suffix}");
            Api::<StorageClass>::all(admin.clone())
                .create(
                    &PostParams::default(),
                    &StorageClass {
                        metadata: ObjectMeta {
                            name: Some(sc.clone()),
                            ..Default::default()
                        },
                        provisioner: DRIVER.into(),
                        reclaim_policy: Some("Delete".into()),
                        volume_binding_mode: Some("Immediate".into()),
                        ..Default::default()
                    },
                )
                .await?;
            let classes: Api<VolumeSnapshotClass> = Api::all(admin.clone());
            let default_class = format!("default-{suffix}");
            let retain_class = format!("retain-{suffix}");
            classes
                .create(&PostParams::default(), &snapshot_class(&default_class, DeletionPolicy::Delete, true))
                .await?;
            classes
                .create(&PostParams::default(), &snapshot_class(&retain_class, DeletionPolicy::Retain, false))
                .await?;

            w.pvcs.create(&PostParams::default(), &claim("source", &sc, None)).await?;
            w.wait_bound("source").await?;

            // 1. Dynamic, default class.
            w.snaps
                .create(&PostParams::default(), &snapshot("snap", Some("source"), None, None))
                .await?;
            let dynamic_ready = w.wait_ready("snap").await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r = w.record("snap", Some("source")).await?;
            save("dynamic", &r)?;
            ensure!(r["snapshot"]["spec"]["volumeSnapshotClassName"] == "default-<sfx>", "{r:#}");
            ensure!(r["snapshot"]["status"]["boundVolumeSnapshotContentName"] == "snapcontent-<uid>", "{r:#}");
            // restoreSize follows the content's (the test driver reports none).
            match r["content"]["status"]["restoreSize"].as_i64() {
                Some(n) if n > 0 => ensure!(
                    r["snapshot"]["status"]["restoreSize"]
                        == sidecar_runtime::quantity::from_bytes(n).as_str(),
                    "{r:#}"
                ),
                _ => ensure!(r["snapshot"]["status"].get("restoreSize").is_none(), "{r:#}"),
            }
            ensure!(r["snapshot"]["status"]["creationTime"] == "<set>", "{r:#}");
            ensure!(r["snapshot"]["status"].get("error").is_none(), "{r:#}");
            ensure!(
                r["snapshot"]["metadata"]["finalizers"]
                    == json!([
                        "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
                        "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
                    ]),
                "{r:#}"
            );
            ensure!(
                r["content"]["metadata"]["finalizers"]
                    == json!(["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"]),
                "{r:#}"
            );
            ensure!(r["content"]["spec"]["deletionPolicy"] == "Delete", "{r:#}");
            ensure!(r["content"]["spec"]["sourceVolumeMode"] == "Filesystem", "{r:#}");
            ensure!(r["content"]["spec"]["volumeSnapshotRef"]["kind"] == "VolumeSnapshot", "{r:#}");
            ensure!(r["content"]["spec"]["volumeSnapshotRef"]["uid"] == "<uid>", "{r:#}");
            ensure!(r["content"]["status"]["readyToUse"] == true, "{r:#}");
            // The claim is released once its snapshot is ready.
            ensure!(
                !r["claim_finalizers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "snapshot.storage.kubernetes.io/pvc-as-source-protection"),
                "{r:#}"
            );
            let rs = reasons(&r);
            for want in ["CreatingSnapshot", "SnapshotCreated", "SnapshotReady"] {
                ensure!(rs.iter().any(|x| x == want), "no {want}: {r:#}");
            }
            ensure!(
                r["events"].as_array().unwrap().iter().any(|e| e["message"]
                    == "Waiting for a snapshot <ns>/snap to be created by the CSI driver."
                    && e["component"] == "snapshot-controller"),
                "{r:#}"
            );

            // 2. Restore with our csi-provisioner.
            w.pvcs
                .create(&PostParams::default(), &claim("restored", &sc, Some("snap")))
                .await?;
            w.wait_bound("restored").await?;

            // 3. Retain class.
            w.snaps
                .create(&PostParams::default(), &snapshot("kept", Some("source"), None, Some(&retain_class)))
                .await?;
            let retain_ready = w.wait_ready("kept").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = w.record("kept", Some("source")).await?;
            save("retain", &r)?;
            ensure!(r["content"]["spec"]["deletionPolicy"] == "Retain", "{r:#}");
            ensure!(
                r["snapshot"]["metadata"]["finalizers"]
                    == json!(["snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"]),
                "{r:#}"
            );
            let kept_content = format!(
                "snapcontent-{}",
                w.snaps.get("kept").await?.uid().unwrap_or_default()
            );

            // 4. Pre-provisioned: a snapshot cut on the driver directly.
            let source_pv = w.wait_bound("source").await?;
            let handle = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(admin.clone())
                .get(&source_pv)
                .await?
                .spec
                .and_then(|s| s.csi)
                .map(|c| c.volume_handle)
                .context("source PV without CSI")?;
            let cut = w
                .csi
                .create_snapshot(CreateSnapshotRequest {
                    source_volume_id: handle,
                    name: format!("pre-{suffix}"),
                    ..Default::default()
                })
                .await?
                .snapshot
                .context("CreateSnapshot returned no snapshot")?;
            let pre_content = format!("pre-{suffix}");
            w.contents
                .create(
                    &PostParams::default(),
                    &VolumeSnapshotContent::new(
                        &pre_content,
                        VolumeSnapshotContentSpec {
                            volume_snapshot_ref: ObjectReference {
                                name: Some("pre".into()),
                                namespace: Some(ns.clone()),
                                ..Default::default()
                            },
                            deletion_policy: DeletionPolicy::Delete,
                            driver: DRIVER.into(),
                            volume_snapshot_class_name: None,
                            source: VolumeSnapshotContentSource {
                                snapshot_handle: Some(cut.snapshot_id.clone()),
                                volume_handle: None,
                            },
                            source_volume_mode: None,
                        },
                    ),
                )
                .await?;
            w.snaps
                .create(&PostParams::default(), &snapshot("pre", None, Some(&pre_content), None))
                .await?;
            let pre_ready = w.wait_ready("pre").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = w.record("pre", None).await?;
            save("pre-provisioned", &r)?;
            ensure!(r["content"]["spec"]["volumeSnapshotRef"]["uid"] == "<uid>", "{r:#}");
            ensure!(r["snapshot"]["status"]["boundVolumeSnapshotContentName"] == "pre-<sfx>", "{r:#}");
            ensure!(
                r["snapshot"]["metadata"]["finalizers"]
                    == json!([
                        "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
                        "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
                    ]),
                "{r:#}"
            );

            // 5. A pre-provisioned snapshot naming a dynamic content.
            let snap_content = format!(
                "snapcontent-{}",
                w.snaps.get("snap").await?.uid().unwrap_or_default()
            );
            w.snaps
                .create(&PostParams::default(), &snapshot("wrong", None, Some(&snap_content), None))
                .await?;
            poll("wrong reports the mismatch", WAIT, || async {
                let r = w.record("wrong", None).await?;
                Ok(reasons(&r).iter().any(|x| x == "SnapshotContentMismatch").then_some(()))
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r = w.record("wrong", None).await?;
            save("mismatch", &r)?;
            ensure!(
                r["snapshot"]["status"]["error"]["message"]
                    == "VolumeSnapshotContent is dynamically provisioned while expecting a pre-provisioned one",
                "{r:#}"
            );
            ensure!(r["snapshot"]["status"]["readyToUse"] == false, "{r:#}");

            // 6. Two default classes for the driver: no snapshot until one goes.
            let second = format!("second-{suffix}");
            classes
                .create(
                    &PostParams::default(),
                    &snapshot_class(&second, DeletionPolicy::Delete, true),
                )
                .await?;
            w.snaps
                .create(
                    &PostParams::default(),
                    &snapshot("ambiguous", Some("source"), None, None),
                )
                .await?;
            poll("ambiguous reports two defaults", WAIT, || async {
                let s = w.snaps.get("ambiguous").await?;
                Ok(s.status
                    .and_then(|s| s.error)
                    .and_then(|e| e.message)
                    .filter(|m| m.contains("default snapshot class"))
                    .map(|_| ()))
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = w.record("ambiguous", Some("source")).await?;
            save("two-defaults", &r)?;
            ensure!(
                r["snapshot"]["status"]["error"]["message"]
                    == "Failed to set default snapshot class with error 2 default snapshot classes were found",
                "{r:#}"
            );
            ensure!(
                reasons(&r).iter().any(|x| x == "SetDefaultSnapshotClassFailed"),
                "{r:#}"
            );
            ensure!(r["snapshot"]["metadata"].get("finalizers").is_none(), "{r:#}");
            classes.delete(&second, &DeleteParams::default()).await?;
            w.wait_ready("ambiguous").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = w.record("ambiguous", Some("source")).await?;
            save("two-defaults-recovered", &r)?;
            ensure!(r["snapshot"]["status"].get("error").is_none(), "{r:#}");
            ensure!(r["snapshot"]["spec"]["volumeSnapshotClassName"] == "default-<sfx>", "{r:#}");

            // Metrics, as upstream names them.
            let body = reqwest_free_get(port, "/metrics").await?;
            ensure!(
                body.contains("snapshot_controller_operation_total_seconds_count{")
                    && body.contains("operation_name=\"CreateSnapshotAndReady\"")
                    && body.contains("snapshot_type=\"pre-provisioned\""),
                "{body}"
            );

            let ambiguous_content = format!(
                "snapcontent-{}",
                w.snaps.get("ambiguous").await?.uid().unwrap_or_default()
            );
            // 7. Delete everything.
            let delete_started = Instant::now();
            w.pvcs.delete("restored", &DeleteParams::default()).await?;
            for name in ["snap", "kept", "pre", "wrong", "ambiguous"] {
                w.snaps.delete(name, &DeleteParams::default()).await?;
            }
            poll("snapshots gone", WAIT, || async {
                Ok(w.snaps.list(&ListParams::default()).await?.items.is_empty().then_some(()))
            })
            .await?;
            poll("Delete contents gone", WAIT, || async {
                let a = w.contents.get_opt(&snap_content).await?;
                let c = w.contents.get_opt(&ambiguous_content).await?;
                let b = w.contents.get_opt(&pre_content).await?;
                Ok((a.is_none() && b.is_none() && c.is_none()).then_some(()))
            })
            .await?;
            let deleted_in = delete_started.elapsed();
            let kept = w
                .contents
                .get_opt(&kept_content)
                .await?
                .context("the Retain content was deleted")?;
            ensure!(
                kept.annotations()
                    .get("snapshot.storage.kubernetes.io/volumesnapshot-being-deleted")
                    .map(String::as_str)
                    == Some("yes"),
                "{kept:?}"
            );
            save("retained-content", &{
                let mut v = serde_json::to_value(&kept)?;
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
                        m.remove(k);
                    }
                }
                if let Some(r) = v.pointer_mut("/spec/volumeSnapshotRef").and_then(Value::as_object_mut) {
                    r.insert("resourceVersion".into(), json!("<set>"));
                }
                if let Some(t) = v.pointer_mut("/status/creationTime") {
                    *t = json!("<set>");
                }
                let t = serde_json::to_string(&v)?
                    .replace(&kept.uid().unwrap_or_default(), "<uid>")
                    .replace(kept.spec.volume_snapshot_ref.uid.as_deref().unwrap_or("<none>"), "<ref-uid>")
                    .replace(&ns, "<ns>")
                    .replace(&suffix, "<sfx>");
                serde_json::from_str::<Value>(&t)?
            })?;
            // Only the retained snapshot is left on the driver.
            let left: Vec<String> = w
                .csi
                .list_snapshots(ListSnapshotsRequest::default())
                .await?
                .entries
                .into_iter()
                .filter_map(|e| e.snapshot.map(|s| s.snapshot_id))
                .collect();
            let kept_handle = kept
                .status
                .as_ref()
                .and_then(|s| s.snapshot_handle.clone())
                .context("retained content without a handle")?;
            ensure!(left == vec![kept_handle], "driver snapshots left: {left:?}");
            // Clean up what Retain keeps.
            w.contents.delete(&kept_content, &DeleteParams::default()).await?;
            w.pvcs.delete("source", &DeleteParams::default()).await?;

            let peak_rss = std::fs::read_to_string(format!("/proc/{}/status", controller.pid()))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
                })
                .unwrap_or_else(|| "?".into());
            eprintln!(
                "snapshot-controller e2e ({}): leader after {:.2?}; ready: dynamic {:.2?}, retain {:.2?}, pre-provisioned {:.2?}; delete of 5 snapshots {:.2?}; controller peak RSS {peak_rss}",
                controller_binary().display(),
                leader_after,
                dynamic_ready,
                retain_ready,
                pre_ready,
                deleted_in
            );
            for (name, p) in [("snapshot-controller", &controller), ("csi-snapshotter", &snapshotter), ("csi-provisioner", &provisioner)] {
                ensure!(p.is_running(), "{name} exited: {}", p.log_tail(40));
            }
            Ok(())
        },
    )
    .await
}

/// GET `http://127.0.0.1:<port><path>` with a plain HTTP/1.0 request.
async fn reqwest_free_get(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}
