//! [`LeaderHealth`]: what `/healthz/leader-election` and the
//! `leader_election_*` metrics know about this replica's leadership.
//!
//! Kept apart from the elector (the `leader` module, which needs a
//! Kubernetes client) so that the HTTP server can serve it in every build: the state
//! is a flag, an instant and two metric handles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// Extra time past the lease duration before `/healthz/leader-election` fails
/// (csi-lib-utils registers its watchdog with 20 s).
pub const HEALTH_TOLERANCE: Duration = Duration::from_secs(20);

struct HealthState {
    leading: bool,
    observed_at: Option<Instant>,
}

struct HealthInner {
    lease_name: String,
    lease_duration: Duration,
    state: Mutex<HealthState>,
    master_status: Gauge,
    slowpath: Counter,
}

/// Shared view of this replica's leadership for `/healthz/leader-election` and
/// the `leader_election_master_status` / `leader_election_slowpath_total` metrics.
/// Clones share state.
#[derive(Clone)]
pub struct LeaderHealth {
    inner: Arc<HealthInner>,
}

impl std::fmt::Debug for LeaderHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderHealth")
            .field("lease_name", &self.inner.lease_name)
            .field("leading", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl LeaderHealth {
    /// A handle for the Lease `lease_name` with the configured lease duration.
    pub fn new(lease_name: &str, lease_duration: Duration) -> Self {
        LeaderHealth {
            inner: Arc::new(HealthInner {
                lease_name: lease_name.to_owned(),
                lease_duration,
                state: Mutex::new(HealthState {
                    leading: false,
                    observed_at: None,
                }),
                master_status: Gauge::default(),
                slowpath: Counter::default(),
            }),
        }
    }

    /// csi-lib-utils' watchdog: `Err("failed election to renew leadership on
    /// lease <name>")` if this replica leads and `now − last observed renewal`
    /// exceeds lease duration + [`HEALTH_TOLERANCE`]; `Ok` otherwise (always
    /// for non-leaders).
    pub fn check(&self, now: Instant) -> Result<(), String> {
        let st = self.lock();
        match (st.leading, st.observed_at) {
            (true, Some(at))
                if now.saturating_duration_since(at)
                    > self.inner.lease_duration + HEALTH_TOLERANCE =>
            {
                Err(format!(
                    "failed election to renew leadership on lease {}",
                    self.inner.lease_name
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether this replica currently holds the Lease (as last observed).
    pub fn is_leader(&self) -> bool {
        self.lock().leading
    }

    /// Records an observation: whether the observed record names this replica,
    /// and when it was observed. Called by the elector; public for tests of
    /// code that consumes the health state.
    pub fn record(&self, leading: bool, observed_at: Instant) {
        {
            let mut st = self.lock();
            st.leading = leading;
            st.observed_at = Some(observed_at);
        }
        self.inner.master_status.set(i64::from(leading));
    }

    /// Registers `leader_election_master_status{name}` (1 while leading) and
    /// `leader_election_slowpath_total{name}` (renewals that needed a GET), as
    /// client-go exposes them.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let sub =
            registry.sub_registry_with_label(("name".into(), self.inner.lease_name.clone().into()));
        sub.register(
            "leader_election_master_status",
            "Whether this replica is the leader (1) or not (0)",
            self.inner.master_status.clone(),
        );
        sub.register(
            "leader_election_slowpath",
            "Lease renewals that had to re-read the Lease",
            self.inner.slowpath.clone(),
        );
    }

    #[cfg(feature = "kube")]
    /// Counts a renewal that had to re-read the Lease (client-go's slow path).
    pub(crate) fn record_slowpath(&self) {
        self.inner.slowpath.inc();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn health_watchdog() {
        let h = LeaderHealth::new("l", 15 * S);
        let t0 = Instant::now();
        assert!(h.check(t0 + 1000 * S).is_ok(), "no observation yet");
        h.record(true, t0);
        assert!(h.check(t0 + 35 * S).is_ok());
        assert_eq!(
            h.check(t0 + 36 * S).unwrap_err(),
            "failed election to renew leadership on lease l"
        );
        h.record(false, t0);
        assert!(h.check(t0 + 1000 * S).is_ok());
    }

    #[test]
    fn metrics_registered() {
        let h = LeaderHealth::new("my-lease", 15 * S);
        let mut reg = Registry::default();
        h.register_metrics(&mut reg);
        h.record(true, Instant::now());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("leader_election_master_status{name=\"my-lease\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("leader_election_slowpath_total{name=\"my-lease\"} 0"),
            "{out}"
        );
    }
}
