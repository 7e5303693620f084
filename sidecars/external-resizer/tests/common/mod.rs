//! Setup shared by the resizer's end-to-end tests: a namespace, the test
//! driver, upstream's resizer RBAC, a StorageClass that allows expansion,
//! and Bound claims made from volumes created directly in the driver.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use csi_client::csi::v1::volume_capability::{
    AccessMode, AccessType, MountVolume, access_mode::Mode,
};
use csi_client::csi::v1::{CapacityRange, CreateVolumeRequest, VolumeCapability};
use csi_client::{ConnectOptions, Connection, LossPolicy};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Event, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use testbed::{DelayProxy, DriverHandle, DriverOptions, ProcessHandle, Testbed};

pub const DRIVER: &str = "hostpath.csi.k8s.io";
pub const WAIT: Duration = Duration::from_secs(120);

/// The binary under test: ours, or the one named by `CSI_E2E_RESIZER_BIN`
/// (upstream's, for a side-by-side run).
pub fn resizer_binary() -> PathBuf {
    std::env::var_os("CSI_E2E_RESIZER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_csi-resizer")))
}

/// A namespace with the driver, RBAC, a class and the running resizer.
pub struct Scenario {
    pub ns: String,
    pub suffix: String,
    /// The driver process, unless the scenario uses a node plugin's socket.
    pub driver: Option<DriverHandle>,
    pub csi: Connection,
    pub resizer: ProcessHandle,
    pub class: String,
    pub pvcs: Api<PersistentVolumeClaim>,
    pub pvs: Api<PersistentVolume>,
    pub events: Api<Event>,
    /// With [`scenario_via_proxy`]: what the resizer dials.
    pub proxy: Option<DelayProxy>,
}

/// True when the binary under test is ours.
pub fn testing_ours() -> bool {
    std::env::var_os("CSI_E2E_RESIZER_BIN").is_none()
}

pub async fn scenario(
    tb: &Testbed,
    prefix: &str,
    driver: DriverOptions,
) -> anyhow::Result<Scenario> {
    start(tb, prefix, Source::Own(driver), false, &[]).await
}

/// Where the scenario's driver comes from.
pub enum Source {
    /// A `csi-testdriver` process started for the scenario, in a new
    /// namespace.
    Own(DriverOptions),
    /// A driver already serving `socket` (a node plugin), in namespace `ns`.
    Existing { ns: String, socket: PathBuf },
}

/// [`scenario`] on a driver that is already running.
pub async fn scenario_on(tb: &Testbed, prefix: &str, source: Source) -> anyhow::Result<Scenario> {
    start(tb, prefix, source, false, &[]).await
}

/// [`scenario`] with more resizer flags.
pub async fn scenario_with_args(
    tb: &Testbed,
    prefix: &str,
    driver: DriverOptions,
    extra: &[&str],
) -> anyhow::Result<Scenario> {
    start(tb, prefix, Source::Own(driver), false, extra).await
}

/// [`scenario`] with the resizer talking to the driver through a
/// [`DelayProxy`] (no delay until the test sets one).
pub async fn scenario_via_proxy(
    tb: &Testbed,
    prefix: &str,
    driver: DriverOptions,
) -> anyhow::Result<Scenario> {
    start(tb, prefix, Source::Own(driver), true, &[]).await
}

async fn start(
    tb: &Testbed,
    prefix: &str,
    source: Source,
    via_proxy: bool,
    extra: &[&str],
) -> anyhow::Result<Scenario> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let suffix = format!("{:04x}", (nanos ^ std::process::id()) as u16);
    let (ns, driver, socket) = match source {
        Source::Own(opts) => {
            let ns = format!("{prefix}-{suffix}");
            tb.create_namespace(&ns).await?;
            tb.create_csidriver(DRIVER, false).await?;
            let driver = tb.start_driver(opts).await?;
            let socket = driver.socket_path().to_path_buf();
            (ns, Some(driver), socket)
        }
        Source::Existing { ns, socket } => (ns, None, socket),
    };
    tb.apply_manifest(
        &testbed::manifest_path("rbac-csi-resizer.yaml"),
        &[("NAMESPACE", ns.as_str())],
    )
    .await?;
    let kubeconfig = tb.service_account_kubeconfig(&ns, "csi-resizer").await?;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let admin = tb.admin_client();
    let class = format!("{prefix}-{suffix}");
    let sc = StorageClass {
        metadata: ObjectMeta {
            name: Some(class.clone()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        allow_volume_expansion: Some(true),
        reclaim_policy: Some("Retain".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    };
    Api::<StorageClass>::all(admin.clone())
        .create(&PostParams::default(), &sc)
        .await?;
    let proxy = if via_proxy {
        let listen = tb.run_dir().join(format!("proxy-{suffix}.sock"));
        Some(DelayProxy::start(&listen, &socket, Duration::ZERO)?)
    } else {
        None
    };
    let address = proxy
        .as_ref()
        .map(|p| p.socket_path().to_path_buf())
        .unwrap_or_else(|| socket.clone());
    let mut args = vec![
        format!("--csi-address={}", address.display()),
        format!("--kubeconfig={kubeconfig}"),
        "-v=5".into(),
        "--leader-election".into(),
        format!("--leader-election-namespace={ns}"),
        "--retry-interval-start=500ms".into(),
        "--retry-interval-max=30s".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let resizer = tb.spawn(
        "csi-resizer",
        &resizer_binary(),
        args,
        &[("KUBECONFIG", kubeconfig.as_str())],
    )?;
    let csi = Connection::connect(ConnectOptions {
        address: socket.display().to_string(),
        timeout: Duration::from_secs(10),
        connect_timeout: Some(Duration::from_secs(10)),
        on_loss: LossPolicy::Reconnect,
        metrics: None,
        max_grpc_log_length: None,
    })
    .await?;
    Ok(Scenario {
        pvcs: Api::namespaced(admin.clone(), &ns),
        pvs: Api::all(admin.clone()),
        events: Api::namespaced(admin, &ns),
        ns,
        suffix,
        driver,
        csi,
        resizer,
        class,
        proxy,
    })
}
pub use testbed::poll;

fn storage(q: &str) -> BTreeMap<String, Quantity> {
    [("storage".to_string(), Quantity(q.into()))].into()
}

impl Scenario {
    /// A 1Mi volume created in the driver, a PV for it and a claim bound
    /// to it (kube-controller-manager binds them); returns the PV name.
    pub async fn bound_claim(&self, name: &str) -> anyhow::Result<String> {
        let vol = self
            .csi
            .create_volume(CreateVolumeRequest {
                name: format!("{name}-{}", self.suffix),
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
        let pv_name = format!("pv-{}-{name}", self.ns);
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(pv_name.clone()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(storage("1Mi")),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                storage_class_name: Some(self.class.clone()),
                claim_ref: Some(ObjectReference {
                    namespace: Some(self.ns.clone()),
                    name: Some(name.into()),
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
        self.pvs.create(&PostParams::default(), &pv).await?;
        let pvc = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some(self.class.clone()),
                volume_name: Some(pv_name.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(storage("1Mi")),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.pvcs.create(&PostParams::default(), &pvc).await?;
        poll(&format!("claim {name} Bound"), WAIT, || async {
            let c = self.pvcs.get(name).await?;
            Ok((c.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
        })
        .await?;
        Ok(pv_name)
    }

    /// Sets the claim's storage request.
    pub async fn request(&self, name: &str, size: &str) -> anyhow::Result<()> {
        let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
        self.pvcs
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// What the resizer leaves on the claim, its PV and in Events, with
    /// names, UIDs, versions and times taken out, for a field-by-field
    /// comparison of two implementations.
    pub async fn record(&self, name: &str) -> anyhow::Result<Value> {
        let pvc = self.pvcs.get(name).await?;
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        let pv = self.pvs.get(&pv_name).await?;
        let mut status = serde_json::to_value(pvc.status.clone().unwrap_or_default())?;
        if let Some(cs) = status.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in cs {
                for t in ["lastTransitionTime", "lastProbeTime"] {
                    if let Some(o) = c.as_object_mut()
                        && o.contains_key(t)
                    {
                        o.insert(t.into(), json!("<time>"));
                    }
                }
            }
        }
        let annotations: BTreeMap<String, String> = pvc
            .annotations()
            .iter()
            .filter(|(k, _)| !k.starts_with("pv.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pv_spec = pv.spec.clone().unwrap_or_default();
        let events = self
            .events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await?;
        let mut evs: Vec<Value> = events
            .items
            .iter()
            .map(|e| {
                json!({
                    "type": e.type_,
                    "reason": e.reason,
                    "message": e.message.as_deref().map(|m| m.replace(&pv_name, "<pv>").replace(&self.ns, "<ns>")),
                    "source": e.source.as_ref().and_then(|s| s.component.clone()),
                    "count": e.count,
                })
            })
            .filter(|e| e["source"].as_str().is_some_and(|s| s.starts_with("external-resizer")))
            .collect();
        evs.sort_by_key(|e| e.to_string());
        Ok(json!({
            "claim": {
                "annotations": annotations,
                "status": status,
            },
            "pv": {
                "capacity": pv_spec.capacity,
                "volumeAttributesClassName": pv_spec.volume_attributes_class_name,
                "annotations": pv.annotations(),
            },
            "events": evs,
        }))
    }
}

/// Writes `record` as `<dir>/<impl>-<name>.json` when
/// `CSI_E2E_RESIZER_REPORT` names a directory (for diffing two runs).
pub fn save(name: &str, record: &Value) -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os("CSI_E2E_RESIZER_REPORT") {
        let who = if std::env::var_os("CSI_E2E_RESIZER_BIN").is_some() {
            "upstream"
        } else {
            "ours"
        };
        let path = PathBuf::from(dir).join(format!("{who}-{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(record)?)?;
    }
    Ok(())
}
