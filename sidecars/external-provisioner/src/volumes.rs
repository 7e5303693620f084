//! The volume controller's I/O: PV finalizer maintenance and, for Released
//! PVs with reclaim policy Delete, DeleteVolume then the PV removed.

use std::sync::Arc;
use std::time::Instant;

use csi_client::csi::v1::DeleteVolumeRequest;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use sidecar_runtime::events::EventType;
use tracing::{info, warn};

use crate::annotations::PV_FINALIZER;
use crate::controller::{Context, event, read_secret};
use crate::delete::{Attachment, VolumeAction, decide_volume};
use crate::error::Error;
use crate::secrets::SecretRef;

/// `finalizers` without ours, order kept.
fn without_ours(finalizers: &[String]) -> Vec<String> {
    finalizers
        .iter()
        .filter(|f| *f != PV_FINALIZER)
        .cloned()
        .collect()
}

async fn delete_failed_event(ctx: &Context, pv: &PersistentVolume, e: &Error) {
    event(
        ctx,
        &pv.object_ref(&()),
        EventType::Warning,
        "VolumeFailedDelete",
        &e.to_string(),
    )
    .await;
}

pub(crate) fn volume_key(pv: &PersistentVolume) -> String {
    format!("pv/{}", pv.name_any())
}

/// One PV reconcile: decide, then act.
pub(crate) async fn reconcile_volume(
    pv: Arc<PersistentVolume>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _work = ctx.volumes_queue.start(pv.as_ref());
    let uid = pv.uid().unwrap_or_default();
    if ctx.own_writes.is_finished(&uid) {
        // This process deleted the volume, the PV and its finalizer: what
        // the cache still shows (another controller's last edit before the
        // PV goes) needs nothing from us.
        return Ok(Action::await_change());
    }
    if ctx.own_writes.is_object_stale(pv.as_ref()) {
        // Our own finalizer edit or delete is on its way through the watch.
        return Ok(Action::await_change());
    }
    ctx.own_writes.seen(&pv.name_any());
    let class_name = pv
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let class = ctx.classes.get(&ObjectRef::new(&class_name));
    let attachment = ctx.attachments.as_ref().and_then(|store| {
        let name = pv.name_any();
        store.state().into_iter().find_map(|va| {
            (va.spec.source.persistent_volume_name.as_deref() == Some(name.as_str())).then(|| {
                Attachment {
                    name: va.name_any(),
                    node: va.spec.node_name.clone(),
                }
            })
        })
    });
    let decided = decide_volume(&pv, class.as_deref(), &ctx.cfg.driver_name, attachment);
    // Upstream's Delete checks the driver's capabilities before anything
    // else a deletion needs.
    let decided = match decided {
        Ok(VolumeAction::Delete { .. } | VolumeAction::WaitForDetach(_)) => {
            crate::provision::create_delete_capability(&ctx.cfg).and(decided)
        }
        other => other,
    };
    let action = match decided {
        Ok(a) => a,
        Err(e) => {
            delete_failed_event(&ctx, &pv, &e).await;
            return Err(e);
        }
    };
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    match action {
        VolumeAction::Nothing => {}
        VolumeAction::AddFinalizer => update_finalizers(&ctx, &api, &pv, add_ours).await?,
        VolumeAction::RemoveFinalizer => {
            update_finalizers(&ctx, &api, &pv, remove_ours).await?;
        }
        VolumeAction::WaitForDetach(a) => {
            let first = ctx
                .detach_waits
                .lock()
                .map(|mut w| w.insert(pv.name_any()))
                .unwrap_or(true);
            if first {
                let message = format!(
                    "Waiting for VolumeAttachment {} to be deleted (volume still attached to node {}) before deleting the volume",
                    a.name, a.node
                );
                event(
                    &ctx,
                    &pv.object_ref(&()),
                    EventType::Normal,
                    "WaitingForDetach",
                    &message,
                )
                .await;
                info!(pv = %pv.name_any(), attachment = %a.name, node = %a.node, "deletion waits for detach");
            }
            // The VolumeAttachment's deletion re-triggers this PV; the
            // requeue is only a safety net.
            return Ok(ctx.volumes_queue.requeue(pv.as_ref(), ctx.slow_retry));
        }
        VolumeAction::Delete { .. }
            if ctx.node.as_ref().is_some_and(|n| {
                // An in-tree PV's node affinity as its CSI translation has it.
                let view = crate::migration::csi_view(&pv).map(|(v, _)| v);
                !crate::node_deployment::volume_is_local(view.as_deref().unwrap_or(&pv), &n.segment)
            }) =>
        {
            // Node mode: another node's instance owns this volume.
        }
        VolumeAction::Delete {
            volume_id,
            secret,
            migrated,
        } => {
            if let Ok(mut w) = ctx.detach_waits.lock() {
                w.remove(&pv.name_any());
            }
            let started = Instant::now();
            let csi = ctx.csi.for_migrated(migrated);
            if let Err(e) = delete_volume(&pv, volume_id, secret, &csi, &ctx).await {
                ctx.metrics.delete_failed(&class_name);
                delete_failed_event(&ctx, &pv, &e).await;
                return Err(e);
            }
            // As upstream, a failure to remove the PV object is retried
            // without an event: the volume itself is gone.
            if let Err(e) = remove_pv(&pv, &api, &ctx).await {
                ctx.metrics.delete_failed(&class_name);
                return Err(e);
            }
            ctx.own_writes.finished(&uid);
            ctx.metrics.deleted(&class_name, started.elapsed());
            if let Some(t) = &ctx.capacity_trigger {
                t.notify_one();
            }
            info!(pv = %pv.name_any(), took = ?started.elapsed(), "deleted volume");
        }
    }
    ctx.backoff.reset(&volume_key(&pv));
    Ok(Action::await_change())
}

/// DeleteVolume through `csi` (marked migrated for a translated in-tree PV).
async fn delete_volume(
    pv: &PersistentVolume,
    volume_id: String,
    secret: Option<SecretRef>,
    csi: &csi_client::Connection,
    ctx: &Context,
) -> Result<(), Error> {
    let mut req = DeleteVolumeRequest {
        volume_id,
        ..Default::default()
    };
    if let Some(s) = &secret {
        // As upstream: a missing deletion secret is logged and DeleteVolume
        // goes ahead without it, so a deleted Secret cannot pin the volume.
        match read_secret(&ctx.client, s).await {
            Ok(data) => req.secrets = data.into_iter().collect(),
            Err(e) => warn!(pv = %pv.name_any(), error = %e, "deleting without secrets"),
        }
    }
    csi.delete_volume(req).await.map_err(|status| Error::Csi {
        rpc: "DeleteVolume",
        status,
    })?;
    Ok(())
}

/// After DeleteVolume: the PV object, then our finalizer.
async fn remove_pv(
    pv: &PersistentVolume,
    api: &Api<PersistentVolume>,
    ctx: &Context,
) -> Result<(), Error> {
    let name = pv.name_any();
    let remaining = match api.delete(&name, &DeleteParams::default()).await {
        Ok(either) => either.left(),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(Error::kube(format!("delete PersistentVolume {name}"), e)),
    };
    let uid = pv.uid().unwrap_or_default();
    ctx.own_writes
        .replaced(&uid, pv.resource_version().as_deref());
    // A version that reached the cache while the delete waited for its
    // token (a status update, say) is older than the delete if it is not
    // marked deleted: a deletionTimestamp is never taken back.
    if let Some(cached) = ctx.volumes.get(&ObjectRef::new(&name))
        && cached.metadata.deletion_timestamp.is_none()
    {
        ctx.own_writes
            .replaced(&uid, cached.resource_version().as_deref());
    }
    // The PV lingers while it holds our finalizer: drop it now.
    if let Some(current) = remaining {
        update_finalizers(ctx, api, &current, remove_ours).await?;
    }
    Ok(())
}

/// How often a finalizer edit is re-read and re-applied after a conflict
/// before the reconcile gives up and is retried with backoff.
const CONFLICT_RETRIES: usize = 5;

/// Changes the PV's finalizers with `change` (None = nothing to do).
///
/// Removing ours is a JSON patch that tests the exact list entry and removes
/// it: it fails if anyone changed that entry, and is unaffected by edits
/// elsewhere in the list (the pv-protection controller drops its own
/// finalizer at the same moment, which made resourceVersion-checked patches
/// conflict every time). Other changes are merge patches under a
/// resourceVersion precondition. Either way a conflict re-reads the PV and
/// applies `change` to the fresh list, so a finalizer another controller
/// just removed is never written back.
async fn update_finalizers(
    ctx: &Context,
    api: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    change: impl Fn(&[String]) -> Option<Vec<String>>,
) -> Result<(), Error> {
    let name = pv.name_any();
    let mut current = pv.clone();
    for _ in 0..CONFLICT_RETRIES {
        let Some(finalizers) = change(current.finalizers()) else {
            return Ok(());
        };
        let patch = finalizer_patch(
            current.finalizers(),
            &finalizers,
            current.resource_version(),
        );
        match api.patch(&name, &PatchParams::default(), &patch).await {
            Ok(_) => {
                let uid = pv.uid().unwrap_or_default();
                // Both the version we decided from and any re-read one.
                ctx.own_writes
                    .replaced(&uid, pv.resource_version().as_deref());
                ctx.own_writes
                    .replaced(&uid, current.resource_version().as_deref());
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            // 409: stale resourceVersion; 422: a JSON patch `test` failed.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 => {
                match api.get_opt(&name).await {
                    Ok(Some(fresh)) => current = fresh,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(Error::kube(format!("get PersistentVolume {name}"), e)),
                }
            }
            Err(e) => {
                return Err(Error::kube(
                    format!("patch finalizers of PersistentVolume {name}"),
                    e,
                ));
            }
        }
    }
    Err(Error::Missing(format!(
        "PersistentVolume {name} kept changing while its finalizers were edited; retrying"
    )))
}

/// The patch taking `old` to `new`: a single removal becomes a JSON patch
/// `test` + `remove` of that entry; anything else a merge patch with the
/// resourceVersion.
fn finalizer_patch(
    old: &[String],
    new: &[String],
    resource_version: Option<String>,
) -> Patch<serde_json::Value> {
    if new.len() + 1 == old.len()
        && let Some(i) = old
            .iter()
            .zip(new.iter().map(Some).chain([None]))
            .position(|(o, n)| Some(o) != n)
    {
        let path = format!("/metadata/finalizers/{i}");
        let ops = serde_json::json!([
            { "op": "test", "path": path, "value": old[i] },
            { "op": "remove", "path": path },
        ]);
        if let Ok(p) = serde_json::from_value(ops) {
            return Patch::Json(p);
        }
    }
    Patch::Merge(serde_json::json!({
        "metadata": { "resourceVersion": resource_version, "finalizers": new }
    }))
}

fn add_ours(f: &[String]) -> Option<Vec<String>> {
    (!f.iter().any(|x| x == PV_FINALIZER)).then(|| {
        let mut v = f.to_vec();
        v.push(PV_FINALIZER.to_string());
        v
    })
}

fn remove_ours(f: &[String]) -> Option<Vec<String>> {
    f.iter().any(|x| x == PV_FINALIZER).then(|| without_ours(f))
}

/// Requeue delay after a failed PV reconcile (per-PV exponential backoff).
pub(crate) fn volume_error_policy(
    pv: Arc<PersistentVolume>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    // A final error cannot go away before the object changes (which the
    // watch reports at once), so it is retried at the slow end of the
    // ladder rather than climbing it from 1 s, each step costing reads and
    // events.
    let delay = if err.is_final() {
        ctx.slow_retry
    } else {
        ctx.backoff.next_delay(&volume_key(&pv))
    };
    ctx.volumes_queue
        .retry_after_error(pv.as_ref(), delay, false, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removing_one_entry_is_a_tested_json_patch() {
        let old = f(&[PV_FINALIZER, "kubernetes.io/pv-protection"]);
        let patch = finalizer_patch(&old, &remove_ours(&old).unwrap(), Some("7".into()));
        let Patch::Json(p) = patch else {
            panic!("expected a JSON patch")
        };
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v[0]["op"], "test");
        assert_eq!(v[0]["path"], "/metadata/finalizers/0");
        assert_eq!(v[0]["value"], PV_FINALIZER);
        assert_eq!(v[1]["op"], "remove");
        // Ours last in the list.
        let old = f(&["a", PV_FINALIZER]);
        let Patch::Json(p) = finalizer_patch(&old, &remove_ours(&old).unwrap(), None) else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(p).unwrap()[0]["path"],
            "/metadata/finalizers/1"
        );
    }

    #[test]
    fn adding_is_a_merge_patch_with_the_resource_version() {
        let old = f(&["kubernetes.io/pv-protection"]);
        let Patch::Merge(v) = finalizer_patch(&old, &add_ours(&old).unwrap(), Some("9".into()))
        else {
            panic!("expected a merge patch")
        };
        assert_eq!(v["metadata"]["resourceVersion"], "9");
        assert_eq!(v["metadata"]["finalizers"][1], PV_FINALIZER);
        assert!(add_ours(&add_ours(&old).unwrap()).is_none());
        assert!(remove_ours(&old).is_none());
    }
}
