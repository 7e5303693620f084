//! Setup shared by the provisioner's end-to-end tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use csi_client::csi::v1::ListVolumesRequest;
use csi_client::{ConnectOptions, Connection, LossPolicy};
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;
use testbed::{DriverHandle, DriverOptions, ProcessHandle, Testbed};

pub const DRIVER: &str = "hostpath.csi.k8s.io";
pub const WAIT: Duration = Duration::from_secs(180);

/// A namespace, the driver, upstream's provisioner RBAC and a ServiceAccount
/// kubeconfig for the sidecar.
pub struct Setup {
    pub suffix: String,
    pub ns: String,
    pub driver: DriverHandle,
    pub kubeconfig: String,
}

pub async fn setup(tb: &Testbed, prefix: &str) -> anyhow::Result<Setup> {
    setup_with(tb, prefix, DriverOptions::named(DRIVER)).await
}

/// [`setup`] with driver options; the CSIDriver's `attachRequired` follows
/// `driver.enable_attach`.
pub async fn setup_with(
    tb: &Testbed,
    prefix: &str,
    driver: DriverOptions,
) -> anyhow::Result<Setup> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let suffix = format!("{:04x}", (nanos ^ std::process::id()) as u16);
    let ns = format!("{prefix}-{suffix}");
    tb.create_namespace(&ns).await?;
    tb.create_csidriver(DRIVER, driver.enable_attach).await?;
    let driver = tb.start_driver(driver).await?;
    if tb.is_local() {
        // What kubelet and node-driver-registrar would have created. Never
        // done on a user's cluster, whose Nodes are real.
        tb.create_node_with_csinode("e2e-node", DRIVER, driver.node_id(), &[], BTreeMap::new())
            .await?;
    }
    let manifest = testbed::manifest_path("rbac-csi-provisioner.yaml");
    tb.apply_manifest(&manifest, &[("NAMESPACE", ns.as_str())])
        .await?;
    let kubeconfig = tb
        .service_account_kubeconfig(&ns, "csi-provisioner")
        .await?;
    Ok(Setup {
        suffix,
        ns,
        driver,
        kubeconfig: kubeconfig.to_string_lossy().into_owned(),
    })
}

/// The binary under test: ours, or the one named by `CSI_E2E_PROVISIONER_BIN`
/// (e.g. upstream's, for a side-by-side run).
pub fn provisioner_binary() -> PathBuf {
    std::env::var_os("CSI_E2E_PROVISIONER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_csi-provisioner")))
}

/// True when the binary under test is ours.
pub fn testing_ours() -> bool {
    std::env::var_os("CSI_E2E_PROVISIONER_BIN").is_none()
}

/// Starts the csi-provisioner under test as the ServiceAccount of `setup`.
pub fn spawn_provisioner(
    tb: &Testbed,
    setup: &Setup,
    name: &str,
    csi_address: &Path,
    extra: &[String],
) -> anyhow::Result<ProcessHandle> {
    let mut args = vec![
        format!("--csi-address={}", csi_address.display()),
        format!("--kubeconfig={}", setup.kubeconfig),
        "-v=5".into(),
        "--leader-election".into(),
        format!("--leader-election-namespace={}", setup.ns),
    ];
    args.extend(extra.iter().cloned());
    // Upstream lets KUBECONFIG override --kubeconfig; point it at the
    // ServiceAccount too so the sidecar never runs as admin.
    Ok(tb.spawn(
        name,
        &provisioner_binary(),
        args,
        &[("KUBECONFIG", setup.kubeconfig.as_str())],
    )?)
}
pub use testbed::poll;

pub fn storage_class(name: &str, params: &[(&str, &str)]) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        parameters: Some(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

pub fn claim(name: &str, class: &str) -> PersistentVolumeClaim {
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
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A direct connection to the driver, bypassing any sidecar.
pub async fn connect(socket: &Path) -> anyhow::Result<Connection> {
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

/// Volume IDs the driver reports through ListVolumes.
pub async fn driver_volumes(conn: &Connection) -> anyhow::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let resp = conn
            .list_volumes(ListVolumesRequest {
                starting_token: token.clone(),
                ..Default::default()
            })
            .await
            .context("ListVolumes")?;
        ids.extend(
            resp.entries
                .iter()
                .filter_map(|e| e.volume.as_ref())
                .map(|v| v.volume_id.clone()),
        );
        if resp.next_token.is_empty() {
            return Ok(ids);
        }
        token = resp.next_token;
    }
}

/// PVs whose claimRef points into `ns`.
pub async fn volumes_of_namespace(
    pvs: &Api<PersistentVolume>,
    ns: &str,
) -> anyhow::Result<Vec<PersistentVolume>> {
    Ok(pvs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|c| c.namespace.as_deref())
                == Some(ns)
        })
        .collect())
}

/// Waits until claim `name` is Bound and returns its PV name.
pub async fn wait_bound(pvcs: &Api<PersistentVolumeClaim>, name: &str) -> anyhow::Result<String> {
    poll(&format!("claim {name} Bound"), WAIT, || async {
        let c = pvcs.get(name).await?;
        let bound = c.status.and_then(|s| s.phase).as_deref() == Some("Bound");
        Ok(c.spec.and_then(|s| s.volume_name).filter(|_| bound))
    })
    .await
}

/// Deletes every claim in the namespace of `pvcs` and waits until no PV
/// bound to that namespace is left.
pub async fn delete_claims(
    pvcs: &Api<PersistentVolumeClaim>,
    pvs: &Api<PersistentVolume>,
    ns: &str,
) -> anyhow::Result<()> {
    pvcs.delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await?;
    poll("PVs of the test gone", WAIT, || async {
        Ok(volumes_of_namespace(pvs, ns)
            .await?
            .is_empty()
            .then_some(()))
    })
    .await
}

/// The usual test shape: a namespace with the driver and RBAC, our (or
/// `CSI_E2E_PROVISIONER_BIN`'s) provisioner running, one StorageClass, and
/// the API handles the test needs.
pub struct Scenario {
    pub setup: Setup,
    pub provisioner: ProcessHandle,
    pub class: String,
    pub classes: Api<StorageClass>,
    pub pvcs: Api<PersistentVolumeClaim>,
    pub pvs: Api<PersistentVolume>,
}

/// Starts a [`Scenario`]; `tune` may change the StorageClass before it is
/// created (binding mode, parameters).
pub async fn scenario(
    tb: &Testbed,
    prefix: &str,
    driver: DriverOptions,
    tune: impl FnOnce(&mut StorageClass),
) -> anyhow::Result<Scenario> {
    let admin = tb.admin_client();
    let setup = setup_with(tb, prefix, driver).await?;
    let provisioner = spawn_provisioner(
        tb,
        &setup,
        "csi-provisioner",
        setup.driver.socket_path(),
        &[],
    )?;
    let class = format!("{prefix}-{}", setup.suffix);
    let classes: Api<StorageClass> = Api::all(admin.clone());
    let mut sc = storage_class(&class, &[]);
    tune(&mut sc);
    classes
        .create(&kube::api::PostParams::default(), &sc)
        .await?;
    let pvcs = Api::namespaced(admin.clone(), &setup.ns);
    let pvs = Api::all(admin);
    Ok(Scenario {
        setup,
        provisioner,
        class,
        classes,
        pvcs,
        pvs,
    })
}

impl Scenario {
    /// The CSI volume handle of PV `name`.
    pub async fn handle(&self, pv_name: &str) -> anyhow::Result<String> {
        self.pvs
            .get(pv_name)
            .await?
            .spec
            .and_then(|s| s.csi)
            .map(|c| c.volume_handle)
            .context("PV without spec.csi")
    }

    /// Deletes the test's claims (waiting for their PVs to go) and class,
    /// and checks the provisioner is still running.
    pub async fn finish(&self) -> anyhow::Result<()> {
        delete_claims(&self.pvcs, &self.pvs, &self.setup.ns).await?;
        self.classes
            .delete(&self.class, &kube::api::DeleteParams::default())
            .await?;
        anyhow::ensure!(
            self.provisioner.is_running(),
            "csi-provisioner exited: {}",
            self.provisioner.log_tail(40)
        );
        Ok(())
    }
}

/// The `GRPC call` lines of `method` the sidecar logged at `-v=5`, with
/// klog's value quoting undone (`request="{\"name\":…}"` → `{"name":…}`),
/// so JSON fragments of the request can be matched. Upstream's csi-lib-utils
/// logs the same structured line, so this reads either implementation's log.
pub fn logged_requests(log: &Path, method: &str) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter(|l| l.contains("GRPC call") && l.contains(method))
        .map(|l| l.replace("\\\"", "\""))
        .collect())
}

/// Claim UIDs whose volume creation our provisioner has recorded in the
/// creation-intent Leases of `ns` (the leader-election namespace the tests
/// use); empty for upstream, which records nothing.
pub async fn recorded_intents(admin: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    use external_provisioner::intents::entry_uid;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(admin.clone(), ns);
    let mut uids = Vec::new();
    for lease in leases.list(&kube::api::ListParams::default()).await? {
        for key in lease.metadata.annotations.unwrap_or_default().keys() {
            if let Some(uid) = entry_uid(key) {
                uids.push(uid.to_string());
            }
        }
    }
    Ok(uids)
}
