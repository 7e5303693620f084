//! client-go's `workqueue_*` metrics, for the claim and volume controllers
//! (queue names `claims` and `volumes`, as upstream).
//!
//! kube-runtime keeps its queue to itself, so only what can be seen around a
//! reconcile is reported: adds (reconciles started), retries, work duration,
//! and the age of work in progress. `workqueue_depth` and
//! `workqueue_queue_duration_seconds` would need the queue's internals and
//! are not produced rather than estimated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `name` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// Queue name: `claims` or `volumes`.
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
    in_flight: Arc<Mutex<HashMap<u64, (&'static str, Instant)>>>,
    next_id: Arc<AtomicU64>,
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
    /// Registers `workqueue_adds_total`, `workqueue_retries_total`,
    /// `workqueue_work_duration_seconds` (client-go's buckets, 10 ns to 10 s
    /// by tens), `workqueue_unfinished_work_seconds` and
    /// `workqueue_longest_running_processor_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = QueueMetrics {
            adds: Family::default(),
            retries: Family::default(),
            work_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-8, 10.0, 10))
            }),
            unfinished: Family::default(),
            longest: Family::default(),
            in_flight: Arc::default(),
            next_id: Arc::default(),
        };
        let sub = registry.sub_registry_with_prefix("workqueue");
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

    /// Starts a unit of work on `queue`; the guard ends it.
    pub fn start(&self, queue: &'static str) -> WorkGuard {
        self.adds
            .get_or_create(&QueueLabel { name: queue.into() })
            .inc();
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
            HashMap::from([("claims", (0.0, 0.0)), ("volumes", (0.0, 0.0))]);
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
        let m = QueueMetrics::register(&mut reg);
        let guard = m.start("claims");
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
}
