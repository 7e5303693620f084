//! The controller loops: watch claims and volumes, ask the pure decision
//! functions what to do, and do it (CSI calls, API writes, events).
//!
//! Two kube-runtime controllers share one process: the claim controller
//! (PVC → CreateVolume → PV) and the volume controller (PV → finalizer or
//! DeleteVolume). Each runs at most `--worker-threads` reconciles at once and
//! never the same object twice concurrently. Failures are retried with the
//! per-object exponential backoff of `--retry-interval-start/max`.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use csi_client::Connection;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, Secret,
};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::{Queue, Stop, cache_all, drain, reflect_all, refresh_gauges};
use sidecar_runtime::events::EventType;
use tracing::{info, warn};

use crate::error::Error;
use crate::intent_log::IntentLog;
use crate::metrics::ProvisionerMetrics;
use crate::provision::ProvisionConfig;
use crate::secrets::SecretRef;
use crate::topology::TopologyCache;
use crate::{claims, volumes};

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
    /// Event writer (core/v1 Events, as upstream), off the reconcile path.
    pub recorder: sidecar_runtime::events::EventQueue,
    /// Per-object retry delays.
    pub backoff: PerObjectBackoff<String>,
    /// Outcome metrics.
    pub metrics: ProvisionerMetrics,
    /// The `claims` queue (upstream's name), followed by `workqueue_*`.
    pub claims_queue: Queue,
    /// The `volumes` queue.
    pub volumes_queue: Queue,
    /// Delay before retrying an infeasible (InvalidArgument) claim:
    /// `--retry-interval-max`, as upstream's slow set.
    pub slow_retry: std::time::Duration,
    /// StorageClass cache, filled by [`run`].
    pub classes: Store<StorageClass>,
    /// PersistentVolume cache, filled by [`run`].
    pub volumes: Store<PersistentVolume>,
    /// PersistentVolumeClaim cache (the claim controller's), for clone
    /// sources and clone protection.
    pub claims: Store<PersistentVolumeClaim>,
    /// VolumeAttachment cache, only when the driver has
    /// PUBLISH_UNPUBLISH_VOLUME (as upstream, which watches them only then).
    pub attachments: Option<Store<VolumeAttachment>>,
    /// Node cache, only with topology (as upstream).
    pub nodes: Option<Store<Node>>,
    /// CSINode cache, only with topology.
    pub csinodes: Option<Store<CSINode>>,
    /// Per-claim accessibility requirements, so retries send the same ones.
    pub topology_cache: TopologyCache,
    /// `--node-deployment`: this instance's node.
    pub node: Option<crate::node_deployment::NodeInfo>,
    /// `--node-deployment-immediate-binding`.
    pub node_immediate_binding: bool,
    /// `--node-deployment-base-delay` and `--node-deployment-max-delay`.
    pub node_claim_delays: (std::time::Duration, std::time::Duration),
    /// Claim attempts per claim UID, for the growing claim delay.
    pub node_claim_attempts: Mutex<std::collections::HashMap<String, u32>>,
    /// Wakes the CSIStorageCapacity loop after a provision or deletion.
    pub capacity_trigger: Option<Arc<tokio::sync::Notify>>,
    /// PVs whose wait for a detach was already announced with an event, so
    /// the wait is reported once, not on every retry (upstream #1574).
    pub detach_waits: Mutex<HashSet<String>>,
    /// Claim and PV versions this process has already replaced or deleted,
    /// and PVs it created, until the caches show them: a reconcile re-run
    /// by our own write must not act on the version it replaced.
    pub own_writes: sidecar_runtime::own_writes::OwnWrites,
    /// Shares `client`'s QPS budget; claim Updates pay first, then build
    /// from the freshest cached claim (see [`kube_client::Prepaid`]).
    ///
    /// [`kube_client::Prepaid`]: sidecar_runtime::kube_client::Prepaid
    pub prepaid: sidecar_runtime::kube_client::Prepaid,
    /// Claim Updates from the freshest cached claim, paid with `prepaid`.
    pub claim_writer: sidecar_runtime::write::CachedWriter<PersistentVolumeClaim>,
    /// The creation-intent record ([`crate::intents`]), loaded by [`run`].
    pub intents: Arc<IntentLog>,
}

/// Where the creation-intent record lives ([`crate::intents`]).
pub struct IntentSetup {
    /// The namespace of the shard Leases (leader election's).
    pub namespace: String,
    /// The shard Lease names.
    pub names: Vec<String>,
    /// Written as the Leases' holder, for people reading them.
    pub identity: String,
}

/// What [`run`] needs to start the CSIStorageCapacity loop next to the
/// controllers (only on the leader, as upstream).
pub struct CapacitySetup {
    /// The client with `--kube-api-capacity-qps/burst`.
    pub client: Client,
    /// The driver connection.
    pub csi: csi_client::Connection,
    /// Loop settings.
    pub cfg: crate::capacity_controller::CapacityConfig,
    /// Shared with [`Context::capacity_trigger`].
    pub trigger: Arc<tokio::sync::Notify>,
    /// The gauges.
    pub metrics: crate::capacity_controller::CapacityMetrics,
}

/// What [`run`] runs besides the two controllers, and how wide.
pub struct RunOptions {
    /// `--worker-threads` (claim workers, and separately volume workers).
    pub workers: u16,
    /// Cache VolumeAttachments (driver has PUBLISH_UNPUBLISH_VOLUME).
    pub watch_attachments: bool,
    /// Cache Nodes and CSINodes (topology or capacity in use).
    pub watch_topology: bool,
    /// The CSIStorageCapacity loop, with `--enable-capacity`.
    pub capacity: Option<CapacitySetup>,
    /// The orphaned snapshot-finalizer sweep interval, when the driver can
    /// snapshot (0 disables it).
    pub snapshot_sweep: Option<std::time::Duration>,
    /// `--node-deployment`: this node's Node and CSINode as NodeGetInfo
    /// describes them, served from static caches instead of watches.
    pub static_node: Option<(Node, CSINode)>,
    /// The creation-intent record, loaded before any claim is looked at.
    pub intents: IntentSetup,
}

/// The caches [`run`] fills and hands to the context.
pub struct Caches {
    /// StorageClasses.
    pub classes: Store<StorageClass>,
    /// PersistentVolumes.
    pub volumes: Store<PersistentVolume>,
    /// VolumeAttachments, when watched.
    pub attachments: Option<Store<VolumeAttachment>>,
    /// PersistentVolumeClaims.
    pub claims: Store<PersistentVolumeClaim>,
    /// Nodes, when topology is in use.
    pub nodes: Option<Store<Node>>,
    /// CSINodes, when topology is in use.
    pub csinodes: Option<Store<CSINode>>,
    /// The creation-intent record, as loaded.
    pub intents: Arc<IntentLog>,
}

/// Runs both controllers, and what `opts` asks for besides, until
/// `shutdown` resolves.
///
/// With [`RunOptions::watch_attachments`] a deleted VolumeAttachment
/// re-triggers its PV, so a deletion waiting for the detach goes on at once.
pub async fn run(
    client: Client,
    make_ctx: impl FnOnce(Caches) -> Context,
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let RunOptions {
        workers,
        watch_attachments,
        watch_topology,
        capacity,
        snapshot_sweep,
        static_node,
        intents,
    } = opts;
    // Runs on the leader only, before anything else: a claim must not be
    // decided without knowing whether its creation was recorded.
    let Some(intents) = load_intents(&client, &intents).await else {
        return;
    };
    let (nodes, csinodes, topology_loop) = if let Some((node, csinode)) = static_node {
        let (node_reader, mut node_writer) = reflector::store::<Node>();
        let (csinode_reader, mut csinode_writer) = reflector::store::<CSINode>();
        node_writer.apply_watcher_event(&watcher::Event::Init);
        node_writer.apply_watcher_event(&watcher::Event::InitApply(node));
        node_writer.apply_watcher_event(&watcher::Event::InitDone);
        csinode_writer.apply_watcher_event(&watcher::Event::Init);
        csinode_writer.apply_watcher_event(&watcher::Event::InitApply(csinode));
        csinode_writer.apply_watcher_event(&watcher::Event::InitDone);
        // The writers must live as long as the readers are used.
        let keep = async move {
            let _writers = (node_writer, csinode_writer);
            futures::future::pending::<()>().await
        };
        (Some(node_reader), Some(csinode_reader), keep.boxed())
    } else if watch_topology {
        let (node_reader, node_loop) = cache_all::<Node>(client.clone());
        let (csinode_reader, csinode_loop) = cache_all::<CSINode>(client.clone());
        let both = futures::future::join(node_loop, csinode_loop).map(|_| ());
        (Some(node_reader), Some(csinode_reader), both.boxed())
    } else {
        (None, None, futures::future::pending::<()>().boxed())
    };
    let (classes, class_loop) = cache_all::<StorageClass>(client.clone());

    // The claim and PV watches are built here rather than by
    // `Controller::new` so the workqueue metrics see every trigger; the
    // stores come first so the context (which holds the metrics) exists
    // before any stream.
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (attachments, attachment_writer) = if watch_attachments {
        let (reader, writer) = reflector::store::<VolumeAttachment>();
        (Some(reader), Some(writer))
    } else {
        (None, None)
    };
    let ctx = Arc::new(make_ctx(Caches {
        classes: classes.clone(),
        volumes: volumes.clone(),
        attachments,
        claims: claims.clone(),
        nodes: nodes.clone(),
        csinodes: csinodes.clone(),
        intents,
    }));

    let forget = ctx.clone();
    let volume_stream = reflect_all(client.clone(), volume_writer)
        .inspect(ctx.volumes_queue.follow(move |pv| forget.forget_volume(pv)))
        .applied_objects();
    let mut volume_ctl = Controller::for_stream(volume_stream, volumes)
        .with_config(controller::Config::default().concurrency(workers));

    let attach_loop = if let Some(writer) = attachment_writer {
        let (tx, rx) = futures::channel::mpsc::unbounded::<ObjectRef<PersistentVolume>>();
        let queue = ctx.volumes_queue.clone();
        volume_ctl = volume_ctl.reconcile_on(
            rx.inspect(move |pv: &ObjectRef<PersistentVolume>| queue.added(&pv.name)),
        );
        let stream = reflect_all(client.clone(), writer).for_each(move |event| {
            if let Ok(watcher::Event::Delete(va)) = event
                && let Some(pv) = va.spec.source.persistent_volume_name
            {
                let _ = tx.unbounded_send(ObjectRef::new(&pv));
            }
            futures::future::ready(())
        });
        futures::future::Either::Left(stream)
    } else {
        futures::future::Either::Right(futures::future::pending::<()>())
    };
    let forget = ctx.clone();
    let orphans = Arc::new(tokio::sync::Notify::new());
    let claim_gone = orphans.clone();
    let claim_stream = reflect_all(client.clone(), claim_writer)
        .inspect(ctx.claims_queue.follow(move |pvc| {
            forget.forget_claim(pvc);
            if forget
                .intents
                .is_recorded(pvc.metadata.uid.as_deref().unwrap_or_default())
            {
                claim_gone.notify_one();
            }
        }))
        .applied_objects();
    let claim_ctl = Controller::for_stream(claim_stream, claims)
        .with_config(controller::Config::default().concurrency(workers));

    let capacity_loop = match (capacity, &nodes, &csinodes) {
        (Some(setup), Some(n), Some(c)) => {
            let caches = crate::capacity_controller::CapacityCaches {
                classes: classes.clone(),
                nodes: n.clone(),
                csinodes: c.clone(),
            };
            futures::future::Either::Left(crate::capacity_controller::run(
                setup.client,
                setup.csi,
                caches,
                setup.cfg,
                setup.trigger,
                setup.metrics,
                futures::future::pending::<()>(),
            ))
        }
        _ => futures::future::Either::Right(futures::future::pending::<()>()),
    };
    let sweep_loop = match snapshot_sweep {
        Some(interval) if !interval.is_zero() => futures::future::Either::Left(
            crate::snapshot_sweep::run(client.clone(), ctx.claims.clone(), interval),
        ),
        _ => futures::future::Either::Right(futures::future::pending::<()>()),
    };
    let gauge_loop = refresh_gauges(ctx.claims_queue.metrics().clone());
    let stop = Stop::new(shutdown);

    let volume_loop = drain(
        volume_ctl.graceful_shutdown_on(stop.signal()).run(
            volumes::reconcile_volume,
            volumes::volume_error_policy,
            ctx.clone(),
        ),
        "volumes",
    );

    // Claims need both caches: a claim decided before the PV cache is
    // complete could be provisioned twice.
    let claim_ctx = ctx.clone();
    let claim_loop = async move {
        let (c, v) = (claim_ctx.classes.clone(), claim_ctx.volumes.clone());
        if c.wait_until_ready().await.is_err() || v.wait_until_ready().await.is_err() {
            warn!("caches stopped before they were ready");
            return;
        }
        info!("caches synced, provisioning");
        let sweep = sweep_recorded(claim_ctx.clone(), orphans);
        let claims = drain(
            claim_ctl.graceful_shutdown_on(stop.signal()).run(
                claims::reconcile_claim,
                claims::claim_error_policy,
                claim_ctx,
            ),
            "claims",
        );
        tokio::select! {
            _ = sweep => {},
            _ = claims => {},
        }
    };

    tokio::select! {
        _ = class_loop => {},
        _ = attach_loop => {},
        _ = topology_loop => {},
        _ = capacity_loop => {},
        _ = sweep_loop => {},
        _ = gauge_loop => {},
        _ = futures::future::join(volume_loop, claim_loop) => {},
    }
}

/// Loads the creation-intent record, retrying until the API server answers
/// (`None` only if the process is shutting down meanwhile).
async fn load_intents(client: &Client, setup: &IntentSetup) -> Option<Arc<IntentLog>> {
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match IntentLog::load(
            client.clone(),
            &setup.namespace,
            setup.names.clone(),
            &setup.identity,
        )
        .await
        {
            Ok(log) => return Some(log),
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, "cannot read the volume creation record; no claim is provisioned until it is read");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

/// How often recorded creations whose claims are gone are looked for, besides
/// right after a recorded claim's deletion is seen.
const RECORD_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Ends every recorded creation whose claim is no longer in the cache
/// ([`claims::undo_recorded`]): at start (claims deleted while no provisioner
/// ran), when such a claim's deletion is seen, and every [`RECORD_SWEEP`].
async fn sweep_recorded(ctx: Arc<Context>, wake: Arc<tokio::sync::Notify>) {
    // The claim cache is filled by the claim controller's own watch, which
    // runs next to this.
    if ctx.claims.wait_until_ready().await.is_err() {
        warn!("claim cache stopped before it was ready");
        return futures::future::pending().await;
    }
    loop {
        let present: HashSet<String> = ctx
            .claims
            .state()
            .iter()
            .filter_map(|c| c.metadata.uid.clone())
            .collect();
        let gone: Vec<_> = ctx
            .intents
            .entries()
            .into_iter()
            .filter(|(uid, _)| !present.contains(uid))
            .collect();
        if !gone.is_empty() {
            info!(
                count = gone.len(),
                "recorded volume creations whose claims are gone: finishing them"
            );
        }
        futures::stream::iter(gone)
            .for_each_concurrent(16, |(uid, recorded)| {
                let ctx = ctx.clone();
                async move {
                    let mine = ctx.node.as_ref().is_none_or(|n| {
                        crate::node_deployment::selected_node(&recorded) == Some(n.name.as_str())
                    });
                    if !mine {
                        return;
                    }
                    if let Err(e) = claims::undo_recorded(&ctx, &recorded).await {
                        warn!(claim_uid = %uid, error = %e, "recorded volume creation not finished yet; retrying");
                    }
                }
            })
            .await;
        let _ = tokio::time::timeout(RECORD_SWEEP, wake.notified()).await;
        // Deletions come in bursts: let the cache catch up with all of them.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

impl Context {
    /// A claim is gone: its backoff, frozen topology and node-claim
    /// attempts go with it (they are keyed by the claim, and would
    /// otherwise grow for as long as the process runs).
    fn forget_claim(&self, pvc: &PersistentVolumeClaim) {
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        self.backoff.reset(&claims::claim_key(pvc));
        self.topology_cache.forget(&uid);
        if let Ok(mut attempts) = self.node_claim_attempts.lock() {
            attempts.remove(&uid);
        }
    }

    /// A PV is gone: its backoff and announced detach wait go with it.
    fn forget_volume(&self, pv: &PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.backoff.reset(&volumes::volume_key(pv));
        if let Ok(mut waits) = self.detach_waits.lock() {
            waits.remove(&name);
        }
    }
}

pub(crate) async fn event(
    ctx: &Context,
    obj: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    ctx.recorder.send(obj, type_, reason, message);
}

/// Reads a Secret's data as the string map CSI wants. Values are never
/// logged.
///
/// A failed GET reads as upstream's `getCredentials` error:
/// `error getting secret <name> in namespace <namespace>: <API error>`.
pub(crate) async fn read_secret(
    client: &Client,
    s: &SecretRef,
) -> Result<BTreeMap<String, String>, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), &s.namespace)
        .get(&s.name)
        .await
        .map_err(|e| Error::kube(crate::secrets::secret_get_action(s), e))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}
