//! Read-your-own-writes for controllers that decide from a watch cache.
//!
//! A controller's own write (a finalizer added, a PV created or deleted)
//! re-triggers it through the watch, and it may run again before the cache
//! holds that write. It then decides from the version it already replaced
//! and repeats work: a second CreateVolume and a PV create answered 409, a
//! second DeleteVolume and a PV delete answered 404, an Update with a stale
//! resourceVersion answered 409. client-go controllers share the race
//! (kube-controller-manager answers it with "expectations"); upstream's
//! sidecars pay for it in requests.
//!
//! [`OwnWrites`] remembers, per object, the resourceVersions this process
//! has replaced or deleted, and the names of objects it created, until the
//! cache shows something newer. A reconcile that finds its object
//! [`stale`](OwnWrites::is_stale) waits for the watch event its own write
//! will bring instead of acting. Nothing here is persisted: after a restart
//! the caches are listed fresh, so there is nothing stale to guard against.
//!
//! resourceVersions are compared for equality only, as the API conventions
//! require (they are opaque strings).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is kept when the cache never catches up with it (the
/// object was deleted before the watch delivered our write, or the write's
/// event was folded into a relist). Stale reads last milliseconds to
/// seconds; this only bounds memory.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The record of this process's own writes; cheap to share behind an `Arc`
/// or a field of the controller context. Keys are caller-chosen strings,
/// normally the object UID (replaced/deleted versions) or the object name
/// (creations, where no UID is known before the cache has the object).
#[derive(Debug)]
pub struct OwnWrites {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    replaced: HashMap<String, (Vec<String>, Instant)>,
    created: HashMap<String, Instant>,
    finished: HashMap<String, Instant>,
}

impl Default for OwnWrites {
    fn default() -> Self {
        OwnWrites::new(DEFAULT_TTL)
    }
}

impl OwnWrites {
    /// An empty record whose entries expire after `ttl` if the cache never
    /// catches up.
    pub fn new(ttl: Duration) -> Self {
        OwnWrites {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only a map of hints behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this process wrote (updated, patched or deleted) the
    /// object `key` whose version was `resource_version`: a cache showing
    /// that version from now on is stale. Empty versions are ignored.
    pub fn replaced(&self, key: &str, resource_version: Option<&str>) {
        let Some(rv) = resource_version.filter(|v| !v.is_empty()) else {
            return;
        };
        let now = Instant::now();
        let mut inner = self.lock();
        let ttl = self.ttl;
        inner
            .replaced
            .retain(|_, (_, at)| now.duration_since(*at) < ttl);
        let (versions, at) = inner
            .replaced
            .entry(key.to_string())
            .or_insert_with(|| (Vec::new(), now));
        if !versions.iter().any(|v| v == rv) {
            versions.push(rv.to_string());
        }
        *at = now;
    }

    /// `true` when the cache shows `key` at a version this process has
    /// already replaced: the caller should wait for the watch event its own
    /// write brings. Any other version means the cache has caught up, and
    /// the entry is dropped.
    pub fn is_stale(&self, key: &str, resource_version: Option<&str>) -> bool {
        let mut inner = self.lock();
        let Some((versions, _)) = inner.replaced.get(key) else {
            return false;
        };
        if resource_version.is_some_and(|rv| versions.iter().any(|v| v == rv)) {
            return true;
        }
        inner.replaced.remove(key);
        false
    }

    /// [`is_stale`](OwnWrites::is_stale) for a cached object, keyed by its
    /// UID at its resourceVersion, as the controllers record their writes.
    pub fn is_object_stale<K: kube::Resource>(&self, obj: &K) -> bool {
        let meta = obj.meta();
        self.is_stale(
            meta.uid.as_deref().unwrap_or_default(),
            meta.resource_version.as_deref(),
        )
    }

    /// Records that this process created the object named `key`, which the
    /// cache may not hold yet.
    pub fn created(&self, key: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        let ttl = self.ttl;
        inner.created.retain(|_, at| now.duration_since(*at) < ttl);
        inner.created.insert(key.to_string(), now);
    }

    /// Whether the object named `key` exists as far as this process knows:
    /// `in_cache` (what the cache says), or created by this process within
    /// the TTL. Once the cache has it, the creation record is dropped.
    pub fn exists(&self, key: &str, in_cache: bool) -> bool {
        let mut inner = self.lock();
        if in_cache {
            inner.created.remove(key);
            return true;
        }
        inner
            .created
            .get(key)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// The cache now shows the object named `key`: any creation record is
    /// dropped (so a later deletion is not hidden by it).
    pub fn seen(&self, key: &str) {
        self.lock().created.remove(key);
    }

    /// Records that this process is done with the object `key` for good:
    /// it deleted the object and released its own hold on it (a PV whose
    /// volume, object and finalizer it removed). Every version the cache
    /// still shows is older than that, whoever wrote it: the
    /// pv-protection controller dropping its finalizer after our delete
    /// writes a version that still lists ours, which [`is_stale`] would take
    /// for the cache having caught up.
    ///
    /// [`is_stale`]: OwnWrites::is_stale
    pub fn finished(&self, key: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        let ttl = self.ttl;
        inner.finished.retain(|_, at| now.duration_since(*at) < ttl);
        inner.finished.insert(key.to_string(), now);
    }

    /// `true` when [`finished`](OwnWrites::finished) was recorded for `key`
    /// within the TTL: nothing is left to do for any version of it.
    pub fn is_finished(&self, key: &str) -> bool {
        self.lock()
            .finished
            .get(key)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Entries held (replaced + created + finished), for tests and
    /// diagnostics.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.replaced.len() + inner.created.len() + inner.finished.len()
    }

    /// `true` when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_looked_up_by_uid_and_resource_version() {
        let w = OwnWrites::default();
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.uid = Some("uid-1".into());
        cm.metadata.resource_version = Some("5".into());
        assert!(!w.is_object_stale(&cm));
        w.replaced("uid-1", Some("5"));
        assert!(w.is_object_stale(&cm));
    }

    #[test]
    fn a_finished_object_stays_finished_whatever_version_shows_up() {
        let w = OwnWrites::default();
        assert!(!w.is_finished("uid-1"));
        w.replaced("uid-1", Some("5"));
        w.finished("uid-1");
        // Another controller's write after ours: not one we replaced, so
        // is_stale says the cache caught up; the object is still finished.
        assert!(!w.is_stale("uid-1", Some("7")));
        assert!(w.is_finished("uid-1"));
        assert!(!w.is_finished("uid-2"));
    }

    #[test]
    fn finished_entries_expire() {
        let w = OwnWrites::new(Duration::from_millis(1));
        w.finished("uid-1");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!w.is_finished("uid-1"));
    }

    #[test]
    fn a_replaced_version_is_stale_until_the_cache_moves_on() {
        let w = OwnWrites::default();
        assert!(!w.is_stale("uid-1", Some("5")), "nothing recorded yet");
        w.replaced("uid-1", Some("5"));
        w.replaced("uid-1", Some("6"));
        assert!(w.is_stale("uid-1", Some("5")));
        assert!(w.is_stale("uid-1", Some("6")));
        assert!(!w.is_stale("uid-2", Some("5")), "other objects unaffected");
        // The cache shows our write (or anything newer): caught up.
        assert!(!w.is_stale("uid-1", Some("7")));
        assert!(w.is_empty(), "caught-up entry is dropped");
        assert!(!w.is_stale("uid-1", Some("5")));
    }

    #[test]
    fn missing_versions_are_never_recorded_nor_stale() {
        let w = OwnWrites::default();
        w.replaced("uid", None);
        w.replaced("uid", Some(""));
        assert!(w.is_empty());
        w.replaced("uid", Some("3"));
        assert!(!w.is_stale("uid", None));
    }

    #[test]
    fn a_creation_counts_until_the_cache_has_it() {
        let w = OwnWrites::default();
        assert!(!w.exists("pvc-1", false));
        w.created("pvc-1");
        assert!(w.exists("pvc-1", false), "created, cache behind");
        assert!(w.exists("pvc-1", true));
        assert!(w.is_empty(), "cache has it: record dropped");
        assert!(!w.exists("pvc-1", false), "deleted later: gone");
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let w = OwnWrites::new(Duration::ZERO);
        w.created("pv");
        assert!(!w.exists("pv", false));
        w.replaced("uid", Some("1"));
        // Expired entries are pruned on the next insert.
        w.replaced("other", Some("1"));
        w.created("pv2");
        assert_eq!(w.len(), 2, "only the newest of each kind is left");
    }
}
