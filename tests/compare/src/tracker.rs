//! Watches the measured claims and their PVs and remembers when each claim
//! was first seen Bound and when each PV disappeared: the time-to-Bound and
//! deletion-progress curves, without listing everything every few
//! milliseconds. Survives API server restarts (the watcher re-lists).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use tokio::task::JoinHandle;

use crate::objects::NS;

#[derive(Debug, Default)]
struct State {
    /// Claim name → Bound now.
    claims: HashMap<String, bool>,
    /// PV name → claim namespace is [`NS`].
    pvs: HashSet<String>,
    first_bound: HashMap<String, Instant>,
    pv_gone: Vec<Instant>,
    relist_claims: Option<HashSet<String>>,
    relist_pvs: Option<HashSet<String>>,
    synced: [bool; 2],
}

/// The watch tasks and what they saw; dropping it stops them.
pub struct Tracker {
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

fn is_bound(c: &PersistentVolumeClaim) -> bool {
    c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

fn of_ns(pv: &PersistentVolume) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|c| c.namespace.as_deref())
        == Some(NS)
}

impl State {
    fn claim(&mut self, c: &PersistentVolumeClaim) {
        let name = c.name_any();
        let bound = is_bound(c);
        if bound {
            self.first_bound
                .entry(name.clone())
                .or_insert_with(Instant::now);
        }
        if let Some(seen) = self.relist_claims.as_mut() {
            seen.insert(name.clone());
        }
        self.claims.insert(name, bound);
    }

    fn pv(&mut self, pv: &PersistentVolume) {
        if !of_ns(pv) {
            return;
        }
        let name = pv.name_any();
        if let Some(seen) = self.relist_pvs.as_mut() {
            seen.insert(name.clone());
        }
        self.pvs.insert(name);
    }

    /// End of a re-list: PVs not listed again were deleted meanwhile.
    fn pvs_relisted(&mut self) {
        let seen = self.relist_pvs.take().unwrap_or_default();
        let gone: Vec<String> = self
            .pvs
            .iter()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.pv_deleted(&n);
        }
    }

    fn pv_deleted(&mut self, name: &str) {
        if self.pvs.remove(name) {
            self.pv_gone.push(Instant::now());
        }
    }
}

impl Tracker {
    /// Starts watching claims in [`NS`] and PVs whose claim is in [`NS`].
    pub fn start(client: kube::Client) -> Tracker {
        let state = Arc::new(Mutex::new(State::default()));
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
        let s = state.clone();
        let t1 = tokio::spawn(async move {
            let mut events = watcher(claims, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                let Ok(ev) = ev else { continue };
                let mut st = s.lock().expect("tracker lock");
                match ev {
                    watcher::Event::Init => st.relist_claims = Some(HashSet::new()),
                    watcher::Event::Apply(c) | watcher::Event::InitApply(c) => st.claim(&c),
                    watcher::Event::Delete(c) => {
                        st.claims.remove(&c.name_any());
                    }
                    watcher::Event::InitDone => {
                        let seen = st.relist_claims.take().unwrap_or_default();
                        st.claims.retain(|n, _| seen.contains(n));
                        st.synced[0] = true;
                    }
                }
            }
        });
        let pvs: Api<PersistentVolume> = Api::all(client);
        let s = state.clone();
        let t2 = tokio::spawn(async move {
            let mut events = watcher(pvs, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                let Ok(ev) = ev else { continue };
                let mut st = s.lock().expect("tracker lock");
                match ev {
                    watcher::Event::Init => st.relist_pvs = Some(HashSet::new()),
                    watcher::Event::Apply(pv) | watcher::Event::InitApply(pv) => st.pv(&pv),
                    watcher::Event::Delete(pv) => st.pv_deleted(&pv.name_any()),
                    watcher::Event::InitDone => {
                        st.pvs_relisted();
                        st.synced[1] = true;
                    }
                }
            }
        });
        Tracker {
            state,
            tasks: vec![t1, t2],
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("tracker lock")
    }

    /// Both watches have listed once.
    pub fn synced(&self) -> bool {
        self.lock().synced.iter().all(|s| *s)
    }

    /// Claims that exist now.
    pub fn claims(&self) -> usize {
        self.lock().claims.len()
    }

    /// Claims Bound now.
    pub fn bound(&self) -> usize {
        self.lock().claims.values().filter(|b| **b).count()
    }

    /// PVs of [`NS`]'s claims that exist now.
    pub fn pvs(&self) -> usize {
        self.lock().pvs.len()
    }

    /// Seconds after `t0` at which each claim was first seen Bound, sorted.
    pub fn bound_times(&self, t0: Instant) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .lock()
            .first_bound
            .values()
            .map(|t| t.saturating_duration_since(t0).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Seconds after `t0` at which each PV disappeared, sorted.
    pub fn pv_gone_times(&self, t0: Instant) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .lock()
            .pv_gone
            .iter()
            .map(|t| t.saturating_duration_since(t0).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A cumulative step curve from sorted event times: `(0, 0)`, then one
/// point per event, `(t_i, i + 1)`.
pub fn cumulative(times: &[f64]) -> Vec<(f64, f64)> {
    std::iter::once((0.0, 0.0))
        .chain(times.iter().enumerate().map(|(i, t)| (*t, (i + 1) as f64)))
        .collect()
}

/// The time by which `share` (0..=1) of `total` events had happened.
pub fn time_to_share(times: &[f64], total: usize, share: f64) -> Option<f64> {
    let need = ((total as f64) * share).ceil().max(1.0) as usize;
    times.get(need - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_and_percentiles() {
        let t = [0.5, 1.0, 2.0, 4.0];
        assert_eq!(
            cumulative(&t),
            vec![(0.0, 0.0), (0.5, 1.0), (1.0, 2.0), (2.0, 3.0), (4.0, 4.0)]
        );
        assert_eq!(time_to_share(&t, 4, 0.5), Some(1.0));
        assert_eq!(time_to_share(&t, 4, 1.0), Some(4.0));
        assert_eq!(time_to_share(&t, 8, 1.0), None);
    }

    #[test]
    fn relisted_pvs_that_vanished_count_as_deleted() {
        let mut st = State::default();
        let pv = |name: &str, ns: &str| {
            let mut pv = crate::objects::provisioned_pv(ns, "c", name, "1");
            pv.metadata.name = Some(name.into());
            pv
        };
        st.pv(&pv("a", NS));
        st.pv(&pv("b", NS));
        st.pv(&pv("other", "elsewhere"));
        assert_eq!(st.pvs.len(), 2);
        st.relist_pvs = Some(HashSet::new());
        st.pv(&pv("a", NS));
        st.pvs_relisted();
        assert_eq!(st.pv_gone.len(), 1);
        assert!(st.pvs.contains("a") && !st.pvs.contains("b"));
    }
}
