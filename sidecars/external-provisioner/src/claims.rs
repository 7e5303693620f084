//! The claim controller's I/O: PVC → (intent) → CreateVolume → PV →
//! (release), or, for a claim deleted mid-provisioning, CreateVolume →
//! DeleteVolume → (release). The intent is an entry in the creation-intent
//! record ([`crate::intents`]); claims from before it carry a finalizer
//! instead, which is still honoured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use csi_client::csi::v1::{
    CreateVolumeRequest, CreateVolumeResponse, DeleteVolumeRequest, GetCapacityRequest, Topology,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use sidecar_runtime::events::EventType;
use sidecar_runtime::finalizers;
pub(crate) use sidecar_runtime::write::Urgency;
use tracing::{debug, info, warn};

use crate::annotations::{CLONE_FINALIZER, CREATE_INTENT_FINALIZER, SELECTED_NODE};
use crate::classify::{
    CreateOutcome, classify_create_error, infeasible_message, proves_nothing_created,
};
use crate::controller::{Context, event};
use crate::datasource::{DataSource, clone_in_progress};
use crate::error::Error;
use crate::node_deployment::{NodeCheck, NodeInfo, check_node, claim_delay, selected_node};
use crate::prepare::{Prepared, Purpose, prepare_create};
use crate::provision::{ClaimDecision, ProvisionPlan, Skip, decide_claim, has_create_intent};
use crate::pv::{ResponseCheck, check_response};
use crate::snapshot::{VolumeSnapshot, remove_source_finalizer};

pub(crate) fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!("pvc/{}", pvc.uid().unwrap_or_default())
}

fn claim_name(pvc: &PersistentVolumeClaim) -> String {
    format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any())
}

fn class_of(pvc: &PersistentVolumeClaim) -> String {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// One claim reconcile: decide, then act.
pub(crate) async fn reconcile_claim(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _work = ctx.claims_queue.start(pvc.as_ref());
    let key = claim_key(&pvc);
    if ctx.own_writes.is_object_stale(pvc.as_ref()) {
        // Our own write is on its way through the watch and will trigger
        // the next reconcile; acting on this version would repeat work.
        return Ok(Action::await_change());
    }
    if pvc.metadata.deletion_timestamp.is_some()
        && pvc.finalizers().iter().any(|f| f == CLONE_FINALIZER)
    {
        let claims = ctx.claims.state();
        if clone_in_progress(&pvc, claims.iter().map(|c| c.as_ref())) {
            // Upstream re-checks with backoff until the clones are done.
            return Ok(ctx
                .claims_queue
                .requeue(pvc.as_ref(), ctx.backoff.next_delay(&key)));
        }
        update_claim(
            &ctx,
            &pvc,
            "release clone protection of",
            Urgency::Now,
            |c| finalizers::remove(c, CLONE_FINALIZER),
        )
        .await?;
        ctx.backoff.reset(&key);
        return Ok(Action::await_change());
    }
    let class_name = class_of(&pvc);
    let class = ctx.classes.get(&ObjectRef::new(&class_name));
    let uid = pvc.uid().unwrap_or_default();
    let logged = ctx.intents.is_recorded(&uid);
    let decision = decide(&ctx, &pvc, class.as_deref(), logged);
    let decision = match decision {
        Ok(d) => d,
        Err(e) => {
            decide_failed(&ctx, &pvc, &class_name, &e).await;
            return Err(e);
        }
    };
    let action = match decision {
        ClaimDecision::Skip(Skip::ExternalPopulator) => {
            // Upstream's lib sends its Normal event before Provision(),
            // which then finds the populator's kind.
            provisioning_event(&ctx, &pvc).await;
            event(
                &ctx,
                &pvc.object_ref(&()),
                EventType::Normal,
                "Provisioning",
                "Assuming an external populator will provision the volume",
            )
            .await;
            Action::await_change()
        }
        ClaimDecision::Skip(why) => {
            debug!(claim = %claim_name(&pvc), ?why, "not provisioning");
            Action::await_change()
        }
        ClaimDecision::ReleaseIntent => {
            let mine = ctx
                .node
                .as_ref()
                .is_none_or(|n| selected_node(&pvc) == Some(n.name.as_str()));
            if mine && logged {
                ctx.intents.clear(&uid);
            }
            if mine && has_create_intent(&pvc) {
                // A claim being deleted waits for this write; a Bound one
                // does not, so under a throttle with a backlog its release
                // yields to provisioning, without holding a worker.
                let urgency = if pvc.metadata.deletion_timestamp.is_some() {
                    Urgency::Now
                } else if ctx.prepaid.budget.try_acquire_spare() {
                    Urgency::Paid
                } else {
                    return Ok(ctx.claims_queue.requeue(pvc.as_ref(), SPARE_TOKEN_RETRY));
                };
                release_intent(&ctx, &pvc, urgency).await?;
            }
            Action::await_change()
        }
        ClaimDecision::Undo(plan) => {
            // Node mode: only the node whose driver holds the volume undoes it.
            let mine = ctx
                .node
                .as_ref()
                .is_none_or(|n| selected_node(&pvc) == Some(n.name.as_str()));
            if mine {
                let Some(_busy) = ctx.intents.try_begin(&uid) else {
                    return Ok(ctx.claims_queue.requeue(pvc.as_ref(), BUSY_RETRY));
                };
                undo(&ctx, &pvc, &plan).await?;
            }
            Action::await_change()
        }
        ClaimDecision::Provision {
            plan,
            record_intent,
        } => {
            // Node mode: every attempt, first or resumed, belongs to one
            // node only; another node's instance must not touch it.
            if let (Some(node), Some(class)) = (&ctx.node, class.as_deref()) {
                match check_node(&pvc, class, node, ctx.node_immediate_binding) {
                    NodeCheck::Provision => {}
                    NodeCheck::Ignore => return Ok(Action::await_change()),
                    NodeCheck::Claim => return become_owner(&ctx, &pvc, node, &plan).await,
                }
            }
            let Some(_busy) = ctx.intents.try_begin(&uid) else {
                return Ok(ctx.claims_queue.requeue(pvc.as_ref(), BUSY_RETRY));
            };
            return provision_claim(&ctx, &pvc, &plan, record_intent).await;
        }
    };
    ctx.backoff.reset(&key);
    Ok(action)
}

/// [`decide_claim`] with what the caches and our own writes say about the
/// planned PV.
fn decide(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    class: Option<&k8s_openapi::api::storage::v1::StorageClass>,
    logged: bool,
) -> Result<ClaimDecision, Error> {
    let pv_exists = |name: &str| {
        ctx.own_writes
            .exists(name, ctx.volumes.get(&ObjectRef::new(name)).is_some())
    };
    decide_claim(pvc, class, pv_exists, logged, &ctx.cfg)
}

/// Events for a claim that could not even be planned (class parameters,
/// templates, data source kind, …). As upstream, which sends its Normal
/// `Provisioning` event before every attempt and the Warning with the error
/// after it; a missing StorageClass is only retried, as upstream's
/// `shouldProvision` does. A deleted claim still carrying the creation
/// intent is being cleaned up, not provisioned.
async fn decide_failed(ctx: &Context, pvc: &PersistentVolumeClaim, class: &str, e: &Error) {
    let uid = pvc.uid().unwrap_or_default();
    if pvc.metadata.deletion_timestamp.is_some()
        && (has_create_intent(pvc) || ctx.intents.is_recorded(&uid))
    {
        event(
            ctx,
            &pvc.object_ref(&()),
            EventType::Warning,
            "ProvisioningCleanupFailed",
            &cleanup_failed_message(&volume_name_of(pvc, ctx), &record_of(ctx, pvc), e),
        )
        .await;
        return;
    }
    if matches!(e, Error::Missing(_)) {
        return;
    }
    provisioning_event(ctx, pvc).await;
    ctx.metrics.provision_failed(class, "");
    event(
        ctx,
        &pvc.object_ref(&()),
        EventType::Warning,
        "ProvisioningFailed",
        &e.to_string(),
    )
    .await;
}

/// The volume name a claim's CreateVolume uses, for messages.
fn volume_name_of(pvc: &PersistentVolumeClaim, ctx: &Context) -> String {
    crate::names::volume_name(
        &ctx.cfg.volume_name_prefix,
        pvc.uid().as_deref().unwrap_or_default(),
        ctx.cfg.volume_name_uuid_length,
    )
    .unwrap_or_else(|_| {
        format!(
            "{}-{}",
            ctx.cfg.volume_name_prefix,
            pvc.uid().unwrap_or_default()
        )
    })
}

/// Upstream's Normal event before every provisioning attempt.
async fn provisioning_event(ctx: &Context, pvc: &PersistentVolumeClaim) {
    event(
        ctx,
        &pvc.object_ref(&()),
        EventType::Normal,
        "Provisioning",
        &format!(
            "External provisioner is provisioning volume for claim \"{}\"",
            claim_name(pvc)
        ),
    )
    .await;
}

async fn provision_claim(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
    record_intent: bool,
) -> Result<Action, Error> {
    let class_name = class_of(pvc);
    let source_label = plan.data_source.metric_label().to_string();
    let started = Instant::now();
    provisioning_event(ctx, pvc).await;
    // Everything CreateVolume needs is read before the creation intent is
    // written: a claim whose reads fail (a missing or forbidden Secret, a
    // VolumeAttributesClass, a data source, topology) never carries the
    // intent, so its deletion is never held up by a CreateVolume that was
    // never sent.
    let request = match prepare_create(ctx, pvc, plan, Purpose::Provision).await {
        Ok(Prepared::Ready(request)) => request,
        Ok(Prepared::Reschedule(e)) => {
            report_failure(ctx, pvc, &class_name, &source_label, &e.to_string()).await;
            reschedule(ctx, pvc).await?;
            return Ok(Action::await_change());
        }
        Err(e) => {
            report_failure(ctx, pvc, &class_name, &source_label, &e.to_string()).await;
            return Err(e);
        }
    };
    let pvc = if !record_intent {
        pvc.clone()
    } else if ctx.intents.forbidden() {
        add_intent(ctx, pvc).await?
    } else {
        match ctx.intents.record(pvc).await {
            Ok(()) => pvc.clone(),
            Err(_) if ctx.intents.forbidden() => add_intent(ctx, pvc).await?,
            Err(e) => return Err(e),
        }
    };
    let result = create_and_save(ctx, &pvc, plan, *request).await;
    match result {
        Ok(()) => {
            ctx.metrics
                .provisioned(&class_name, &source_label, started.elapsed());
            event(
                ctx,
                &pvc.object_ref(&()),
                EventType::Normal,
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {}", plan.pv_name),
            )
            .await;
            info!(claim = %claim_name(&pvc), pv = %plan.pv_name, took = ?started.elapsed(), "provisioned volume");
            ctx.topology_cache.forget(&pvc.uid().unwrap_or_default());
            release_snapshot(ctx, &pvc, plan).await;
            if let Some(t) = &ctx.capacity_trigger {
                t.notify_one();
            }
            // The PV now records the volume. The log entry goes in a later
            // batch; an older claim finalizer is released by the reconcile
            // the binding triggers (ReleaseIntent), not here: the binder
            // writes the claim at this very moment, and racing it costs a
            // conflict and a re-read per volume.
            ctx.intents.clear(&pvc.uid().unwrap_or_default());
            ctx.backoff.reset(&claim_key(&pvc));
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.metrics.provision_failed(&class_name, &source_label);
            let outcome = match &e {
                Error::Csi { status, .. } => Some(classify_create_error(
                    status.code(),
                    plan.topology,
                    has_selected_node(&pvc),
                )),
                _ => None,
            };
            let message = if outcome == Some(CreateOutcome::Infeasible) {
                infeasible_message(&e.to_string())
            } else {
                e.to_string()
            };
            // Upstream retries a failed PV save in the background, silently.
            if !matches!(e, Error::SaveVolume { .. }) {
                event(
                    ctx,
                    &pvc.object_ref(&()),
                    EventType::Warning,
                    "ProvisioningFailed",
                    &message,
                )
                .await;
            }
            let uid = pvc.uid().unwrap_or_default();
            match outcome {
                Some(CreateOutcome::Infeasible) => {
                    // Upstream's slow retry: no CreateVolume before --retry-interval-max.
                    warn!(claim = %claim_name(&pvc), error = %e, retry_in = ?ctx.slow_retry, "infeasible, retrying slowly");
                    return Ok(ctx.claims_queue.requeue(&pvc, ctx.slow_retry));
                }
                Some(CreateOutcome::Reschedule) => {
                    // The node has no room: let the scheduler choose again.
                    ctx.topology_cache.forget(&uid);
                    reschedule(ctx, &pvc).await?;
                    return Ok(Action::await_change());
                }
                Some(CreateOutcome::Final) if plan.topology => ctx.topology_cache.forget(&uid),
                _ => {}
            }
            Err(e)
        }
    }
}

/// Node mode: wait a jittered, growing delay (so the instances of all
/// nodes do not write at once), give up if another node took the claim
/// meanwhile, then take it by setting `volume.kubernetes.io/selected-node`
/// to this node with an Update. A conflict means someone else wrote first:
/// the next reconcile sees who.
async fn become_owner(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    node: &NodeInfo,
    plan: &ProvisionPlan,
) -> Result<Action, Error> {
    let uid = pvc.uid().unwrap_or_default();
    let attempt = {
        let mut attempts = ctx
            .node_claim_attempts
            .lock()
            .map_err(|_| Error::Missing("claim attempt table poisoned".into()))?;
        let a = attempts.entry(uid.clone()).or_insert(0);
        *a += 1;
        *a - 1
    };
    let (base, max) = ctx.node_claim_delays;
    let delay = claim_delay(attempt, base, max, rand::random::<f64>());
    let step = (base / 100).max(Duration::from_millis(10));
    let ns = pvc.namespace().unwrap_or_default();
    let key = ObjectRef::new(&pvc.name_any()).within(&ns);
    let until = Instant::now() + delay;
    while Instant::now() < until {
        tokio::time::sleep(step.min(until.saturating_duration_since(Instant::now()))).await;
        if ctx
            .claims
            .get(&key)
            .is_some_and(|c| selected_node(&c).is_some())
        {
            return Ok(Action::await_change());
        }
    }
    let current = ctx
        .claims
        .get(&key)
        .map(|c| (*c).clone())
        .unwrap_or_else(|| pvc.clone());
    if selected_node(&current).is_some() {
        return Ok(Action::await_change());
    }
    // As upstream: only claim what this node has room for; a failing
    // GetCapacity does not stop the claim.
    let request = GetCapacityRequest {
        parameters: plan.request.parameters.clone(),
        volume_capabilities: plan.request.volume_capabilities.clone(),
        accessible_topology: (!node.segment.is_empty()).then(|| Topology {
            segments: node.segment.clone().into_iter().collect(),
        }),
    };
    if let Ok(resp) = ctx.csi.get_capacity(request).await
        && resp.available_capacity < plan.requested_bytes
    {
        debug!(claim = %claim_name(pvc), available = resp.available_capacity, "not enough capacity on this node to claim it");
        return Ok(ctx.claims_queue.requeue(pvc, max));
    }
    // Re-checked on every conflict: another node may have claimed it.
    let claimed = update_claim(ctx, &current, "claim for this node", Urgency::Now, |c| {
        if selected_node(c).is_some() {
            return false;
        }
        c.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SELECTED_NODE.to_string(), node.name.clone());
        true
    })
    .await?;
    if claimed.is_some() {
        info!(claim = %claim_name(pvc), node = %node.name, "claimed for this node");
    }
    Ok(Action::await_change())
}

/// Upstream's Reschedule: drop `volume.kubernetes.io/selected-node` (an
/// Update, as upstream's RBAC allows) so the scheduler picks another node.
async fn reschedule(ctx: &Context, pvc: &PersistentVolumeClaim) -> Result<(), Error> {
    update_claim(ctx, pvc, "remove selected-node from", Urgency::Now, |c| {
        c.metadata
            .annotations
            .as_mut()
            .is_some_and(|a| a.remove(SELECTED_NODE).is_some())
    })
    .await
    .map(|_| ())
}

fn has_selected_node(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(SELECTED_NODE).is_some_and(|n| !n.is_empty()))
}

/// A failed attempt: the metric and upstream's Warning event.
async fn report_failure(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    class: &str,
    source: &str,
    message: &str,
) {
    ctx.metrics.provision_failed(class, source);
    event(
        ctx,
        &pvc.object_ref(&()),
        EventType::Warning,
        "ProvisioningFailed",
        message,
    )
    .await;
}

/// After a successful restore the snapshot needs no protection from us;
/// failures are only logged, as upstream (the orphan sweep retries).
async fn release_snapshot(ctx: &Context, pvc: &PersistentVolumeClaim, plan: &ProvisionPlan) {
    let DataSource::Snapshot(name) = &plan.data_source else {
        return;
    };
    let ns = pvc.namespace().unwrap_or_default();
    let snapshots = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &ns);
    let Ok(Some(mut snapshot)) = snapshots.get_opt(name).await else {
        return;
    };
    if remove_source_finalizer(&mut snapshot)
        && let Err(e) = snapshots
            .replace(name, &PostParams::default(), &snapshot)
            .await
    {
        warn!(snapshot = %format!("{ns}/{name}"), error = %e, "could not release the restore's protection; the orphan sweep will");
    }
}

/// Sends CreateVolume (through the migrated handle for translated classes).
async fn create_volume(
    ctx: &Context,
    plan: &ProvisionPlan,
    request: CreateVolumeRequest,
) -> Result<CreateVolumeResponse, Error> {
    ctx.csi
        .for_migrated(plan.migrated)
        .create_volume(request)
        .await
        .map_err(|status| Error::Csi {
            rpc: "CreateVolume",
            status,
        })
}

/// Sends DeleteVolume with the provisioner secret's data, as read for the
/// CreateVolume of the same attempt.
async fn delete_volume(
    ctx: &Context,
    plan: &ProvisionPlan,
    volume_id: String,
    secrets: HashMap<String, String>,
) -> Result<(), Error> {
    let req = DeleteVolumeRequest { volume_id, secrets };
    ctx.csi
        .for_migrated(plan.migrated)
        .delete_volume(req)
        .await
        .map(|_| ())
        .map_err(|status| Error::Csi {
            rpc: "DeleteVolume",
            status,
        })
}

async fn create_and_save(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
    request: CreateVolumeRequest,
) -> Result<(), Error> {
    let secrets = request.secrets.clone();
    let response = create_volume(ctx, plan, request).await?;
    match check_response(plan, pvc, &ctx.cfg.driver_name, &ctx.identity, &response)? {
        ResponseCheck::Save(pv) => {
            let api = Api::<PersistentVolume>::all(ctx.client.clone());
            let saved = match api.create(&PostParams::default(), &pv).await {
                Ok(_) => Ok(()),
                // Saved by an earlier attempt whose answer was lost.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(Error::SaveVolume {
                    pv: plan.pv_name.clone(),
                    source: e,
                }),
            };
            if saved.is_ok() {
                ctx.own_writes.created(&plan.pv_name);
            }
            saved
        }
        ResponseCheck::TooSmall { volume_id, error } => {
            if let Err(e) = delete_volume(ctx, plan, volume_id, secrets).await {
                warn!(claim = %claim_name(pvc), error = %e, "cleanup of undersized volume failed; will retry");
                return Err(crate::pv::cleanup_failed(error, &plan.pv_name, &e));
            }
            Err(error)
        }
        ResponseCheck::Untranslatable { volume_id, error } => {
            // As upstream: the volume cannot be recorded in the in-tree
            // form, so it is deleted again and the attempt fails.
            warn!(claim = %claim_name(pvc), volume = %volume_id, error = %error, "cannot translate the provisioned CSI volume to in-tree; deleting it");
            if let Err(e) = delete_volume(ctx, plan, volume_id, secrets).await {
                warn!(claim = %claim_name(pvc), error = %e, "deleting the untranslatable volume failed; will retry");
            }
            Err(error)
        }
    }
}

/// The claim was deleted while its volume creation was recorded but no PV
/// saved: make sure no volume is left behind.
///
/// The intent is written only when CreateVolume is about to be sent (see
/// [`crate::prepare`]), so CreateVolume may have run: it is repeated
/// (idempotent by name) to learn the volume's ID, and the volume deleted.
/// When that cannot be done (the secret the driver needs is gone, say) the
/// claim stays, with a Warning event saying why and how to resolve it.
async fn undo(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
) -> Result<(), Error> {
    let request = match prepare_create(ctx, pvc, plan, Purpose::Undo).await {
        Ok(Prepared::Ready(request)) => *request,
        // Undo tolerates topology failures, so this does not happen; if it
        // did, the plain request still names the volume.
        Ok(Prepared::Reschedule(_)) => plan.request.clone(),
        Err(e) => {
            cleanup_failed(ctx, pvc, plan, &e).await;
            return Err(e);
        }
    };
    let secrets = request.secrets.clone();
    match create_volume(ctx, plan, request).await {
        Ok(resp) => {
            let volume_id = resp.volume.map(|v| v.volume_id).unwrap_or_default();
            if !volume_id.is_empty() {
                if let Err(e) = delete_volume(ctx, plan, volume_id.clone(), secrets).await {
                    cleanup_failed(ctx, pvc, plan, &e).await;
                    return Err(e);
                }
                info!(claim = %claim_name(pvc), volume = %volume_id, "claim deleted during provisioning: deleted its volume");
            }
        }
        Err(Error::Csi { status, .. }) if proves_nothing_created(status.code()) => {
            info!(claim = %claim_name(pvc), code = ?status.code(), "claim deleted during provisioning: the driver has no volume for it");
        }
        Err(e) => return Err(e),
    }
    ctx.intents.clear(&pvc.uid().unwrap_or_default());
    if has_create_intent(pvc) {
        release_intent(ctx, pvc, Urgency::Now).await?;
    }
    Ok(())
}

/// A recorded creation whose claim is gone (deleted while the process was
/// down, or while CreateVolume was failing): decided on the claim as
/// recorded, marked deleted, so it ends like any claim deleted
/// mid-provisioning: the entry is dropped if a PV records the volume, else
/// CreateVolume is repeated to find the volume and DeleteVolume removes it.
/// Skipped while a reconcile of the same claim is running.
///
/// Errors: as [`undo`]; the entry stays and the next sweep retries.
pub(crate) async fn undo_recorded(
    ctx: &Context,
    recorded: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let uid = recorded.uid().unwrap_or_default();
    let Some(_busy) = ctx.intents.try_begin(&uid) else {
        return Ok(());
    };
    let mut pvc = recorded.clone();
    pvc.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let class = ctx.classes.get(&ObjectRef::new(&class_of(&pvc)));
    let decision = decide(ctx, &pvc, class.as_deref(), true);
    let decision = match decision {
        Ok(d) => d,
        Err(e) => {
            decide_failed(ctx, &pvc, &class_of(&pvc), &e).await;
            return Err(e);
        }
    };
    match decision {
        ClaimDecision::Undo(plan) => undo(ctx, &pvc, &plan).await,
        ClaimDecision::ReleaseIntent => {
            ctx.intents.clear(&uid);
            Ok(())
        }
        other => {
            // A deleted claim with an entry always ends in one of the two.
            warn!(claim = %claim_name(&pvc), decision = ?other, "unexpected decision for a recorded creation whose claim is gone");
            Ok(())
        }
    }
}

/// Where a claim's intent is recorded, for messages: the log entry's Lease
/// and key, or the older claim finalizer.
fn record_of(ctx: &Context, pvc: &PersistentVolumeClaim) -> String {
    if has_create_intent(pvc) {
        format!(
            "The claim keeps finalizer {CREATE_INTENT_FINALIZER} until that succeeds (if the driver never created the volume, removing the finalizer by hand is safe)"
        )
    } else {
        let uid = pvc.uid().unwrap_or_default();
        format!(
            "The creation stays recorded in lease {} (annotation {}) and is retried until that succeeds (if the driver never created the volume, removing that annotation by hand is safe)",
            ctx.intents.lease_of(&uid),
            crate::intents::entry_key(&uid)
        )
    }
}

/// Says on the claim why its deletion waits: the volume its provisioning
/// may have created cannot be looked up or deleted yet. The reason is the
/// one sig-storage-lib-external-provisioner uses for a volume it could not
/// clean up after a failed provisioning.
async fn cleanup_failed(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
    e: &Error,
) {
    event(
        ctx,
        &pvc.object_ref(&()),
        EventType::Warning,
        "ProvisioningCleanupFailed",
        &cleanup_failed_message(&plan.request.name, &record_of(ctx, pvc), e),
    )
    .await;
}

/// The text of [`cleanup_failed`]'s event; `record` says where the intent
/// stays ([`record_of`]).
fn cleanup_failed_message(volume: &str, record: &str, e: &Error) -> String {
    format!(
        "the claim was deleted while volume {volume} was being created; it cannot be checked for and deleted yet: {e}. {record}"
    )
}

/// Records the intent with the per-claim finalizer [`CREATE_INTENT_FINALIZER`]
/// (see [`update_claim`]), when RBAC refuses the Leases, and returns the
/// claim as written.
async fn add_intent(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, Error> {
    let written = update_claim(ctx, pvc, "record volume creation on", Urgency::Start, |c| {
        finalizers::add(c, CREATE_INTENT_FINALIZER)
    })
    .await?;
    Ok(written.unwrap_or_else(|| pvc.clone()))
}

async fn release_intent(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    urgency: Urgency,
) -> Result<(), Error> {
    update_claim(
        ctx,
        pvc,
        "release volume creation record on",
        urgency,
        |c| finalizers::remove(c, CREATE_INTENT_FINALIZER),
    )
    .await
    .map(|_| ())
}

/// Applies `change` to the claim and writes it with an Update built from
/// the freshest cached version after the QPS token is taken (see
/// [`sidecar_runtime::write`]): upstream's RBAC grants `update` on claims,
/// not `patch`, and nobody else's edit is ever overwritten. A conflict is
/// [`Error::Conflict`], retried from the version the watch brings.
///
/// Returns the written claim, `None` when nothing needed writing or the
/// claim is gone.
pub(crate) async fn update_claim(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    what: &str,
    urgency: Urgency,
    change: impl Fn(&mut PersistentVolumeClaim) -> bool,
) -> Result<Option<PersistentVolumeClaim>, Error> {
    ctx.claim_writer
        .replace(pvc, &ctx.own_writes, what, urgency, change)
        .await
        .map_err(Error::from)
}

/// How soon a claim whose creation is being worked on elsewhere (the sweep
/// of recorded creations) is looked at again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// How soon a deferred intent release looks for a spare QPS token again.
/// Long, because nobody waits for it (a claim's deletion releases at once)
/// and every look is a reconcile: at 2 s, 1,000 Bound claims waiting out a
/// throttle backlog cost more CPU than provisioning them.
const SPARE_TOKEN_RETRY: Duration = Duration::from_secs(30);

/// Requeue delay after a failed claim reconcile: per-claim exponential
/// backoff from `--retry-interval-start` to `--retry-interval-max`.
pub(crate) fn claim_error_policy(
    pvc: Arc<PersistentVolumeClaim>,
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
        ctx.backoff.next_delay(&claim_key(&pvc))
    };
    // A conflict is routine: the watch brings the new version sooner than
    // the delay.
    let routine = matches!(err, Error::Conflict(_));
    ctx.claims_queue
        .retry_after_error(pvc.as_ref(), delay, routine, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_message_names_volume_cause_and_the_way_out() {
        let e = Error::Missing(
            "error getting secret s in namespace ns: secrets \"s\" not found".into(),
        );
        let record = "The claim keeps finalizer external-provisioner.volume.kubernetes.io/create-in-progress until that succeeds (if the driver never created the volume, removing the finalizer by hand is safe)";
        let m = cleanup_failed_message("pvc-1234", record, &e);
        assert_eq!(
            m,
            "the claim was deleted while volume pvc-1234 was being created; it cannot be checked for and deleted yet: error getting secret s in namespace ns: secrets \"s\" not found. The claim keeps finalizer external-provisioner.volume.kubernetes.io/create-in-progress until that succeeds (if the driver never created the volume, removing the finalizer by hand is safe)"
        );
    }
}
