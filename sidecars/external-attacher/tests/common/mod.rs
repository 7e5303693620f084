//! Setup shared by csi-attacher's end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use csi_client::csi::v1::volume_capability::access_mode::Mode;
use csi_client::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi_client::csi::v1::{CreateVolumeRequest, ListVolumesRequest, VolumeCapability};
use csi_client::{ConnectOptions, Connection, LossPolicy};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Container, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Pod,
    PodSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::{
    VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;

pub const DRIVER: &str = "hostpath.csi.k8s.io";
pub const FINALIZER: &str = "external-attacher/hostpath-csi-k8s-io";
pub const NODE: &str = "e2e-node";
pub const WAIT: Duration = Duration::from_secs(180);

pub fn attacher_binary() -> PathBuf {
    std::env::var_os("CSI_E2E_ATTACHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_csi-attacher")))
}

pub fn testing_ours() -> bool {
    std::env::var_os("CSI_E2E_ATTACHER_BIN").is_none()
}
pub use testbed::poll;

pub async fn connect(socket: &std::path::Path) -> anyhow::Result<Connection> {
    Ok(Connection::connect(ConnectOptions {
        address: socket.display().to_string(),
        timeout: Duration::from_secs(10),
        connect_timeout: Some(Duration::from_secs(10)),
        on_loss: LossPolicy::Reconnect,
        metrics: None,
        max_grpc_log_length: None,
    })
    .await?)
}

/// Volume ID → node IDs it is published to. The test driver (Kubernetes'
/// CSI mock) reports every volume as published in ListVolumes'
/// `published_node_ids` whenever attach is enabled, so the truth is read
/// from the `<node ID>/dev` keys ControllerPublish adds to the volume's
/// context and ControllerUnpublish removes.
pub async fn published(conn: &Connection) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let resp = conn
        .list_volumes(ListVolumesRequest::default())
        .await
        .context("ListVolumes")?;
    Ok(resp
        .entries
        .into_iter()
        .filter_map(|e| {
            let v = e.volume?;
            let nodes = v
                .volume_context
                .iter()
                .filter(|(_, dev)| !dev.is_empty())
                .filter_map(|(k, _)| k.strip_suffix("/dev").map(str::to_string))
                .collect();
            Some((v.volume_id, nodes))
        })
        .collect())
}

pub fn static_pv(name: &str, handle: &str, ns: &str, claim: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
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
                volume_handle: handle.into(),
                fs_type: Some("ext4".into()),
                ..Default::default()
            }),
            claim_ref: Some(ObjectReference {
                namespace: Some(ns.into()),
                name: Some(claim.into()),
                ..Default::default()
            }),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            storage_class_name: Some(String::new()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn claim(name: &str, pv: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(String::new()),
            volume_name: Some(pv.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Mi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod(name: &str, claim: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(NODE.into()),
            automount_service_account_token: Some(false),
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "v".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The VolumeAttachment the attach/detach controller made for `pv`.
pub async fn va_of(
    vas: &Api<VolumeAttachment>,
    pv: &str,
) -> anyhow::Result<Option<VolumeAttachment>> {
    Ok(vas
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv)))
}

pub fn attached(va: &VolumeAttachment) -> bool {
    va.status.as_ref().is_some_and(|s| s.attached)
}

/// A volume created on the driver directly (what a provisioner would do).
pub async fn create_volume(conn: &Connection, name: &str) -> anyhow::Result<String> {
    let cap = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    };
    Ok(conn
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            volume_capabilities: vec![cap],
            ..Default::default()
        })
        .await
        .context("CreateVolume")?
        .volume
        .context("CreateVolume returned no volume")?
        .volume_id)
}

/// A VolumeAttachment as kube-controller-manager's attach/detach controller
/// writes one.
pub fn attachment(name: &str, pv: &str) -> VolumeAttachment {
    VolumeAttachment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: VolumeAttachmentSpec {
            attacher: DRIVER.into(),
            node_name: NODE.into(),
            source: VolumeAttachmentSource {
                persistent_volume_name: Some(pv.into()),
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

/// A short random suffix for names.
pub fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{:04x}", (nanos ^ std::process::id()) as u16)
}

/// A namespace, the CSIDriver (attach required), the driver, the
/// controller-managed Node with its CSINode, upstream's attacher RBAC (plus
/// the events add-on) and a ServiceAccount kubeconfig for the sidecar.
pub struct Setup {
    pub suffix: String,
    pub ns: String,
    pub driver: testbed::DriverHandle,
    pub kubeconfig: String,
}

pub async fn setup(
    tb: &testbed::Testbed,
    prefix: &str,
    driver: testbed::DriverOptions,
) -> anyhow::Result<Setup> {
    anyhow::ensure!(
        tb.is_local(),
        "these tests drive the test bed's own controller-managed Node"
    );
    let suffix = suffix();
    let ns = format!("{prefix}-{suffix}");
    tb.create_namespace(&ns).await?;
    tb.create_csidriver(DRIVER, true).await?;
    let driver = tb.start_driver(driver).await?;
    tb.create_node_with_csinode(NODE, DRIVER, driver.node_id(), &[], BTreeMap::new())
        .await?;
    let vars = [("NAMESPACE", ns.as_str())];
    tb.apply_manifest(&testbed::manifest_path("rbac-csi-attacher.yaml"), &vars)
        .await?;
    tb.apply_manifest(
        &testbed::manifest_path("rbac-csi-attacher-events.yaml"),
        &vars,
    )
    .await?;
    let kubeconfig = tb.service_account_kubeconfig(&ns, "csi-attacher").await?;
    Ok(Setup {
        suffix,
        ns,
        driver,
        kubeconfig: kubeconfig.to_string_lossy().into_owned(),
    })
}

/// Starts the csi-attacher under test (ours or `CSI_E2E_ATTACHER_BIN`) as
/// the ServiceAccount of `setup`, on `csi_address`, with leader election in
/// the test namespace and `extra` flags.
pub fn spawn_attacher(
    tb: &testbed::Testbed,
    setup: &Setup,
    name: &str,
    csi_address: &std::path::Path,
    extra: &[String],
) -> anyhow::Result<testbed::ProcessHandle> {
    let mut args = vec![
        format!("--csi-address={}", csi_address.display()),
        format!("--kubeconfig={}", setup.kubeconfig),
        "-v=5".into(),
        "--leader-election".into(),
        format!("--leader-election-namespace={}", setup.ns),
    ];
    args.extend(extra.iter().cloned());
    Ok(tb.spawn(
        name,
        &attacher_binary(),
        args,
        &[("KUBECONFIG", setup.kubeconfig.as_str())],
    )?)
}

/// Our csi-provisioner, next to the csi-attacher under test (same target
/// directory and profile), built there first by the cargo running the
/// tests (only an up-to-date check when it is built already).
pub fn provisioner_binary() -> anyhow::Result<PathBuf> {
    let attacher = PathBuf::from(env!("CARGO_BIN_EXE_csi-attacher"));
    let profile_dir = attacher.parent().context("csi-attacher has no directory")?;
    let target_dir = profile_dir
        .parent()
        .context("csi-attacher's directory has no parent")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(testbed::repo_root())
        .args(["build", "--profile", &profile, "--target-dir"])
        .arg(target_dir)
        .args(["-p", "external-provisioner", "--bin", "csi-provisioner"])
        .output()
        .context("run cargo build for csi-provisioner")?;
    anyhow::ensure!(
        out.status.success(),
        "cargo build -p external-provisioner --bin csi-provisioner failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join("csi-provisioner");
    anyhow::ensure!(bin.is_file(), "{} not built", bin.display());
    Ok(bin)
}

/// A StorageClass of the test driver: Delete, Immediate binding.
pub fn storage_class(name: &str) -> k8s_openapi::api::storage::v1::StorageClass {
    k8s_openapi::api::storage::v1::StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

/// A 1Mi ReadWriteOnce claim of `class`, for the provisioner.
pub fn dynamic_claim(name: &str, class: &str) -> PersistentVolumeClaim {
    let mut c = claim(name, "");
    if let Some(spec) = c.spec.as_mut() {
        spec.volume_name = None;
        spec.storage_class_name = Some(class.into());
    }
    c
}
