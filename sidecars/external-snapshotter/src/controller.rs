//! The I/O around [`crate::rules`]: the content watch (with upstream's
//! update filter), the class cache, the CSI calls, the content patches and
//! the events, `--worker-threads` contents at a time, each retried with its
//! own exponential backoff.
//!
//! Upstream: external-snapshotter v8.6.0 pkg/sidecar-controller
//! (snapshot_controller_base.go, snapshot_controller.go, csi_handler.go)
//! and pkg/snapshotter/snapshotter.go.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use csi_client::Connection;
use csi_client::csi::v1::{CreateSnapshotRequest, DeleteSnapshotRequest, ListSnapshotsRequest};
use csi_client::error::GoStatus;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::{
    Queue, Stop, cache_all, drain, refresh_gauges, resync_every, slim, watch_config,
};
use sidecar_runtime::events::{EventQueue, EventType};
use sidecar_runtime::gofmt::{api_error, quote};
use sidecar_runtime::own_writes::OwnWrites;
use snapshot_api::names as n;
use snapshot_api::snapshot::v1::{
    VolumeSnapshotClass, VolumeSnapshotContent, VolumeSnapshotContentStatus,
};
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::names::reason;
use crate::rules::{self, NameRules, Plan, SecretRef, SnapshotResult};

/// What [`run`] needs.
pub struct Setup {
    /// The client (QPS-limited).
    pub client: Client,
    /// The driver connection (every call bounded by `--timeout`).
    pub csi: Connection,
    /// GetPluginInfo's name.
    pub driver: String,
    /// LIST_SNAPSHOTS: without it a pre-provisioned snapshot is taken as
    /// ready (upstream asks ControllerGetCapabilities before every check;
    /// the answer from start-up is used here).
    pub list_snapshots: bool,
    /// Snapshot names and `--extra-create-metadata`.
    pub rules: NameRules,
    /// `--node-deployment`: only contents labelled
    /// `snapshot.storage.kubernetes.io/managed-by=<node>`.
    pub node: Option<String>,
    /// `--worker-threads`.
    pub workers: u16,
    /// `--resync-period`.
    pub resync: Duration,
    /// Retry flags.
    pub retry: sidecar_runtime::flags::RetryArgs,
    /// Events from `csi-snapshotter <driver>`.
    pub recorder: EventQueue,
    /// The `csi-snapshotter-content` queue's metrics.
    pub queue: Queue,
}

/// Everything a sync needs.
pub struct Context {
    client: Client,
    csi: Connection,
    driver: String,
    list_snapshots: bool,
    rules: NameRules,
    recorder: EventQueue,
    backoff: PerObjectBackoff<String>,
    queue: Queue,
    own_writes: OwnWrites,
    classes: Store<VolumeSnapshotClass>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(setup: Setup, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = setup.client.clone();
    let (classes, class_loop) = cache_all::<VolumeSnapshotClass>(client.clone());
    let (contents, content_writer) = reflector::store::<VolumeSnapshotContent>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        csi: setup.csi,
        driver: setup.driver,
        list_snapshots: setup.list_snapshots,
        rules: setup.rules,
        recorder: setup.recorder,
        backoff: PerObjectBackoff::from_args(&setup.retry),
        queue: setup.queue,
        own_writes: OwnWrites::default(),
        classes: classes.clone(),
    });

    let mut config = watch_config();
    if let Some(node) = &setup.node {
        config = config.labels(&format!("{}={node}", n::MANAGED_BY_LABEL));
    }
    let (tx, rx) = futures::channel::mpsc::unbounded::<ObjectRef<VolumeSnapshotContent>>();
    let resync_tx = tx.clone();
    let filter_ctx = ctx.clone();
    let filter_store = contents.clone();
    let mut seen: HashMap<String, Arc<VolumeSnapshotContent>> = HashMap::new();
    let content_loop = watcher(Api::<VolumeSnapshotContent>::all(client.clone()), config)
        .default_backoff()
        .modify(slim)
        .reflect(content_writer)
        .for_each(move |event| {
            let ctx = filter_ctx.clone();
            if let Ok(e) = &event {
                ctx.queue.metrics().watch_event(ctx.queue.name(), e);
            }
            match event {
                Ok(watcher::Event::Apply(c)) | Ok(watcher::Event::InitApply(c)) => {
                    let r = ObjectRef::from_obj(&c);
                    let current = filter_store.get(&r).unwrap_or_else(|| Arc::new(c.clone()));
                    let wanted = match seen.insert(c.name_any(), current) {
                        None => true,
                        Some(old) => rules::should_enqueue(&old, &c),
                    };
                    if wanted {
                        let _ = tx.unbounded_send(r);
                    }
                }
                Ok(watcher::Event::Delete(c)) => {
                    seen.remove(&c.name_any());
                    ctx.backoff.reset(&c.name_any());
                }
                _ => {}
            }
            futures::future::ready(())
        });

    let resync_loop = resync_every(contents.clone(), setup.resync, move |r| {
        let _ = resync_tx.unbounded_send(r);
    });

    let stop = Stop::new(shutdown);
    let q = ctx.queue.clone();
    let ctl = Controller::for_stream(
        futures::stream::pending::<Result<VolumeSnapshotContent, watcher::Error>>(),
        contents.clone(),
    )
    .with_config(controller::Config::default().concurrency(setup.workers))
    .reconcile_on(rx.inspect(move |r| q.added(&r.name)));
    let gauge_loop = refresh_gauges(ctx.queue.metrics().clone());
    let run_ctx = ctx.clone();
    let controllers = async move {
        if classes.wait_until_ready().await.is_err() || contents.wait_until_ready().await.is_err() {
            warn!("caches stopped before they were ready");
            return;
        }
        info!("Starting CSI snapshotter");
        drain(
            ctl.graceful_shutdown_on(stop.signal())
                .run(reconcile, error_policy, run_ctx),
            crate::names::CONTENT_QUEUE,
        )
        .await;
        info!("Shutting CSI snapshotter");
    };
    tokio::select! {
        _ = class_loop => {},
        _ = content_loop => {},
        _ = resync_loop => {},
        _ = gauge_loop => {},
        _ = controllers => {},
    }
}

fn error_policy(content: Arc<VolumeSnapshotContent>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = if err.is_routine() {
        Duration::from_millis(200)
    } else {
        ctx.backoff.next_delay(&content.name_any())
    };
    ctx.queue
        .retry_after_error(content.as_ref(), delay, err.is_routine(), err)
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// A CSI timestamp in Unix nanoseconds; now when absent or zero (upstream
/// sets `time.Now()` for a zero creation time).
fn csi_time_ns(t: Option<&prost_types::Timestamp>) -> i64 {
    match t {
        Some(t) if t.seconds != 0 || t.nanos != 0 => {
            t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos)
        }
        _ => now_ns(),
    }
}

/// One sync of a content (upstream `syncContentByKey` + `syncContent`).
async fn reconcile(
    content: Arc<VolumeSnapshotContent>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _work = ctx.queue.start(content.as_ref());
    let name = content.name_any();
    if ctx.own_writes.is_object_stale(content.as_ref()) {
        // Our own write is not in the cache yet; its watch event may be
        // filtered out (status only), so look again shortly.
        return Ok(ctx
            .queue
            .requeue(content.as_ref(), Duration::from_millis(200)));
    }
    let class = content
        .spec
        .volume_snapshot_class_name
        .as_ref()
        .and_then(|c| ctx.classes.get(&ObjectRef::new(c)));
    if !rules::is_ours(&content, &ctx.driver, class.as_deref()) {
        return Ok(Action::await_change());
    }
    let plan = rules::plan(&content);
    debug!(content = %name, ?plan, "sync");
    let done = match plan.clone() {
        Plan::Done => true,
        Plan::RemoveBeingCreated => {
            ctx.remove_being_created(&content).await?;
            true
        }
        Plan::RemoveFinalizer => {
            ctx.remove_finalizer(&content).await?;
            true
        }
        Plan::DeleteSnapshot { handle } => {
            let content = ctx.delete_snapshot(&content, &handle).await?;
            ctx.remove_finalizer(&content).await?;
            true
        }
        Plan::Create => {
            let first = content.status.is_none();
            match ctx.create_snapshot(&content).await {
                Ok(ready) => ready,
                Err((latest, e)) => {
                    let (why, text) = if first {
                        (
                            reason::SNAPSHOT_CREATION_FAILED,
                            "Failed to create snapshot",
                        )
                    } else {
                        (
                            reason::SNAPSHOT_CONTENT_CHECK_AND_UPDATE_FAILED,
                            "Failed to check and update snapshot content",
                        )
                    };
                    ctx.record_error(&latest, why, &format!("{text}: {e}"))
                        .await;
                    return Err(e);
                }
            }
        }
        Plan::CheckStatus {
            handle,
            group_member,
        } => match ctx.check_status(&content, &handle, group_member).await {
            Ok(ready) => ready,
            Err(e) => {
                ctx.record_error(
                    &content,
                    reason::SNAPSHOT_CONTENT_CHECK_AND_UPDATE_FAILED,
                    &format!("Failed to check and update snapshot content: {e}"),
                )
                .await;
                return Err(e);
            }
        },
    };
    if done {
        ctx.backoff.reset(&name);
        if content.metadata.deletion_timestamp.is_some()
            && matches!(plan, Plan::Create | Plan::RemoveBeingCreated)
        {
            // The snapshot of a content being deleted is now recorded:
            // delete it next, without waiting for a watch event that the
            // update filter may drop (upstream #1388: such a content then
            // waits for the resync, its snapshot still on the driver).
            return Ok(ctx
                .queue
                .requeue(content.as_ref(), Duration::from_millis(100)));
        }
        Ok(Action::await_change())
    } else {
        // Not ready yet: polled again with the content's backoff, as
        // upstream's AddRateLimited.
        let delay = ctx.backoff.next_delay(&name);
        Ok(ctx.queue.requeue(content.as_ref(), delay))
    }
}

impl Context {
    fn api(&self) -> Api<VolumeSnapshotContent> {
        Api::all(self.client.clone())
    }

    /// A JSON patch of the content (or of its status subresource).
    async fn patch(
        &self,
        content: &VolumeSnapshotContent,
        patch: Value,
        status: bool,
    ) -> Result<VolumeSnapshotContent, Error> {
        let name = content.name_any();
        let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::Write {
            name: name.clone(),
            message: format!("invalid patch: {e}"),
            conflict: false,
        })?;
        let params = PatchParams::default();
        let patch = Patch::<()>::Json(ops);
        let result = if status {
            self.api().patch_status(&name, &params, &patch).await
        } else {
            self.api().patch(&name, &params, &patch).await
        };
        match result {
            Ok(written) => {
                self.own_writes.replaced(
                    &content.uid().unwrap_or_default(),
                    content.resource_version().as_deref(),
                );
                Ok(written)
            }
            Err(e) => Err(Error::Write {
                name,
                conflict: matches!(&e, kube::Error::Api(s) if s.code == 409),
                message: api_error(&e),
            }),
        }
    }

    async fn remove_being_created(
        &self,
        content: &VolumeSnapshotContent,
    ) -> Result<VolumeSnapshotContent, Error> {
        if !content
            .annotations()
            .contains_key(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED)
        {
            return Ok(content.clone());
        }
        self.patch(content, rules::remove_being_created_patch(), false)
            .await
    }

    async fn remove_finalizer(&self, content: &VolumeSnapshotContent) -> Result<(), Error> {
        if !sidecar_runtime::finalizers::has(content, n::VOLUME_SNAPSHOT_CONTENT_FINALIZER) {
            return Ok(());
        }
        self.patch(content, rules::remove_finalizer_patch(content), false)
            .await?;
        debug!(content = %content.name_any(), "removed protection finalizer");
        Ok(())
    }

    /// Secret data as strings (upstream `GetCredentials`). Errors are
    /// upstream's `error getting secret …` text.
    async fn secret(&self, r: &Option<SecretRef>) -> Result<BTreeMap<String, String>, String> {
        let Some((ns, name)) = r else {
            return Ok(BTreeMap::new());
        };
        let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .map_err(|e| {
                format!(
                    "error getting secret {name} in namespace {ns}: {}",
                    api_error(&e)
                )
            })?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect())
    }

    /// Secrets from the deletion-secret annotations (upstream
    /// `GetCredentialsFromAnnotation`), with its texts.
    async fn annotation_secrets(
        &self,
        content: &VolumeSnapshotContent,
    ) -> Result<BTreeMap<String, String>, String> {
        let r = rules::deletion_secret_ref(content)?;
        self.secret(&r).await.map_err(|e| {
            warn!(content = %content.name_any(), error = %e, "failed to get credentials");
            format!(
                "cannot get credentials for snapshot content {}",
                quote(&content.name_any())
            )
        })
    }

    /// `status.error` and a Warning event (upstream
    /// `updateContentErrorStatusWithEvent`): nothing when the same message
    /// is recorded; the event is sent even when the status write fails.
    async fn record_error(&self, content: &VolumeSnapshotContent, why: &str, message: &str) {
        let Some(patch) = rules::error_status_patch(content, message, now()) else {
            debug!(content = %content.name_any(), "the same error is already recorded");
            return;
        };
        let written = self.patch(content, patch, true).await;
        self.recorder
            .send(&content.object_ref(&()), EventType::Warning, why, message);
        if let Err(e) = written {
            debug!(content = %content.name_any(), error = %e, "updating the error status failed");
        }
    }

    /// Upstream `deleteCSISnapshotOperation`: DeleteSnapshot, then the
    /// status without handle, readiness, time and size.
    async fn delete_snapshot(
        &self,
        content: &VolumeSnapshotContent,
        handle: &str,
    ) -> Result<VolumeSnapshotContent, Error> {
        let name = content.name_any();
        let secrets = match self.annotation_secrets(content).await {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    content,
                    reason::SNAPSHOT_DELETE_ERROR,
                    "Failed to get snapshot credentials",
                );
                return Err(Error::Delete(format!(
                    "failed to get input parameters to delete snapshot for content {name}: {}",
                    quote(&e)
                )));
            }
        };
        let request = DeleteSnapshotRequest {
            snapshot_id: handle.to_string(),
            secrets: secrets.into_iter().collect(),
        };
        if let Err(status) = self.csi.delete_snapshot(request).await {
            self.event(
                content,
                reason::SNAPSHOT_DELETE_ERROR,
                "Failed to delete snapshot",
            );
            let inner = format!(
                "failed to delete snapshot content {name}: {}",
                quote(&GoStatus(&status).to_string())
            );
            return Err(Error::Delete(format!(
                "failed to delete snapshot {}, err: {inner}",
                quote(&name)
            )));
        }
        info!(content = %name, snapshot = handle, "deleted snapshot");
        let cleared = content
            .status
            .as_ref()
            .map(|s| VolumeSnapshotContentStatus {
                snapshot_handle: None,
                ready_to_use: None,
                creation_time: None,
                restore_size: None,
                ..s.clone()
            });
        match self
            .patch(
                content,
                json!([{"op": "replace", "path": "/status", "value": cleared}]),
                true,
            )
            .await
        {
            Ok(c) => Ok(c),
            Err(e) => {
                self.event(
                    content,
                    reason::SNAPSHOT_DELETE_ERROR,
                    "Failed to clear content status",
                );
                Err(e)
            }
        }
    }

    fn event(&self, content: &VolumeSnapshotContent, why: &str, message: &str) {
        self.recorder
            .send(&content.object_ref(&()), EventType::Warning, why, message);
    }

    /// Upstream `createSnapshotWrapper`: the input, the being-created
    /// record, CreateSnapshot, the status, the record removed. Returns
    /// whether the snapshot is ready; on error also the newest version of
    /// the content for the error status.
    async fn create_snapshot(
        &self,
        content: &VolumeSnapshotContent,
    ) -> Result<bool, (VolumeSnapshotContent, Error)> {
        let name = content.name_any();
        let fail = |c: &VolumeSnapshotContent, message: String| {
            (
                c.clone(),
                Error::Create {
                    message,
                    status: None,
                },
            )
        };
        let class = match content.spec.volume_snapshot_class_name.as_deref() {
            None => Ok(None),
            Some(c) => match self.classes.get(&ObjectRef::new(c)) {
                Some(class) => Ok(Some(class)),
                None => Err(format!(
                    "volumesnapshotclass.snapshot.storage.k8s.io {} not found",
                    quote(c)
                )),
            },
        };
        let input = rules::create_input(
            content,
            class.as_ref().map(|c| c.as_deref()).map_err(Clone::clone),
            &self.rules,
        )
        .map_err(|m| fail(content, m))?;
        let secrets = self.annotation_secrets(content).await.map_err(|e| {
            fail(
                content,
                format!(
                    "failed to get input parameters to create snapshot for content {name}: {}",
                    quote(&e)
                ),
            )
        })?;
        // The crash-safety record: written before the driver is asked, so
        // a snapshot cut by a call whose answer is lost is never forgotten.
        let mut content = content.clone();
        if !content
            .annotations()
            .contains_key(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED)
        {
            content = self
                .patch(&content, rules::set_being_created_patch(&content), false)
                .await
                .map_err(|e| {
                    fail(
                        &content,
                        format!(
                            "failed to add VolumeSnapshotBeingCreated annotation on the content {name}: {}",
                            quote(&e.to_string())
                        ),
                    )
                })?;
        }
        info!(content = %name, snapshot = %input.name, "creating snapshot through the plugin");
        let request = CreateSnapshotRequest {
            source_volume_id: input.source_volume_id.clone(),
            name: input.name.clone(),
            secrets: secrets.into_iter().collect(),
            parameters: input.parameters.into_iter().collect(),
        };
        let snapshot = match self.csi.create_snapshot(request).await {
            Ok(r) => r.snapshot.unwrap_or_default(),
            Err(status) => {
                info!(content = %name, error = %GoStatus(&status), "CreateSnapshot failed");
                if Error::is_final_csi(&status) {
                    content = self.remove_being_created(&content).await.map_err(|e| {
                        fail(
                            &content,
                            format!(
                                "failed to remove VolumeSnapshotBeingCreated annotation from the content {name}: {e}"
                            ),
                        )
                    })?;
                }
                return Err((
                    content,
                    Error::Create {
                        message: format!(
                            "failed to take snapshot of the volume {}: {}",
                            input.source_volume_id,
                            quote(&GoStatus(&status).to_string())
                        ),
                        status: Some(status),
                    },
                ));
            }
        };
        let result = SnapshotResult {
            handle: snapshot.snapshot_id,
            ready: snapshot.ready_to_use,
            created_ns: csi_time_ns(snapshot.creation_time.as_ref()),
            size: snapshot.size_bytes,
            group_snapshot_id: String::new(),
        };
        debug!(content = %name, ?result, "created snapshot");
        if let Some(status) = rules::merged_status(content.status.as_ref(), &result) {
            content = self
                .patch(
                    &content,
                    json!([{"op": "replace", "path": "/status", "value": status}]),
                    true,
                )
                .await
                .map_err(|e| {
                    fail(
                        &content,
                        format!("error updating status for volume snapshot content {name}: {e}"),
                    )
                })?;
        }
        self.remove_being_created(&content).await.map_err(|e| {
            fail(
                &content,
                format!(
                    "failed to remove VolumeSnapshotBeingCreated annotation on the content {name}: {}",
                    quote(&e.to_string())
                ),
            )
        })?;
        Ok(result.ready)
    }

    /// Upstream `checkandUpdateContentStatusOperation` for a snapshot with
    /// a handle: ListSnapshots and the status. Returns whether it is ready.
    async fn check_status(
        &self,
        content: &VolumeSnapshotContent,
        handle: &str,
        group_member: bool,
    ) -> Result<bool, Error> {
        let name = content.name_any();
        let mut secrets = BTreeMap::new();
        if let Some(class_name) = content.spec.volume_snapshot_class_name.as_deref() {
            let Some(class) = self.classes.get(&ObjectRef::new(class_name)) else {
                return Err(Error::Check(format!(
                    "failed to get snapshot class {class_name} for snapshot content {name}: volumesnapshotclass.snapshot.storage.k8s.io {} not found",
                    quote(class_name)
                )));
            };
            let r = rules::list_secret_ref(&class, &name).map_err(|e| {
                Error::Check(format!(
                    "failed to get secret reference for snapshot content {name}: {e}"
                ))
            })?;
            secrets = self.secret(&r).await.map_err(|e| {
                Error::Check(format!(
                    "failed to get credentials for snapshot content {name}: {e}"
                ))
            })?;
        }
        if group_member {
            secrets = self.annotation_secrets(content).await.map_err(|e| {
                Error::Check(format!(
                    "failed to get credentials from annotation for snapshot content {name}: {e}"
                ))
            })?;
        }
        let result = if !self.list_snapshots {
            SnapshotResult {
                handle: handle.to_string(),
                ready: true,
                created_ns: now_ns(),
                size: 0,
                group_snapshot_id: String::new(),
            }
        } else {
            let list_err = |inner: String| {
                Error::Check(format!(
                    "failed to list snapshot for content {name}: {}",
                    quote(&inner)
                ))
            };
            let answer = self
                .csi
                .list_snapshots(ListSnapshotsRequest {
                    snapshot_id: handle.to_string(),
                    secrets: secrets.into_iter().collect(),
                    ..Default::default()
                })
                .await
                .map_err(|s| list_err(GoStatus(&s).to_string()))?;
            let Some(snapshot) = answer.entries.into_iter().find_map(|e| e.snapshot) else {
                return Err(list_err(format!(
                    "can not find snapshot for snapshotID {handle}"
                )));
            };
            SnapshotResult {
                handle: handle.to_string(),
                ready: snapshot.ready_to_use,
                created_ns: csi_time_ns(snapshot.creation_time.as_ref()),
                size: snapshot.size_bytes,
                group_snapshot_id: snapshot.group_snapshot_id,
            }
        };
        if let Some(status) = rules::merged_status(content.status.as_ref(), &result) {
            self.patch(
                content,
                json!([{"op": "replace", "path": "/status", "value": status}]),
                true,
            )
            .await?;
        }
        Ok(result.ready)
    }
}
