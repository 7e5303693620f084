//! client-go's `workqueue_*` metrics for a sidecar's controllers, with the
//! queue names upstream gives them (the provisioner's `claims` and
//! `volumes`, the attacher's `csi-attacher`, …), fixed at registration.
//!
//! kube-runtime keeps its queue to itself, so the queue is followed from
//! outside with client-go's semantics: an object is *added* when a watch
//! event (or a VolumeAttachment deletion, for PVs) triggers it, or when a
//! reconcile asks for a requeue (then from the moment it falls due, as
//! client-go's `AddAfter`); adding an object already waiting changes
//! nothing, as in client-go's dirty set. It leaves the queue when a
//! reconcile of it starts (`workqueue_queue_duration_seconds` observes the
//! wait) or when it is deleted. `workqueue_depth` counts the objects
//! waiting and due.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::watcher;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `name` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// Queue name, as upstream's workqueue is named.
    pub name: String,
}

/// The queue metrics and the work in progress they are computed from.
#[derive(Clone)]
pub struct QueueMetrics {
    adds: Family<QueueLabel, Counter>,
    retries: Family<QueueLabel, Counter>,
    work_duration: Family<QueueLabel, Histogram>,
    unfinished: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    longest: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    depth: Family<QueueLabel, Gauge>,
    queue_duration: Family<QueueLabel, Histogram>,
    in_flight: Arc<Mutex<HashMap<u64, (&'static str, Instant)>>>,
    /// Objects waiting per queue: key → when they were added (or fall due).
    waiting: Arc<Mutex<HashMap<(&'static str, String), Instant>>>,
    next_id: Arc<AtomicU64>,
    /// The queues, each reported even while empty.
    queues: Arc<[&'static str]>,
}

/// Ends a unit of work when dropped (success, error or cancellation).
pub struct WorkGuard {
    metrics: QueueMetrics,
    id: u64,
    queue: &'static str,
    started: Instant,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let label = QueueLabel {
            name: self.queue.into(),
        };
        self.metrics
            .work_duration
            .get_or_create(&label)
            .observe(self.started.elapsed().as_secs_f64());
        if let Ok(mut m) = self.metrics.in_flight.lock() {
            m.remove(&self.id);
        }
        self.metrics.refresh();
    }
}

impl QueueMetrics {
    /// Registers `workqueue_depth`, `workqueue_queue_duration_seconds`,
    /// `workqueue_adds_total`, `workqueue_retries_total`,
    /// `workqueue_work_duration_seconds` (client-go's buckets, 10 ns to 10 s
    /// by tens), `workqueue_unfinished_work_seconds` and
    /// `workqueue_longest_running_processor_seconds`.
    ///
    /// `queues` are the queue names, each reported even while empty.
    pub fn register(registry: &mut Registry, queues: &[&'static str]) -> Self {
        let m = QueueMetrics {
            adds: Family::default(),
            retries: Family::default(),
            work_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-8, 10.0, 10))
            }),
            unfinished: Family::default(),
            longest: Family::default(),
            depth: Family::default(),
            queue_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-8, 10.0, 10))
            }),
            in_flight: Arc::default(),
            waiting: Arc::default(),
            next_id: Arc::default(),
            queues: queues.into(),
        };
        let sub = registry.sub_registry_with_prefix("workqueue");
        sub.register("depth", "Current depth of workqueue", m.depth.clone());
        sub.register(
            "queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            m.queue_duration.clone(),
        );
        sub.register(
            "adds",
            "Total number of adds handled by workqueue",
            m.adds.clone(),
        );
        sub.register(
            "retries",
            "Total number of retries handled by workqueue",
            m.retries.clone(),
        );
        sub.register(
            "work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            m.work_duration.clone(),
        );
        sub.register(
            "unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration.",
            m.unfinished.clone(),
        );
        sub.register(
            "longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            m.longest.clone(),
        );
        m
    }

    /// A trigger for `key` on `queue` (a watch event): the object waits
    /// from now, unless it already waits.
    pub fn added(&self, queue: &'static str, key: &str) {
        self.add_at(queue, key, Instant::now());
    }

    /// A reconcile asked to run `key` again after `delay`: it waits from
    /// when it falls due. Returns the [`Action`] to hand back to the
    /// controller.
    pub fn requeue(&self, queue: &'static str, key: &str, delay: Duration) -> Action {
        self.add_at(queue, key, Instant::now() + delay);
        Action::requeue(delay)
    }

    fn add_at(&self, queue: &'static str, key: &str, at: Instant) {
        let Ok(mut w) = self.waiting.lock() else {
            return;
        };
        let entry = w.entry((queue, key.to_string()));
        let new = matches!(entry, std::collections::hash_map::Entry::Vacant(_));
        let t = entry.or_insert(at);
        // The earliest wins, as kube-runtime's scheduler keeps it.
        *t = (*t).min(at);
        drop(w);
        if new {
            self.adds
                .get_or_create(&QueueLabel { name: queue.into() })
                .inc();
        }
    }

    /// `key` was deleted: it no longer waits.
    pub fn forget(&self, queue: &'static str, key: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&(queue, key.to_string()));
        }
    }

    /// Follows a reflector's events for `queue`: applied objects are added,
    /// deleted ones forgotten.
    pub fn watch_event<K>(&self, queue: &'static str, event: &watcher::Event<K>)
    where
        K: Resource,
    {
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                self.added(queue, &object_key(o))
            }
            watcher::Event::Delete(o) => self.forget(queue, &object_key(o)),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// Starts a unit of work on `key` from `queue`; the guard ends it.
    pub fn start(&self, queue: &'static str, key: &str) -> WorkGuard {
        let now = Instant::now();
        let since = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&(queue, key.to_string())));
        let label = QueueLabel { name: queue.into() };
        self.queue_duration
            .get_or_create(&label)
            .observe(since.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64()));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(id, (queue, started));
        }
        WorkGuard {
            metrics: self.clone(),
            id,
            queue,
            started,
        }
    }

    /// Counts a requeue after a failure.
    pub fn retry(&self, queue: &'static str) {
        self.retries
            .get_or_create(&QueueLabel { name: queue.into() })
            .inc();
    }

    /// Recomputes the in-progress gauges; called on every start/end and
    /// periodically by the controller so they age between events.
    pub fn refresh(&self) {
        let Ok(m) = self.in_flight.lock() else { return };
        let now = Instant::now();
        let mut per_queue: HashMap<&'static str, (f64, f64)> =
            self.queues.iter().map(|q| (*q, (0.0, 0.0))).collect();
        for (queue, started) in m.values() {
            let age = now.duration_since(*started).as_secs_f64();
            let e = per_queue.entry(queue).or_insert((0.0, 0.0));
            e.0 += age;
            e.1 = e.1.max(age);
        }
        for (queue, (sum, max)) in per_queue {
            let label = QueueLabel { name: queue.into() };
            self.unfinished.get_or_create(&label).set(sum);
            self.longest.get_or_create(&label).set(max);
        }
    }

    /// Recomputes `workqueue_depth` (objects waiting and due); called
    /// periodically by the controller, as it costs a pass over the queue.
    pub fn refresh_depth(&self) {
        let now = Instant::now();
        let mut depth: HashMap<&'static str, i64> = self.queues.iter().map(|q| (*q, 0)).collect();
        if let Ok(w) = self.waiting.lock() {
            for ((queue, _), at) in w.iter() {
                if *at <= now {
                    *depth.entry(queue).or_default() += 1;
                }
            }
        }
        for (queue, n) in depth {
            self.depth
                .get_or_create(&QueueLabel { name: queue.into() })
                .set(n);
        }
    }
}

/// The workqueue key of an object: `namespace/name`, or `name` for
/// cluster-scoped objects (client-go's `MetaNamespaceKeyFunc`).
pub fn object_key<K: Resource>(obj: &K) -> String {
    let name = obj.meta().name.clone().unwrap_or_default();
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reg: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, reg).unwrap();
        out
    }

    #[test]
    fn counts_work_retries_and_in_progress_age() {
        let mut reg = Registry::default();
        let m = QueueMetrics::register(&mut reg, &["claims", "volumes"]);
        m.added("claims", "ns/a");
        let guard = m.start("claims", "ns/a");
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.refresh();
        let during = text(&reg);
        assert!(
            during.contains("workqueue_adds_total{name=\"claims\"} 1"),
            "{during}"
        );
        let longest = during
            .lines()
            .find(|l| l.starts_with("workqueue_longest_running_processor_seconds{name=\"claims\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!(longest >= 0.02, "{longest}");
        drop(guard);
        m.retry("volumes");
        let after = text(&reg);
        assert!(
            after.contains("workqueue_work_duration_seconds_count{name=\"claims\"} 1"),
            "{after}"
        );
        assert!(
            after.contains("workqueue_longest_running_processor_seconds{name=\"claims\"} 0.0"),
            "{after}"
        );
        assert!(
            after.contains("workqueue_retries_total{name=\"volumes\"} 1"),
            "{after}"
        );
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    #[test]
    fn depth_and_wait_follow_client_go_semantics() {
        let mut reg = Registry::default();
        let m = QueueMetrics::register(&mut reg, &["claims", "volumes"]);
        m.added("claims", "ns/a");
        m.added("claims", "ns/a"); // already waiting: not a second add
        m.added("claims", "ns/b");
        let _ = m.requeue("volumes", "pv-1", Duration::from_secs(3600));
        m.refresh_depth();
        let t = text(&reg);
        assert_eq!(value(&t, "workqueue_depth{name=\"claims\"}"), 2.0);
        assert_eq!(
            value(&t, "workqueue_depth{name=\"volumes\"}"),
            0.0,
            "a requeue is not due for an hour"
        );
        assert_eq!(value(&t, "workqueue_adds_total{name=\"claims\"}"), 2.0);
        std::thread::sleep(Duration::from_millis(20));
        let g = m.start("claims", "ns/a");
        drop(g);
        m.forget("claims", "ns/b"); // deleted while waiting
        m.refresh_depth();
        let t = text(&reg);
        assert_eq!(value(&t, "workqueue_depth{name=\"claims\"}"), 0.0);
        assert_eq!(
            value(
                &t,
                "workqueue_queue_duration_seconds_count{name=\"claims\"}"
            ),
            1.0
        );
        let waited = value(&t, "workqueue_queue_duration_seconds_sum{name=\"claims\"}");
        assert!(waited >= 0.02, "waited {waited}");
        // A requeue waits from when it falls due, never negative.
        let _ = m.start("volumes", "pv-1");
        let t = text(&reg);
        assert_eq!(
            value(&t, "workqueue_queue_duration_seconds_sum{name=\"volumes\"}"),
            0.0
        );
    }

    #[test]
    fn watch_events_add_and_forget() {
        use k8s_openapi::api::core::v1::PersistentVolumeClaim;
        let mut reg = Registry::default();
        let m = QueueMetrics::register(&mut reg, &["claims", "volumes"]);
        let mut pvc = PersistentVolumeClaim::default();
        pvc.metadata.name = Some("a".into());
        pvc.metadata.namespace = Some("ns".into());
        assert_eq!(object_key(&pvc), "ns/a");
        m.watch_event("claims", &watcher::Event::InitApply(pvc.clone()));
        m.refresh_depth();
        assert_eq!(value(&text(&reg), "workqueue_depth{name=\"claims\"}"), 1.0);
        m.watch_event("claims", &watcher::Event::Delete(pvc));
        m.refresh_depth();
        assert_eq!(value(&text(&reg), "workqueue_depth{name=\"claims\"}"), 0.0);
    }
}
