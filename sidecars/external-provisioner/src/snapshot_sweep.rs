//! The orphaned snapshot-finalizer sweep (`--snapshot-orphan-sweep-interval`,
//! new in upstream v6.3.0): every interval, VolumeSnapshots that still carry
//! the provisioner's source-protection finalizer while no Pending claim
//! restores from them get it removed, e.g. after a claim was deleted
//! mid-restore.

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{ListParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::snapshot::{VolumeSnapshot, orphans_to_release, remove_source_finalizer};

/// Runs the sweep every `interval` until the process ends. A Forbidden list
/// (RBAC without `list volumesnapshots`) stops it for good, as upstream
/// disables the controller; a missing API is retried next interval.
pub async fn run(client: Client, claims: Store<PersistentVolumeClaim>, interval: Duration) {
    let _ = claims.wait_until_ready().await;
    let all = Api::<VolumeSnapshot>::all(client.clone());
    loop {
        tokio::time::sleep(interval).await;
        let snapshots = match all.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                info!(
                    "listing VolumeSnapshots is forbidden: the orphaned snapshot-finalizer sweep stops"
                );
                return;
            }
            Err(e) => {
                debug!(error = %e, "listing VolumeSnapshots for the sweep failed");
                continue;
            }
        };
        let state = claims.state();
        for orphan in orphans_to_release(snapshots.iter(), state.iter().map(|c| c.as_ref())) {
            let ns = orphan.namespace.clone().unwrap_or_default();
            let Some(mut snapshot) = snapshots
                .iter()
                .find(|s| {
                    s.name_any() == orphan.name && s.namespace().as_deref() == Some(ns.as_str())
                })
                .cloned()
            else {
                continue;
            };
            if remove_source_finalizer(&mut snapshot) {
                let api = Api::<VolumeSnapshot>::namespaced(client.clone(), &ns);
                match api
                    .replace(&orphan.name, &PostParams::default(), &snapshot)
                    .await
                {
                    Ok(_) => {
                        info!(snapshot = %format!("{ns}/{}", orphan.name), "released an orphaned restore protection")
                    }
                    Err(e) => {
                        warn!(snapshot = %format!("{ns}/{}", orphan.name), error = %e, "could not release an orphaned restore protection")
                    }
                }
            }
        }
    }
}
