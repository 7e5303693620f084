//! The provisioner's own metrics, named and labelled as upstream's
//! (`sig-storage-lib-external-provisioner: controller/metrics`): provision and
//! delete counters and durations.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the provision metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLabels {
    /// StorageClass name.
    pub class: String,
    /// Data source kind, "" for empty volumes.
    pub source: String,
}

/// Labels of the delete metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeLabels {
    /// StorageClass name.
    pub class: String,
}

/// Provision and delete outcome metrics.
#[derive(Clone)]
pub struct ProvisionerMetrics {
    provisioned: Family<ClaimLabels, Counter>,
    provision_failed: Family<ClaimLabels, Counter>,
    provision_duration: Family<ClaimLabels, Histogram>,
    deleted: Family<VolumeLabels, Counter>,
    delete_failed: Family<VolumeLabels, Counter>,
    delete_duration: Family<VolumeLabels, Histogram>,
}

fn default_buckets() -> Histogram {
    // Prometheus' default buckets, which upstream's histograms use.
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl ProvisionerMetrics {
    /// Registers every metric in `registry` under upstream's names
    /// (`controller_persistentvolumeclaim_provision_total`, …).
    pub fn register(registry: &mut Registry) -> Self {
        let m = ProvisionerMetrics {
            provisioned: Family::default(),
            provision_failed: Family::default(),
            provision_duration: Family::new_with_constructor(default_buckets),
            deleted: Family::default(),
            delete_failed: Family::default(),
            delete_duration: Family::new_with_constructor(default_buckets),
        };
        let sub = registry.sub_registry_with_prefix("controller");
        sub.register("persistentvolumeclaim_provision", "Total number of persistent volumes provisioned succesfully. Broken down by storage class name and source of the claim.", m.provisioned.clone());
        sub.register("persistentvolumeclaim_provision_failed", "Total number of persistent volume provision failed attempts. Broken down by storage class name and source of the claim.", m.provision_failed.clone());
        sub.register("persistentvolumeclaim_provision_duration_seconds", "Latency in seconds to provision persistent volumes. Failed provisioning attempts are ignored. Broken down by storage class name and source of the claim.", m.provision_duration.clone());
        sub.register("persistentvolume_delete", "Total number of persistent volumes deleted succesfully. Broken down by storage class name.", m.deleted.clone());
        sub.register("persistentvolume_delete_failed", "Total number of persistent volume delete failed attempts. Broken down by storage class name.", m.delete_failed.clone());
        sub.register("persistentvolume_delete_duration_seconds", "Latency in seconds to delete persistent volumes. Failed deletion attempts are ignored. Broken down by storage class name.", m.delete_duration.clone());
        m
    }

    /// Records a successful provision that took `took`.
    pub fn provisioned(&self, class: &str, source: &str, took: Duration) {
        let l = ClaimLabels {
            class: class.into(),
            source: source.into(),
        };
        self.provisioned.get_or_create(&l).inc();
        self.provision_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// Records a failed provision attempt.
    pub fn provision_failed(&self, class: &str, source: &str) {
        self.provision_failed
            .get_or_create(&ClaimLabels {
                class: class.into(),
                source: source.into(),
            })
            .inc();
    }

    /// Records a successful delete that took `took`.
    pub fn deleted(&self, class: &str, took: Duration) {
        let l = VolumeLabels {
            class: class.into(),
        };
        self.deleted.get_or_create(&l).inc();
        self.delete_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// Records a failed delete attempt.
    pub fn delete_failed(&self, class: &str) {
        self.delete_failed
            .get_or_create(&VolumeLabels {
                class: class.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_upstream() {
        let mut reg = Registry::default();
        let m = ProvisionerMetrics::register(&mut reg);
        m.provisioned("fast", "", Duration::from_millis(30));
        m.provision_failed("fast", "PersistentVolumeClaim");
        m.deleted("fast", Duration::from_millis(5));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains(
                "controller_persistentvolumeclaim_provision_total{class=\"fast\",source=\"\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "controller_persistentvolumeclaim_provision_failed_total{class=\"fast\",source=\"PersistentVolumeClaim\"} 1"
        ));
        assert!(text.contains("controller_persistentvolumeclaim_provision_duration_seconds_count{class=\"fast\",source=\"\"} 1"));
        assert!(text.contains("controller_persistentvolume_delete_total{class=\"fast\"} 1"));
    }
}
