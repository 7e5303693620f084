//! The controller I/O around [`crate::decide`]: watches, lanes, CSI calls,
//! patches, events.
//!
//! One VolumeAttachment watch feeds two kube-runtime controllers, the
//! attach lane (queue `csi-attacher-va`, upstream's name) and the detach
//! lane (`csi-attacher-va-detach`), each with `--worker-threads` workers;
//! a third controller (`csi-attacher-pv`) removes PV finalizers. Upstream
//! runs attach and detach on one queue and one pool (external-attacher#761).
//! A per-VolumeAttachment lock keeps the two lanes from working on the same
//! object at once, so a publish and an unpublish of one attachment never
//! overlap, as with upstream's single queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csi_client::Connection;
use csi_client::csi::v1::{
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest, ListVolumesRequest,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeSpec, Secret};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::{Queue, Stop, cache_all, drain, reflect_all, refresh_gauges};
use sidecar_runtime::events::{EventQueue, EventType};
use tracing::{debug, info, warn};

use crate::decide::{self, Capabilities, Lane, Observed, PvAction, Source};
use crate::error::Error;

/// How long a VolumeAttachment may wait for a worker before a `Waiting`
/// Event says so (external-attacher#706).
pub const BACKLOG_EVENT_AFTER: Duration = Duration::from_secs(15);

/// Upstream's queue names (`pkg/controller/controller.go`), plus ours for
/// the detach lane.
pub const QUEUES: [&str; 3] = [
    "csi-attacher-va",
    "csi-attacher-va-detach",
    "csi-attacher-pv",
];

/// Settings from the flags and the driver.
#[derive(Clone, Debug)]
pub struct Settings {
    /// GetPluginInfo's name (`spec.attacher` of our VolumeAttachments).
    pub driver: String,
    /// What the driver can do.
    pub caps: Capabilities,
    /// `--timeout` for each ControllerPublish/Unpublish and for one whole
    /// ListVolumes round.
    pub timeout: Duration,
    /// `--default-fstype`.
    pub default_fstype: String,
    /// `--max-entries`.
    pub max_entries: i32,
    /// MutableCSINodeAllocatableCount: write `attachError.errorCode`.
    pub error_codes: bool,
    /// `--worker-threads`, per lane.
    pub workers: u16,
    /// `--reconcile-sync`.
    pub reconcile_sync: Duration,
    /// `--resync`.
    pub resync: Duration,
    /// The driver serves migrated in-tree volumes (the `migrated` label).
    pub migration: bool,
}

/// The backlog gauges, per lane (`lane` = `attach` | `detach`).
#[derive(Clone)]
pub struct BacklogMetrics {
    backlog: Family<LaneLabel, Gauge>,
    oldest: Family<LaneLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabel {
    lane: String,
}

impl BacklogMetrics {
    /// Registers `csi_attacher_backlog{lane}` (VolumeAttachments waiting
    /// for a worker) and `csi_attacher_oldest_wait_seconds{lane}`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = BacklogMetrics {
            backlog: Family::default(),
            oldest: Family::default(),
        };
        registry.register(
            "csi_attacher_backlog",
            "VolumeAttachments waiting for a worker, per lane",
            m.backlog.clone(),
        );
        registry.register(
            "csi_attacher_oldest_wait_seconds",
            "How long the longest-waiting VolumeAttachment has waited for a worker, per lane",
            m.oldest.clone(),
        );
        m
    }
}

/// Who waits in which lane since when, and which waits were announced.
#[derive(Default)]
struct Backlog {
    waiting: Mutex<HashMap<(Lane, String), Instant>>,
    announced: Mutex<HashSet<(Lane, String)>>,
}

impl Backlog {
    fn add(&self, lane: Lane, name: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.entry((lane, name.to_string()))
                .or_insert_with(Instant::now);
        }
    }
    fn started(&self, lane: Lane, name: &str) {
        let key = (lane, name.to_string());
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&key);
        }
        if let Ok(mut a) = self.announced.lock() {
            a.remove(&key);
        }
    }
    fn forget(&self, name: &str) {
        for lane in [Lane::Attach, Lane::Detach] {
            self.started(lane, name);
        }
    }
}

/// Everything a reconcile needs.
pub struct Context {
    client: Client,
    csi: Connection,
    s: Settings,
    finalizer: String,
    attachments: Store<VolumeAttachment>,
    volumes: Store<PersistentVolume>,
    csinodes: Store<CSINode>,
    recorder: EventQueue,
    backoff: PerObjectBackoff<String>,
    attach_queue: Queue,
    detach_queue: Queue,
    pv_queue: Queue,
    /// VolumeAttachments the ListVolumes reconciliation asked to redo even
    /// if their status already says done (upstream's forceSync), with the
    /// `status.attached` it saw ([`decide::force_still_needed`]).
    force: Mutex<HashMap<String, bool>>,
    /// One lock per VolumeAttachment being worked on by either lane.
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    backlog: Backlog,
    metrics: BacklogMetrics,
    /// VolumeAttachment versions this process has replaced, until the
    /// watch delivers its writes ([`sidecar_runtime::own_writes`]).
    own_writes: sidecar_runtime::own_writes::OwnWrites,
}

/// What [`run`] needs from start-up.
pub struct Setup {
    /// The QPS-limited client.
    pub client: Client,
    /// The driver.
    pub csi: Connection,
    /// Settings.
    pub settings: Settings,
    /// Event writer (best effort: upstream's RBAC grants no events).
    pub recorder: EventQueue,
    /// `--retry-interval-start/max`.
    pub backoff: PerObjectBackoff<String>,
    /// The `workqueue_*` metrics of [`QUEUES`].
    pub queues: sidecar_runtime::workqueue::QueueMetrics,
    /// The backlog gauges.
    pub metrics: BacklogMetrics,
}

type Sender = futures::channel::mpsc::UnboundedSender<VolumeAttachment>;

/// Runs the lanes, the PV controller and the reconcile loop until `shutdown`.
pub async fn run(
    setup: Setup,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Setup {
        client,
        csi,
        settings,
        recorder,
        backoff,
        queues,
        metrics,
    } = setup;
    let (attachments, va_writer) = reflector::store::<VolumeAttachment>();
    let (volumes, pv_writer) = reflector::store::<PersistentVolume>();
    let (csinodes, csinode_loop) = cache_all::<CSINode>(client.clone());
    let workers = settings.workers;
    let ctx = Arc::new(Context {
        client: client.clone(),
        csi,
        finalizer: crate::names::finalizer(&settings.driver),
        s: settings,
        attachments: attachments.clone(),
        volumes: volumes.clone(),
        csinodes,
        recorder,
        backoff,
        attach_queue: Queue::new(QUEUES[0], queues.clone()),
        detach_queue: Queue::new(QUEUES[1], queues.clone()),
        pv_queue: Queue::new(QUEUES[2], queues.clone()),
        force: Mutex::default(),
        busy: Mutex::default(),
        backlog: Backlog::default(),
        metrics,
        own_writes: Default::default(),
    });

    let (attach_tx, attach_rx) = futures::channel::mpsc::unbounded::<VolumeAttachment>();
    let (detach_tx, detach_rx) = futures::channel::mpsc::unbounded::<VolumeAttachment>();
    let (pv_tx, pv_rx) = futures::channel::mpsc::unbounded::<ObjectRef<PersistentVolume>>();

    // The router: every VolumeAttachment event goes to its lane, except
    // updates that only carry our own error report back.
    let router_ctx = ctx.clone();
    let (atx, dtx, ptx) = (attach_tx.clone(), detach_tx.clone(), pv_tx.clone());
    let mut last: HashMap<String, VolumeAttachment> = HashMap::new();
    let va_loop = reflect_all(client.clone(), va_writer).for_each(move |event| {
        match event {
            Ok(watcher::Event::Apply(va) | watcher::Event::InitApply(va)) => {
                let name = va.name_any();
                let enqueue = last
                    .get(&name)
                    .is_none_or(|old| decide::should_enqueue_va_change(old, &va));
                last.insert(name, va.clone());
                if enqueue {
                    router_ctx.route(&va, &atx, &dtx);
                }
            }
            Ok(watcher::Event::Delete(va)) => {
                let name = va.name_any();
                last.remove(&name);
                router_ctx.forget_va(&name);
                if let Some(pv) = &va.spec.source.persistent_volume_name {
                    router_ctx.pv_queue.added(pv);
                    let _ = ptx.unbounded_send(ObjectRef::new(pv));
                }
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "VolumeAttachment watch"),
        }
        futures::future::ready(())
    });

    let pv_forget = ctx.clone();
    let pv_stream = reflect_all(client.clone(), pv_writer)
        .inspect(ctx.pv_queue.follow(move |pv: &PersistentVolume| {
            pv_forget.backoff.reset(&format!("pv/{}", pv.name_any()))
        }))
        .filter_map(|e| {
            futures::future::ready(match e {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Some(Ok(o)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        });
    let config = controller::Config::default().concurrency(workers);
    let pv_ctl = Controller::for_stream(pv_stream, volumes)
        .reconcile_on(pv_rx)
        .with_config(config.clone());
    let lane = |rx: futures::channel::mpsc::UnboundedReceiver<VolumeAttachment>| {
        Controller::for_stream(rx.map(Ok), attachments.clone()).with_config(config.clone())
    };
    let (attach_ctl, detach_ctl) = (lane(attach_rx), lane(detach_rx));

    let stop = Stop::new(shutdown);
    let attach_loop = drain(
        attach_ctl.graceful_shutdown_on(stop.signal()).run(
            reconcile_attach,
            attach_error_policy,
            ctx.clone(),
        ),
        QUEUES[0],
    );
    let detach_loop = drain(
        detach_ctl.graceful_shutdown_on(stop.signal()).run(
            reconcile_detach,
            detach_error_policy,
            ctx.clone(),
        ),
        QUEUES[1],
    );
    let pv_loop = drain(
        pv_ctl
            .graceful_shutdown_on(stop.signal())
            .run(reconcile_pv, pv_error_policy, ctx.clone()),
        QUEUES[2],
    );
    let resync_loop = resync(ctx.clone(), attach_tx.clone(), detach_tx.clone());
    let reconcile_loop = reconcile_with_driver(ctx.clone(), attach_tx, detach_tx);
    let backlog_loop = watch_backlog(ctx.clone());
    let gauges = refresh_gauges(queues);
    tokio::select! {
        _ = va_loop => {},
        _ = csinode_loop => {},
        _ = resync_loop => {},
        _ = reconcile_loop => {},
        _ = backlog_loop => {},
        _ = gauges => {},
        _ = futures::future::join3(attach_loop, detach_loop, pv_loop) => {},
    }
}

impl Context {
    fn lane_queue(&self, lane: Lane) -> &Queue {
        match lane {
            Lane::Attach => &self.attach_queue,
            Lane::Detach => &self.detach_queue,
        }
    }

    /// Sends `va` (ours only) to its lane and counts it waiting.
    fn route(&self, va: &VolumeAttachment, attach: &Sender, detach: &Sender) {
        if va.spec.attacher != self.s.driver {
            return;
        }
        let lane = Lane::of(va);
        let name = va.name_any();
        self.lane_queue(lane).added(&name);
        self.backlog.add(lane, &name);
        let tx = match lane {
            Lane::Attach => attach,
            Lane::Detach => detach,
        };
        let _ = tx.unbounded_send(va.clone());
    }

    fn forget_va(&self, name: &str) {
        self.backoff.reset(&name.to_string());
        self.backlog.forget(name);
        if let Ok(mut f) = self.force.lock() {
            f.remove(name);
        }
        if let Ok(mut b) = self.busy.lock() {
            b.remove(name);
        }
    }

    /// Takes the force-sync mark of `name`: true when there was one and the
    /// VolumeAttachment's `status.attached` is still `attached`, what the
    /// reconciliation saw.
    fn consume_force(&self, name: &str, attached: bool) -> bool {
        self.force
            .lock()
            .ok()
            .and_then(|mut f| f.remove(name))
            .is_some_and(|observed| decide::force_still_needed(observed, attached))
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut b = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        b.entry(name.to_string()).or_default().clone()
    }

    fn event(&self, va: &VolumeAttachment, type_: EventType, reason: &str, message: &str) {
        let obj = ObjectReference {
            api_version: Some("storage.k8s.io/v1".into()),
            kind: Some("VolumeAttachment".into()),
            name: va.metadata.name.clone(),
            uid: va.metadata.uid.clone(),
            resource_version: va.metadata.resource_version.clone(),
            ..Default::default()
        };
        self.recorder.send(&obj, type_, reason, message);
    }

    fn va_api(&self) -> Api<VolumeAttachment> {
        Api::all(self.client.clone())
    }

    async fn patch_va(
        &self,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> Result<VolumeAttachment, kube::Error> {
        let pp = PatchParams::default();
        if status {
            self.va_api()
                .patch_status(name, &pp, &Patch::Merge(patch))
                .await
        } else {
            self.va_api().patch(name, &pp, &Patch::Merge(patch)).await
        }
    }

    async fn patch_pv(&self, name: &str, ops: Value) -> Result<PersistentVolume, kube::Error> {
        let ops: json_patch::Patch =
            serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
        Api::<PersistentVolume>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(ops))
            .await
    }

    fn pv(&self, name: &str) -> Result<Arc<PersistentVolume>, Error> {
        self.volumes
            .get(&ObjectRef::new(name))
            .ok_or_else(|| decide::pv_not_found(name))
    }

    fn csinode(&self, node: &str) -> Option<Arc<CSINode>> {
        self.csinodes.get(&ObjectRef::new(node))
    }

    async fn secrets(
        &self,
        spec: &PersistentVolumeSpec,
    ) -> Result<BTreeMap<String, String>, Error> {
        let csi = decide::csi_source(spec)?;
        let Some((ns, name)) = decide::publish_secret(csi) else {
            return Ok(BTreeMap::new());
        };
        let secret = Api::<Secret>::namespaced(self.client.clone(), &ns)
            .get(&name)
            .await
            .map_err(|source| Error::Api {
                what: format!("failed to load secret \"{ns}/{name}\""),
                source,
            })?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect())
    }

    /// The spec to publish and whether it was migrated; attach also adds
    /// the PV finalizer first (and refuses a deleting PV).
    async fn resolve(
        &self,
        va: &VolumeAttachment,
        attach: bool,
    ) -> Result<(PersistentVolumeSpec, bool), Error> {
        match decide::source(va)? {
            Source::Inline(spec) => Ok((*spec, true)),
            Source::Pv(name) => {
                let pv = self.pv(&name)?;
                if attach {
                    decide::check_pv_not_deleting(&pv)?;
                    if let Some(ops) = decide::add_pv_finalizer_patch(
                        pv.metadata.finalizers.as_deref(),
                        &self.finalizer,
                    ) {
                        self.patch_pv(&name, ops)
                            .await
                            .map_err(|source| Error::Api {
                                what: "could not add PersistentVolume finalizer".into(),
                                source,
                            })?;
                    }
                }
                decide::processed_spec(&pv)
            }
        }
    }

    fn csi_for(&self, migrated: bool) -> Connection {
        if self.s.migration {
            self.csi.for_migrated(migrated)
        } else {
            self.csi.clone()
        }
    }

    /// `csiAttach`: checks, PV finalizer, VA finalizer + node-ID annotation,
    /// then ControllerPublish. Returns the publish context and the version
    /// the metadata patch wrote, if one was needed.
    async fn attach(
        &self,
        va: &VolumeAttachment,
    ) -> Result<(BTreeMap<String, String>, Option<String>), Error> {
        let (spec, migrated) = self.resolve(va, true).await?;
        let csi = decide::csi_source(&spec)?.clone();
        let cap = decide::volume_capability(
            &spec,
            self.s.caps.single_node_multi_writer,
            &self.s.default_fstype,
        )?;
        let secrets = self.secrets(&spec).await?;
        let node = va.spec.node_name.as_str();
        let node_id = decide::node_id(self.csinode(node).as_deref(), node, &self.s.driver, None)?;
        let mut written = None;
        if let Some(patch) = decide::va_metadata_patch(va, &self.finalizer, &node_id) {
            let new = self
                .patch_va(&va.name_any(), &patch, false)
                .await
                .map_err(|source| Error::Api {
                    what: "could not save VolumeAttachment".into(),
                    source,
                })?;
            written = new.metadata.resource_version;
        }
        let request = ControllerPublishVolumeRequest {
            volume_id: csi.volume_handle.clone(),
            node_id,
            volume_capability: Some(cap),
            readonly: decide::readonly(&csi, &self.s.caps),
            secrets: secrets.into_iter().collect(),
            volume_context: csi
                .volume_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        };
        let response = tokio::time::timeout(
            self.s.timeout,
            self.csi_for(migrated).controller_publish_volume(request),
        )
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "context deadline exceeded",
            ))
        })
        .map_err(|status| Error::Csi {
            rpc: "ControllerPublishVolume",
            status,
        })?;
        Ok((response.publish_context.into_iter().collect(), written))
    }

    /// `csiDetach`: ControllerUnpublish, then finalizer, then status.
    async fn detach(&self, va: &VolumeAttachment) -> Result<(), Error> {
        let (spec, migrated) = self.resolve(va, false).await?;
        let csi = decide::csi_source(&spec)?.clone();
        let secrets = self.secrets(&spec).await?;
        let node = va.spec.node_name.as_str();
        let node_id = decide::node_id(
            self.csinode(node).as_deref(),
            node,
            &self.s.driver,
            Some(va),
        )?;
        let request = ControllerUnpublishVolumeRequest {
            volume_id: csi.volume_handle.clone(),
            node_id,
            secrets: secrets.into_iter().collect(),
        };
        tokio::time::timeout(
            self.s.timeout,
            self.csi_for(migrated).controller_unpublish_volume(request),
        )
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "context deadline exceeded",
            ))
        })
        .map_err(|status| Error::Csi {
            rpc: "ControllerUnpublishVolume",
            status,
        })?;
        let detached = |source| Error::Api {
            what: "could not mark as detached".into(),
            source,
        };
        let name = va.name_any();
        if let Some(patch) = decide::remove_va_finalizer_patch(va, &self.finalizer) {
            self.patch_va(&name, &patch, false)
                .await
                .map_err(detached)?;
        }
        if decide::needs_detached_status(va, &self.finalizer) {
            match self
                .patch_va(&name, &decide::detached_status_patch(), true)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(detached(e)),
            }
        }
        Ok(())
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The attach lane (`syncAttach`, or the trivial handler's mark-attached).
async fn reconcile_attach(va: Arc<VolumeAttachment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = va.name_any();
    ctx.backlog.started(Lane::Attach, &name);
    let _work = ctx.attach_queue.start(va.as_ref());
    if Lane::of(&va) == Lane::Detach || va.spec.attacher != ctx.s.driver {
        return Ok(Action::await_change());
    }
    let lock = ctx.lock_for(&name);
    let _held = lock.lock().await;
    // The lock may have waited for a detach: act on the newest version.
    let va = ctx.attachments.get(&ObjectRef::new(&name)).unwrap_or(va);
    if Lane::of(&va) == Lane::Detach {
        return Ok(Action::await_change());
    }
    // A version this process has already replaced (the watch has not
    // delivered our own writes yet): publishing from it again would repeat
    // the ControllerPublish; the event of our write triggers the next run.
    let uid = va.metadata.uid.clone().unwrap_or_default();
    if ctx.own_writes.is_object_stale(va.as_ref()) {
        return Ok(Action::await_change());
    }
    let attached = va.status.as_ref().is_some_and(|s| s.attached);
    if !ctx.s.caps.publish_unpublish {
        if !attached {
            ctx.patch_va(
                &name,
                &decide::attached_status_patch(&va, &BTreeMap::new()),
                true,
            )
            .await
            .map_err(|source| Error::Api {
                what: "failed to mark as attached".into(),
                source,
            })?;
        }
        return Ok(Action::await_change());
    }
    if !ctx.consume_force(&name, attached) && attached {
        return Ok(Action::await_change());
    }
    match ctx.attach(&va).await {
        Ok((metadata, metadata_version)) => {
            let new = ctx
                .patch_va(&name, &decide::attached_status_patch(&va, &metadata), true)
                .await
                .map_err(|source| Error::Api {
                    what: "failed to mark as attached".into(),
                    source,
                })?;
            // Only when the status patch made a new version (whose event
            // will come): the versions before it are now stale.
            if new.metadata.resource_version != va.metadata.resource_version {
                ctx.own_writes
                    .replaced(&uid, va.metadata.resource_version.as_deref());
                ctx.own_writes.replaced(&uid, metadata_version.as_deref());
            }
            ctx.backoff.reset(&name);
            info!(va = %name, "attached");
            Ok(Action::await_change())
        }
        Err(err) => {
            let patch = decide::attach_error_patch(&err, &now(), ctx.s.error_codes);
            if let Err(e) = ctx.patch_va(&name, &patch, true).await {
                debug!(va = %name, error = %e, "failed to save attach error to VolumeAttachment");
            }
            ctx.event(
                &va,
                EventType::Warning,
                "AttachFailed",
                &format!("failed to attach: {err}"),
            );
            Err(err)
        }
    }
}

/// The detach lane (`syncDetach`).
async fn reconcile_detach(va: Arc<VolumeAttachment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = va.name_any();
    ctx.backlog.started(Lane::Detach, &name);
    let _work = ctx.detach_queue.start(va.as_ref());
    if Lane::of(&va) == Lane::Attach
        || va.spec.attacher != ctx.s.driver
        || !ctx.s.caps.publish_unpublish
    {
        return Ok(Action::await_change());
    }
    let lock = ctx.lock_for(&name);
    let _held = lock.lock().await;
    let Some(va) = ctx.attachments.get(&ObjectRef::new(&name)) else {
        return Ok(Action::await_change());
    };
    let ours = va
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.contains(&ctx.finalizer));
    let attached = va.status.as_ref().is_some_and(|s| s.attached);
    if !ctx.consume_force(&name, attached) && !ours {
        return Ok(Action::await_change());
    }
    match ctx.detach(&va).await {
        Ok(()) => {
            ctx.backoff.reset(&name);
            info!(va = %name, "detached");
            Ok(Action::await_change())
        }
        Err(err) => {
            if let Err(e) = ctx
                .patch_va(&name, &decide::detach_error_patch(&err, &now()), true)
                .await
            {
                debug!(va = %name, error = %e, "failed to save detach error to VolumeAttachment");
            }
            ctx.event(
                &va,
                EventType::Warning,
                "DetachFailed",
                &format!("failed to detach: {err}"),
            );
            Err(err)
        }
    }
}

fn attach_error_policy(va: Arc<VolumeAttachment>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&va.name_any());
    ctx.attach_queue
        .retry_after_error(va.as_ref(), delay, false, err)
}

fn detach_error_policy(va: Arc<VolumeAttachment>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&va.name_any());
    ctx.detach_queue
        .retry_after_error(va.as_ref(), delay, false, err)
}

/// The PV lane (`SyncNewOrUpdatedPersistentVolume`).
async fn reconcile_pv(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _work = ctx.pv_queue.start(pv.as_ref());
    if !ctx.s.caps.publish_unpublish {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    let referenced = ctx
        .attachments
        .state()
        .iter()
        .any(|va| va.spec.source.persistent_volume_name.as_deref() == Some(name.as_str()));
    match decide::pv_action(&pv, &ctx.s.driver, &ctx.finalizer, referenced) {
        PvAction::Ignore | PvAction::Keep => Ok(Action::await_change()),
        PvAction::Remove => {
            let list = pv.metadata.finalizers.clone().unwrap_or_default();
            if let Some(ops) = decide::remove_pv_finalizer_patch(&list, &ctx.finalizer) {
                ctx.patch_pv(&name, ops)
                    .await
                    .map_err(|source| Error::Api {
                        what: "failed to remove finalizer from PersistentVolume".into(),
                        source,
                    })?;
                info!(pv = %name, "removed finalizer from PersistentVolume");
            }
            ctx.backoff.reset(&format!("pv/{name}"));
            Ok(Action::await_change())
        }
    }
}

fn pv_error_policy(pv: Arc<PersistentVolume>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&format!("pv/{}", pv.name_any()));
    ctx.pv_queue
        .retry_after_error(pv.as_ref(), delay, false, err)
}

/// `--resync`: every VolumeAttachment again, as the informer's resync.
async fn resync(ctx: Arc<Context>, attach: Sender, detach: Sender) {
    if ctx.s.resync.is_zero() {
        return futures::future::pending().await;
    }
    loop {
        tokio::time::sleep(ctx.s.resync).await;
        for va in ctx.attachments.state() {
            ctx.route(&va, &attach, &detach);
        }
    }
}

/// `--reconcile-sync`: compare `status.attached` with ListVolumes'
/// published nodes, and redo disagreeing VolumeAttachments with force-sync
/// (`ReconcileVA`). Only when the driver has both LIST_VOLUMES capabilities.
async fn reconcile_with_driver(ctx: Arc<Context>, attach: Sender, detach: Sender) {
    if !ctx.s.caps.list_published_nodes || ctx.s.reconcile_sync.is_zero() {
        return futures::future::pending().await;
    }
    if ctx.attachments.wait_until_ready().await.is_err() {
        return futures::future::pending().await;
    }
    loop {
        match tokio::time::timeout(ctx.s.timeout, list_published(&ctx)).await {
            Ok(Ok(published)) => {
                let observed: Vec<Observed> = ctx
                    .attachments
                    .state()
                    .iter()
                    .filter(|va| va.spec.attacher == ctx.s.driver)
                    .filter_map(|va| observe(&ctx, va))
                    .collect();
                for name in decide::reconcile_diff(&observed, &published) {
                    warn!(va = %name, "VolumeAttachment attached status and actual state do not match; processing it again");
                    let seen = observed
                        .iter()
                        .find(|o| o.name == name)
                        .is_some_and(|o| o.attached);
                    if let Ok(mut f) = ctx.force.lock() {
                        f.insert(name.clone(), seen);
                    }
                    if let Some(va) = ctx.attachments.get(&ObjectRef::new(&name)) {
                        ctx.route(&va, &attach, &detach);
                    }
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, "failed to reconcile VolumeAttachments: failed to ListVolumes")
            }
            Err(_) => warn!("failed to reconcile VolumeAttachments: ListVolumes timed out"),
        }
        tokio::time::sleep(ctx.s.reconcile_sync).await;
    }
}

fn observe(ctx: &Context, va: &VolumeAttachment) -> Option<Observed> {
    let node = va.spec.node_name.as_str();
    let node_id =
        decide::node_id(ctx.csinode(node).as_deref(), node, &ctx.s.driver, Some(va)).ok()?;
    let (spec, migrated) = match decide::source(va).ok()? {
        Source::Inline(spec) => (*spec, true),
        Source::Pv(name) => decide::processed_spec(ctx.pv(&name).ok()?.as_ref()).ok()?,
    };
    let csi = decide::csi_source(&spec).ok()?;
    let mut handle = csi.volume_handle.clone();
    if migrated {
        handle = csi_translation::repair_volume_handle(&csi.driver, &handle, &node_id).ok()?;
    }
    Some(Observed {
        name: va.name_any(),
        attached: va.status.as_ref().is_some_and(|s| s.attached),
        handle,
        node_id,
    })
}

/// ListVolumes, all pages: volume ID → published node IDs.
async fn list_published(ctx: &Context) -> Result<HashMap<String, Vec<String>>, Error> {
    let mut out = HashMap::new();
    let mut token = String::new();
    loop {
        let response = ctx
            .csi
            .list_volumes(ListVolumesRequest {
                max_entries: ctx.s.max_entries,
                starting_token: token.clone(),
            })
            .await
            .map_err(|status| Error::Csi {
                rpc: "ListVolumes",
                status,
            })?;
        for entry in response.entries {
            let (Some(volume), Some(status)) = (entry.volume, entry.status) else {
                continue;
            };
            out.insert(volume.volume_id, status.published_node_ids);
        }
        if response.next_token.is_empty() {
            return Ok(out);
        }
        token = response.next_token;
    }
}

/// Every 2 s: the backlog gauges, and a `Waiting` Event on each
/// VolumeAttachment that has waited longer than [`BACKLOG_EVENT_AFTER`]
/// for a worker (once per wait).
async fn watch_backlog(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Instant::now();
        let waiting: Vec<((Lane, String), Duration)> = match ctx.backlog.waiting.lock() {
            Ok(w) => w
                .iter()
                .map(|(k, t)| (k.clone(), now.saturating_duration_since(*t)))
                .collect(),
            Err(_) => continue,
        };
        for (lane, label) in [(Lane::Attach, "attach"), (Lane::Detach, "detach")] {
            let in_lane: Vec<_> = waiting.iter().filter(|((l, _), _)| *l == lane).collect();
            let l = LaneLabel { lane: label.into() };
            ctx.metrics
                .backlog
                .get_or_create(&l)
                .set(in_lane.len() as i64);
            let oldest = in_lane
                .iter()
                .map(|(_, d)| d.as_secs_f64())
                .fold(0.0, f64::max);
            ctx.metrics.oldest.get_or_create(&l).set(oldest);
            for ((_, name), waited) in &in_lane {
                if *waited < BACKLOG_EVENT_AFTER {
                    continue;
                }
                let key = (lane, name.clone());
                let first = ctx
                    .backlog
                    .announced
                    .lock()
                    .map(|mut a| a.insert(key))
                    .unwrap_or(false);
                if !first {
                    continue;
                }
                if let Some(va) = ctx.attachments.get(&ObjectRef::new(name)) {
                    ctx.event(
                        &va,
                        EventType::Normal,
                        "Waiting",
                        &format!(
                            "waited {}s for a free {label} worker: {} VolumeAttachment(s) queued in the {label} lane, --worker-threads={}",
                            waited.as_secs(),
                            in_lane.len(),
                            ctx.s.workers
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
