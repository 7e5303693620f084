//! End-to-end: cloning a PersistentVolumeClaim. The clone's CreateVolume
//! names the source volume as content source, the source claim is protected
//! by `provisioner.storage.kubernetes.io/cloning-protection` while the clone
//! is pending, and deleting the source completes once the clone is Bound.

mod common;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use common::{DRIVER, WAIT, claim, connect, poll, scenario, wait_bound};
use csi_client::csi::v1::ListVolumesRequest;
use csi_client::csi::v1::volume_content_source::Type as SourceType;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, TypedLocalObjectReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use testbed::{DriverOptions, Testbed, TestbedOptions};

fn clone_of(name: &str, source: &str, class: &str) -> PersistentVolumeClaim {
    let mut c = claim(name, class);
    if let Some(spec) = c.spec.as_mut() {
        spec.data_source = Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: source.into(),
        });
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_a_claim_and_protects_its_source() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let admin = tb.admin_client();
            let s = scenario(tb, "e2e-clone", DriverOptions::named(DRIVER), |_| {}).await?;
            let (ns, class, pvcs) = (s.setup.ns.clone(), s.class.clone(), s.pvcs.clone());
            pvcs.create(&PostParams::default(), &claim("source", &class))
                .await?;
            let source_pv = wait_bound(&pvcs, "source").await?;
            let source_handle = s.handle(&source_pv).await?;

            // A clone of a claim that does not exist: a ProvisioningFailed event, no PV.
            pvcs.create(
                &PostParams::default(),
                &clone_of("orphan", "no-such-claim", &class),
            )
            .await?;
            let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
            poll("ProvisioningFailed for the orphan clone", WAIT, || async {
                let list = events
                    .list(&ListParams::default().fields("involvedObject.name=orphan"))
                    .await?;
                Ok(list.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some("ProvisioningFailed")
                        && e.message
                            .as_deref()
                            .unwrap_or_default()
                            .contains("no-such-claim")
                }))
            })
            .await?;

            pvcs.create(&PostParams::default(), &clone_of("copy", "source", &class))
                .await?;
            let copy_pv = wait_bound(&pvcs, "copy").await?;
            let copy_handle = s.handle(&copy_pv).await?;
            ensure!(
                copy_handle != source_handle,
                "the clone reuses the source volume"
            );

            let conn = connect(s.setup.driver.socket_path()).await?;
            let listed = conn.list_volumes(ListVolumesRequest::default()).await?;
            let copy = listed
                .entries
                .iter()
                .filter_map(|e| e.volume.as_ref())
                .find(|v| v.volume_id == copy_handle)
                .context("clone volume not on the driver")?;
            // The driver service reports its source by list position, not
            // ID, so check that it saw a volume source, and check the ID in
            // the request our -v=5 log recorded.
            let from = copy.content_source.as_ref().and_then(|c| c.r#type.as_ref());
            ensure!(
                matches!(from, Some(SourceType::Volume(_))),
                "clone made without a volume content source: {from:?}"
            );
            let log = common::logged_requests(s.provisioner.log_path(), "CreateVolume")?;
            let wanted = format!(
                "\"volume_content_source\":{{\"volume\":{{\"volume_id\":\"{source_handle}\"}}}}"
            );
            ensure!(
                log.iter().any(|l| l.contains(&wanted)),
                "no CreateVolume request with {wanted} in the provisioner log"
            );
            let source = pvcs.get("source").await?;
            ensure!(
                source
                    .finalizers()
                    .iter()
                    .any(|f| f == "provisioner.storage.kubernetes.io/cloning-protection"),
                "source claim lacks the cloning-protection finalizer: {:?}",
                source.finalizers()
            );

            // The clone is Bound, so deleting the source completes.
            pvcs.delete("source", &DeleteParams::default()).await?;
            poll("source claim gone", Duration::from_secs(60), || async {
                Ok(pvcs.get_opt("source").await?.is_none().then_some(()))
            })
            .await?;

            drop(pvcs);
            s.finish().await?;
            ensure!(
                conn.list_volumes(ListVolumesRequest::default())
                    .await?
                    .entries
                    .is_empty(),
                "driver volumes left"
            );
            Ok(())
        },
    )
    .await
}
