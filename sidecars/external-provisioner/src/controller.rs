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
use sidecar_runtime::events::EventType;
use tracing::{debug, info, warn};

use crate::error::Error;
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
    /// `workqueue_*` metrics of the `claims` and `volumes` queues.
    pub queue_metrics: crate::workqueue::QueueMetrics,
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
    pub workers: usize,
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
    } = opts;
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
        let (node_reader, node_writer) = reflector::store::<Node>();
        let (csinode_reader, csinode_writer) = reflector::store::<CSINode>();
        let node_stream = watcher(Api::<Node>::all(client.clone()), watch_config())
            .default_backoff()
            .modify(slim)
            .reflect(node_writer)
            .for_each(|_| futures::future::ready(()));
        let csinode_stream = watcher(Api::<CSINode>::all(client.clone()), watch_config())
            .default_backoff()
            .modify(slim)
            .reflect(csinode_writer)
            .for_each(|_| futures::future::ready(()));
        let both = futures::future::join(node_stream, csinode_stream).map(|_| ());
        (Some(node_reader), Some(csinode_reader), both.boxed())
    } else {
        (None, None, futures::future::pending::<()>().boxed())
    };
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let class_stream = watcher(Api::<StorageClass>::all(client.clone()), watch_config())
        .default_backoff()
        .modify(slim)
        .reflect(class_writer)
        .applied_objects()
        .for_each(|_| async {});

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
    }));
    let queue_metrics = ctx.queue_metrics.clone();

    let volume_stream = watcher(Api::<PersistentVolume>::all(client.clone()), watch_config())
        .default_backoff()
        .modify(slim)
        .reflect(volume_writer)
        .inspect(followed("volumes", queue_metrics.clone()))
        .applied_objects();
    let mut volume_ctl = Controller::for_stream(volume_stream, volumes)
        .with_config(controller::Config::default().concurrency(workers as u16));

    let attach_loop = if let Some(writer) = attachment_writer {
        let (tx, rx) = futures::channel::mpsc::unbounded::<ObjectRef<PersistentVolume>>();
        let qm = queue_metrics.clone();
        volume_ctl = volume_ctl.reconcile_on(
            rx.inspect(move |pv: &ObjectRef<PersistentVolume>| qm.added("volumes", &pv.name)),
        );
        let stream = watcher(Api::<VolumeAttachment>::all(client.clone()), watch_config())
            .default_backoff()
            .modify(slim)
            .reflect(writer)
            .for_each(move |event| {
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
    let claim_stream = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watch_config(),
    )
    .default_backoff()
    .modify(slim)
    .reflect(claim_writer)
    .inspect(followed("claims", queue_metrics.clone()))
    .applied_objects();
    let claim_ctl = Controller::for_stream(claim_stream, claims)
        .with_config(controller::Config::default().concurrency(workers as u16));

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
    // The in-progress gauges age between events.
    let gauge_loop = async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            queue_metrics.refresh();
            queue_metrics.refresh_depth();
        }
    };
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
        .run(
            volumes::reconcile_volume,
            volumes::volume_error_policy,
            ctx.clone(),
        )
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
            .run(
                claims::reconcile_claim,
                claims::claim_error_policy,
                claim_ctx,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    debug!(error = %e, "claim reconcile");
                }
            })
            .await;
    };

    tokio::select! {
        _ = class_stream => {},
        _ = attach_loop => {},
        _ = topology_loop => {},
        _ = capacity_loop => {},
        _ = sweep_loop => {},
        _ = gauge_loop => {},
        _ = futures::future::join(volume_loop, claim_loop) => {},
    }
}

/// Watches list as client-go's informers do: the initial list and every
/// re-list ask for `resourceVersion=0` without paging, which the API server
/// answers from its watch cache in one response. kube-runtime's default, a
/// consistent list in pages of 500, makes 5,000 claims 10 requests, each
/// spending a QPS token before the first provision.
fn watch_config() -> watcher::Config {
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    config
}

/// Drops what no decision reads from cached objects: `managedFields`, the
/// bulk of a small object. Claims are written back with Updates built from
/// the cache; an Update without `managedFields` keeps the server's (only a
/// list holding one empty entry resets them), so nothing is lost.
fn slim<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A watch-stream inspector feeding `queue`'s workqueue metrics.
fn followed<K: kube::Resource>(
    queue: &'static str,
    metrics: crate::workqueue::QueueMetrics,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(e) = event {
            metrics.watch_event(queue, e);
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
