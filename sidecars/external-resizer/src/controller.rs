//! The I/O around [`crate::resize`] and [`crate::modify`]: one claim watch
//! feeding two controllers (expansion and VolumeAttributesClass
//! modification, each `--workers` wide, as upstream), PV, Pod and class
//! caches, the status patches, the CSI calls and the events.
//!
//! Upstream: kubernetes-csi/external-resizer v2.2.0 pkg/controller and
//! pkg/modifycontroller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csi_client::Connection;
use csi_client::csi::v1::ControllerModifyVolumeRequest;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::Value;
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::{
    Queue, Stop, cache_all, drain, reflect_all, refresh_gauges, resync_every,
};
use sidecar_runtime::events::{EventQueue, EventType};
use sidecar_runtime::own_writes::OwnWrites;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::features::FeatureGates;
use crate::modify;
use crate::names::{PRE_RESIZE_CAPACITY, modify_status, reason};
use crate::request::{self, SecretRef};
use crate::resize::{self, DriverInfo, Memory, Plan};

/// Per-claim state upstream keeps in memory (final-error set, slow set,
/// in-use errors, uncertain modifications).
#[derive(Default, Debug)]
struct ClaimMemory {
    final_error: bool,
    resize_slow_since: Option<Instant>,
    in_use_error: bool,
    modify_slow_since: Option<Instant>,
    modify_uncertain: bool,
}

/// Everything a reconcile needs.
pub struct Context {
    /// QPS-limited client.
    pub client: Client,
    /// The driver connection (every call bounded by `--timeout`).
    pub csi: Connection,
    /// Driver name and capabilities.
    pub driver: DriverInfo,
    /// SINGLE_NODE_MULTI_WRITER.
    pub single_node_multi_writer: bool,
    /// Feature gates.
    pub gates: FeatureGates,
    /// `--extra-modify-metadata`.
    pub extra_modify_metadata: bool,
    /// `--retry-interval-max`: the slow-set window.
    pub slow_window: Duration,
    /// Events with source `external-resizer <driver>`.
    pub recorder: EventQueue,
    /// Per-claim retry delays.
    pub backoff: PerObjectBackoff<String>,
    /// The resize controller's `<driver>-pvc` queue.
    pub resize_queue: Queue,
    /// The modify controller's queue (the same name, as upstream).
    pub modify_queue: Queue,
    /// Versions this process replaced, so a reconcile re-run by its own
    /// write waits for the watch instead of acting on an old version.
    pub own_writes: OwnWrites,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    pods: Option<Store<Pod>>,
    classes: Option<Store<VolumeAttributesClass>>,
    memory: Mutex<HashMap<String, ClaimMemory>>,
}

/// What [`run`] needs besides the caches it fills.
pub struct Setup {
    /// The client.
    pub client: Client,
    /// Driver connection.
    pub csi: Connection,
    /// Driver.
    pub driver: DriverInfo,
    /// SINGLE_NODE_MULTI_WRITER.
    pub single_node_multi_writer: bool,
    /// Gates.
    pub gates: FeatureGates,
    /// Run the resize controller (driver can expand, in controller or node).
    pub resize: bool,
    /// Run the modify controller (MODIFY_VOLUME and the gate).
    pub modify: bool,
    /// `--handle-volume-inuse-error`: watch Pods.
    pub watch_pods: bool,
    /// `--extra-modify-metadata`.
    pub extra_modify_metadata: bool,
    /// `--workers`.
    pub workers: u16,
    /// `--resync-period`.
    pub resync: Duration,
    /// Retry flags.
    pub retry: sidecar_runtime::flags::RetryArgs,
    /// Event queue.
    pub recorder: EventQueue,
    /// Queue metrics (one queue name, `<driver>-pvc`).
    pub queue: Queue,
}

fn key(pvc: &PersistentVolumeClaim) -> String {
    format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any())
}

/// What the enqueue filters compare between two versions of a claim.
#[derive(Clone)]
struct Seen(Arc<PersistentVolumeClaim>);

/// Runs the controllers until `shutdown` resolves.
pub async fn run(setup: Setup, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = setup.client.clone();
    let (volumes, volume_loop) = cache_all::<PersistentVolume>(client.clone());
    let (pods, pod_loop) = if setup.watch_pods {
        let (s, l) = cache_all::<Pod>(client.clone());
        (Some(s), futures::future::Either::Left(l))
    } else {
        (
            None,
            futures::future::Either::Right(futures::future::pending::<()>()),
        )
    };
    let (classes, class_loop) = if setup.modify {
        let (s, l) = cache_all::<VolumeAttributesClass>(client.clone());
        (Some(s), futures::future::Either::Left(l))
    } else {
        (
            None,
            futures::future::Either::Right(futures::future::pending::<()>()),
        )
    };
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        csi: setup.csi,
        driver: setup.driver,
        single_node_multi_writer: setup.single_node_multi_writer,
        gates: setup.gates,
        extra_modify_metadata: setup.extra_modify_metadata,
        slow_window: setup.retry.retry_interval_max,
        recorder: setup.recorder,
        backoff: PerObjectBackoff::from_args(&setup.retry),
        resize_queue: setup.queue.clone(),
        modify_queue: setup.queue.clone(),
        own_writes: OwnWrites::default(),
        claims: claims.clone(),
        volumes: volumes.clone(),
        pods,
        classes,
        memory: Mutex::new(HashMap::new()),
    });

    let (resize_tx, resize_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<PersistentVolumeClaim>>();
    let (modify_tx, modify_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<PersistentVolumeClaim>>();
    let (resize_on, modify_on) = (setup.resize, setup.modify);
    let (resync_resize, resync_modify) = (resize_tx.clone(), modify_tx.clone());
    let recover = ctx.gates.recover_volume_expansion_failure;
    let filter_ctx = ctx.clone();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let claim_loop = reflect_all(client.clone(), claim_writer).for_each(move |event| {
        let ctx = filter_ctx.clone();
        if let Ok(e) = &event {
            ctx.resize_queue
                .metrics()
                .watch_event(ctx.resize_queue.name(), e);
        }
        let mut objects = Vec::new();
        match event {
            Ok(watcher::Event::Apply(pvc)) | Ok(watcher::Event::InitApply(pvc)) => {
                objects.push(pvc)
            }
            Ok(watcher::Event::Delete(pvc)) => {
                seen.remove(&pvc.uid().unwrap_or_default());
                ctx.forget(&pvc);
            }
            _ => {}
        }
        for pvc in objects {
            let uid = pvc.uid().unwrap_or_default();
            let r = ObjectRef::from_obj(&pvc);
            // The store's Arc: the previous version stays alive only here.
            let current = ctx.claims.get(&r).unwrap_or_else(|| Arc::new(pvc.clone()));
            let old = seen.insert(uid, Seen(current));
            let (want_resize, want_modify) = match old {
                // An add (or a re-list): both controllers look.
                None => (true, true),
                Some(Seen(old)) => {
                    let pv_known = old
                        .spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_deref())
                        .is_some_and(|v| ctx.volumes.get(&ObjectRef::new(v)).is_some());
                    (
                        resize::update_matters(&old, &pvc, recover),
                        pv_known && modify::update_matters(&old, &pvc),
                    )
                }
            };
            if resize_on && want_resize {
                let _ = resize_tx.unbounded_send(r.clone());
            }
            if modify_on && want_modify {
                let _ = modify_tx.unbounded_send(r);
            }
        }
        futures::future::ready(())
    });

    // Upstream's informer resync: every claim is looked at again.
    let resync_loop = resync_every(claims.clone(), setup.resync, move |r| {
        if resize_on {
            let _ = resync_resize.unbounded_send(r.clone());
        }
        if modify_on {
            let _ = resync_modify.unbounded_send(r);
        }
    });

    let stop = Stop::new(shutdown);
    let workers = setup.workers;
    let empty = || futures::stream::pending::<Result<PersistentVolumeClaim, watcher::Error>>();
    let rq = ctx.resize_queue.clone();
    let resize_ctl = Controller::for_stream(empty(), claims.clone())
        .with_config(controller::Config::default().concurrency(workers))
        .reconcile_on(resize_rx.inspect(move |r| {
            rq.added(&format!(
                "{}/{}",
                r.namespace.clone().unwrap_or_default(),
                r.name
            ))
        }));
    let mq = ctx.modify_queue.clone();
    let modify_ctl = Controller::for_stream(empty(), claims.clone())
        .with_config(controller::Config::default().concurrency(workers))
        .reconcile_on(modify_rx.inspect(move |r| {
            mq.added(&format!(
                "{}/{}",
                r.namespace.clone().unwrap_or_default(),
                r.name
            ))
        }));
    let gauge_loop = refresh_gauges(ctx.resize_queue.metrics().clone());

    let run_ctx = ctx.clone();
    let controllers = async move {
        let v = run_ctx.volumes.clone();
        if v.wait_until_ready().await.is_err() {
            warn!("caches stopped before they were ready");
            return;
        }
        info!("caches synced");
        let resize_loop = drain(
            resize_ctl.graceful_shutdown_on(stop.signal()).run(
                reconcile_resize,
                error_policy,
                run_ctx.clone(),
            ),
            "resize",
        );
        let modify_loop = drain(
            modify_ctl.graceful_shutdown_on(stop.signal()).run(
                reconcile_modify,
                error_policy,
                run_ctx.clone(),
            ),
            "modify",
        );
        futures::future::join(resize_loop, modify_loop).await;
    };
    tokio::select! {
        _ = volume_loop => {},
        _ = pod_loop => {},
        _ = class_loop => {},
        _ = claim_loop => {},
        _ = resync_loop => {},
        _ = gauge_loop => {},
        _ = controllers => {},
    }
}

impl Context {
    fn memory<T>(&self, key: &str, f: impl FnOnce(&mut ClaimMemory) -> T) -> T {
        let mut all = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(key.to_string()).or_default())
    }

    /// A claim is gone: its backoff and in-memory state go with it.
    fn forget(&self, pvc: &PersistentVolumeClaim) {
        let k = key(pvc);
        self.backoff.reset(&k);
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&k);
    }

    fn event(&self, pvc: &PersistentVolumeClaim, type_: EventType, reason: &str, message: &str) {
        self.recorder
            .send(&pvc.object_ref(&()), type_, reason, message);
    }

    /// Time left in a slow-set window started at `since`.
    fn remaining(&self, since: Option<Instant>) -> Option<Duration> {
        since
            .and_then(|t| self.slow_window.checked_sub(t.elapsed()))
            .filter(|d| !d.is_zero())
    }

    /// Patches the claim's status subresource from `old` to `new` (a JSON
    /// merge patch; with `check_version` carrying `old`'s
    /// resourceVersion). `what` is upstream's wording for a failure.
    async fn patch_claim(
        &self,
        old: &PersistentVolumeClaim,
        new: &PersistentVolumeClaim,
        check_version: bool,
        what: &str,
    ) -> Result<PersistentVolumeClaim, Error> {
        let patch = resize::claim_status_patch(old, new, check_version);
        let api = Api::<PersistentVolumeClaim>::namespaced(
            self.client.clone(),
            &old.namespace().unwrap_or_default(),
        );
        match api
            .patch_status(
                &old.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(written) => {
                self.own_writes.replaced(
                    &old.uid().unwrap_or_default(),
                    old.resource_version().as_deref(),
                );
                Ok(written)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Conflict(what.to_string())),
            Err(source) => Err(Error::Write {
                what: what.to_string(),
                source,
            }),
        }
    }

    /// A status change computed from the claim (`change`), written with a
    /// resourceVersion precondition; on a conflict the claim is read again
    /// and the change re-applied to that version, so an edit made while a
    /// resize was in flight neither is overwritten nor loses the result.
    async fn patch_claim_fresh(
        &self,
        base: &PersistentVolumeClaim,
        change: impl Fn(&PersistentVolumeClaim) -> PersistentVolumeClaim,
        what: &str,
    ) -> Result<PersistentVolumeClaim, Error> {
        let mut base = base.clone();
        for _ in 0..3 {
            match self.patch_claim(&base, &change(&base), true, what).await {
                Err(Error::Conflict(_)) => {
                    let api = Api::<PersistentVolumeClaim>::namespaced(
                        self.client.clone(),
                        &base.namespace().unwrap_or_default(),
                    );
                    base = api
                        .get(&base.name_any())
                        .await
                        .map_err(|source| Error::Write {
                            what: what.to_string(),
                            source,
                        })?;
                }
                other => return other,
            }
        }
        Err(Error::Conflict(what.to_string()))
    }

    async fn patch_pv(
        &self,
        pv: &PersistentVolume,
        patch: &Value,
        what: String,
    ) -> Result<PersistentVolume, Error> {
        Api::<PersistentVolume>::all(self.client.clone())
            .patch(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(|source| Error::Write { what, source })
    }

    async fn read_secret(
        &self,
        s: &SecretRef,
    ) -> Result<std::collections::BTreeMap<String, String>, Error> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &s.namespace)
            .get(&s.name)
            .await
            .map_err(|e| Error::Request(s.read_failed(&sidecar_runtime::gofmt::api_error(&e))))?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect())
    }

    /// `usedPVCs.checkForUse`: a pod that has not terminated uses the claim.
    fn in_use(&self, pvc: &PersistentVolumeClaim) -> bool {
        let Some(pods) = &self.pods else {
            return false;
        };
        let (ns, name) = (pvc.namespace(), pvc.name_any());
        pods.state().iter().any(|p| {
            p.namespace() == ns
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
                && p.spec.as_ref().is_some_and(|s| {
                    s.volumes.iter().flatten().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == name)
                    })
                })
        })
    }
}

/// grpc-go's text of a failed call (`rpc error: code = … desc = …`).
fn go_error(s: &tonic::Status) -> String {
    csi_client::error::GoStatus(s).to_string()
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn error_policy(pvc: Arc<PersistentVolumeClaim>, err: &Error, ctx: Arc<Context>) -> Action {
    let k = key(&pvc);
    let delay = match err {
        Error::DelayRetry { after, .. } => *after,
        // Our write met a newer version; the watch brings it.
        Error::Conflict(_) => Duration::from_millis(100),
        _ => ctx.backoff.next_delay(&k),
    };
    ctx.resize_queue
        .retry_after_error(pvc.as_ref(), delay, err.is_routine(), err)
}

/// One expansion reconcile (upstream `syncPVC` + `expandAndRecover`).
async fn reconcile_resize(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _work = ctx.resize_queue.start(pvc.as_ref());
    if ctx.own_writes.is_object_stale(pvc.as_ref()) {
        return Ok(Action::await_change());
    }
    let k = key(&pvc);
    let Some(volume_name) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
    else {
        return Ok(Action::await_change());
    };
    let Some(pv) = ctx.volumes.get(&ObjectRef::new(&volume_name)) else {
        return Err(Error::MissingVolume {
            pv: volume_name,
            claim: k,
        });
    };
    if ctx.gates.annotate_fs_resize && resize::pre_resize_annotation_done(&pvc, &pv) {
        let patch = serde_json::json!({"metadata": {"annotations": {PRE_RESIZE_CAPACITY: null}}});
        ctx.patch_pv(
            &pv,
            &patch,
            format!(
                "failed removing annotation {PRE_RESIZE_CAPACITY} from pv {:?}",
                pv.name_any()
            ),
        )
        .await?;
    }
    if !resize::claim_needs_resize(&pvc) || !resize::pv_can_be_expanded(&pv, &pvc, &ctx.driver) {
        ctx.backoff.reset(&k);
        return Ok(Action::await_change());
    }
    if !ctx.gates.recover_volume_expansion_failure {
        return resize_legacy(&ctx, &pvc, &pv).await;
    }
    let state = resize::resize_state(&pvc).to_string();
    let mem = ctx.memory(&k, |m| {
        let mem = Memory {
            final_error: m.final_error,
            slow_remaining: ctx.remaining(m.resize_slow_since),
        };
        if mem.slow_remaining.is_none() {
            m.resize_slow_since = None;
        }
        if state == crate::names::resize_status::CONTROLLER_INFEASIBLE
            && m.resize_slow_since.is_none()
        {
            m.resize_slow_since = Some(Instant::now());
        }
        mem
    });
    let (size, update_status) =
        match resize::plan_expansion(&pvc, &pv, ctx.driver.controller_expand, mem, &k) {
            Plan::Nothing => {
                ctx.backoff.reset(&k);
                return Ok(Action::await_change());
            }
            Plan::Delay { message, after } => {
                debug!(claim = %k, "{message}");
                return Ok(ctx.resize_queue.requeue(pvc.as_ref(), after));
            }
            Plan::Expand {
                size,
                update_status,
            } => (size, update_status),
        };
    let stamp = now();
    let marked = ctx
        .patch_claim(
            &pvc,
            &resize::mark_in_progress(&pvc, &size, update_status, &stamp),
            true,
            &format!("marking pvc {:?} as resizing failed", k),
        )
        .await?;
    if ctx.memory(&k, |m| m.in_use_error) && ctx.in_use(&marked) {
        let msg = format!(
            "Unable to expand {k} because CSI driver {} only supports offline expansion and volume is currently in-use",
            ctx.driver.name
        );
        ctx.event(&marked, EventType::Warning, reason::RESIZE_FAILED, &msg);
        return Err(Error::InUse(msg));
    }
    ctx.event(
        &marked,
        EventType::Normal,
        reason::RESIZING,
        &format!("External resizer is resizing volume {}", pv.name_any()),
    );
    ctx.memory(&k, |m| m.in_use_error = false);
    let result = expand(&ctx, &pv, &size).await;
    let (new_size, node_required) = match result {
        Ok(r) => r,
        Err((text, code)) => {
            let f = resize::classify(code);
            ctx.memory(&k, |m| {
                if f.in_use && ctx.pods.is_some() {
                    m.in_use_error = true;
                }
                m.final_error = f.final_;
                // Beyond upstream: the slow window starts with the
                // infeasible answer, so the watch event of our own
                // status write does not call the driver again at once.
                m.resize_slow_since = (f.final_ && f.infeasible).then(Instant::now);
            });
            let failed = format!(
                "resize volume {:?} by resizer {:?} failed: {text}",
                pv.name_any(),
                ctx.driver.name
            );
            let mut message = failed.clone();
            if f.final_ {
                let new = resize::mark_failed(&marked, &text, f.infeasible, &stamp);
                if let Err(e) = ctx
                    .patch_claim(
                        &marked,
                        &new,
                        false,
                        "mark PVC as controller expansion failed",
                    )
                    .await
                {
                    message = format!(
                        "resizing failed in controller with {text} but failed to update PVC {k} with: {e}"
                    );
                }
            }
            ctx.event(&marked, EventType::Warning, reason::RESIZE_FAILED, &message);
            return Err(Error::Csi {
                message,
                status: None,
            });
        }
    };
    ctx.memory(&k, |m| {
        m.final_error = false;
        m.resize_slow_since = None;
    });
    let old_capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .cloned()
        .unwrap_or_default();
    let patch = resize::pv_capacity_patch(
        &pv,
        &new_size,
        &old_capacity,
        node_required,
        ctx.gates.annotate_fs_resize,
    );
    ctx.patch_pv(
        &pv,
        &patch,
        format!(
            "error updating pv {:?} by resizer: updating capacity of PV {:?} to {} failed",
            pv.name_any(),
            pv.name_any(),
            new_size.0
        ),
    )
    .await?;
    if node_required {
        let stamp = now();
        ctx.patch_claim_fresh(
            &marked,
            |c| resize::mark_node_pending(c, &stamp),
            &format!("mark PVC {k:?} as node expansion required failed"),
        )
        .await?;
        ctx.event(
            &marked,
            EventType::Normal,
            reason::FS_RESIZE_REQUIRED,
            "Require file system resize of volume on node",
        );
    } else {
        ctx.patch_claim_fresh(
            &marked,
            |c| resize::mark_finished(c, &new_size),
            &format!("mark PVC {k:?} as resize finished failed"),
        )
        .await?;
        ctx.event(
            &marked,
            EventType::Normal,
            reason::RESIZE_SUCCESSFUL,
            "Resize volume succeeded",
        );
    }
    ctx.backoff.reset(&k);
    Ok(Action::await_change())
}

/// Upstream's `resizePVC`, the path with RecoverVolumeExpansionFailure
/// off: the request itself is expanded, nothing is recorded in
/// `allocatedResources`, and a failure is only an event (none for a
/// conflict).
async fn resize_legacy(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<Action, Error> {
    let k = key(pvc);
    if !resize::legacy_needs_resize(pvc, pv) {
        ctx.backoff.reset(&k);
        return Ok(Action::await_change());
    }
    let marked = ctx
        .patch_claim(
            pvc,
            &resize::legacy_mark_in_progress(pvc, &now()),
            true,
            &format!("marking pvc {k:?} as resizing failed: Mark PVC {k:?} as resize as in progress failed"),
        )
        .await?;
    if ctx.memory(&k, |m| m.in_use_error) && ctx.in_use(&marked) {
        let msg = format!(
            "Unable to expand {k} because CSI driver {} only supports offline expansion and volume is currently in-use",
            ctx.driver.name
        );
        ctx.event(&marked, EventType::Warning, reason::RESIZE_FAILED, &msg);
        return Err(Error::InUse(msg));
    }
    ctx.event(
        &marked,
        EventType::Normal,
        reason::RESIZING,
        &format!("External resizer is resizing volume {}", pv.name_any()),
    );
    ctx.memory(&k, |m| m.in_use_error = false);
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_default();
    let result = async {
        let (new_size, node_required) = match expand(ctx, pv, &request).await {
            Ok(r) => r,
            Err((text, code)) => {
                if resize::classify(code).in_use && ctx.pods.is_some() {
                    ctx.memory(&k, |m| m.in_use_error = true);
                }
                return Err(Error::Csi {
                    message: format!(
                        "resize volume {:?} by resizer {:?} failed: {text}",
                        pv.name_any(),
                        ctx.driver.name
                    ),
                    status: None,
                });
            }
        };
        let old_capacity = pvc
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .cloned()
            .unwrap_or_default();
        let patch = resize::pv_capacity_patch(
            pv,
            &new_size,
            &old_capacity,
            node_required,
            ctx.gates.annotate_fs_resize,
        );
        ctx.patch_pv(
            pv,
            &patch,
            format!(
                "updating capacity of PV {:?} to {} failed",
                pv.name_any(),
                new_size.0
            ),
        )
        .await?;
        if node_required {
            ctx.patch_claim_fresh(
                &marked,
                |c| resize::legacy_mark_node_pending(c, &now()),
                &format!("mark PVC {k:?} as file system resize required failed"),
            )
            .await?;
            ctx.event(
                &marked,
                EventType::Normal,
                reason::FS_RESIZE_REQUIRED,
                "Require file system resize of volume on node",
            );
        } else {
            ctx.patch_claim_fresh(
                &marked,
                |c| resize::legacy_mark_finished(c, &new_size),
                &format!("Mark PVC {k:?} as resize finished failed"),
            )
            .await?;
            ctx.event(
                &marked,
                EventType::Normal,
                reason::RESIZE_SUCCESSFUL,
                "Resize volume succeeded",
            );
        }
        Ok::<(), Error>(())
    }
    .await;
    match result {
        Ok(()) => {
            ctx.backoff.reset(&k);
            Ok(Action::await_change())
        }
        Err(e) => {
            if !matches!(e, Error::Conflict(_)) {
                ctx.event(
                    &marked,
                    EventType::Warning,
                    reason::RESIZE_FAILED,
                    &e.to_string(),
                );
            }
            Err(e)
        }
    }
}

/// ControllerExpandVolume (or, for a node-only driver, nothing): the new
/// size and whether the node must expand too; on failure the error text
/// and the gRPC code.
async fn expand(
    ctx: &Context,
    pv: &PersistentVolume,
    size: &Quantity,
) -> Result<(Quantity, bool), (String, Option<tonic::Code>)> {
    if !ctx.driver.controller_expand {
        // Upstream's trivial resizer.
        return Ok((size.clone(), true));
    }
    let fail = |e: Error| (e.to_string(), None);
    let (source, spec, _migrated) = request::csi_source(pv, ctx.driver.migrated).map_err(fail)?;
    let secrets = match request::expand_secret(&source) {
        Some(s) => ctx.read_secret(&s).await.map_err(fail)?,
        None => Default::default(),
    };
    let req = request::expand_request(
        &spec,
        &source,
        resize::bytes(Some(size)),
        secrets,
        ctx.single_node_multi_writer,
    )
    .map_err(fail)?;
    match ctx.csi.controller_expand_volume(req).await {
        Ok(resp) => Ok((
            Quantity(sidecar_runtime::quantity::from_bytes(resp.capacity_bytes)),
            resp.node_expansion_required,
        )),
        Err(e) => Err((go_error(&e), Some(e.code()))),
    }
}

/// One modify reconcile (upstream modifycontroller `syncPVC` + `modify`).
async fn reconcile_modify(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _work = ctx.modify_queue.start(pvc.as_ref());
    if ctx.own_writes.is_object_stale(pvc.as_ref()) {
        return Ok(Action::await_change());
    }
    let k = key(&pvc);
    let Some(volume_name) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
    else {
        return Ok(Action::await_change());
    };
    let Some(pv) = ctx.volumes.get(&ObjectRef::new(&volume_name)) else {
        return Ok(Action::await_change());
    };
    if !modify::is_mine(&pvc, &pv, &ctx.driver.name) {
        return Ok(Action::await_change());
    }
    let (remaining, uncertain) = ctx.memory(&k, |m| {
        if modify::slow_entry_obsolete(&pvc) {
            m.modify_slow_since = None;
            return (None, m.modify_uncertain);
        }
        let remaining = ctx.remaining(m.modify_slow_since);
        if remaining.is_none() {
            m.modify_slow_since = None;
        }
        if modify::is_infeasible(&pvc) && m.modify_slow_since.is_none() {
            m.modify_slow_since = Some(Instant::now());
        }
        (remaining, m.modify_uncertain)
    });
    let (base, class) = match modify::plan(&pvc, &k, remaining, uncertain) {
        modify::Plan::Nothing => return Ok(Action::await_change()),
        modify::Plan::Delay { message, after } => {
            debug!(claim = %k, "{message}");
            return Ok(ctx.modify_queue.requeue(pvc.as_ref(), after));
        }
        modify::Plan::RolledBack { had_condition } => {
            if had_condition {
                ctx.event(
                    &pvc,
                    EventType::Normal,
                    reason::MODIFY_CANCELED,
                    modify::text::CANCELED,
                );
                ctx.patch_claim(
                    &pvc,
                    &modify::mark_rolled_back(&pvc),
                    false,
                    &format!("mark PVC {:?} as rolled back failed", pvc.name_any()),
                )
                .await?;
            }
            return Ok(Action::await_change());
        }
        modify::Plan::Resume { target } => {
            let class = find_class(&ctx, &pvc, &target)?;
            ((*pvc).clone(), class)
        }
        modify::Plan::Start { class } => {
            let Ok(vac) = find_class(&ctx, &pvc, &class) else {
                let pending = modify::mark_status(&pvc, modify_status::PENDING, None, &now());
                ctx.patch_claim(
                    &pvc,
                    &pending,
                    true,
                    &format!(
                        "mark PVC {:?} as modify volume failed, errored with",
                        pvc.name_any()
                    ),
                )
                .await?;
                return Ok(Action::await_change());
            };
            let marked = ctx
                .patch_claim(
                    &pvc,
                    &modify::mark_status(&pvc, modify_status::IN_PROGRESS, None, &now()),
                    true,
                    &format!(
                        "mark PVC {:?} as modify volume failed, errored with",
                        pvc.name_any()
                    ),
                )
                .await?;
            ctx.event(
                &marked,
                EventType::Normal,
                reason::MODIFY,
                &modify::text::modifying(&pvc.name_any(), &vac.name_any()),
            );
            (marked, vac)
        }
    };
    modify_volume(&ctx, &base, &pv, &class, &k).await
}

fn find_class(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    name: &str,
) -> Result<Arc<VolumeAttributesClass>, Error> {
    let found = ctx
        .classes
        .as_ref()
        .and_then(|c| c.get(&ObjectRef::new(name)));
    found.ok_or_else(|| {
        ctx.event(pvc, EventType::Warning, reason::MODIFY_FAILED, &modify::text::class_missing(name));
        Error::Request(format!(
            "get VAC with vac name {name} in VACInformer cache failed: volumeattributesclass.storage.k8s.io {:?} not found",
            name
        ))
    })
}

async fn modify_volume(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    class: &VolumeAttributesClass,
    k: &str,
) -> Result<Action, Error> {
    let Some(source) = pv.spec.as_ref().and_then(|s| s.csi.clone()) else {
        return Err(Error::Request(format!(
            "volume {} is not a CSI volumes, modify volume feature only supports CSI volumes",
            pv.name_any()
        )));
    };
    if source.volume_handle.is_empty() {
        return Err(Error::Request("empty volume handle".into()));
    }
    let secrets = match request::modify_secret(pv, &source) {
        Some(s) => ctx.read_secret(&s).await?,
        None => Default::default(),
    };
    let params = modify::parameters(
        class.parameters.as_ref(),
        ctx.extra_modify_metadata,
        pvc,
        &pv.name_any(),
    );
    let req = ControllerModifyVolumeRequest {
        volume_id: source.volume_handle.clone(),
        secrets: secrets.into_iter().collect(),
        mutable_parameters: params.into_iter().collect(),
    };
    match ctx.csi.controller_modify_volume(req).await {
        Ok(_) => {
            let target = pvc
                .status
                .as_ref()
                .and_then(|s| s.modify_volume_status.as_ref())
                .and_then(|s| s.target_volume_attributes_class_name.clone())
                .unwrap_or_default();
            let patch = serde_json::json!({"spec": {"volumeAttributesClassName": target}});
            ctx.patch_pv(
                pv,
                &patch,
                format!("modify volume failed to mark pvc {} modify volume completed: update pv.Spec.VolumeAttributesClassName for PVC {:?} failed, errored with", pvc.name_any(), pvc.name_any()),
            )
            .await?;
            ctx.patch_claim(
                pvc,
                &modify::mark_completed(pvc),
                false,
                &format!(
                    "mark PVC {:?} as ModifyVolumeCompleted failed, errored with",
                    pvc.name_any()
                ),
            )
            .await?;
            ctx.memory(k, |m| {
                m.modify_uncertain = false;
                m.modify_slow_since = None;
            });
            ctx.event(
                pvc,
                EventType::Normal,
                reason::MODIFY_SUCCESSFUL,
                &modify::text::modified(&pvc.name_any(), &class.name_any()),
            );
            ctx.backoff.reset(&k.to_string());
            Ok(Action::await_change())
        }
        Err(e) => {
            let status = e;
            let text = go_error(&status);
            let final_ = csi_client::is_final_code(status.code());
            let state = if final_ && status.code() == tonic::Code::InvalidArgument {
                modify_status::INFEASIBLE
            } else {
                modify_status::IN_PROGRESS
            };
            ctx.memory(k, |m| m.modify_uncertain = !final_);
            let failure = modify::ModifyFailure {
                code: status.code(),
                message: status.message().to_string(),
            };
            let marked = ctx
                .patch_claim(
                    pvc,
                    &modify::mark_status(pvc, state, Some(&failure), &now()),
                    true,
                    &format!(
                        "mark PVC {:?} as modify volume failed, errored with",
                        pvc.name_any()
                    ),
                )
                .await?;
            if modify::is_infeasible(&marked) {
                ctx.memory(k, |m| {
                    if m.modify_slow_since.is_none() {
                        m.modify_slow_since = Some(Instant::now());
                    }
                });
            }
            let message = if final_ {
                text
            } else {
                modify::text::still_modifying(&text, &class.name_any())
            };
            ctx.event(pvc, EventType::Warning, reason::MODIFY_FAILED, &message);
            Err(Error::Csi {
                message,
                status: Some(status),
            })
        }
    }
}
