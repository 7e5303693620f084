//! End-to-end on the test bed's real control plane: kube-controller-manager's
//! attach/detach controller creates the VolumeAttachments from Pods bound to
//! the controller-managed Node, and csi-attacher (ours, or the binary named
//! by `CSI_E2E_ATTACHER_BIN`, e.g. upstream's) publishes and unpublishes them
//! on the CSI test driver (attach limit 1 per node).
//!
//! Covered: attach (status, finalizers, node-ID annotation, the driver's
//! published node), a driver error (ResourceExhausted from the attach limit)
//! in `status.attachError` with its code and, for ours, a Warning Event;
//! detach after the first Pod goes; recovery of the failed attachment once
//! the driver has room; the PV finalizer removed when the PV is deleted.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::{
    DRIVER, FINALIZER, NODE, WAIT, attached, claim, connect, create_volume, pod, poll, published,
    static_pv, testing_ours, va_of,
};
use k8s_openapi::api::core::v1::{
    Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_detach_error_and_recovery() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let opts = DriverOptions { enable_attach: true, attach_limit: 1, ..DriverOptions::named(DRIVER) };
        let setup = common::setup(tb, "e2e-attach", opts).await?;
        let (ns, suffix, driver) = (setup.ns.clone(), setup.suffix.clone(), &setup.driver);
        let retry = ["--retry-interval-start=500ms".to_string(), "--retry-interval-max=4s".to_string()];
        let attacher = common::spawn_attacher(tb, &setup, "csi-attacher", driver.socket_path(), &retry)?;

        // Two volumes on the driver, exposed as pre-bound static PVs.
        let conn = connect(driver.socket_path()).await?;
        let pvs: Api<PersistentVolume> = Api::all(admin.clone());
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        let mut handles = Vec::new();
        for i in 1..=2 {
            let vol = create_volume(&conn, &format!("e2e-attach-{suffix}-{i}")).await?;
            let pv = format!("e2e-attach-{suffix}-{i}");
            pvs.create(&PostParams::default(), &static_pv(&pv, &vol, &ns, &format!("data-{i}")))
                .await?;
            pvcs.create(&PostParams::default(), &claim(&format!("data-{i}"), &pv)).await?;
            handles.push((pv, vol));
        }
        for i in 1..=2 {
            let name = format!("data-{i}");
            poll("claim bound", WAIT, || async {
                let c = pvcs.get(&name).await?;
                Ok((c.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
            })
            .await?;
        }
        // Pods need their namespace's default ServiceAccount (no token
        // controller runs in the test bed).
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
        let default_sa = ServiceAccount {
            metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
            ..Default::default()
        };
        let _ = sas.create(&PostParams::default(), &default_sa).await;

        // Attach: the controller-manager creates the VA, we publish it.
        let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
        let vas: Api<VolumeAttachment> = Api::all(admin.clone());
        let (pv1, vol1) = handles[0].clone();
        let (pv2, vol2) = handles[1].clone();
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod("first", "data-1")).await?;
        let va1 = poll("first VolumeAttachment attached", WAIT, || async {
            Ok(va_of(&vas, &pv1).await?.filter(attached))
        })
        .await?;
        eprintln!("e2e attach: pod → attached in {:.1?}", started.elapsed());
        let va1_name = va1.metadata.name.clone().unwrap_or_default();
        ensure!(va1.metadata.finalizers.clone().unwrap_or_default().contains(&FINALIZER.to_string()), "VA finalizer missing");
        ensure!(
            va1.metadata.annotations.clone().unwrap_or_default().get("csi.alpha.kubernetes.io/node-id").map(String::as_str)
                == Some(driver.node_id()),
            "node-id annotation missing"
        );
        let metadata = va1.status.as_ref().and_then(|s| s.attachment_metadata.clone()).unwrap_or_default();
        ensure!(
            metadata.get("device").map(String::as_str) == Some("/dev/mock"),
            "attachmentMetadata is not the publish context: {metadata:?}"
        );
        // The Lease a Go and a Rust replica contend for.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(admin.clone(), &ns);
        ensure!(
            leases.get_opt("external-attacher-leader-hostpath-csi-k8s-io").await?.is_some(),
            "no Lease external-attacher-leader-hostpath-csi-k8s-io"
        );
        let pv = pvs.get(&pv1).await?;
        ensure!(pv.metadata.finalizers.unwrap_or_default().contains(&FINALIZER.to_string()), "PV finalizer missing");
        ensure!(
            published(&conn).await?.get(&vol1).is_some_and(|n| n.contains(&driver.node_id().to_string())),
            "driver does not report the volume published to the node"
        );

        // A driver error: the node is full (attach limit 1).
        pods.create(&PostParams::default(), &pod("second", "data-2")).await?;
        let va2 = poll("attachError on the second VolumeAttachment", WAIT, || async {
            Ok(va_of(&vas, &pv2).await?.filter(|va| {
                va.status.as_ref().and_then(|s| s.attach_error.as_ref()).is_some()
            }))
        })
        .await?;
        let va2_name = va2.metadata.name.clone().unwrap_or_default();
        let error = va2.status.and_then(|s| s.attach_error).context("no attachError")?;
        let message = error.message.unwrap_or_default();
        eprintln!("e2e attach: attachError = {message:?}, errorCode = {:?}", error.error_code);
        ensure!(
            message == "rpc error: code = ResourceExhausted desc = Cannot attach any more volumes to this node",
            "unexpected attachError {message:?}"
        );
        ensure!(error.error_code == Some(8), "errorCode {:?}", error.error_code);
        let events: Api<Event> = Api::namespaced(admin.clone(), "default");
        let selector = ListParams::default().fields(&format!("involvedObject.name={va2_name}"));
        if testing_ours() {
            let event = poll("AttachFailed event", WAIT, || async {
                Ok(events.list(&selector).await?.items.into_iter().find(|e| e.reason.as_deref() == Some("AttachFailed")))
            })
            .await?;
            ensure!(event.type_.as_deref() == Some("Warning"));
            ensure!(event.message.unwrap_or_default().contains("ResourceExhausted"));
        } else {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let n = events.list(&selector).await?.items.len();
            eprintln!("e2e attach: the binary under test wrote {n} Events about the failing VolumeAttachment");
        }

        // Detach: the first Pod goes; the node no longer lists the volume in
        // use (no kubelet here, so the test plays its part).
        pods.delete("first", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
        let nodes: Api<Node> = Api::all(admin.clone());
        let detach_started = Instant::now();
        let mut tick = 0u32;
        poll("first VolumeAttachment deleted (detached)", WAIT, || {
            tick += 1;
            let (nodes, vas, name) = (nodes.clone(), vas.clone(), va1_name.clone());
            async move {
                let patch = serde_json::json!({"metadata": {"labels": {"e2e-attach-tick": tick.to_string()}}});
                nodes.patch(NODE, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Ok(vas.get_opt(&name).await?.is_none().then_some(()))
            }
        })
        .await?;
        eprintln!("e2e attach: pod deleted → VolumeAttachment gone in {:.1?}", detach_started.elapsed());
        ensure!(
            published(&conn).await?.get(&vol1).is_none_or(|n| n.is_empty()),
            "volume 1 still published after its VolumeAttachment went"
        );

        // Recovery: the driver has room again, the retry attaches.
        let va2 = poll("second VolumeAttachment attached after the error", WAIT, || async {
            Ok(vas.get_opt(&va2_name).await?.filter(attached))
        })
        .await?;
        ensure!(
            va2.status.and_then(|s| s.attach_error).is_none(),
            "attachError not cleared after the attach succeeded"
        );
        ensure!(
            published(&conn).await?.get(&vol2).is_some_and(|n| n.contains(&driver.node_id().to_string())),
            "volume 2 not published after recovery"
        );

        // The PV finalizer goes when the PV is deleted and nothing uses it.
        pvcs.delete("data-1", &DeleteParams::default()).await?;
        pvs.delete(&pv1, &DeleteParams::default()).await?;
        poll("PV 1 gone (attacher finalizer removed)", WAIT, || async {
            Ok(pvs.get_opt(&pv1).await?.is_none().then_some(()))
        })
        .await?;
        ensure!(attacher.is_running(), "csi-attacher exited: {}", attacher.log_tail(40));
        Ok(())
    })
    .await
}
