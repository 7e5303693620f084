//! The controller loops: watch claims and volumes, ask the pure decision
//! functions what to do, and do it (CSI calls, API writes, events).
//!
//! Two kube-runtime controllers share one process: the claim controller
//! (PVC → CreateVolume → PV) and the volume controller (PV → finalizer or
//! DeleteVolume). Each runs at most `--worker-threads` reconciles at once and
//! never the same object twice concurrently. Failures are retried with the
//! per-object exponential backoff of `--retry-interval-start/max`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use csi_client::Connection;
use csi_client::csi::v1::DeleteVolumeRequest;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, Secret,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::events::{EventRecorder, EventType};
use tracing::{debug, info, warn};

use crate::annotations::PV_FINALIZER;
use crate::delete::{VolumeAction, decide_volume};
use crate::error::Error;
use crate::metrics::ProvisionerMetrics;
use crate::provision::{ClaimDecision, ProvisionConfig, ProvisionPlan, decide_claim};
use crate::pv::{ResponseCheck, check_response};
use crate::secrets::SecretRef;

/// Everything a reconcile needs.
pub struct Context {
    /// Main API client (QPS/burst limited).
    pub client: Client,
    /// The driver connection.
    pub csi: Connection,
    /// Decision settings.
    pub cfg: ProvisionConfig,
    /// `storage.kubernetes.io/csiProvisionerIdentity` of this process.
    pub identity: String,
    /// Event recorder (core/v1 Events, as upstream).
    pub recorder: EventRecorder,
    /// Per-object retry delays.
    pub backoff: PerObjectBackoff<String>,
    /// Outcome metrics.
    pub metrics: ProvisionerMetrics,
    /// StorageClass cache, filled by [`run`].
    pub classes: Store<StorageClass>,
    /// PersistentVolume cache, filled by [`run`].
    pub volumes: Store<PersistentVolume>,
}

/// Runs both controllers until `shutdown` resolves.
///
/// `workers` is `--worker-threads` (upstream runs that many claim workers
/// and, separately, that many volume workers).
pub async fn run(
    client: Client,
    make_ctx: impl FnOnce(Store<StorageClass>, Store<PersistentVolume>) -> Context,
    workers: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let class_stream = watcher(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(class_writer)
    .applied_objects()
    .for_each(|_| async {});

    let volume_ctl = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(workers as u16));
    let volumes = volume_ctl.store();
    let ctx = Arc::new(make_ctx(classes.clone(), volumes.clone()));

    let claim_ctl = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(workers as u16));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let volume_loop = volume_ctl
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile_volume, volume_error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "volume reconcile");
            }
        });

    // Claims need both caches: a claim decided before the PV cache is
    // complete could be provisioned twice.
    let claim_ctx = ctx.clone();
    let claim_stop = stop_rx.clone();
    let claim_loop = async move {
        let (c, v) = (claim_ctx.classes.clone(), claim_ctx.volumes.clone());
        if c.wait_until_ready().await.is_err() || v.wait_until_ready().await.is_err() {
            warn!("caches stopped before they were ready");
            return;
        }
        info!("caches synced, provisioning");
        claim_ctl
            .graceful_shutdown_on(stopped(claim_stop))
            .run(reconcile_claim, claim_error_policy, claim_ctx)
            .for_each(|r| async move {
                if let Err(e) = r {
                    debug!(error = %e, "claim reconcile");
                }
            })
            .await;
    };

    tokio::select! {
        _ = class_stream => {},
        _ = futures::future::join(volume_loop, claim_loop) => {},
    }
}

fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!("pvc/{}", pvc.uid().unwrap_or_default())
}

fn claim_ref(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn volume_ref(pv: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolume".into()),
        name: pv.metadata.name.clone(),
        uid: pv.metadata.uid.clone(),
        resource_version: pv.metadata.resource_version.clone(),
        ..Default::default()
    }
}

async fn event(
    ctx: &Context,
    obj: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    if let Err(e) = ctx.recorder.publish(obj, type_, reason, message).await {
        warn!(error = %e, reason, "failed to record event");
    }
}

async fn reconcile_claim(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = claim_key(&pvc);
    let class_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let class = ctx.classes.get(&ObjectRef::new(&class_name));
    let decision = decide_claim(
        &pvc,
        class.as_deref(),
        |name| ctx.volumes.get(&ObjectRef::new(name)).is_some(),
        &ctx.cfg,
    );
    let plan = match decision {
        Ok(ClaimDecision::Skip(why)) => {
            debug!(claim = %key, ?why, "not provisioning");
            ctx.backoff.reset(&key);
            return Ok(Action::await_change());
        }
        Ok(ClaimDecision::Provision(plan)) => plan,
        Err(e) => {
            if !matches!(e, Error::Missing(_)) {
                event(
                    &ctx,
                    &claim_ref(&pvc),
                    EventType::Warning,
                    "ProvisioningFailed",
                    &e.to_string(),
                )
                .await;
                ctx.metrics.provision_failed(&class_name);
            }
            return Err(e);
        }
    };
    let started = Instant::now();
    let namespace = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    event(
        &ctx,
        &claim_ref(&pvc),
        EventType::Normal,
        "Provisioning",
        &format!("External provisioner is provisioning volume for claim \"{namespace}/{name}\""),
    )
    .await;
    match provision(&pvc, &plan, &ctx).await {
        Ok(()) => {
            ctx.backoff.reset(&key);
            ctx.metrics.provisioned(&class_name, started.elapsed());
            event(
                &ctx,
                &claim_ref(&pvc),
                EventType::Normal,
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {}", plan.pv_name),
            )
            .await;
            info!(claim = %format!("{namespace}/{name}"), pv = %plan.pv_name, took = ?started.elapsed(), "provisioned volume");
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.metrics.provision_failed(&class_name);
            event(
                &ctx,
                &claim_ref(&pvc),
                EventType::Warning,
                "ProvisioningFailed",
                &e.to_string(),
            )
            .await;
            Err(e)
        }
    }
}

/// Reads a Secret's data as the string map CSI wants. Values are never
/// logged.
async fn read_secret(client: &Client, s: &SecretRef) -> Result<BTreeMap<String, String>, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), &s.namespace)
        .get(&s.name)
        .await
        .map_err(|e| Error::kube(format!("get secret {}/{}", s.namespace, s.name), e))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

async fn provision(
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
    ctx: &Context,
) -> Result<(), Error> {
    let mut request = plan.request.clone();
    if let Some(s) = &plan.provisioner_secret {
        request.secrets = read_secret(&ctx.client, s).await?.into_iter().collect();
    }
    let response = ctx
        .csi
        .create_volume(request)
        .await
        .map_err(|status| Error::Csi {
            rpc: "CreateVolume",
            status,
        })?;
    match check_response(plan, pvc, &ctx.cfg.driver_name, &ctx.identity, &response)? {
        ResponseCheck::Save(pv) => {
            let api = Api::<PersistentVolume>::all(ctx.client.clone());
            match api.create(&PostParams::default(), &pv).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(Error::kube(
                    format!("create PersistentVolume {}", plan.pv_name),
                    e,
                )),
            }
        }
        ResponseCheck::TooSmall { volume_id, error } => {
            let mut req = DeleteVolumeRequest {
                volume_id,
                ..Default::default()
            };
            if let Some(s) = &plan.provisioner_secret {
                req.secrets = read_secret(&ctx.client, s).await?.into_iter().collect();
            }
            if let Err(status) = ctx.csi.delete_volume(req).await {
                warn!(code = ?status.code(), "cleanup of undersized volume failed; will retry");
            }
            Err(error)
        }
    }
}

fn claim_error_policy(pvc: Arc<PersistentVolumeClaim>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&claim_key(&pvc));
    warn!(claim = %format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any()), error = %err, retry_in = ?delay, "provisioning failed");
    Action::requeue(delay)
}

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
        &volume_ref(pv),
        EventType::Warning,
        "VolumeFailedDelete",
        &e.to_string(),
    )
    .await;
}

fn volume_key(pv: &PersistentVolume) -> String {
    format!("pv/{}", pv.name_any())
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let class_name = pv
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let class = ctx.classes.get(&ObjectRef::new(&class_name));
    let action = match decide_volume(&pv, class.as_deref(), &ctx.cfg.driver_name) {
        Ok(a) => a,
        Err(e) => {
            delete_failed_event(&ctx, &pv, &e).await;
            return Err(e);
        }
    };
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    match action {
        VolumeAction::Nothing => {}
        VolumeAction::AddFinalizer => {
            let mut f = pv.finalizers().to_vec();
            f.push(PV_FINALIZER.to_string());
            set_finalizers(&api, &pv, f).await?;
        }
        VolumeAction::RemoveFinalizer => {
            set_finalizers(&api, &pv, without_ours(pv.finalizers())).await?;
        }
        VolumeAction::Delete { volume_id, secret } => {
            let started = Instant::now();
            if let Err(e) = delete_volume(&pv, &api, volume_id, secret, &ctx).await {
                ctx.metrics.delete_failed(&class_name);
                delete_failed_event(&ctx, &pv, &e).await;
                return Err(e);
            }
            ctx.metrics.deleted(&class_name, started.elapsed());
            info!(pv = %pv.name_any(), took = ?started.elapsed(), "deleted volume");
        }
    }
    ctx.backoff.reset(&volume_key(&pv));
    Ok(Action::await_change())
}

async fn delete_volume(
    pv: &PersistentVolume,
    api: &Api<PersistentVolume>,
    volume_id: String,
    secret: Option<SecretRef>,
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
    ctx.csi
        .delete_volume(req)
        .await
        .map_err(|status| Error::Csi {
            rpc: "DeleteVolume",
            status,
        })?;
    let name = pv.name_any();
    let remaining = match api.delete(&name, &DeleteParams::default()).await {
        Ok(either) => either.left(),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(Error::kube(format!("delete PersistentVolume {name}"), e)),
    };
    // The PV lingers while it holds our finalizer: drop it now.
    if let Some(current) = remaining
        && current.finalizers().iter().any(|f| f == PV_FINALIZER)
    {
        match set_finalizers(api, &current, without_ours(current.finalizers())).await {
            Err(Error::Kube {
                source: kube::Error::Api(s),
                ..
            }) if s.code == 404 => {}
            other => other?,
        }
    }
    Ok(())
}

/// Writes `finalizers` with a resourceVersion precondition: if anyone changed
/// the PV since we read it (e.g. removed their own finalizer), the API server
/// answers 409 and we retry from a fresh read instead of resurrecting a
/// finalizer another controller just removed.
async fn set_finalizers(
    api: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let name = pv.name_any();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": pv.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| Error::kube(format!("patch finalizers of PersistentVolume {name}"), e))
}

fn volume_error_policy(pv: Arc<PersistentVolume>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&volume_key(&pv));
    warn!(pv = %pv.name_any(), error = %err, retry_in = ?delay, "volume reconcile failed");
    Action::requeue(delay)
}
