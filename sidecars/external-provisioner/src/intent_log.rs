//! The creation-intent record's I/O: loading the shard Leases, and writing
//! entries in batches (see [`crate::intents`] for the format and limits).
//!
//! Each shard has one writer task. Claims that want an entry send it and
//! wait; whatever arrives while a write is on its way (waiting for a QPS
//! token, or for the API server) goes into the next write, so at QPS 5 with
//! a hundred claims in flight one Update records dozens of them. Clearing
//! an entry is not waited for, and lingers [`CLEAR_LINGER`] to share a
//! write: an entry whose PV exists is harmless (the next start drops it).
//!
//! The writer keeps the Lease it last wrote and sends Updates carrying its
//! resourceVersion; on a conflict it reads the Lease again and re-applies
//! its batch (only the leader writes, but a previous leader may have).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::intents::{
    self, SHARD_BUDGET_BYTES, SHARDS, decode, encode, entries_size, entry_key, entry_uid,
};

/// How long clearing waits for company before writing alone. Long: an
/// entry whose PV exists is harmless, and while claims keep coming every
/// record write carries the clears along for free.
pub const CLEAR_LINGER: Duration = Duration::from_secs(10);
/// Pause before a failed write is tried again (clears only; a waiting
/// record gets the error and retries with its claim's backoff).
const WRITE_RETRY: Duration = Duration::from_secs(5);
/// Conflicts re-read and re-applied before the batch is failed.
const CONFLICT_TRIES: usize = 5;

enum Op {
    Record {
        uid: String,
        value: String,
        claim: Box<PersistentVolumeClaim>,
        done: oneshot::Sender<Result<(), String>>,
    },
    Clear {
        uid: String,
    },
}

/// One shard's readers' view: the entries the API server has.
type Committed = Arc<Mutex<BTreeMap<String, PersistentVolumeClaim>>>;

struct Shard {
    name: String,
    tx: mpsc::UnboundedSender<Op>,
    committed: Committed,
    /// Bytes of entries the API server holds, for choosing where a new
    /// entry goes.
    bytes: Arc<AtomicUsize>,
}

/// The creation-intent record of this provisioner, loaded and written.
pub struct IntentLog {
    namespace: String,
    shards: Vec<Shard>,
    busy: Mutex<HashSet<String>>,
    /// RBAC refused the Leases (403): claims fall back to the per-claim
    /// finalizer, which needs only upstream's claim `update`.
    forbidden: Arc<AtomicBool>,
}

/// Held while a claim's volume creation (or its undo) is being worked on,
/// so the orphan sweep leaves it alone; released on drop.
pub struct Busy<'a> {
    log: &'a IntentLog,
    uid: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.log.busy.lock() {
            b.remove(&self.uid);
        }
    }
}

impl IntentLog {
    /// Reads every shard Lease `names` (in order, [`SHARDS`] of them) in
    /// `namespace` and starts their writers. A missing Lease is an empty
    /// shard, created on its first entry. Entries that do not decode are
    /// logged and kept (the Lease is never rewritten without them).
    ///
    /// Errors: [`Error::Kube`] when a Lease cannot be read (the caller
    /// retries: starting without the record would forget volumes).
    pub async fn load(
        client: Client,
        namespace: &str,
        names: Vec<String>,
        identity: &str,
    ) -> Result<Arc<Self>, Error> {
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let mut shards = Vec::with_capacity(names.len());
        let mut total = 0;
        let forbidden = Arc::new(AtomicBool::new(false));
        for name in names {
            let lease = match api.get_opt(&name).await {
                Ok(l) => l,
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    forbid(&forbidden, namespace, &s.message);
                    None
                }
                Err(e) => return Err(Error::kube(format!("read lease {namespace}/{name}"), e)),
            };
            let annotations = lease
                .as_ref()
                .and_then(|l| l.metadata.annotations.clone())
                .unwrap_or_default();
            let (entries, bad) = decode(&annotations);
            if !bad.is_empty() {
                warn!(lease = %format!("{namespace}/{name}"), claims = ?bad, "creation records that cannot be read are kept as they are; their volumes are not cleaned up automatically");
            }
            total += entries.len();
            let encoded: BTreeMap<String, String> = annotations
                .iter()
                .filter_map(|(k, v)| entry_uid(k).map(|u| (u.to_string(), v.clone())))
                .collect();
            let bytes = Arc::new(AtomicUsize::new(entries_size(&encoded)));
            let committed: Committed = Arc::new(Mutex::new(entries));
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = Writer {
                api: api.clone(),
                name: name.clone(),
                identity: identity.to_string(),
                lease,
                committed: committed.clone(),
                pending_clears: BTreeSet::new(),
                forbidden: forbidden.clone(),
                namespace: namespace.to_string(),
                bytes: bytes.clone(),
            };
            tokio::spawn(writer.run(rx));
            shards.push(Shard {
                name,
                tx,
                committed,
                bytes,
            });
        }
        if total > 0 {
            info!(
                entries = total,
                "volume creations recorded by an earlier run: each ends in a PV or a deleted volume"
            );
        }
        Ok(Arc::new(Self {
            namespace: namespace.to_string(),
            shards,
            busy: Mutex::new(HashSet::new()),
            forbidden,
        }))
    }

    /// Whether RBAC refused the Leases: the caller then records the intent
    /// with the per-claim finalizer instead.
    pub fn forbidden(&self) -> bool {
        self.forbidden.load(Ordering::Relaxed)
    }

    /// The shard that holds `uid`'s entry.
    fn holding(&self, uid: &str) -> Option<&Shard> {
        self.shards
            .iter()
            .find(|s| s.committed.lock().is_ok_and(|c| c.contains_key(uid)))
    }

    /// Where a new entry of `size` bytes goes: the first shard with room, so
    /// that in a burst every record shares one writer and few writes; the
    /// later shards take the overflow.
    fn for_new(&self, size: usize) -> &Shard {
        // Room is kept for records already on their way.
        let room =
            |s: &&Shard| s.bytes.load(Ordering::Relaxed) + size <= SHARD_BUDGET_BYTES * 3 / 4;
        self.shards
            .iter()
            .find(room)
            .or_else(|| {
                self.shards
                    .iter()
                    .min_by_key(|s| s.bytes.load(Ordering::Relaxed))
            })
            .expect("IntentLog::load makes at least one shard")
    }

    /// `namespace/name` of the Lease that holds `uid`'s entry (the first
    /// shard's when none does).
    pub fn lease_of(&self, uid: &str) -> String {
        let shard = self.holding(uid).unwrap_or(&self.shards[0]);
        format!("{}/{}", self.namespace, shard.name)
    }

    /// Whether the API server has an entry for claim `uid`.
    pub fn is_recorded(&self, uid: &str) -> bool {
        self.holding(uid).is_some()
    }

    /// Every recorded entry: `(claim UID, the claim as recorded)`.
    pub fn entries(&self) -> Vec<(String, PersistentVolumeClaim)> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.committed
                    .lock()
                    .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_else(|_| Vec::new())
            })
            .collect()
    }

    /// Records `pvc` and returns once the API server has the entry (the
    /// caller may then send CreateVolume).
    ///
    /// Errors: [`Error::Record`] (retried with the claim's backoff) when the
    /// shard is full or the write failed.
    pub async fn record(&self, pvc: &PersistentVolumeClaim) -> Result<(), Error> {
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        if self.is_recorded(&uid) {
            return Ok(());
        }
        let value = encode(pvc).map_err(Error::Record)?;
        let (done, wait) = oneshot::channel();
        let shard = self.for_new(intents::ENTRY_PREFIX.len() + uid.len() + value.len());
        shard
            .tx
            .send(Op::Record {
                uid,
                value,
                claim: Box::new(intents::trim_claim(pvc)),
                done,
            })
            .map_err(|_| Error::Record("the intent writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Record(e)),
            Err(_) => Err(Error::Record("the intent writer has stopped".into())),
        }
    }

    /// Drops claim `uid`'s entry, in a later batch; not waited for.
    pub fn clear(&self, uid: &str) {
        if let Some(shard) = self.holding(uid) {
            let _ = shard.tx.send(Op::Clear {
                uid: uid.to_string(),
            });
        }
    }

    /// Marks `uid` as being worked on; `None` if it already is.
    pub fn try_begin(&self, uid: &str) -> Option<Busy<'_>> {
        let mut b = self.busy.lock().ok()?;
        b.insert(uid.to_string()).then(|| Busy {
            log: self,
            uid: uid.to_string(),
        })
    }
}

struct Writer {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The Lease as last read or written (`None`: not created yet).
    lease: Option<Lease>,
    committed: Committed,
    /// Clears whose write failed, applied with the next batch.
    pending_clears: BTreeSet<String>,
    forbidden: Arc<AtomicBool>,
    namespace: String,
    bytes: Arc<AtomicUsize>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        loop {
            let first = if self.pending_clears.is_empty() {
                match rx.recv().await {
                    Some(op) => Some(op),
                    None => return,
                }
            } else {
                // Failed clears are retried even when nothing new comes.
                tokio::time::timeout(WRITE_RETRY, rx.recv())
                    .await
                    .unwrap_or(None)
            };
            let mut ops: Vec<Op> = first.into_iter().collect();
            if ops.iter().all(|o| matches!(o, Op::Clear { .. })) {
                // Clears alone wait for company; a record ends the wait.
                let linger = tokio::time::sleep(CLEAR_LINGER);
                tokio::pin!(linger);
                loop {
                    tokio::select! {
                        _ = &mut linger => break,
                        op = rx.recv() => match op {
                            Some(op) => {
                                let record = matches!(op, Op::Record { .. });
                                ops.push(op);
                                if record { break; }
                            }
                            None => break,
                        },
                    }
                }
            }
            while let Ok(op) = rx.try_recv() {
                ops.push(op);
            }
            self.write_batch(ops).await;
        }
    }

    /// The entries the last known Lease holds, encoded, by UID.
    fn current(&self) -> BTreeMap<String, String> {
        self.lease
            .as_ref()
            .and_then(|l| l.metadata.annotations.as_ref())
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| entry_uid(k).map(|u| (u.to_string(), v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn write_batch(&mut self, ops: Vec<Op>) {
        let mut records = Vec::new();
        let mut clears = std::mem::take(&mut self.pending_clears);
        for op in ops {
            match op {
                Op::Record {
                    uid,
                    value,
                    claim,
                    done,
                } => {
                    clears.remove(&uid);
                    records.push((uid, value, claim, done));
                }
                Op::Clear { uid } => {
                    clears.insert(uid);
                }
            }
        }
        let mut result = Err(String::new());
        for _ in 0..CONFLICT_TRIES {
            let mut next = self.current();
            for uid in &clears {
                next.remove(uid);
            }
            let mut refused = Vec::new();
            for (i, (uid, value, _, _)) in records.iter().enumerate() {
                if next.contains_key(uid) {
                    continue;
                }
                let size =
                    entries_size(&next) + intents::ENTRY_PREFIX.len() + uid.len() + value.len();
                if size > SHARD_BUDGET_BYTES {
                    refused.push(i);
                } else {
                    next.insert(uid.clone(), value.clone());
                }
            }
            if next == self.current() {
                result = Ok(refused);
                break;
            }
            match self.put(&next).await {
                Ok(()) => {
                    result = Ok(refused);
                    break;
                }
                Err(Retry::Conflict) => {
                    if let Err(e) = self.reread().await {
                        result = Err(e);
                        break;
                    }
                }
                Err(Retry::Failed(e)) => {
                    result = Err(e);
                    break;
                }
            }
            result = Err(format!("lease {} kept changing under the write", self.name));
        }
        match result {
            Ok(refused) => {
                self.bytes
                    .store(entries_size(&self.current()), Ordering::Relaxed);
                if let Ok(mut c) = self.committed.lock() {
                    for uid in &clears {
                        c.remove(uid);
                    }
                    for (i, (uid, _, claim, _)) in records.iter().enumerate() {
                        if !refused.contains(&i) {
                            c.insert(uid.clone(), (**claim).clone());
                        }
                    }
                }
                debug!(lease = %self.name, recorded = records.len() - refused.len(), cleared = clears.len(), "volume creation record written");
                for (i, (_, _, _, done)) in records.into_iter().enumerate() {
                    let answer = if refused.contains(&i) {
                        Err(format!(
                            "too many volume creations in flight: lease {} holds {SHARD_BUDGET_BYTES} bytes of records at most; retrying when some finish",
                            self.name
                        ))
                    } else {
                        Ok(())
                    };
                    let _ = done.send(answer);
                }
            }
            Err(e) => {
                warn!(lease = %self.name, error = %e, "writing the volume creation record failed");
                self.pending_clears = clears;
                for (_, _, _, done) in records {
                    let _ = done.send(Err(format!(
                        "cannot record the volume creation in lease {}: {e}",
                        self.name
                    )));
                }
            }
        }
    }

    /// Writes `entries` as the Lease's records (other annotations kept).
    async fn put(&mut self, entries: &BTreeMap<String, String>) -> Result<(), Retry> {
        let mut lease = self.lease.clone().unwrap_or_else(|| Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                ..Default::default()
            }),
        });
        let mut annotations: BTreeMap<String, String> = lease
            .metadata
            .annotations
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| entry_uid(k).is_none())
            .collect();
        for (uid, v) in entries {
            annotations.insert(entry_key(uid), v.clone());
        }
        lease.metadata.annotations = Some(annotations);
        let written = if self.lease.is_some() {
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match written {
            Ok(l) => {
                self.lease = Some(l);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Err(Retry::Conflict),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                forbid(&self.forbidden, &self.namespace, &s.message);
                Err(Retry::Failed(s.message))
            }
            Err(e) => Err(Retry::Failed(sidecar_runtime::gofmt::api_error(&e))),
        }
    }

    async fn reread(&mut self) -> Result<(), String> {
        self.lease = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| sidecar_runtime::gofmt::api_error(&e))?;
        Ok(())
    }
}

/// Notes (once) that RBAC refuses the Leases.
fn forbid(flag: &AtomicBool, namespace: &str, message: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        warn!(
            namespace,
            error = message,
            "the volume creation record cannot use leases here (RBAC); claims record it with a finalizer instead, two claim Updates per volume. Grant get/create/update on leases in this namespace, as upstream's rbac.yaml does"
        );
    }
}

enum Retry {
    Conflict,
    Failed(String),
}

/// The shard Lease names for the leader-election lock name `lease` (and the
/// node, in node deployment).
pub fn shard_names(lease: &str, node: Option<&str>) -> Vec<String> {
    (0..SHARDS)
        .map(|i| intents::shard_name(lease, node, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
    use kube::api::ObjectMeta;
    use sidecar_runtime::test_api::FakeApi;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";

    fn claim(i: usize) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(format!("data-{i}")),
                namespace: Some("team".into()),
                uid: Some(format!("{i:08x}-0000-4000-8000-{i:012x}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("fast".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn uid(i: usize) -> String {
        claim(i).metadata.uid.unwrap()
    }

    async fn load(api: &FakeApi) -> Arc<IntentLog> {
        IntentLog::load(api.client(), "ns", shard_names("drv", None), "me")
            .await
            .unwrap()
    }

    /// Every entry stored in the fake's Leases, by claim UID.
    fn stored(api: &FakeApi) -> BTreeMap<String, PersistentVolumeClaim> {
        let mut all = BTreeMap::new();
        for lease in api.objects(LEASES) {
            let lease: Lease = serde_json::from_value(lease).unwrap();
            let (good, bad) = decode(&lease.metadata.annotations.unwrap_or_default());
            assert!(bad.is_empty());
            all.extend(good);
        }
        all
    }

    fn writes(api: &FakeApi) -> usize {
        api.requests_with_method("POST") + api.requests_with_method("PUT")
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_recorded_in_one_write_per_shard_and_cleared_likewise() {
        let api = FakeApi::default();
        let log = load(&api).await;
        let claims: Vec<_> = (0..50).map(claim).collect();
        let results = futures::future::join_all(claims.iter().map(|c| log.record(c))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // One Lease, one write: every record was waiting when it began.
        assert_eq!(writes(&api), 1, "writes for 50 claims");
        assert_eq!(api.objects(LEASES).len(), 1);
        let on_server = stored(&api);
        assert_eq!(on_server.len(), 50);
        assert_eq!(on_server[&uid(7)], intents::trim_claim(&claims[7]));
        assert!((0..50).all(|i| log.is_recorded(&uid(i))));
        assert_eq!(log.entries().len(), 50);

        let before = writes(&api);
        for i in 0..50 {
            log.clear(&uid(i));
        }
        tokio::time::sleep(CLEAR_LINGER * 2).await;
        assert!(stored(&api).is_empty());
        assert!(
            writes(&api) - before <= 1,
            "{} writes to clear",
            writes(&api) - before
        );
        assert!((0..50).all(|i| !log.is_recorded(&uid(i))));
        // Recording again after a clear works (the entry is gone).
        log.record(&claims[3]).await.unwrap();
        assert!(stored(&api).contains_key(&uid(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_of_an_earlier_run_are_loaded_and_kept() {
        let api = FakeApi::default();
        let first = load(&api).await;
        first.record(&claim(1)).await.unwrap();
        drop(first);
        let second = load(&api).await;
        assert!(second.is_recorded(&uid(1)));
        assert_eq!(
            second.entries(),
            vec![(uid(1), intents::trim_claim(&claim(1)))]
        );
        second.record(&claim(2)).await.unwrap();
        let on_server = stored(&api);
        assert!(on_server.contains_key(&uid(1)) && on_server.contains_key(&uid(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflicting_write_is_reread_and_nothing_of_others_is_lost() {
        let api = FakeApi::default();
        let log = load(&api).await;
        log.record(&claim(1)).await.unwrap();
        let name = intents::shard_name("drv", None, 0);
        let path = format!("{LEASES}/{name}");
        // Someone else (an earlier leader) writes the same Lease meanwhile.
        let mut other = api.get(&path).unwrap();
        other["metadata"]["annotations"]["example.com/note"] = "kept".into();
        api.put(&path, other);
        // Another claim, into the same (first) shard.
        let same = 2;
        log.record(&claim(same)).await.unwrap();
        let lease = api.get(&path).unwrap();
        assert_eq!(lease["metadata"]["annotations"]["example.com/note"], "kept");
        let on_server = stored(&api);
        assert!(on_server.contains_key(&uid(1)) && on_server.contains_key(&uid(same)));
    }

    #[tokio::test(start_paused = true)]
    async fn rbac_without_leases_reads_as_forbidden_not_as_a_failure_to_start() {
        let api = FakeApi::default();
        api.fail_all(403);
        let log = load(&api).await;
        assert!(log.forbidden());
        let err = log.record(&claim(1)).await.unwrap_err();
        assert!(matches!(err, Error::Record(_)), "{err}");
        assert!(!log.is_recorded(&uid(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_fails_the_record_and_a_later_one_succeeds() {
        let api = FakeApi::default();
        let log = load(&api).await;
        api.fail_all(500);
        let err = log.record(&claim(1)).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot record the volume creation in lease"),
            "{err}"
        );
        assert!(!log.is_recorded(&uid(1)));
        assert!(!log.forbidden());
        api.heal();
        log.record(&claim(1)).await.unwrap();
        assert!(log.is_recorded(&uid(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_shard_refuses_with_the_reason() {
        {
            let api = FakeApi::default();
            let log = load(&api).await;
            // Claims with big annotations fill every shard quickly.
            let big = |i: usize| {
                let mut c = claim(i);
                c.metadata.annotations =
                    Some([("example.com/pad".to_string(), "x".repeat(40_000))].into());
                c
            };
            let same: Vec<usize> = (0..60).collect();
            let mut refused = None;
            for &i in &same {
                if let Err(e) = log.record(&big(i)).await {
                    refused = Some(e.to_string());
                    break;
                }
            }
            let refused = refused.expect("a shard over its budget refuses");
            assert!(
                refused.contains("too many volume creations in flight"),
                "{refused}"
            );
        }
    }
}
