//! The I/O around [`crate::rules`]: watches of snapshots, contents, classes
//! and claims, a snapshot queue and a content queue (`--worker-threads`
//! each), the writes and the events, in the order upstream's
//! `syncSnapshot`/`syncContent` do them
//! (kubernetes-csi/external-snapshotter: pkg/common-controller
//! snapshot_controller_base.go and snapshot_controller.go).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use serde_json::json;
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::{Queue, Stop, cache_all, drain, reflect_all, resync_every};
use sidecar_runtime::events::{EventQueue, EventType};
use sidecar_runtime::finalizers;
use sidecar_runtime::gofmt::{api_error, quote};
use sidecar_runtime::kube_client::Prepaid;
use sidecar_runtime::own_writes::OwnWrites;
use sidecar_runtime::workqueue::QueueMetrics;
use sidecar_runtime::write::{CachedWriter, Urgency};
use snapshot_api::groupsnapshot::v1::VolumeGroupSnapshot;
use snapshot_api::names::{
    ANN_VOLUME_SNAPSHOT_BEING_DELETED, PVC_AS_SOURCE_FINALIZER,
    VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER, VOLUME_SNAPSHOT_BOUND_FINALIZER,
    VOLUME_SNAPSHOT_CONTENT_FINALIZER, VOLUME_SNAPSHOT_IN_GROUP_FINALIZER,
};
use snapshot_api::snapshot::v1::VolumeSnapshotStatus;
use snapshot_api::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::metrics::{OperationMetrics, kind, op};
use crate::rules::{self, ContentLookup, ContentStep, Deletion, Problem, reason};

/// The snapshot queue's name, as upstream's.
pub const SNAPSHOT_QUEUE: &str = "snapshot-controller-snapshot";
/// The content queue's name, as upstream's.
pub const CONTENT_QUEUE: &str = "snapshot-controller-content";

/// "snapshot controller failed to update <name> on API server: <message>",
/// upstream's `controllerUpdateError`.
fn update_error(name: &str, message: &str) -> String {
    format!("snapshot controller failed to update {name} on API server: {message}")
}

/// What [`run`] needs.
pub struct Setup {
    /// The client for the core API (claims, volumes, events), throttled by
    /// `--kube-api-qps`/`--kube-api-burst`.
    pub client: Client,
    /// The client for the snapshot API, with a token bucket of its own:
    /// upstream builds its core and snapshot clientsets separately from
    /// the same config, so each gets the flags' whole budget.
    pub snapshot_client: Client,
    /// The same budget, for claim Updates built after their token.
    pub prepaid: Prepaid,
    /// Events with source `snapshot-controller`.
    pub recorder: EventQueue,
    /// The operation metrics.
    pub metrics: OperationMetrics,
    /// `--worker-threads`.
    pub workers: u16,
    /// `--resync-period`.
    pub resync: Duration,
    /// `--retry-interval-start` / `--retry-interval-max`.
    pub retry: (Duration, Duration),
    /// `--prevent-volume-mode-conversion`.
    pub prevent_volume_mode_conversion: bool,
    /// `--enable-distributed-snapshotting`: watch Nodes and label dynamic
    /// contents with the node their PV's affinity selects.
    pub distributed_snapshotting: bool,
}

/// Everything a sync needs.
pub struct Context {
    client: Client,
    snapshot_client: Client,
    recorder: EventQueue,
    metrics: OperationMetrics,
    backoff: PerObjectBackoff<String>,
    snapshot_queue: Queue,
    content_queue: Queue,
    own_writes: OwnWrites,
    snapshots: Store<VolumeSnapshot>,
    contents: Store<VolumeSnapshotContent>,
    classes: Store<VolumeSnapshotClass>,
    claims: Store<PersistentVolumeClaim>,
    claim_writer: CachedWriter<PersistentVolumeClaim>,
    snapshot_tx: futures::channel::mpsc::UnboundedSender<ObjectRef<VolumeSnapshot>>,
    prevent_volume_mode_conversion: bool,
    nodes: Option<Store<Node>>,
}

fn snapshot_ref(ns: &str, name: &str) -> ObjectRef<VolumeSnapshot> {
    ObjectRef::new(name).within(ns)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Runs both queues until `shutdown` resolves.
pub async fn run(setup: Setup, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = setup.client.clone();
    let snap_client = setup.snapshot_client.clone();
    let (classes, class_loop) = cache_all::<VolumeSnapshotClass>(snap_client.clone());
    let (claims, claim_loop) = cache_all::<PersistentVolumeClaim>(client.clone());
    let (nodes, node_loop) = if setup.distributed_snapshotting {
        let (s, l) = cache_all::<Node>(client.clone());
        (Some(s), futures::future::Either::Left(l))
    } else {
        (
            None,
            futures::future::Either::Right(futures::future::pending::<()>()),
        )
    };
    let (snapshots, snapshot_writer) = reflector::store::<VolumeSnapshot>();
    let (contents, content_writer) = reflector::store::<VolumeSnapshotContent>();
    // Upstream serves no workqueue metrics; the queues' metrics stay private.
    let mut private = Registry::default();
    let queue_metrics = QueueMetrics::register(&mut private, &[SNAPSHOT_QUEUE, CONTENT_QUEUE]);
    let (snapshot_tx, snapshot_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<VolumeSnapshot>>();
    let (content_tx, content_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<VolumeSnapshotContent>>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        snapshot_client: snap_client.clone(),
        recorder: setup.recorder,
        metrics: setup.metrics,
        backoff: PerObjectBackoff::new(setup.retry.0, setup.retry.1),
        snapshot_queue: Queue::new(SNAPSHOT_QUEUE, queue_metrics.clone()),
        content_queue: Queue::new(CONTENT_QUEUE, queue_metrics),
        own_writes: OwnWrites::default(),
        snapshots: snapshots.clone(),
        contents: contents.clone(),
        classes: classes.clone(),
        claim_writer: CachedWriter::namespaced(setup.prepaid, claims.clone()),
        claims,
        snapshot_tx: snapshot_tx.clone(),
        prevent_volume_mode_conversion: setup.prevent_volume_mode_conversion,
        nodes,
    });

    let watch_ctx = ctx.clone();
    let content_tx_s = content_tx.clone();
    let snapshot_loop = reflect_all(snap_client.clone(), snapshot_writer).for_each(move |event| {
        match event {
            Ok(watcher::Event::Apply(vs)) | Ok(watcher::Event::InitApply(vs)) => {
                let _ = watch_ctx
                    .snapshot_tx
                    .unbounded_send(ObjectRef::from_obj(&vs));
            }
            Ok(watcher::Event::Delete(vs)) => watch_ctx.snapshot_gone(&vs, &content_tx_s),
            _ => {}
        }
        futures::future::ready(())
    });
    let watch_ctx = ctx.clone();
    let content_tx_c = content_tx.clone();
    let content_loop = reflect_all(snap_client.clone(), content_writer).for_each(move |event| {
        match event {
            Ok(watcher::Event::Apply(c)) | Ok(watcher::Event::InitApply(c)) => {
                let _ = content_tx_c.unbounded_send(ObjectRef::from_obj(&c));
            }
            Ok(watcher::Event::Delete(c)) => {
                watch_ctx.backoff.reset(&c.name_any());
                // The snapshot learns its content is gone.
                let r = &c.spec.volume_snapshot_ref;
                if let (Some(ns), Some(name)) = (&r.namespace, &r.name) {
                    let _ = watch_ctx.snapshot_tx.unbounded_send(snapshot_ref(ns, name));
                }
            }
            _ => {}
        }
        futures::future::ready(())
    });

    // Upstream's informer resync: everything is looked at again.
    let resync_loop = futures::future::join(
        resync_every(snapshots.clone(), setup.resync, move |r| {
            let _ = snapshot_tx.unbounded_send(r);
        }),
        resync_every(contents.clone(), setup.resync, move |r| {
            let _ = content_tx.unbounded_send(r);
        }),
    );

    let stop = Stop::new(shutdown);
    let workers = setup.workers;
    let snapshot_ctl = Controller::for_stream(
        futures::stream::pending::<Result<VolumeSnapshot, watcher::Error>>(),
        snapshots.clone(),
    )
    .with_config(controller::Config::default().concurrency(workers))
    .reconcile_on(snapshot_rx);
    let content_ctl = Controller::for_stream(
        futures::stream::pending::<Result<VolumeSnapshotContent, watcher::Error>>(),
        contents.clone(),
    )
    .with_config(controller::Config::default().concurrency(workers))
    .reconcile_on(content_rx);

    let run_ctx = ctx.clone();
    let controllers = async move {
        let ready = futures::future::join4(
            run_ctx.snapshots.wait_until_ready(),
            run_ctx.contents.wait_until_ready(),
            run_ctx.classes.wait_until_ready(),
            run_ctx.claims.wait_until_ready(),
        )
        .await;
        if ready.0.is_err() || ready.1.is_err() || ready.2.is_err() || ready.3.is_err() {
            warn!("caches stopped before they were ready");
            return;
        }
        info!("caches synced");
        let s = drain(
            snapshot_ctl.graceful_shutdown_on(stop.signal()).run(
                reconcile_snapshot,
                snapshot_error_policy,
                run_ctx.clone(),
            ),
            SNAPSHOT_QUEUE,
        );
        let c = drain(
            content_ctl.graceful_shutdown_on(stop.signal()).run(
                reconcile_content,
                content_error_policy,
                run_ctx.clone(),
            ),
            CONTENT_QUEUE,
        );
        futures::future::join(s, c).await;
    };
    tokio::select! {
        _ = class_loop => {},
        _ = claim_loop => {},
        _ = node_loop => {},
        _ = snapshot_loop => {},
        _ = content_loop => {},
        _ = resync_loop => {},
        _ = controllers => {},
    }
}

async fn reconcile_snapshot(vs: Arc<VolumeSnapshot>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _work = ctx.snapshot_queue.start(vs.as_ref());
    ctx.sync_snapshot_by_key((*vs).clone()).await?;
    ctx.backoff.reset(&rules::snapshot_key(&vs));
    Ok(Action::await_change())
}

fn snapshot_error_policy(vs: Arc<VolumeSnapshot>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&rules::snapshot_key(&vs));
    ctx.snapshot_queue
        .retry_after_error(vs.as_ref(), delay, err.is_routine(), err)
}

async fn reconcile_content(
    content: Arc<VolumeSnapshotContent>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _work = ctx.content_queue.start(content.as_ref());
    ctx.sync_content(&content).await?;
    ctx.backoff.reset(&content.name_any());
    Ok(Action::await_change())
}

fn content_error_policy(c: Arc<VolumeSnapshotContent>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&c.name_any());
    ctx.content_queue
        .retry_after_error(c.as_ref(), delay, false, err)
}

fn json_patch(ops: serde_json::Value) -> Result<json_patch::Patch, Error> {
    serde_json::from_value(ops).map_err(|e| Error::sync(format!("building a patch: {e}")))
}

impl Context {
    fn snapshots_api(&self, ns: &str) -> Api<VolumeSnapshot> {
        Api::namespaced(self.snapshot_client.clone(), ns)
    }

    fn contents_api(&self) -> Api<VolumeSnapshotContent> {
        Api::all(self.snapshot_client.clone())
    }

    fn event(&self, vs: &VolumeSnapshot, type_: EventType, reason: &str, message: &str) {
        self.recorder
            .send(&vs.object_ref(&()), type_, reason, message);
    }

    fn content(&self, name: &str) -> Option<Arc<VolumeSnapshotContent>> {
        self.contents.get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<VolumeSnapshotClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(ns))
    }

    fn snapshots_in(&self, ns: &str) -> Vec<Arc<VolumeSnapshot>> {
        self.snapshots
            .state()
            .into_iter()
            .filter(|s| s.namespace().as_deref() == Some(ns))
            .collect()
    }

    /// A snapshot left the cache (`deleteSnapshot`): its DeleteSnapshot
    /// operation ends, and its content is synced to learn about it.
    fn snapshot_gone(
        &self,
        vs: &VolumeSnapshot,
        content_tx: &futures::channel::mpsc::UnboundedSender<ObjectRef<VolumeSnapshotContent>>,
    ) {
        self.backoff.reset(&rules::snapshot_key(vs));
        let driver = self.snapshot_driver(vs);
        self.metrics
            .succeeded(op::DELETE_SNAPSHOT, &vs.uid().unwrap_or_default(), &driver);
        if let Some(name) = rules::bound_content_name(vs).filter(|n| !n.is_empty()) {
            self.content_queue.added(name);
            let _ = content_tx.unbounded_send(ObjectRef::new(name));
        }
    }

    /// The snapshot's driver for the metrics (`getSnapshotDriverName`): the
    /// pre-provisioned content's, else the class's, else empty.
    fn snapshot_driver(&self, vs: &VolumeSnapshot) -> String {
        if let Some(c) = vs
            .spec
            .source
            .volume_snapshot_content_name
            .as_deref()
            .and_then(|n| self.content(n))
            .filter(|c| !c.spec.driver.is_empty())
        {
            return c.spec.driver.clone();
        }
        vs.spec
            .volume_snapshot_class_name
            .as_deref()
            .and_then(|n| self.class(n))
            .map(|c| c.spec.driver.clone())
            .unwrap_or_default()
    }

    fn snapshot_type(vs: &VolumeSnapshot) -> &'static str {
        if vs.spec.source.volume_snapshot_content_name.is_some() {
            kind::PRE_PROVISIONED
        } else {
            kind::DYNAMIC
        }
    }

    /// `syncSnapshotByKey`: the class first, then the sync.
    async fn sync_snapshot_by_key(&self, vs: VolumeSnapshot) -> Result<(), Error> {
        let vs = match self.check_and_update_class(vs).await {
            Ok(vs) => vs,
            // A snapshot being deleted whose class is gone still goes.
            Err((vs, _, true)) if vs.metadata.deletion_timestamp.is_some() => vs,
            Err((_, e, _)) => return Err(e),
        };
        self.sync_snapshot(vs).await
    }

    /// `checkAndUpdateSnapshotClass`. The error carries the snapshot back
    /// and whether the named class was not found.
    async fn check_and_update_class(
        &self,
        vs: VolumeSnapshot,
    ) -> Result<VolumeSnapshot, (VolumeSnapshot, Error, bool)> {
        if let Some(name) = vs.spec.volume_snapshot_class_name.clone() {
            if self.class(&name).is_some() {
                return Ok(vs);
            }
            let err = format!(
                "volumesnapshotclass.snapshot.storage.k8s.io {} not found",
                quote(&name)
            );
            self.error_status(
                &vs,
                reason::GET_SNAPSHOT_CLASS_FAILED,
                &format!("Failed to get snapshot class with error {err}"),
                false,
            )
            .await;
            return Err((vs, Error::sync(err), true));
        }
        if vs.spec.source.volume_snapshot_content_name.is_some()
            || rules::group_parent(&vs).is_some()
        {
            return Ok(vs);
        }
        match self.set_default_class(&vs).await {
            Ok(v) => Ok(v),
            Err(err) => {
                self.error_status(
                    &vs,
                    reason::SET_DEFAULT_SNAPSHOT_CLASS_FAILED,
                    &format!("Failed to set default snapshot class with error {err}"),
                    false,
                )
                .await;
                Err((vs, Error::sync(err), false))
            }
        }
    }

    /// The source PV of a dynamic snapshot (`getVolumeFromVolumeSnapshot`):
    /// claim from the cache, PV by a direct GET, binding checked.
    async fn source_volume(
        &self,
        vs: &VolumeSnapshot,
    ) -> Result<(Arc<PersistentVolumeClaim>, PersistentVolume), String> {
        let ns = vs.namespace().unwrap_or_default();
        let found = vs
            .spec
            .source
            .persistent_volume_claim_name
            .as_deref()
            .and_then(|n| self.claim(&ns, n));
        let claim = rules::source_claim(vs, found.as_deref())?;
        let claim = self
            .claim(&ns, &claim.name_any())
            .ok_or_else(|| "claim vanished".to_string())?;
        let pv_name = rules::bound_volume_name(&claim)?;
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get(&pv_name)
            .await
            .map_err(|e| {
                format!(
                    "failed to retrieve PV {pv_name} from the API server: {}",
                    quote(&api_error(&e))
                )
            })?;
        Ok((claim, pv))
    }

    /// `SetDefaultSnapshotClass` for a dynamic snapshot without a class.
    async fn set_default_class(&self, vs: &VolumeSnapshot) -> Result<VolumeSnapshot, String> {
        let (claim, pv) = self.source_volume(vs).await?;
        let driver = rules::volume_driver(vs, &claim, &pv)?;
        let classes = self.classes.state();
        let class = rules::default_class(classes.iter().map(|c| c.as_ref()), &driver)?;
        let ops = json!([{ "op": "replace", "path": "/spec/volumeSnapshotClassName", "value": class.name_any() }]);
        let patch = json_patch(ops).map_err(|e| e.to_string())?;
        match self
            .snapshots_api(&vs.namespace().unwrap_or_default())
            .patch(
                &vs.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(v) => Ok(v),
            Err(e) => Err(api_error(&e)),
        }
    }

    /// `updateSnapshotErrorStatusWithEvent`: writes the error (unless the
    /// same message is there) and sends the Warning, even if the write
    /// failed. Returns the written snapshot.
    async fn error_status(
        &self,
        vs: &VolumeSnapshot,
        reason: &str,
        message: &str,
        set_ready_false: bool,
    ) -> Option<VolumeSnapshot> {
        let status = rules::error_status(vs.status.as_ref(), message, set_ready_false, now())?;
        let written = self.replace_status(vs, status).await;
        self.event(vs, EventType::Warning, reason, message);
        match written {
            Ok(v) => Some(v),
            Err(e) => {
                debug!(snapshot = %rules::snapshot_key(vs), error = %e, "updating the error status failed");
                None
            }
        }
    }

    async fn problem(&self, vs: &VolumeSnapshot, p: &Problem) -> Error {
        self.error_status(vs, p.reason, &p.message, p.set_ready_false)
            .await;
        Error::sync(p.error.clone())
    }

    async fn replace_status(
        &self,
        vs: &VolumeSnapshot,
        status: VolumeSnapshotStatus,
    ) -> Result<VolumeSnapshot, kube::Error> {
        let mut next = vs.clone();
        next.status = Some(status);
        self.snapshots_api(&vs.namespace().unwrap_or_default())
            .replace_status(&vs.name_any(), &PostParams::default(), &next)
            .await
    }

    /// `syncSnapshot`.
    async fn sync_snapshot(&self, vs: VolumeSnapshot) -> Result<(), Error> {
        if let Err(e) = self.check_and_remove_claim_finalizer(&vs, false).await {
            warn!(snapshot = %rules::snapshot_key(&vs), error = %e, "error check and remove PVC finalizer");
            self.event(
                &vs,
                EventType::Warning,
                reason::ERROR_PVC_FINALIZER,
                "Error check and remove PVC Finalizer for VolumeSnapshot",
            );
        }
        if vs.metadata.deletion_timestamp.is_some() {
            return self.process_deletion(&vs).await;
        }
        let src = &vs.spec.source;
        if src.persistent_volume_claim_name.is_some() == src.volume_snapshot_content_name.is_some()
        {
            let msg = "Exactly one of PersistentVolumeClaimName and VolumeSnapshotContentName should be specified";
            self.error_status(&vs, reason::SNAPSHOT_VALIDATION_ERROR, msg, true)
                .await;
            return Err(Error::sync(msg));
        }
        let vs = match self.add_snapshot_finalizers(&vs).await {
            Ok(v) => v,
            Err(e) if e.is_routine() => return Err(e),
            Err(e) => {
                self.event(
                    &vs,
                    EventType::Warning,
                    reason::SNAPSHOT_FINALIZER_ERROR,
                    &format!("Failed to check and update snapshot: {e}"),
                );
                return Err(e);
            }
        };
        if !rules::is_ready(&vs) || rules::bound_content_name(&vs).is_none() {
            return self.sync_unready(&vs).await;
        }
        self.sync_ready(&vs).await
    }

    /// The checked content of a snapshot, by its kind.
    async fn lookup_content(
        &self,
        vs: &VolumeSnapshot,
    ) -> Result<Option<Arc<VolumeSnapshotContent>>, Error> {
        let (name, pre) = match &vs.spec.source.volume_snapshot_content_name {
            Some(n) => (n.clone(), true),
            None => (rules::dynamic_content_name(vs), false),
        };
        let cached = self.content(&name);
        let found = if pre {
            rules::preprovisioned_content(vs, cached.as_deref()).map_err(Error::sync)?
        } else {
            rules::dynamic_content(vs, cached.as_deref())
        };
        match found {
            ContentLookup::Missing => Ok(None),
            ContentLookup::Found(_) => Ok(cached),
            ContentLookup::Wrong(p) => Err(self.problem(vs, &p).await),
        }
    }

    /// `checkandAddSnapshotFinalizers`; returns the snapshot as written.
    async fn add_snapshot_finalizers(&self, vs: &VolumeSnapshot) -> Result<VolumeSnapshot, Error> {
        let content = self.lookup_content(vs).await?;
        let (source, bound) = rules::finalizers_to_add(vs, content.as_deref());
        if !source && !bound {
            return Ok(vs.clone());
        }
        let mut add = Vec::new();
        if source {
            add.push(VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER);
        }
        if bound {
            add.push(VOLUME_SNAPSHOT_BOUND_FINALIZER);
        }
        let mut ops = vec![
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": vs.resource_version()}),
        ];
        if vs.finalizers().is_empty() {
            ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": add}));
        } else {
            for f in add {
                ops.push(json!({"op": "add", "path": "/metadata/finalizers/-", "value": f}));
            }
        }
        let written = self
            .snapshots_api(&vs.namespace().unwrap_or_default())
            .patch(
                &vs.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(json_patch(serde_json::Value::Array(ops))?),
            )
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 || s.code == 422 => {
                    Error::Stale(rules::snapshot_key(vs))
                }
                e => Error::sync(update_error(&rules::snapshot_key(vs), &api_error(&e))),
            })?;
        debug!(snapshot = %rules::snapshot_key(vs), "added protection finalizers");
        Ok(written)
    }

    /// `syncUnreadySnapshot`.
    async fn sync_unready(&self, vs: &VolumeSnapshot) -> Result<(), Error> {
        let key = rules::snapshot_key(vs);
        let uid = vs.uid().unwrap_or_default();
        let driver = self.snapshot_driver(vs);
        let kind = Self::snapshot_type(vs);
        if !rules::is_created(vs) {
            self.metrics.start(op::CREATE_SNAPSHOT, &uid, &driver, kind);
        }
        self.metrics
            .start(op::CREATE_SNAPSHOT_AND_READY, &uid, &driver, kind);

        if let Some(name) = vs.spec.source.volume_snapshot_content_name.clone() {
            let Some(content) = self.lookup_content(vs).await? else {
                self.error_status(
                    vs,
                    reason::SNAPSHOT_CONTENT_MISSING,
                    "VolumeSnapshotContent is missing",
                    true,
                )
                .await;
                return Err(Error::sync(format!(
                    "snapshot {key} requests an non-existing content {name}"
                )));
            };
            let content = match self.bind_content(vs, &content).await {
                Ok(c) => c,
                Err(e) => {
                    self.error_status(
                        vs,
                        reason::SNAPSHOT_BIND_FAILED,
                        &format!("Snapshot failed to bind VolumeSnapshotContent, {e}"),
                        true,
                    )
                    .await;
                    return Err(Error::sync(format!(
                        "snapshot {key} is bound, but VolumeSnapshotContent {name} is not bound to the VolumeSnapshot correctly, {e}"
                    )));
                }
            };
            return self.update_status_or_report(vs, &content, false).await;
        }

        if rules::group_parent(vs).is_some() {
            let Some(name) = rules::bound_content_name(vs) else {
                return Err(Error::sync(format!(
                    "detected group snapshot member {key} with no content, retrying"
                )));
            };
            let Some(content) = self.content(name) else {
                return Err(Error::sync(format!(
                    "group snapshot member {key} requests an non-existing content {name}"
                )));
            };
            return self.update_status_or_report(vs, &content, false).await;
        }

        if let Some(content) = self.lookup_content(vs).await? {
            if content.spec.source.snapshot_handle.is_some() {
                self.error_status(
                    vs,
                    reason::SNAPSHOT_HANDLE_SET,
                    &format!("Snapshot handle should not be set in content {key} for dynamic provisioning"),
                    true,
                )
                .await;
                return Err(Error::sync(format!(
                    "snapshotHandle should not be set in the content for dynamic provisioning for snapshot {key}"
                )));
            }
            // `bindandUpdateVolumeSnapshot` reports with readyToUse false.
            return self.update_status_or_report(vs, &content, true).await;
        }

        if vs.spec.source.persistent_volume_claim_name.is_none() {
            self.error_status(
                vs,
                reason::SNAPSHOT_PVC_SOURCE_MISSING,
                &format!("PVC source for snapshot {key} is missing"),
                true,
            )
            .await;
            return Err(Error::sync(format!(
                "expected PVC source for snapshot {key} but got nil"
            )));
        }
        let content = match self.create_content(vs).await {
            Ok(c) => c,
            Err(e) => {
                self.error_status(
                    vs,
                    reason::SNAPSHOT_CONTENT_CREATION_FAILED,
                    &format!("Failed to create snapshot content with error {e}"),
                    true,
                )
                .await;
                return Err(Error::sync(e));
            }
        };
        self.update_status_or_report(vs, &content, false).await
    }

    async fn update_status_or_report(
        &self,
        vs: &VolumeSnapshot,
        content: &VolumeSnapshotContent,
        set_ready_false: bool,
    ) -> Result<(), Error> {
        if let Err(e) = self.update_status(vs, content).await {
            self.error_status(
                vs,
                reason::SNAPSHOT_STATUS_UPDATE_FAILED,
                &format!("Snapshot status update failed, {e}"),
                set_ready_false,
            )
            .await;
            return Err(Error::sync(e));
        }
        Ok(())
    }

    /// `checkandBindSnapshotContent`: the content's ref UID (and class).
    async fn bind_content(
        &self,
        vs: &VolumeSnapshot,
        content: &VolumeSnapshotContent,
    ) -> Result<VolumeSnapshotContent, String> {
        let Some(ops) = rules::bind_patch(vs, content)? else {
            return Ok(content.clone());
        };
        let patch = json_patch(ops).map_err(|e| e.to_string())?;
        self.contents_api()
            .patch(
                &content.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
            .map_err(|e| api_error(&e))
    }

    /// `updateSnapshotStatus`: the fresh snapshot's status merged with the
    /// content's, written when it changed, with SnapshotCreated and
    /// SnapshotReady and their metrics.
    async fn update_status(
        &self,
        vs: &VolumeSnapshot,
        content: &VolumeSnapshotContent,
    ) -> Result<(), String> {
        let key = rules::snapshot_key(vs);
        let api = self.snapshots_api(&vs.namespace().unwrap_or_default());
        let fresh = api.get(&vs.name_any()).await.map_err(|e| {
            format!(
                "error get snapshot {key} from api server: {}",
                api_error(&e)
            )
        })?;
        let Some(status) = rules::merged_status(fresh.status.as_ref(), content) else {
            return Ok(());
        };
        let mut next = fresh.clone();
        next.status = Some(status);
        let uid = vs.uid().unwrap_or_default();
        let driver = &content.spec.driver;
        if !rules::is_created(&fresh) && rules::is_created(&next) {
            self.metrics.succeeded(op::CREATE_SNAPSHOT, &uid, driver);
            self.event(
                vs,
                EventType::Normal,
                reason::SNAPSHOT_CREATED,
                &format!("Snapshot {key} was successfully created by the CSI driver."),
            );
        }
        if !rules::is_ready(&fresh) && rules::is_ready(&next) {
            self.metrics
                .succeeded(op::CREATE_SNAPSHOT_AND_READY, &uid, driver);
            self.event(
                vs,
                EventType::Normal,
                reason::SNAPSHOT_READY,
                &format!("Snapshot {key} is ready to use."),
            );
        }
        api.replace_status(&vs.name_any(), &PostParams::default(), &next)
            .await
            .map_err(|e| update_error(&key, &api_error(&e)))?;
        Ok(())
    }

    /// `createSnapshotContent`: the claim finalizer, the inputs, the
    /// content; an existing one of that name is reused.
    async fn create_content(&self, vs: &VolumeSnapshot) -> Result<VolumeSnapshotContent, String> {
        let key = rules::snapshot_key(vs);
        self.ensure_claim_finalizer(vs).await?;
        let wrap = |e: String| {
            format!(
                "failed to get input parameters to create snapshot {}: {}",
                vs.name_any(),
                quote(&e)
            )
        };
        let Some(class_name) = vs.spec.volume_snapshot_class_name.as_deref() else {
            return Err(wrap(format!(
                "failed to take snapshot {} without a snapshot class",
                vs.name_any()
            )));
        };
        let class = self.class(class_name).ok_or_else(|| {
            wrap(format!(
                "volumesnapshotclass.snapshot.storage.k8s.io {} not found",
                quote(class_name)
            ))
        })?;
        let (_, pv) = self.source_volume(vs).await.map_err(wrap)?;
        let content_name = rules::dynamic_content_name(vs);
        let secret = rules::snapshotter_secret(
            &class.spec.parameters.clone().unwrap_or_default(),
            &content_name,
            vs,
        )
        .map_err(wrap)?;
        let spec = pv.spec.clone().unwrap_or_default();
        let Some(csi) = spec.csi.as_ref() else {
            return Err(format!(
                "cannot find CSI PersistentVolumeSource for volume {}",
                pv.name_any()
            ));
        };
        let mode = self
            .prevent_volume_mode_conversion
            .then_some(spec.volume_mode.as_deref())
            .flatten();
        let managed_by = self.nodes.as_ref().and_then(|nodes| {
            let all = nodes.state();
            rules::managed_by_node(&pv, all.iter().map(|n| n.as_ref()))
        });
        let content = rules::new_dynamic_content(
            vs,
            &class,
            &csi.volume_handle,
            mode,
            secret.as_ref(),
            managed_by.as_deref(),
        );
        let created = match self
            .contents_api()
            .create(&PostParams::default(), &content)
            .await
        {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(content = %content_name, snapshot = %key, "content already exists, reusing");
                content
            }
            Err(e) => {
                let text = api_error(&e);
                self.event(
                    vs,
                    EventType::Warning,
                    reason::CREATE_SNAPSHOT_CONTENT_FAILED,
                    &format!(
                        "Error creating volume snapshot content object for snapshot {key}: {text}."
                    ),
                );
                return Err(update_error(&key, &text));
            }
        };
        self.event(
            vs,
            EventType::Normal,
            reason::CREATING_SNAPSHOT,
            &format!("Waiting for a snapshot {key} to be created by the CSI driver."),
        );
        Ok(created)
    }

    /// `ensurePVCFinalizer`: the source claim gets
    /// `pvc-as-source-protection` while its snapshot is taken.
    async fn ensure_claim_finalizer(&self, vs: &VolumeSnapshot) -> Result<(), String> {
        let ns = vs.namespace().unwrap_or_default();
        let Some(claim) = vs
            .spec
            .source
            .persistent_volume_claim_name
            .as_deref()
            .and_then(|n| self.claim(&ns, n))
        else {
            return Err(update_error(
                &vs.name_any(),
                "cannot get claim from snapshot",
            ));
        };
        if !rules::claim_needs_finalizer(&claim)? {
            return Ok(());
        }
        self.claim_writer
            .replace(
                &claim,
                &self.own_writes,
                "add the snapshot source finalizer",
                Urgency::Now,
                |c| finalizers::add(c, PVC_AS_SOURCE_FINALIZER),
            )
            .await
            .map_err(|e| update_error(&claim.name_any(), &e.to_string()))?;
        info!(claim = %format!("{ns}/{}", claim.name_any()), "added protection finalizer to persistent volume claim");
        Ok(())
    }

    /// `checkandRemovePVCFinalizer`: the claim's finalizer goes once no
    /// snapshot of it (other than `vs` when `skip_current`) is unready.
    async fn check_and_remove_claim_finalizer(
        &self,
        vs: &VolumeSnapshot,
        skip_current: bool,
    ) -> Result<(), String> {
        let ns = vs.namespace().unwrap_or_default();
        let Some(claim) = vs
            .spec
            .source
            .persistent_volume_claim_name
            .as_deref()
            .and_then(|n| self.claim(&ns, n))
        else {
            return Ok(());
        };
        if !finalizers::has(claim.as_ref(), PVC_AS_SOURCE_FINALIZER) {
            return Ok(());
        }
        let snapshots = self.snapshots_in(&ns);
        if rules::claim_in_use(
            &claim.name_any(),
            vs,
            snapshots.iter().map(|s| s.as_ref()),
            skip_current,
        ) {
            return Ok(());
        }
        self.claim_writer
            .replace(
                &claim,
                &self.own_writes,
                "remove the snapshot source finalizer",
                Urgency::Now,
                |c| finalizers::remove(c, PVC_AS_SOURCE_FINALIZER),
            )
            .await
            .map_err(|e| update_error(&claim.name_any(), &e.to_string()))?;
        info!(claim = %format!("{ns}/{}", claim.name_any()), snapshot = %vs.name_any(), "removed protection finalizer from persistent volume claim");
        Ok(())
    }

    /// `syncReadySnapshot`: the bound content must exist and point back.
    async fn sync_ready(&self, vs: &VolumeSnapshot) -> Result<(), Error> {
        let name = rules::bound_content_name(vs).unwrap_or_default();
        let Some(content) = self.content(name) else {
            self.error_status(
                vs,
                reason::SNAPSHOT_CONTENT_MISSING,
                "VolumeSnapshotContent is missing",
                true,
            )
            .await;
            return Ok(());
        };
        if !rules::ref_matches(vs, &content) {
            self.error_status(
                vs,
                reason::SNAPSHOT_MISBOUND,
                "VolumeSnapshotContent is not bound to the VolumeSnapshot correctly",
                true,
            )
            .await;
        }
        Ok(())
    }

    /// `processSnapshotWithDeletionTimestamp` and what follows it.
    async fn process_deletion(&self, vs: &VolumeSnapshot) -> Result<(), Error> {
        let key = rules::snapshot_key(vs);
        self.metrics.start(
            op::DELETE_SNAPSHOT,
            &vs.uid().unwrap_or_default(),
            &self.snapshot_driver(vs),
            Self::snapshot_type(vs),
        );
        let content = rules::content_name_for_deletion(vs).and_then(|n| self.content(&n));
        let ns = vs.namespace().unwrap_or_default();
        let restoring = content.is_some() && {
            let claims: Vec<_> = self
                .claims
                .state()
                .into_iter()
                .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
                .collect();
            rules::restoring_from(vs, claims.iter().map(|c| c.as_ref()))
        };
        let group_exists = match vs
            .status
            .as_ref()
            .and_then(|s| s.volume_group_snapshot_name.as_deref())
        {
            None => None,
            Some(group) => {
                let api: Api<VolumeGroupSnapshot> =
                    Api::namespaced(self.snapshot_client.clone(), &ns);
                match api.get_opt(group).await {
                    Ok(found) => Some(found.is_some()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Some(false),
                    Err(e) => return Err(Error::sync(api_error(&e))),
                }
            }
        };
        match rules::deletion(vs, content.as_deref(), restoring, group_exists) {
            Deletion::Nothing => Ok(()),
            Deletion::Pending { message, error } => {
                self.event(
                    vs,
                    EventType::Warning,
                    reason::SNAPSHOT_DELETE_PENDING,
                    &message,
                );
                Err(Error::sync(error))
            }
            Deletion::Proceed {
                mark_content,
                delete_content,
                remove_bound,
                remove_group,
            } => {
                if let Some(name) = mark_content {
                    let patch = json!({"metadata": {"annotations": {ANN_VOLUME_SNAPSHOT_BEING_DELETED: "yes"}}});
                    self.contents_api()
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| Error::sync(update_error(&name, &api_error(&e))))?;
                }
                if let Some(name) = delete_content {
                    match self
                        .contents_api()
                        .delete(&name, &DeleteParams::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            self.event(
                                vs,
                                EventType::Warning,
                                reason::SNAPSHOT_CONTENT_OBJECT_DELETE_ERROR,
                                "Failed to delete snapshot content API object",
                            );
                            return Err(Error::sync(format!(
                                "failed to delete VolumeSnapshotContent {name} from API server: {}",
                                quote(&api_error(&e))
                            )));
                        }
                    }
                }
                self.remove_snapshot_finalizers(vs, remove_bound, remove_group)
                    .await
                    .map_err(|e| {
                        debug!(snapshot = %key, error = %e, "removing finalizers failed");
                        e
                    })
            }
        }
    }

    /// `removeSnapshotFinalizer`: the claim's finalizer first (skipping
    /// this snapshot), then the snapshot's own.
    async fn remove_snapshot_finalizers(
        &self,
        vs: &VolumeSnapshot,
        remove_bound: bool,
        remove_group: bool,
    ) -> Result<(), Error> {
        if let Err(e) = self.check_and_remove_claim_finalizer(vs, true).await {
            self.event(
                vs,
                EventType::Warning,
                reason::ERROR_PVC_FINALIZER,
                "Error check and remove PVC Finalizer for VolumeSnapshot",
            );
            return Err(Error::sync(update_error(&vs.name_any(), &e)));
        }
        let mut kept = vs.finalizers().to_vec();
        kept.retain(|f| {
            f != VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER
                && !(remove_bound && f == VOLUME_SNAPSHOT_BOUND_FINALIZER)
                && !(remove_group && f == VOLUME_SNAPSHOT_IN_GROUP_FINALIZER)
        });
        if kept.len() == vs.finalizers().len() {
            return Ok(());
        }
        let ops = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": vs.resource_version()},
            {"op": "replace", "path": "/metadata/finalizers", "value": kept},
        ]);
        self.snapshots_api(&vs.namespace().unwrap_or_default())
            .patch(
                &vs.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(json_patch(ops)?),
            )
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 || s.code == 422 => {
                    Error::Stale(rules::snapshot_key(vs))
                }
                e => Error::sync(update_error(&vs.name_any(), &api_error(&e))),
            })?;
        debug!(snapshot = %rules::snapshot_key(vs), "removed protection finalizers");
        Ok(())
    }

    /// `syncContent`.
    async fn sync_content(&self, content: &VolumeSnapshotContent) -> Result<(), Error> {
        let r = &content.spec.volume_snapshot_ref;
        let snapshot = match (&r.namespace, &r.name) {
            (Some(ns), Some(name)) => self.snapshots.get(&snapshot_ref(ns, name)),
            _ => None,
        };
        let (step, enqueue) = rules::content_step(content, snapshot.as_deref());
        if enqueue && let Some(vs) = &snapshot {
            self.snapshot_queue.added(&rules::snapshot_key(vs));
            let _ = self
                .snapshot_tx
                .unbounded_send(ObjectRef::from_obj(vs.as_ref()));
        }
        let name = content.name_any();
        match step {
            ContentStep::Invalid(msg) => {
                self.recorder.send(
                    &content.object_ref(&()),
                    EventType::Warning,
                    reason::CONTENT_VALIDATION_ERROR,
                    &msg,
                );
                Err(Error::sync(msg))
            }
            ContentStep::WaitForBinding | ContentStep::Nothing => Ok(()),
            ContentStep::AddFinalizer => {
                let ops = if content.finalizers().is_empty() {
                    json!([{"op": "add", "path": "/metadata/finalizers", "value": [VOLUME_SNAPSHOT_CONTENT_FINALIZER]}])
                } else {
                    json!([{"op": "add", "path": "/metadata/finalizers/-", "value": VOLUME_SNAPSHOT_CONTENT_FINALIZER}])
                };
                self.contents_api()
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Json::<()>(json_patch(ops)?),
                    )
                    .await
                    .map_err(|e| Error::sync(update_error(&name, &api_error(&e))))?;
                debug!(content = %name, "added protection finalizer");
                Ok(())
            }
            ContentStep::MarkBeingDeleted => {
                let patch = json!({"metadata": {"annotations": {ANN_VOLUME_SNAPSHOT_BEING_DELETED: "yes"}}});
                self.contents_api()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::sync(update_error(&name, &api_error(&e))))?;
                Ok(())
            }
        }
    }
}
