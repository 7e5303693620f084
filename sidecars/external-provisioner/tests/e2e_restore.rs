//! End-to-end restore from a VolumeSnapshot. The upstream snapshot CRDs come
//! from the external-snapshotter client Go module; the snapshot is cut
//! through the driver's CreateSnapshot and bound as a pre-provisioned
//! VolumeSnapshotContent, with the statuses a snapshot controller would
//! write. The restore names the snapshot as content source, the snapshot's
//! protection finalizer is released afterwards, and a restore that would
//! change the volume mode is refused.

mod common;

use anyhow::{Context as _, ensure};
use common::{
    DRIVER, WAIT, claim, connect, delete_claims, poll, setup, spawn_provisioner, storage_class,
    wait_bound,
};
use csi_client::csi::v1::{CreateSnapshotRequest, DeleteSnapshotRequest, ListVolumesRequest};
use external_provisioner::snapshot::{
    SNAPSHOT_SOURCE_FINALIZER, VolumeSnapshot, VolumeSnapshotContent, VolumeSnapshotContentSource,
    VolumeSnapshotContentSpec, VolumeSnapshotSource, VolumeSnapshotSpec,
};
use k8s_openapi::api::core::v1::{
    Event, ObjectReference, PersistentVolume, PersistentVolumeClaim, TypedLocalObjectReference,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use testbed::{Testbed, TestbedOptions};

/// Creates a VolumeSnapshot bound to a new pre-provisioned content for
/// `handle`, both ready, as snapshot-controller and csi-snapshotter would
/// leave them.
async fn bound_snapshot(
    admin: &Client,
    ns: &str,
    name: &str,
    handle: &str,
    bytes: i64,
    source_mode: &str,
) -> anyhow::Result<()> {
    let content_name = format!("{ns}-{name}");
    let snaps: Api<VolumeSnapshot> = Api::namespaced(admin.clone(), ns);
    let snapshot = VolumeSnapshot {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(VolumeSnapshotSpec {
            source: Some(VolumeSnapshotSource {
                volume_snapshot_content_name: Some(content_name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let snapshot = snaps.create(&PostParams::default(), &snapshot).await?;
    let contents: Api<VolumeSnapshotContent> = Api::all(admin.clone());
    let content = VolumeSnapshotContent {
        metadata: ObjectMeta {
            name: Some(content_name.clone()),
            ..Default::default()
        },
        spec: Some(VolumeSnapshotContentSpec {
            driver: Some(DRIVER.into()),
            deletion_policy: Some("Retain".into()),
            source: Some(VolumeSnapshotContentSource {
                snapshot_handle: Some(handle.into()),
                ..Default::default()
            }),
            volume_snapshot_ref: Some(ObjectReference {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: snapshot.uid(),
                ..Default::default()
            }),
            source_volume_mode: Some(source_mode.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    contents.create(&PostParams::default(), &content).await?;
    let status = PatchParams::default();
    contents
        .patch_status(&content_name, &status, &Patch::Merge(json!({"status": {"snapshotHandle": handle, "readyToUse": true, "restoreSize": bytes}})))
        .await?;
    snaps
        .patch_status(name, &status, &Patch::Merge(json!({"status": {"boundVolumeSnapshotContentName": content_name, "readyToUse": true, "restoreSize": bytes.to_string()}})))
        .await?;
    Ok(())
}

fn restore_of(name: &str, snapshot: &str, class: &str) -> PersistentVolumeClaim {
    let mut c = claim(name, class);
    if let Some(spec) = c.spec.as_mut() {
        spec.data_source = Some(TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: snapshot.into(),
        });
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_from_a_snapshot() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            tb.install_snapshot_crds().await?;
            let admin = tb.admin_client();
            let setup = setup(tb, "e2e-restore").await?;
            let ns = setup.ns.clone();
            let provisioner = spawn_provisioner(
                tb,
                &setup,
                "csi-provisioner",
                setup.driver.socket_path(),
                &[],
            )?;
            let class = format!("e2e-restore-{}", setup.suffix);
            let classes: Api<StorageClass> = Api::all(admin.clone());
            classes
                .create(&PostParams::default(), &storage_class(&class, &[]))
                .await?;
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
            let pvs: Api<PersistentVolume> = Api::all(admin.clone());

            pvcs.create(&PostParams::default(), &claim("source", &class))
                .await?;
            let source_pv = wait_bound(&pvcs, "source").await?;
            let handle = pvs
                .get(&source_pv)
                .await?
                .spec
                .and_then(|s| s.csi)
                .map(|c| c.volume_handle)
                .context("source PV without CSI")?;
            let conn = connect(setup.driver.socket_path()).await?;
            let cut = conn
                .create_snapshot(CreateSnapshotRequest {
                    source_volume_id: handle.clone(),
                    name: format!("snap-{}", setup.suffix),
                    ..Default::default()
                })
                .await?
                .snapshot
                .context("CreateSnapshot returned no snapshot")?;
            let bytes = 1 << 20;
            bound_snapshot(&admin, &ns, "snap", &cut.snapshot_id, bytes, "Filesystem").await?;
            bound_snapshot(&admin, &ns, "block-snap", &cut.snapshot_id, bytes, "Block").await?;

            pvcs.create(
                &PostParams::default(),
                &restore_of("restored", "snap", &class),
            )
            .await?;
            let restored_pv = wait_bound(&pvcs, "restored").await?;
            ensure!(restored_pv != source_pv);
            let log = common::logged_requests(provisioner.log_path(), "CreateVolume")?;
            let wanted = format!(
                "\"volume_content_source\":{{\"snapshot\":{{\"snapshot_id\":\"{}\"}}}}",
                cut.snapshot_id
            );
            ensure!(
                log.iter().any(|l| l.contains(&wanted)),
                "no CreateVolume request with {wanted} in the provisioner log"
            );
            let snaps: Api<VolumeSnapshot> = Api::namespaced(admin.clone(), &ns);
            poll("restore protection released", WAIT, || async {
                let s = snaps.get("snap").await?;
                Ok((!s
                    .finalizers()
                    .iter()
                    .any(|f| f == SNAPSHOT_SOURCE_FINALIZER))
                .then_some(()))
            })
            .await?;

            // A Filesystem claim from a Block snapshot without the content's
            // permission annotation: refused, no PV.
            pvcs.create(
                &PostParams::default(),
                &restore_of("converted", "block-snap", &class),
            )
            .await?;
            let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
            let refused = poll(
                "ProvisioningFailed for the mode conversion",
                WAIT,
                || async {
                    let list = events
                        .list(&ListParams::default().fields("involvedObject.name=converted"))
                        .await?;
                    Ok(list
                        .items
                        .into_iter()
                        .find(|e| e.reason.as_deref() == Some("ProvisioningFailed")))
                },
            )
            .await?;
            ensure!(
                refused
                    .message
                    .unwrap_or_default()
                    .to_lowercase()
                    .contains("mode"),
                "refusal does not mention the volume mode"
            );
            ensure!(
                pvcs.get("converted")
                    .await?
                    .spec
                    .and_then(|s| s.volume_name)
                    .is_none(),
                "mode-converting restore was provisioned"
            );

            delete_claims(&pvcs, &pvs, &ns).await?;
            ensure!(
                conn.list_volumes(ListVolumesRequest::default())
                    .await?
                    .entries
                    .is_empty(),
                "driver volumes left"
            );
            snaps
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await?;
            let contents: Api<VolumeSnapshotContent> = Api::all(admin.clone());
            for name in ["snap", "block-snap"] {
                contents
                    .delete(&format!("{ns}-{name}"), &DeleteParams::default())
                    .await?;
            }
            conn.delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: cut.snapshot_id.clone(),
                ..Default::default()
            })
            .await?;
            classes.delete(&class, &DeleteParams::default()).await?;
            ensure!(
                provisioner.is_running(),
                "csi-provisioner exited: {}",
                provisioner.log_tail(40)
            );
            Ok(())
        },
    )
    .await
}
