//! The operation metrics of upstream's snapshot-controller
//! (kubernetes-csi/external-snapshotter: pkg/metrics/metrics.go): how long a
//! snapshot took from the controller first seeing it to being cut
//! (`CreateSnapshot`), to being ready (`CreateSnapshotAndReady`), and to being
//! gone (`DeleteSnapshot`), in `snapshot_controller_operation_total_seconds`,
//! with `snapshot_controller_operations_in_flight` and
//! `process_start_time_seconds`. Nothing else is served, as upstream serves
//! its own registry only.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Operation names (the `operation_name` label).
pub mod op {
    /// From first sight to `status.creationTime`.
    pub const CREATE_SNAPSHOT: &str = "CreateSnapshot";
    /// From first sight to `status.readyToUse: true`.
    pub const CREATE_SNAPSHOT_AND_READY: &str = "CreateSnapshotAndReady";
    /// From the deletion timestamp to the object being gone.
    pub const DELETE_SNAPSHOT: &str = "DeleteSnapshot";
}

/// `snapshot_type` label values.
pub mod kind {
    /// The snapshot names a claim.
    pub const DYNAMIC: &str = "dynamic";
    /// The snapshot names a content.
    pub const PRE_PROVISIONED: &str = "pre-provisioned";
}

/// The driver label when the driver is not known.
pub const UNKNOWN_DRIVER: &str = "unknown";

const BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    driver_name: String,
    operation_name: String,
    snapshot_type: String,
    operation_status: String,
}

struct Started {
    driver: String,
    snapshot_type: &'static str,
    at: Instant,
}

/// Operations in flight keyed by (operation, snapshot UID). Cheap to clone.
#[derive(Clone)]
pub struct OperationMetrics {
    latency: Family<OpLabels, Histogram>,
    in_flight: Gauge,
    cache: Arc<Mutex<HashMap<(&'static str, String), Started>>>,
}

impl OperationMetrics {
    /// Registers the metrics in `registry` (which should hold nothing else,
    /// as upstream's).
    pub fn register(registry: &mut Registry) -> Self {
        let latency = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(BUCKETS.iter().copied())
        });
        let in_flight = Gauge::default();
        registry.register(
            "snapshot_controller_operation_total_seconds",
            "Total number of seconds spent by the controller on an operation",
            latency.clone(),
        );
        registry.register(
            "snapshot_controller_operations_in_flight",
            "Total number of operations in flight",
            in_flight.clone(),
        );
        let start = Gauge::<f64, AtomicU64>::default();
        start.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
        OperationMetrics {
            latency,
            in_flight,
            cache: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String), Started>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `operation` of the snapshot `uid` unless it is already
    /// running (the first start counts). An empty driver is `unknown`.
    pub fn start(
        &self,
        operation: &'static str,
        uid: &str,
        driver: &str,
        snapshot_type: &'static str,
    ) {
        let mut cache = self.lock();
        cache
            .entry((operation, uid.to_string()))
            .or_insert_with(|| Started {
                driver: if driver.is_empty() {
                    UNKNOWN_DRIVER.to_string()
                } else {
                    driver.to_string()
                },
                snapshot_type,
                at: Instant::now(),
            });
        self.in_flight.set(cache.len() as i64);
    }

    /// Ends `operation` of `uid` with status `success` and records its
    /// duration; `driver` replaces the one known at the start unless empty.
    /// Ending `DeleteSnapshot` records the snapshot's unfinished creation
    /// operations as `cancel`. Nothing happens for an operation never
    /// started.
    pub fn succeeded(&self, operation: &'static str, uid: &str, driver: &str) {
        let mut cache = self.lock();
        let Some(started) = cache.remove(&(operation, uid.to_string())) else {
            return;
        };
        let elapsed = started.at.elapsed().as_secs_f64();
        let driver = if driver.is_empty() || driver == UNKNOWN_DRIVER {
            started.driver.clone()
        } else {
            driver.to_string()
        };
        self.observe(
            &driver,
            operation,
            started.snapshot_type,
            "success",
            elapsed,
        );
        if operation == op::DELETE_SNAPSHOT {
            for create in [op::CREATE_SNAPSHOT, op::CREATE_SNAPSHOT_AND_READY] {
                if let Some(s) = cache.remove(&(create, uid.to_string())) {
                    self.observe(&s.driver, create, s.snapshot_type, "cancel", elapsed);
                }
            }
        }
        self.in_flight.set(cache.len() as i64);
    }

    fn observe(&self, driver: &str, operation: &str, snapshot_type: &str, status: &str, secs: f64) {
        self.latency
            .get_or_create(&OpLabels {
                driver_name: driver.to_string(),
                operation_name: operation.to_string(),
                snapshot_type: snapshot_type.to_string(),
                operation_status: status.to_string(),
            })
            .observe(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reg: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
        s
    }

    #[test]
    fn create_then_ready_and_delete_cancels_the_rest() {
        let mut reg = Registry::default();
        let m = OperationMetrics::register(&mut reg);
        m.start(op::CREATE_SNAPSHOT, "u1", "", kind::DYNAMIC);
        m.start(op::CREATE_SNAPSHOT_AND_READY, "u1", "d", kind::DYNAMIC);
        m.start(op::CREATE_SNAPSHOT, "u1", "other", kind::DYNAMIC);
        assert!(text(&reg).contains("snapshot_controller_operations_in_flight 2"));
        m.succeeded(op::CREATE_SNAPSHOT, "u1", "d");
        m.start(op::DELETE_SNAPSHOT, "u1", "d", kind::DYNAMIC);
        m.succeeded(op::DELETE_SNAPSHOT, "u1", "");
        let t = text(&reg);
        assert!(t.contains("snapshot_controller_operation_total_seconds_count{driver_name=\"d\",operation_name=\"CreateSnapshot\",snapshot_type=\"dynamic\",operation_status=\"success\"} 1"), "{t}");
        assert!(t.contains("operation_name=\"CreateSnapshotAndReady\",snapshot_type=\"dynamic\",operation_status=\"cancel\"} 1"), "{t}");
        assert!(t.contains("operation_name=\"DeleteSnapshot\",snapshot_type=\"dynamic\",operation_status=\"success\"} 1"), "{t}");
        assert!(
            t.contains("snapshot_controller_operations_in_flight 0"),
            "{t}"
        );
        assert!(t.contains("process_start_time_seconds"), "{t}");
        // Ending an operation never started records nothing.
        m.succeeded(op::CREATE_SNAPSHOT, "u2", "d");
        assert_eq!(text(&reg).matches("_count{").count(), 3);
    }

    #[test]
    fn unknown_driver_until_known() {
        let mut reg = Registry::default();
        let m = OperationMetrics::register(&mut reg);
        m.start(op::CREATE_SNAPSHOT, "u", "", kind::PRE_PROVISIONED);
        m.succeeded(op::CREATE_SNAPSHOT, "u", "");
        assert!(text(&reg).contains("driver_name=\"unknown\",operation_name=\"CreateSnapshot\",snapshot_type=\"pre-provisioned\""));
    }
}
