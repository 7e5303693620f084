//! End-to-end on a real node: the test bed runs a kubelet with containerd
//! next to the control plane, the CSI test driver runs there as a node
//! plugin pod (with the stand-in registrar), our csi-provisioner runs as a
//! host process on the driver's socket, and a Pod using a provisioned claim
//! reaches Running. The driver's log must show NodeStageVolume and
//! NodePublishVolume, the volume must be a real mount on the host, and
//! deleting the Pod must unpublish and unstage it. Teardown must leave the
//! host as it was: the sysctls, iptables, mounts and devices before and
//! after are printed and compared.
//!
//! Local mode only does the whole check; with `$KUBECONFIG` the node part
//! is the cluster's own node (see the test bed's README section).

mod common;

use std::time::Instant;

use anyhow::{Context as _, ensure};
use common::{DRIVER, WAIT, claim, poll, storage_class, wait_bound};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testbed::{Node, NodeDriver, Testbed, TestbedOptions};

/// Count of successful calls of `method` (e.g. `NodePublishVolume`) in the
/// driver's log; the driver logs `/csi.v1.Node/<method> OK <duration>`.
fn calls(node: &Node<'_>, d: &NodeDriver, method: &str) -> usize {
    let needle = format!("/csi.v1.Node/{method} OK");
    node.container_log(&d.namespace, &d.pod, "driver")
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Mount points on this machine whose path contains `part`.
fn host_mounts_containing(part: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.contains(part))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_with_claim_runs_on_a_real_kubelet() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let tb = Testbed::start(TestbedOptions::with_node()).await?;
    eprintln!(
        "e2e_node: control plane ready in {:.1}s",
        tb.started_in().as_secs_f64()
    );
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let suffix = format!("{:04x}", std::process::id() as u16);
        let ns = format!("e2e-node-{suffix}");
        tb.create_namespace(&ns).await?;
        // No attacher runs: the kubelet must not wait for a VolumeAttachment.
        tb.create_csidriver(DRIVER, false).await?;

        let node = tb.start_node().await?;
        eprintln!(
            "e2e_node: node {} Ready in {:.1}s",
            node.name(),
            node.started_in().as_secs_f64()
        );
        let t_driver = Instant::now();
        let driver = node.deploy_csi_driver(&ns, DRIVER).await?;
        eprintln!(
            "e2e_node: driver pod running and registered in {:.1}s",
            t_driver.elapsed().as_secs_f64()
        );
        ensure!(
            node.is_local(),
            "e2e_node needs the local node: our csi-provisioner runs on this machine and \
             uses the driver's socket at {}, which a $KUBECONFIG cluster's node does not \
             share (run it without KUBECONFIG)",
            driver.socket.display()
        );

        tb.apply_manifest(
            &testbed::manifest_path("rbac-csi-provisioner.yaml"),
            &[("NAMESPACE", ns.as_str())],
        )
        .await?;
        let kubeconfig = tb
            .service_account_kubeconfig(&ns, "csi-provisioner")
            .await?;
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        let provisioner = tb.spawn(
            "csi-provisioner",
            &common::provisioner_binary(),
            [
                format!("--csi-address={}", driver.socket.display()),
                format!("--kubeconfig={kubeconfig}"),
                "-v=5".into(),
            ],
            &[("KUBECONFIG", kubeconfig.as_str())],
        )?;

        let class = format!("e2e-node-{suffix}");
        let classes: Api<StorageClass> = Api::all(admin.clone());
        classes
            .create(&PostParams::default(), &storage_class(&class, &[]))
            .await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        let pvs: Api<PersistentVolume> = Api::all(admin.clone());
        pvcs.create(&PostParams::default(), &claim("data", &class))
            .await?;
        let pv = wait_bound(&pvcs, "data").await?;

        let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
        let t_pod = Instant::now();
        pods.create(
            &PostParams::default(),
            &testbed::workload_pod("app", node.name(), "data"),
        )
        .await?;
        node.wait_pod_running(&pods, "app").await?;
        eprintln!(
            "e2e_node: pod with the claim Running in {:.1}s",
            t_pod.elapsed().as_secs_f64()
        );
        let stage = calls(&node, &driver, "NodeStageVolume");
        let publish = calls(&node, &driver, "NodePublishVolume");
        ensure!(
            stage >= 1 && publish >= 1,
            "driver log lacks NodeStageVolume ({stage}) or NodePublishVolume ({publish}):\n{}",
            node.container_log(&driver.namespace, &driver.pod, "driver")
        );
        // The driver bind-mounted the volume inside its pod; the mount must
        // have propagated to the host for the runtime to hand it to the pod.
        let uid = pods
            .get("app")
            .await?
            .metadata
            .uid
            .context("pod without uid")?;
        let target = format!("{uid}/volumes/kubernetes.io~csi/{pv}/mount");
        let mounts = host_mounts_containing(&target);
        ensure!(
            !mounts.is_empty(),
            "no host mount at .../{target}; the driver's mount did not propagate"
        );
        eprintln!(
            "e2e_node: NodeStageVolume x{stage}, NodePublishVolume x{publish}; host mount {}",
            mounts[0]
        );

        pods.delete("app", &DeleteParams::default()).await?;
        poll("pod app gone", WAIT, || async {
            Ok(pods.get_opt("app").await?.is_none().then_some(()))
        })
        .await?;
        poll(
            "NodeUnpublishVolume and NodeUnstageVolume",
            WAIT,
            || async {
                Ok((calls(&node, &driver, "NodeUnpublishVolume") >= 1
                    && calls(&node, &driver, "NodeUnstageVolume") >= 1)
                    .then_some(()))
            },
        )
        .await?;
        ensure!(
            host_mounts_containing(&uid).is_empty(),
            "mounts of the deleted pod remain: {:?}",
            host_mounts_containing(&uid)
        );
        eprintln!("e2e_node: pod deleted; NodeUnpublishVolume and NodeUnstageVolume seen");

        pvcs.delete("data", &DeleteParams::default()).await?;
        poll("PV deleted", WAIT, || async {
            Ok(pvs.get_opt(&pv).await?.is_none().then_some(()))
        })
        .await?;
        classes.delete(&class, &DeleteParams::default()).await?;
        ensure!(
            provisioner.is_running(),
            "csi-provisioner exited: {}",
            provisioner.log_tail(40)
        );
        drop(provisioner);

        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await?;
    eprintln!("e2e_node: whole test {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
