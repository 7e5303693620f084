//! End-to-end on a real kubelet: our csi-node-driver-registrar next to
//! csi-testdriver in the driver pod (with our livenessprobe), on the test
//! bed's node. The kubelet registers the driver through our socket, the
//! Node's CSINode lists it with its node ID and topology keys, a Pod with a
//! CSI volume mounts it, and after the driver is killed and restarted the
//! kubelet registers it again while the registrar keeps running (upstream
//! never re-registers, node-driver-registrar#139): with a new node ID, the
//! CSINode shows the new one.
//!
//! Needs the node set of the test bed (`tests/testbed/build.sh node`);
//! without it the test fails and says what to build. Never skipped.

#[path = "../../livenessprobe/tests/common/node.rs"]
mod node_common;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use csi_client::csi::v1 as csi;
use csi_client::{ConnectOptions, Connection};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ConfigMap, Node as KubeNode, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec, Pod,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use node_common::{
    DRIVER, Ours, TOPOLOGY_KEY, WAIT, csinode_driver, deploy_ours, kill_driver, log_count, poll,
    restarts,
};
use testbed::{Node, Testbed, TestbedOptions};

const REGISTERED: &str = "The kubelet registered the driver";

/// A volume made by the driver itself (CreateVolume on its socket), a PV
/// for it and a claim bound to that PV: no provisioner needed.
async fn static_volume(tb: &Testbed, ours: &Ours, ns: &str, name: &str) -> anyhow::Result<String> {
    let conn = Connection::connect(ConnectOptions {
        connect_timeout: Some(WAIT),
        ..ConnectOptions::new(
            ours.driver.socket.display().to_string(),
            std::time::Duration::from_secs(30),
        )
    })
    .await?;
    let mount = csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume::default(),
        )),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    };
    let volume = conn
        .create_volume(csi::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 1 << 20,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount],
            ..Default::default()
        })
        .await?
        .volume
        .context("CreateVolume without a volume")?;
    let size = BTreeMap::from([("storage".to_owned(), Quantity("1Mi".into()))]);
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(size.clone()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(String::new()),
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER.into(),
                volume_handle: volume.volume_id.clone(),
                volume_attributes: Some(volume.volume_context.into_iter().collect()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<PersistentVolume>::all(tb.admin_client())
        .create(&PostParams::default(), &pv)
        .await?;
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(String::new()),
            volume_name: Some(name.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(size),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<PersistentVolumeClaim>::namespaced(tb.admin_client(), ns)
        .create(&PostParams::default(), &claim)
        .await?;
    Ok(volume.volume_id)
}

fn host_mounts_containing(part: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.contains(part))
        .map(str::to_string)
        .collect()
}

async fn start<'a>(tb: &'a Testbed, prefix: &str) -> anyhow::Result<(String, Node<'a>)> {
    let ns = format!("{prefix}-{:04x}", std::process::id() as u16);
    tb.create_namespace(&ns).await?;
    tb.create_csidriver(DRIVER, false).await?;
    let node = tb.start_node().await?;
    ensure!(
        node.is_local(),
        "these tests need the test bed's own node: they pack our sidecars into images and \
         import them into its containerd (run without KUBECONFIG)"
    );
    Ok((ns, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_registers_through_our_registrar_and_mounts() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let tb = Testbed::start(TestbedOptions::with_node()).await?;
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let (ns, node) = start(tb, "e2e-reg").await?;
        let ours = deploy_ours(&node, &ns, node.name(), true).await?;

        let entry = csinode_driver(tb, node.name())
            .await?
            .context("driver not in CSINode")?;
        ensure!(
            entry.node_id == node.name(),
            "CSINode node ID {}",
            entry.node_id
        );
        ensure!(
            entry.topology_keys.as_deref() == Some(&[TOPOLOGY_KEY.to_owned()][..]),
            "CSINode topology keys {:?}",
            entry.topology_keys
        );
        let kube_node = Api::<KubeNode>::all(tb.admin_client())
            .get(node.name())
            .await?;
        let labels = kube_node.metadata.labels.unwrap_or_default();
        ensure!(
            labels.get(TOPOLOGY_KEY).map(String::as_str) == Some(node.name()),
            "Node labels {labels:?}"
        );
        let annotations = kube_node.metadata.annotations.unwrap_or_default();
        let ids = annotations
            .get("csi.volume.kubernetes.io/nodeid")
            .context("no csi.volume.kubernetes.io/nodeid annotation")?;
        ensure!(
            ids.contains(&format!("\"{DRIVER}\":\"{}\"", node.name())),
            "{ids}"
        );
        eprintln!(
            "e2e_node: CSINode {}: node ID {}, topology keys {:?}",
            node.name(),
            entry.node_id,
            entry.topology_keys.unwrap_or_default()
        );

        // A Pod with a CSI volume mounts.
        let t = Instant::now();
        static_volume(tb, &ours, &ns, "data").await?;
        let pods: Api<Pod> = Api::namespaced(tb.admin_client(), &ns);
        pods.create(
            &PostParams::default(),
            &testbed::workload_pod("app", node.name(), "data"),
        )
        .await?;
        node.wait_pod_running(&pods, "app").await?;
        let uid = pods
            .get("app")
            .await?
            .metadata
            .uid
            .context("pod without uid")?;
        let mounts = host_mounts_containing(&format!("{uid}/volumes/kubernetes.io~csi/data/mount"));
        ensure!(
            !mounts.is_empty(),
            "the pod's CSI volume is not mounted on the host"
        );
        eprintln!(
            "e2e_node: pod with the CSI volume Running in {:.1}s, mounted at {}",
            t.elapsed().as_secs_f64(),
            mounts[0]
        );
        pods.delete("app", &DeleteParams::default()).await?;
        poll("pod app gone", WAIT, || async {
            Ok(pods.get_opt("app").await?.is_none().then_some(()))
        })
        .await?;

        // Kill the driver (same node ID: its topology label must not change).
        let before = log_count(&node, &ours, "registrar", REGISTERED);
        ensure!(before >= 1, "registrar log lacks {REGISTERED:?}");
        let t = Instant::now();
        kill_driver(&node)?;
        poll("the kubelet registering the driver again", WAIT, || async {
            Ok((log_count(&node, &ours, "registrar", REGISTERED) > before).then_some(()))
        })
        .await?;
        csinode_driver(tb, node.name())
            .await?
            .context("driver gone from CSINode")?;
        ensure!(
            restarts(tb, &ours, "driver").await? >= 1,
            "the driver did not restart"
        );
        ensure!(
            restarts(tb, &ours, "registrar").await? == 0,
            "the registrar restarted"
        );
        eprintln!(
            "e2e_node: driver killed; registered again in {:.1}s, registrar not restarted",
            t.elapsed().as_secs_f64()
        );
        node_common::print_rss(&ours, "in the pod after the driver restart");
        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await?;
    eprintln!("e2e_node: whole test {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_driver_with_a_new_node_id_is_registered_again() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let tb = Testbed::start(TestbedOptions::with_node()).await?;
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let (ns, node) = start(tb, "e2e-rereg").await?;
        let ours = deploy_ours(&node, &ns, "id-before", false).await?;
        let entry = csinode_driver(tb, node.name()).await?.context("driver not in CSINode")?;
        ensure!(entry.node_id == "id-before", "CSINode node ID {}", entry.node_id);

        // The restarted driver reads its node ID from the ConfigMap again.
        let maps: Api<ConfigMap> = Api::namespaced(tb.admin_client(), &ns);
        maps.patch(
            &ours.node_id_configmap,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"node-id": "id-after"}})),
        )
        .await?;
        let t = Instant::now();
        kill_driver(&node)?;
        let entry = poll("CSINode with the new node ID", WAIT, || async {
            Ok(csinode_driver(tb, node.name())
                .await?
                .filter(|d| d.node_id == "id-after"))
        })
        .await?;
        ensure!(restarts(tb, &ours, "registrar").await? == 0, "the registrar restarted");
        eprintln!(
            "e2e_node: driver restarted with node ID {}; CSINode updated in {:.1}s without restarting the registrar",
            entry.node_id,
            t.elapsed().as_secs_f64()
        );
        let registrar_log = node.container_log(&ours.driver.namespace, &ours.driver.pod, "registrar");
        ensure!(
            registrar_log.contains("the CSI driver restarted"),
            "registrar log:\n{registrar_log}"
        );
        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await?;
    eprintln!("e2e_node: whole test {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
