//! The plumbing every sidecar's kube-runtime controllers share: watches
//! that list as client-go's informers do, caches without `managedFields`,
//! the `workqueue_*` metrics following each queue, per-object state
//! forgotten when its object is deleted, the retry policy after a failed
//! reconcile, and one shutdown signal fanned out to every controller.
//!
//! A sidecar builds its reflectors and controllers with these and keeps
//! only its own decisions: see csi-provisioner's `controller.rs`.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use futures::Stream;
use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::workqueue::{QueueMetrics, WorkGuard, object_key};

/// Watches list as client-go's informers do: the initial list and every
/// re-list ask for `resourceVersion=0` without paging, which the API server
/// answers from its watch cache in one response. kube-runtime's default, a
/// consistent list in pages of 500, makes 5,000 objects 10 requests, each
/// spending a QPS token before the first reconcile.
pub fn watch_config() -> watcher::Config {
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    config
}

/// Drops what no decision reads from cached objects: `managedFields`, the
/// bulk of a small object. Objects written back with Updates built from the
/// cache keep the server's `managedFields` (only a list holding one empty
/// entry resets them), so nothing is lost.
pub fn slim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A reflector over every `K` of the cluster, with [`watch_config`],
/// kube-runtime's default backoff and [`slim`] objects, feeding `writer`.
/// The stream yields the watcher events after the store has applied them.
pub fn reflect_all<K>(
    client: Client,
    writer: Writer<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(Api::<K>::all(client), watch_config())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
}

/// A store kept by a watch only to be read (no controller runs on it):
/// returns the reader and the future that keeps it filled.
pub fn cache_all<K>(client: Client) -> (reflector::Store<K>, impl Future<Output = ()> + Send)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let keep = reflect_all(client, writer).for_each(|_| futures::future::ready(()));
    (reader, keep)
}

/// One queue of a controller: its upstream name and the metrics following
/// it. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    name: &'static str,
    metrics: QueueMetrics,
}

impl Queue {
    /// The queue `name` (as upstream names its workqueue) in `metrics`.
    pub fn new(name: &'static str, metrics: QueueMetrics) -> Self {
        Queue { name, metrics }
    }

    /// The queue's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The metrics this queue is followed by (shared with the process's
    /// other queues).
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    /// A watch-stream inspector: applied objects are added to the queue,
    /// deleted ones leave it, and `forget` is called with each deleted
    /// object so per-object state (backoff counters, caches keyed by the
    /// object) does not outlive it.
    pub fn follow<K: Resource>(
        &self,
        forget: impl Fn(&K) + Send + 'static,
    ) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
        let metrics = self.metrics.clone();
        let name = self.name;
        move |event| {
            if let Ok(e) = event {
                metrics.watch_event(name, e);
                if let watcher::Event::Delete(obj) = e {
                    forget(obj);
                }
            }
        }
    }

    /// A trigger that did not come from the watch (another object's event).
    pub fn added(&self, key: &str) {
        self.metrics.added(self.name, key);
    }

    /// Starts a reconcile of `obj`; the guard ends it when dropped.
    pub fn start<K: Resource>(&self, obj: &K) -> WorkGuard {
        self.metrics.start(self.name, &object_key(obj))
    }

    /// Runs `obj` again after `delay` (the metrics count it from when it
    /// falls due, as client-go's `AddAfter`).
    pub fn requeue<K: Resource>(&self, obj: &K, delay: Duration) -> Action {
        self.metrics.requeue(self.name, &object_key(obj), delay)
    }

    /// The retry after a failed reconcile of `obj`, `delay` from the
    /// object's backoff: counted in `workqueue_retries_total`, logged
    /// (at debug when `routine`, e.g. a conflict the watch resolves, else
    /// as a warning), and requeued.
    pub fn retry_after_error<K: Resource>(
        &self,
        obj: &K,
        delay: Duration,
        routine: bool,
        err: &dyn Display,
    ) -> Action {
        self.metrics.retry(self.name);
        let key = object_key(obj);
        if routine {
            debug!(queue = self.name, object = %key, error = %err, retry_in = ?delay, "reconcile will be retried");
        } else {
            warn!(queue = self.name, object = %key, error = %err, retry_in = ?delay, "reconcile failed");
        }
        self.metrics.requeue(self.name, &key, delay)
    }
}

/// Upstream's informer resync: every `period`, each object in `store` is
/// handed to `send` (typically a controller's `reconcile_on` channel), as
/// client-go's resync re-delivers every cached object to the handlers. A zero
/// `period` never resyncs (upstream's `--resync-period=0`). Runs until
/// dropped.
pub async fn resync_every<K>(
    store: reflector::Store<K>,
    period: Duration,
    mut send: impl FnMut(reflector::ObjectRef<K>),
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    if period.is_zero() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(period).await;
        let all = store.state();
        debug!(objects = all.len(), "resync");
        for obj in all {
            send(reflector::ObjectRef::from_obj(obj.as_ref()));
        }
    }
}

/// Keeps the in-progress gauges (`workqueue_unfinished_work_seconds`,
/// `workqueue_longest_running_processor_seconds`, `workqueue_depth`)
/// current between events: recomputed every second, forever.
pub async fn refresh_gauges(metrics: QueueMetrics) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        metrics.refresh();
        metrics.refresh_depth();
    }
}

/// One shutdown signal for many controllers: each gets a future from
/// [`Stop::signal`] that resolves once `shutdown` has.
#[derive(Clone)]
pub struct Stop {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Stop {
    /// Fans `shutdown` (e.g. [`crate::shutdown::signal`]) out; spawns a task.
    pub fn new(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        Stop { rx }
    }

    /// Resolves once the shutdown signal has fired (at once if it has).
    pub fn signal(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Logs what a controller's result stream yields: reconcile errors were
/// already handled by the error policy, so they are only debug lines here.
pub async fn drain<T, E: Display>(results: impl Stream<Item = Result<T, E>>, queue: &'static str) {
    results
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(queue, error = %e, "reconcile");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use prometheus_client::registry::Registry;
    use std::sync::{Arc, Mutex};

    fn cm(name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c
    }

    #[test]
    fn follow_forgets_deleted_objects_only() {
        let mut reg = Registry::default();
        let queue = Queue::new("things", QueueMetrics::register(&mut reg, &["things"]));
        let forgotten = Arc::new(Mutex::new(Vec::new()));
        let seen = forgotten.clone();
        let mut inspect = queue.follow(move |c: &ConfigMap| {
            seen.lock().unwrap().push(object_key(c));
        });
        inspect(&Ok(watcher::Event::Apply(cm("a"))));
        inspect(&Ok(watcher::Event::InitApply(cm("b"))));
        inspect(&Ok(watcher::Event::Delete(cm("a"))));
        assert_eq!(*forgotten.lock().unwrap(), vec!["ns/a".to_string()]);
    }

    #[test]
    fn retry_counts_and_requeues() {
        let mut reg = Registry::default();
        let queue = Queue::new("things", QueueMetrics::register(&mut reg, &["things"]));
        let action = queue.retry_after_error(&cm("a"), Duration::from_secs(3), false, &"boom");
        assert_eq!(action, Action::requeue(Duration::from_secs(3)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("workqueue_retries_total{name=\"things\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stop_reaches_every_holder() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = Stop::new(async move {
            let _ = rx.await;
        });
        let (a, b) = (stop.signal(), stop.clone().signal());
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), futures::future::join(a, b))
            .await
            .expect("both signals resolve");
        // A signal taken after the fact resolves at once.
        tokio::time::timeout(Duration::from_secs(5), stop.signal())
            .await
            .expect("late signal resolves");
    }
}
