//! End-to-end: CSI migration. The test driver runs under the name of a CSI
//! driver that replaced an in-tree plugin (OpenStack Cinder, then Portworx);
//! a StorageClass names the in-tree plugin. kube-controller-manager hands
//! the claim to the CSI driver, our csi-provisioner translates the class,
//! creates the volume, and saves an in-tree PV (`spec.cinder`,
//! `spec.portworxVolume`) provisioned by the in-tree name; deleting the claim
//! deletes the volume through the PV's CSI translation. Every CSI call is
//! labelled `migrated` in `/metrics`.
//!
//! Both plugins pass volume IDs through unchanged in both directions, so any
//! ID the test driver makes survives the round trip.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::{
    Setup, WAIT, claim, connect, driver_volumes, poll, spawn_provisioner, volumes_of_namespace,
    wait_bound,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const PV_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";

/// One migration target under test.
struct Plugin {
    /// Short name for namespaces and process names.
    short: &'static str,
    /// The CSI driver name the test driver reports.
    driver: &'static str,
    /// The in-tree plugin the StorageClass names.
    in_tree: &'static str,
    /// The in-tree volume ID of a PV of this plugin, if it has that source.
    volume_id: fn(&PersistentVolumeSpec) -> Option<String>,
}

const PLUGINS: [Plugin; 2] = [
    Plugin {
        short: "cinder",
        driver: "cinder.csi.openstack.org",
        in_tree: "kubernetes.io/cinder",
        volume_id: |spec| spec.cinder.as_ref().map(|c| c.volume_id.clone()),
    },
    Plugin {
        short: "px",
        driver: "pxd.portworx.com",
        in_tree: "kubernetes.io/portworx-volume",
        volume_id: |spec| spec.portworx_volume.as_ref().map(|p| p.volume_id.clone()),
    },
];

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// The `csi_sidecar_operations_seconds_count` series of `method` with
/// `migrated` = `migrated`, summed over status codes.
fn calls(metrics: &str, method: &str, migrated: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("csi_sidecar_operations_seconds_count{"))
        .filter(|l| l.contains(&format!("method_name=\"{method}\"")))
        .filter(|l| l.contains(&format!("migrated=\"{migrated}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Namespace, CSIDriver, test driver under `plugin.driver`, the test node's
/// CSINode entry, upstream's provisioner RBAC and a ServiceAccount kubeconfig.
async fn setup(tb: &Testbed, plugin: &Plugin) -> anyhow::Result<Setup> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let suffix = format!("{:04x}", (nanos ^ std::process::id()) as u16);
    let ns = format!("e2e-mig-{}-{suffix}", plugin.short);
    tb.create_namespace(&ns).await?;
    tb.create_csidriver(plugin.driver, false).await?;
    let driver = tb.start_driver(DriverOptions::named(plugin.driver)).await?;
    if tb.is_local() {
        tb.create_node_with_csinode(
            "e2e-node",
            plugin.driver,
            driver.node_id(),
            &[],
            BTreeMap::new(),
        )
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

async fn in_tree_claim_round_trip(tb: &Testbed, plugin: &Plugin) -> anyhow::Result<()> {
    let admin = tb.admin_client();
    let setup = setup(tb, plugin).await?;
    let port = free_port()?;
    let provisioner = spawn_provisioner(
        tb,
        &setup,
        &format!("csi-provisioner-{}", plugin.short),
        setup.driver.socket_path(),
        &[
            format!("--http-endpoint=127.0.0.1:{port}"),
            "--timeout=15s".into(),
        ],
    )?;

    let class_name = format!("e2e-mig-{}-{}", plugin.short, setup.suffix);
    let classes: Api<StorageClass> = Api::all(admin.clone());
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(class_name.clone()),
            ..Default::default()
        },
        provisioner: plugin.in_tree.into(),
        parameters: Some([("fstype".to_string(), "ext4".to_string())].into()),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    };
    classes.create(&PostParams::default(), &class).await?;

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &setup.ns);
    let pvs: Api<PersistentVolume> = Api::all(admin.clone());
    let started = Instant::now();
    pvcs.create(&PostParams::default(), &claim("data", &class_name))
        .await?;
    let pv_name = wait_bound(&pvcs, "data").await?;
    let bound_after = started.elapsed();

    // What kube-controller-manager wrote on the claim.
    let pvc = pvcs.get("data").await?;
    let pvc_ann = pvc.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        pvc_ann.get(STORAGE_PROVISIONER).map(String::as_str) == Some(plugin.driver),
        "claim not handed to {}: {pvc_ann:?}",
        plugin.driver
    );
    let pvc_migrated_to = pvc_ann.get(MIGRATED_TO).cloned();

    // The PV: in-tree, provisioned by the in-tree name, marked migrated by
    // kube-controller-manager, holding our finalizer.
    let pv = poll(&format!("PV {pv_name} marked migrated"), WAIT, || async {
        let pv = pvs.get(&pv_name).await?;
        let marked = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIGRATED_TO))
            .is_some();
        Ok(marked.then_some(pv))
    })
    .await?;
    let ann = pv.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        ann.get(PROVISIONED_BY).map(String::as_str) == Some(plugin.in_tree),
        "PV {pv_name} not provisioned by {}: {ann:?}",
        plugin.in_tree
    );
    ensure!(
        ann.get(MIGRATED_TO).map(String::as_str) == Some(plugin.driver),
        "PV {pv_name} migrated elsewhere: {ann:?}"
    );
    let finalizers = pv.metadata.finalizers.clone().unwrap_or_default();
    ensure!(
        finalizers.iter().any(|f| f == PV_FINALIZER),
        "PV {pv_name} lacks our finalizer: {finalizers:?}"
    );
    let spec = pv.spec.clone().context("PV without spec")?;
    ensure!(spec.csi.is_none(), "PV {pv_name} kept spec.csi: {spec:?}");
    let volume_id = (plugin.volume_id)(&spec)
        .with_context(|| format!("PV {pv_name} has no in-tree source of {}", plugin.in_tree))?;
    let conn = connect(setup.driver.socket_path()).await?;
    let volumes = driver_volumes(&conn).await?;
    ensure!(
        volumes.len() == 1 && volumes.contains(&volume_id),
        "in-tree volume ID {volume_id} is not the driver's only volume: {volumes:?}"
    );
    ensure!(
        spec.claim_ref.and_then(|c| c.uid) == pvc.metadata.uid,
        "PV {pv_name} is not bound to the claim"
    );

    let metrics = http_get(port, "/metrics").await?;
    let create_migrated = calls(&metrics, "/csi.v1.Controller/CreateVolume", "true");
    let create_plain = calls(&metrics, "/csi.v1.Controller/CreateVolume", "false");
    let probes = calls(&metrics, "/csi.v1.Identity/Probe", "false");
    ensure!(
        create_migrated >= 1 && create_plain == 0,
        "CreateVolume not counted as migrated ({create_migrated} true, {create_plain} false):\n{metrics}"
    );
    ensure!(probes >= 1, "no Probe with migrated=\"false\":\n{metrics}");
    // As upstream, the series from before the driver was known to be a
    // migration target (the first Probe, GetPluginInfo) are not served.
    ensure!(
        !metrics.contains("/csi.v1.Identity/GetPluginInfo"),
        "GetPluginInfo from before the migration label was switched on is served:\n{metrics}"
    );
    let unlabelled: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("csi_sidecar_operations_seconds_count{"))
        .filter(|l| !l.contains("migrated=\""))
        .collect();
    ensure!(
        unlabelled.is_empty(),
        "CSI calls without the migrated label: {unlabelled:?}"
    );

    // Deleting the claim deletes the volume (through the PV's CSI
    // translation) and the PV.
    let started = Instant::now();
    pvcs.delete("data", &DeleteParams::default()).await?;
    poll("migrated PV deleted", WAIT, || async {
        Ok(volumes_of_namespace(&pvs, &setup.ns)
            .await?
            .is_empty()
            .then_some(()))
    })
    .await?;
    let deleted_after = started.elapsed();
    let left = driver_volumes(&conn).await?;
    ensure!(left.is_empty(), "driver volumes left: {left:?}");
    let metrics = http_get(port, "/metrics").await?;
    let delete_migrated = calls(&metrics, "/csi.v1.Controller/DeleteVolume", "true");
    ensure!(
        delete_migrated >= 1 && calls(&metrics, "/csi.v1.Controller/DeleteVolume", "false") == 0,
        "DeleteVolume not counted as migrated:\n{metrics}"
    );
    ensure!(
        provisioner.is_running(),
        "csi-provisioner exited: {}",
        provisioner.log_tail(40)
    );

    eprintln!(
        "e2e migration {} ({} → {}): Bound in {bound_after:.1?} as {} volume {volume_id}; \
         claim annotations: storage-provisioner={}, migrated-to={}; PV migrated-to={} set by \
         kube-controller-manager; CreateVolume calls migrated=true: {create_migrated}, Probe \
         migrated=false: {probes}; volume and PV deleted {deleted_after:.1?} after the claim \
         (DeleteVolume migrated=true: {delete_migrated})",
        plugin.short,
        plugin.in_tree,
        plugin.driver,
        plugin.in_tree,
        plugin.driver,
        pvc_migrated_to.as_deref().unwrap_or("(none)"),
        plugin.driver,
    );
    classes
        .delete(&class_name, &DeleteParams::default())
        .await?;
    tokio::task::block_in_place(|| provisioner.stop(Duration::from_secs(10)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_tree_classes_are_served_by_their_migration_driver() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            for plugin in &PLUGINS {
                in_tree_claim_round_trip(tb, plugin)
                    .await
                    .with_context(|| format!("{} ({})", plugin.in_tree, plugin.driver))?;
            }
            Ok(())
        },
    )
    .await
}
