//! End-to-end on a real kubelet node: the CSI test driver runs as a node
//! plugin pod with attach enabled (attach limit 1), our csi-provisioner
//! provisions two claims, and the csi-attacher under test (ours, or the
//! binary named by `CSI_E2E_ATTACHER_BIN`, e.g. upstream's) runs on the
//! driver's socket. kube-controller-manager's attach/detach controller
//! creates the VolumeAttachments from the Pods; the kubelet waits for them
//! before NodeStageVolume.
//!
//! Covered: attach (`status.attached`, the VolumeAttachment and PV
//! finalizers) and the Pod Running; a driver error (ResourceExhausted from
//! the attach limit) in `status.attachError` and in the attach/detach
//! controller's `FailedAttachVolume` Event on the Pod (and, for ours, the
//! attacher's own `AttachFailed` Event); detach when the first Pod goes
//! (the VolumeAttachment deleted, the driver no longer publishing);
//! recovery of the failed attachment and its Pod Running; the last detach;
//! the PVs deleted (the attacher's PV finalizer removed). Timings are
//! printed, not asserted.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::{DRIVER, FINALIZER, WAIT, attached, connect, poll, published, testing_ours, va_of};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{NodeDriverOptions, Testbed, TestbedOptions};

fn has_finalizer(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// The Pod's Events with `reason`.
async fn pod_events(events: &Api<Event>, pod: &str, reason: &str) -> anyhow::Result<Vec<Event>> {
    let selector = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    Ok(events
        .list(&selector)
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_attach_fail_recover_and_detach_on_a_real_kubelet() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let who = if testing_ours() {
        "ours"
    } else {
        "CSI_E2E_ATTACHER_BIN"
    };
    let provisioner_bin = common::provisioner_binary()?;
    let tb = Testbed::start(TestbedOptions::with_node()).await?;
    eprintln!(
        "e2e_node ({who}): control plane ready in {:.1}s",
        tb.started_in().as_secs_f64()
    );
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let suffix = common::suffix();
        let ns = format!("e2e-attach-node-{suffix}");
        tb.create_namespace(&ns).await?;
        tb.create_csidriver(DRIVER, true).await?;
        let node = tb.start_node().await?;
        eprintln!("e2e_node: node {} Ready in {:.1}s", node.name(), node.started_in().as_secs_f64());
        let opts = NodeDriverOptions { enable_attach: true, attach_limit: 1, ..Default::default() };
        let driver = node.deploy_csi_driver_opts(&ns, DRIVER, &opts).await?;
        ensure!(
            node.is_local(),
            "the sidecars run on this machine and need the node plugin's socket {}",
            driver.socket.display()
        );

        let vars = [("NAMESPACE", ns.as_str())];
        for manifest in ["rbac-csi-provisioner.yaml", "rbac-csi-attacher.yaml", "rbac-csi-attacher-events.yaml"] {
            tb.apply_manifest(&testbed::manifest_path(manifest), &vars).await?;
        }
        let prov_kc = tb.service_account_kubeconfig(&ns, "csi-provisioner").await?;
        let prov_kc = prov_kc.to_string_lossy().into_owned();
        let att_kc = tb.service_account_kubeconfig(&ns, "csi-attacher").await?;
        let att_kc = att_kc.to_string_lossy().into_owned();
        let socket = driver.socket.display().to_string();
        let provisioner = tb.spawn(
            "csi-provisioner",
            &provisioner_bin,
            [format!("--csi-address={socket}"), format!("--kubeconfig={prov_kc}"), "-v=5".into()],
            &[("KUBECONFIG", prov_kc.as_str())],
        )?;
        let attacher = tb.spawn(
            "csi-attacher",
            &common::attacher_binary(),
            [
                format!("--csi-address={socket}"),
                format!("--kubeconfig={att_kc}"),
                "-v=5".into(),
                "--leader-election".into(),
                format!("--leader-election-namespace={ns}"),
                "--retry-interval-start=500ms".into(),
                "--retry-interval-max=4s".into(),
            ],
            &[("KUBECONFIG", att_kc.as_str())],
        )?;

        let class = format!("e2e-attach-node-{suffix}");
        let classes: Api<StorageClass> = Api::all(admin.clone());
        classes.create(&PostParams::default(), &common::storage_class(&class)).await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        let pvs: Api<PersistentVolume> = Api::all(admin.clone());
        for c in ["data-1", "data-2"] {
            pvcs.create(&PostParams::default(), &common::dynamic_claim(c, &class)).await?;
        }
        let mut bound = Vec::new();
        for c in ["data-1", "data-2"] {
            let pv = poll("claim bound", WAIT, || async {
                let claim = pvcs.get(c).await?;
                let phase = claim.status.and_then(|s| s.phase);
                Ok((phase.as_deref() == Some("Bound")).then(|| claim.spec.and_then(|s| s.volume_name)).flatten())
            })
            .await?;
            let handle = pvs
                .get(&pv)
                .await?
                .spec
                .and_then(|s| s.csi)
                .map(|c| c.volume_handle)
                .context("provisioned PV without a CSI source")?;
            bound.push((pv, handle));
        }
        let ((pv1, vol1), (pv2, vol2)) = (bound[0].clone(), bound[1].clone());
        let conn = connect(&driver.socket).await?;
        let node_id = DRIVER; // the mock service's own node ID

        // Attach: the first Pod.
        let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
        let vas: Api<VolumeAttachment> = Api::all(admin.clone());
        let t_pod = Instant::now();
        pods.create(&PostParams::default(), &testbed::workload_pod("first", node.name(), "data-1")).await?;
        let va1 = poll("first VolumeAttachment attached", WAIT, || async {
            Ok(va_of(&vas, &pv1).await?.filter(attached))
        })
        .await?;
        let to_attached = t_pod.elapsed();
        let va1_name = va1.metadata.name.clone().unwrap_or_default();
        ensure!(has_finalizer(&va1.metadata), "VolumeAttachment finalizer {FINALIZER} missing");
        ensure!(has_finalizer(&pvs.get(&pv1).await?.metadata), "PV finalizer {FINALIZER} missing");
        ensure!(
            published(&conn).await?.get(&vol1).is_some_and(|n| n.iter().any(|n| n == node_id)),
            "the driver does not publish volume 1 to the node"
        );
        node.wait_pod_running(&pods, "first").await?;
        eprintln!(
            "e2e_node ({who}): pod → VolumeAttachment attached {:.1}s, → Pod Running {:.1}s",
            to_attached.as_secs_f64(),
            t_pod.elapsed().as_secs_f64()
        );

        // A driver error: the node is full (attach limit 1).
        let t_err = Instant::now();
        pods.create(&PostParams::default(), &testbed::workload_pod("second", node.name(), "data-2")).await?;
        let va2 = poll("attachError on the second VolumeAttachment", WAIT, || async {
            Ok(va_of(&vas, &pv2)
                .await?
                .filter(|va| va.status.as_ref().and_then(|s| s.attach_error.as_ref()).is_some()))
        })
        .await?;
        let va2_name = va2.metadata.name.clone().unwrap_or_default();
        let error = va2.status.and_then(|s| s.attach_error).context("no attachError")?;
        let message = error.message.unwrap_or_default();
        eprintln!(
            "e2e_node ({who}): pod → attachError {:.1}s: {message:?} (errorCode {:?})",
            t_err.elapsed().as_secs_f64(),
            error.error_code
        );
        ensure!(
            message == "rpc error: code = ResourceExhausted desc = Cannot attach any more volumes to this node",
            "unexpected attachError {message:?}"
        );
        ensure!(error.error_code == Some(8), "errorCode {:?}", error.error_code);
        let pod_events_api: Api<Event> = Api::namespaced(admin.clone(), &ns);
        let failed = poll("FailedAttachVolume event on the second Pod", WAIT, || async {
            Ok(pod_events(&pod_events_api, "second", "FailedAttachVolume").await?.into_iter().next())
        })
        .await?;
        let failed_message = failed.message.unwrap_or_default();
        ensure!(
            failed_message.contains("ResourceExhausted"),
            "FailedAttachVolume does not carry the driver's error: {failed_message:?}"
        );
        let va_events: Api<Event> = Api::namespaced(admin.clone(), "default");
        let selector = ListParams::default().fields(&format!("involvedObject.name={va2_name}"));
        if testing_ours() {
            let event = poll("AttachFailed event on the VolumeAttachment", WAIT, || async {
                Ok(va_events.list(&selector).await?.items.into_iter().find(|e| e.reason.as_deref() == Some("AttachFailed")))
            })
            .await?;
            ensure!(event.type_.as_deref() == Some("Warning"), "AttachFailed is not a Warning");
            ensure!(event.message.unwrap_or_default().contains("ResourceExhausted"));
        } else {
            let n = va_events.list(&selector).await?.items.len();
            eprintln!("e2e_node ({who}): the binary under test wrote {n} Events about the failing VolumeAttachment");
        }
        let phase = pods.get("second").await?.status.and_then(|s| s.phase).unwrap_or_default();
        ensure!(phase == "Pending", "second Pod is {phase} while its volume cannot attach");

        // Detach: the first Pod goes; the kubelet unmounts, the controller
        // deletes the VolumeAttachment, the attacher unpublishes.
        let t_detach = Instant::now();
        pods.delete("first", &DeleteParams::default()).await?;
        poll("first VolumeAttachment deleted (detached)", WAIT, || async {
            Ok(vas.get_opt(&va1_name).await?.is_none().then_some(()))
        })
        .await?;
        eprintln!(
            "e2e_node ({who}): pod deleted → VolumeAttachment gone {:.1}s",
            t_detach.elapsed().as_secs_f64()
        );
        ensure!(
            published(&conn).await?.get(&vol1).is_none_or(|n| n.is_empty()),
            "volume 1 still published after its VolumeAttachment went"
        );

        // Recovery: the driver has room again; the retry attaches and the
        // second Pod starts.
        let va2 = poll("second VolumeAttachment attached after the error", WAIT, || async {
            Ok(vas.get_opt(&va2_name).await?.filter(attached))
        })
        .await?;
        ensure!(va2.status.and_then(|s| s.attach_error).is_none(), "attachError not cleared after the attach succeeded");
        node.wait_pod_running(&pods, "second").await?;
        eprintln!(
            "e2e_node ({who}): first pod deleted → second Pod Running {:.1}s",
            t_detach.elapsed().as_secs_f64()
        );
        ensure!(
            published(&conn).await?.get(&vol2).is_some_and(|n| n.iter().any(|n| n == node_id)),
            "volume 2 not published after recovery"
        );

        // The last detach, then the claims and their volumes go: the PVs
        // can only be deleted once the attacher removed its finalizer.
        let t_last = Instant::now();
        pods.delete("second", &DeleteParams::default()).await?;
        poll("second VolumeAttachment deleted (detached)", WAIT, || async {
            Ok(vas.get_opt(&va2_name).await?.is_none().then_some(()))
        })
        .await?;
        eprintln!(
            "e2e_node ({who}): second pod deleted → VolumeAttachment gone {:.1}s",
            t_last.elapsed().as_secs_f64()
        );
        ensure!(
            published(&conn).await?.get(&vol2).is_none_or(|n| n.is_empty()),
            "volume 2 still published after its VolumeAttachment went"
        );
        let t_pv = Instant::now();
        for c in ["data-1", "data-2"] {
            pvcs.delete(c, &DeleteParams::default()).await?;
        }
        for pv in [&pv1, &pv2] {
            poll("PV deleted (attacher finalizer removed)", WAIT, || async {
                Ok(pvs.get_opt(pv).await?.is_none().then_some(()))
            })
            .await?;
        }
        eprintln!("e2e_node ({who}): claims deleted → PVs gone {:.1}s", t_pv.elapsed().as_secs_f64());
        ensure!(
            !published(&conn).await?.contains_key(&vol1) && !published(&conn).await?.contains_key(&vol2),
            "the driver still has the volumes"
        );
        classes.delete(&class, &DeleteParams::default()).await?;
        ensure!(attacher.is_running(), "csi-attacher exited: {}", attacher.log_tail(40));
        ensure!(provisioner.is_running(), "csi-provisioner exited: {}", provisioner.log_tail(40));
        drop(attacher);
        drop(provisioner);
        drop(conn);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await?;
    eprintln!(
        "e2e_node ({who}): whole test {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
