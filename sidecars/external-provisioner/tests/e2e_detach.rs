//! End-to-end: a Released PV whose volume is still attached (a
//! VolumeAttachment references it) is not deleted until the attachment goes;
//! the wait is reported by one Normal event, not a Warning per retry
//! (upstream external-provisioner#1574), and the deletion follows the
//! attachment's removal at once rather than after a backoff.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::{
    DRIVER, WAIT, claim, connect, driver_volumes, poll, setup_with, spawn_provisioner,
    storage_class, wait_bound,
};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{
    StorageClass, VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_quietly_for_detach() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let opts = DriverOptions { enable_attach: true, ..DriverOptions::named(DRIVER) };
        let setup = setup_with(tb, "e2e-detach", opts).await?;
        let ns = setup.ns.clone();
        let provisioner = spawn_provisioner(tb, &setup, "csi-provisioner", setup.driver.socket_path(), &[])?;

        let class = format!("e2e-detach-{}", setup.suffix);
        let classes: Api<StorageClass> = Api::all(admin.clone());
        classes.create(&PostParams::default(), &storage_class(&class, &[])).await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        pvcs.create(&PostParams::default(), &claim("data", &class)).await?;
        let pv_name = wait_bound(&pvcs, "data").await?;

        // What the attach-detach controller would create for a pod on the node.
        let va_name = format!("csi-e2e-{}", setup.suffix);
        let vas: Api<VolumeAttachment> = Api::all(admin.clone());
        let va = VolumeAttachment {
            metadata: ObjectMeta { name: Some(va_name.clone()), ..Default::default() },
            spec: VolumeAttachmentSpec {
                attacher: DRIVER.into(),
                node_name: "e2e-node".into(),
                source: VolumeAttachmentSource { persistent_volume_name: Some(pv_name.clone()), ..Default::default() },
            },
            ..Default::default()
        };
        vas.create(&PostParams::default(), &va).await?;

        pvcs.delete("data", &DeleteParams::default()).await?;
        let pvs: Api<PersistentVolume> = Api::all(admin.clone());
        let events: Api<Event> = Api::namespaced(admin.clone(), "default");
        let selector = ListParams::default().fields(&format!("involvedObject.name={pv_name}"));
        let waiting = poll("WaitingForDetach event", WAIT, || async {
            Ok(events.list(&selector).await?.items.into_iter().find(|e| e.reason.as_deref() == Some("WaitingForDetach")))
        })
        .await?;
        ensure!(waiting.type_.as_deref() == Some("Normal"));
        ensure!(waiting.message.unwrap_or_default().contains(&va_name), "event does not name the VolumeAttachment");

        // Held: the PV and the driver volume stay while the attachment exists.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let pv = pvs.get(&pv_name).await?;
        ensure!(pv.status.and_then(|s| s.phase).as_deref() == Some("Released"), "PV should be Released and kept");
        let conn = connect(setup.driver.socket_path()).await?;
        let handle = pv.spec.and_then(|s| s.csi).map(|c| c.volume_handle).context("PV without CSI")?;
        ensure!(driver_volumes(&conn).await?.contains(&handle), "volume deleted while attached");
        let list = events.list(&selector).await?.items;
        ensure!(!list.iter().any(|e| e.type_.as_deref() == Some("Warning")), "Warning events while waiting: {:?}", list.iter().map(|e| (&e.reason, &e.message)).collect::<Vec<_>>());
        let waits: i32 = list.iter().filter(|e| e.reason.as_deref() == Some("WaitingForDetach")).map(|e| e.count.unwrap_or(1)).sum();
        ensure!(waits == 1, "the wait was announced {waits} times");

        // Detached: deletion follows promptly.
        let detached = Instant::now();
        vas.delete(&va_name, &DeleteParams::default()).await?;
        poll("PV deleted after detach", Duration::from_secs(30), || async { Ok(pvs.get_opt(&pv_name).await?.is_none().then_some(())) }).await?;
        ensure!(driver_volumes(&conn).await?.is_empty(), "driver volume left after detach");
        eprintln!("e2e detach: deletion held while attached; PV and volume gone {:.1?} after the VolumeAttachment was deleted", detached.elapsed());
        ensure!(provisioner.is_running(), "csi-provisioner exited: {}", provisioner.log_tail(40));
        classes.delete(&class, &DeleteParams::default()).await?;
        Ok(())
    })
    .await
}
