//! Lease leader election, interoperable with client-go's `leaderelection`
//! as used by csi-lib-utils, so that Go and Rust replicas of a sidecar contend
//! for the same Lease during a rolling upgrade.
//!
//! # Why not kube-lease-manager
//!
//! kube-lease-manager 0.13.1 (the only election crate on kube 5) was inspected
//! and rejected because it cannot share a Lease safely with client-go:
//!
//! * it writes with server-side apply / strategic-merge patches without a
//!   `resourceVersion` precondition, so two contenders can both "win" the same
//!   expired Lease, whereas client-go's `Update` fails with 409 for the loser;
//!   a Go replica's `Update` also takes over field ownership, after which a
//!   non-forced apply conflicts;
//! * it computes expiry as the remote `renewTime + leaseDurationSeconds`, which
//!   depends on clock skew between replicas; client-go instead measures expiry
//!   from the *local* time it last observed the record change;
//! * it clears `holderIdentity` of an expired Lease before taking it and keeps
//!   its own transition accounting, which differs from client-go's record
//!   (`acquireTime`, `leaseTransitions` semantics).
//!
//! So this module re-implements client-go's algorithm (`tryAcquireOrRenew`):
//!
//! * **Record**: Lease `coordination.k8s.io/v1` spec fields `holderIdentity`,
//!   `leaseDurationSeconds`, `acquireTime`, `renewTime` (MicroTime),
//!   `leaseTransitions`.
//! * **Expiry**: a Lease held by someone else is taken over only when its spec
//!   has not changed for its `leaseDurationSeconds`, measured from the local
//!   instant this process first saw that spec ([`decide`]).
//! * **Writes**: `create` when absent, otherwise `replace` (PUT) of the last read
//!   object, carrying its `resourceVersion`, so concurrent writers get 409 like
//!   client-go's `Update`. A leader first tries an optimistic PUT of its cached
//!   object and falls back to GET + PUT on failure.
//! * **Transitions**: taking over increments `leaseTransitions` and sets
//!   `acquireTime`; renewing keeps both.
//! * **Timing**: acquisition is retried every `retry × (1 + 1.2·rand)`; the leader
//!   renews every retry period and, if no renewal succeeds within the renew
//!   deadline, leadership is lost. Loss ends [`run_with_leader_election`] with
//!   [`LeaderOutcome::Lost`]; [`run_with_leader_election_or_exit`] then logs
//!   "Stopped leading" and exits 1 like csi-lib-utils. A standby stops
//!   trying on SIGTERM/SIGINT ([`LeaderOutcome::ShutdownWhileStandby`]) and the
//!   process exits 0 (see [`run_with_leader_election`]).
//! * **Labels**: `--leader-election-labels` are written on every create/update,
//!   i.e. while this replica holds the Lease.
//! * **Events**: `LeaderElection` Normal events "`<identity>` became leader" /
//!   "`<identity>` stopped leading" on the Lease, component `<lock name>/<identity>`.
//! * **Health**: [`LeaderHealth`] backs `/healthz/leader-election`.
//!
//! The caller should pass a client of its own (built from the same config), as
//! csi-lib-utils does, so the main client's throttling cannot starve renewals.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use tokio::time::Instant;
use tracing::{debug, error, info, trace, warn};

use crate::Error;
use crate::events::{EventRecorder, EventType};
use crate::flags::CommonArgs;
pub use crate::leader_health::{HEALTH_TOLERANCE, LeaderHealth};

/// client-go's `JitterFactor` for the acquire loop and the renew-deadline check.
const JITTER_FACTOR: f64 = 1.2;

/// Where the service-account namespace is mounted in a pod.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Replaces every character outside `[a-zA-Z0-9-]` with `-` and appends `X` if
/// the result ends with `-` (csi-lib-utils `sanitizeName`). No lowercasing and
/// no truncation, so Go and Rust replicas derive identical Lease names:
/// `hostpath.csi.k8s.io` → `hostpath-csi-k8s-io`, `driver\` → `driver-X`.
pub fn sanitize_lease_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.ends_with('-') {
        out.push('X');
    }
    out
}

/// The default identity: this host's name (the pod name), as csi-lib-utils
/// uses `os.Hostname()`. Sanitised when written to the Lease.
pub fn default_identity() -> String {
    crate::hostname()
}

/// The Lease namespace: `flag` if non-empty, else env `POD_NAMESPACE`, else the
/// trimmed service-account namespace file, else `default`.
pub fn resolve_namespace(flag: &str) -> String {
    let env = std::env::var("POD_NAMESPACE").ok();
    let file = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE_FILE).ok();
    resolve_namespace_from(flag, env.as_deref(), file.as_deref())
}

fn resolve_namespace_from(flag: &str, env: Option<&str>, file: Option<&str>) -> String {
    if !flag.is_empty() {
        return flag.to_owned();
    }
    if let Some(ns) = env.filter(|s| !s.is_empty()) {
        return ns.to_owned();
    }
    if let Some(ns) = file.map(str::trim).filter(|s| !s.is_empty()) {
        return ns.to_owned();
    }
    "default".to_owned()
}

/// Leader-election settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderConfig {
    /// The lock name as the sidecar derives it (e.g. the driver name); the Lease
    /// is named [`sanitize_lease_name`] of it, the event component uses it as is.
    pub lock_name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (host name); sanitised in the Lease's `holderIdentity`.
    pub identity: String,
    /// `--leader-election-lease-duration` (written as whole seconds).
    pub lease_duration: Duration,
    /// `--leader-election-renew-deadline`.
    pub renew_deadline: Duration,
    /// `--leader-election-retry-period`.
    pub retry_period: Duration,
    /// Labels put on the Lease while leading.
    pub labels: BTreeMap<String, String>,
    /// Release the Lease (empty holder, 1 s duration, as client-go's
    /// `ReleaseOnCancel`) when `run` completes; upstream's
    /// `ReleaseLeaderElectionOnExit` feature gate. Off by default.
    pub release_on_exit: bool,
}

impl LeaderConfig {
    /// Settings from the standard flags: namespace via [`resolve_namespace`],
    /// identity via [`default_identity`], validated with [`LeaderConfig::validate`].
    pub fn from_args(lock_name: &str, args: &CommonArgs) -> Result<Self, Error> {
        let cfg = LeaderConfig {
            lock_name: lock_name.to_owned(),
            namespace: resolve_namespace(&args.leader_election_namespace),
            identity: default_identity(),
            lease_duration: args.leader_election_lease_duration,
            renew_deadline: args.leader_election_renew_deadline,
            retry_period: args.leader_election_retry_period,
            labels: args.leader_election_labels(),
            release_on_exit: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The Lease object's name.
    pub fn lease_name(&self) -> String {
        sanitize_lease_name(&self.lock_name)
    }

    /// The `holderIdentity` this replica writes.
    pub fn lease_identity(&self) -> String {
        sanitize_lease_name(&self.identity)
    }

    /// client-go's checks, which panic there and are an
    /// [`Error::LeaderElectionConfig`] here: `lease > renew`,
    /// `renew > 1.2 × retry`, all positive, identity non-empty.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::LeaderElectionConfig(m.to_owned()));
        if self.lease_duration <= self.renew_deadline {
            return bad("lease duration must be greater than renew deadline");
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return bad("renew deadline must be greater than retry period × 1.2");
        }
        if self.lease_duration.is_zero()
            || self.renew_deadline.is_zero()
            || self.retry_period.is_zero()
        {
            return bad(
                "lease duration, renew deadline and retry period must be greater than zero",
            );
        }
        if self.identity.is_empty() {
            return bad("identity is empty");
        }
        if self.lock_name.is_empty() {
            return bad("lock name is empty");
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

impl LeaderHealth {
    /// A handle matching `config`: its Lease name and lease duration.
    pub fn for_config(config: &LeaderConfig) -> Self {
        Self::new(&config.lease_name(), config.lease_duration)
    }
}

/// The outcome of one election step for a given observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The Lease is free or expired: write it with this identity (new transition).
    Acquire,
    /// This identity holds the Lease: write a new renew time.
    Renew,
    /// Someone else holds a Lease that has not expired yet.
    Wait,
    /// The renew deadline passed without a successful renewal.
    Lost,
}

/// client-go's decision for an observed Lease `record` (None = empty spec),
/// first seen locally at `observed_at`, at instant `now`, for `identity`
/// (the sanitised holder identity). `renew_by` is the current renew deadline
/// while leading, `None` while acquiring.
///
/// Expiry is judged on local time only: `observed_at + leaseDurationSeconds`
/// of the record, never the remote `renewTime`, so clock skew between replicas
/// does not matter.
pub fn decide(
    record: Option<&LeaseSpec>,
    observed_at: Instant,
    now: Instant,
    identity: &str,
    renew_by: Option<Instant>,
) -> Decision {
    if renew_by.is_some_and(|deadline| now >= deadline) {
        return Decision::Lost;
    }
    let holder = record
        .and_then(|r| r.holder_identity.as_deref())
        .unwrap_or("");
    if holder == identity && !holder.is_empty() {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if lease_valid(record, observed_at, now) {
        Decision::Wait
    } else {
        Decision::Acquire
    }
}

fn lease_valid(record: Option<&LeaseSpec>, observed_at: Instant, now: Instant) -> bool {
    let secs = record
        .and_then(|r| r.lease_duration_seconds)
        .unwrap_or(0)
        .max(0);
    observed_at + Duration::from_secs(u64::try_from(secs).unwrap_or(0)) > now
}

/// How [`run_with_leader_election`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderOutcome {
    /// Leadership was lost (renew deadline passed); upstream exits 1. `run` was cancelled.
    Lost,
    /// `run` completed while this replica was leading (e.g. on shutdown).
    RunCompleted,
    /// The shutdown signal came while this replica was still a standby
    /// waiting for the Lease; `run` was never called and the Lease was not
    /// touched. The process should exit 0, as a leader does after draining.
    ShutdownWhileStandby,
}

fn micro_now() -> MicroTime {
    let now = Timestamp::now();
    MicroTime(Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now))
}

struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    name: String,
    identity: String,
    health: LeaderHealth,
    /// Last Lease object read or written (its resourceVersion guards updates).
    lease: Option<Lease>,
    /// Spec of that object, and the local instant it was first seen.
    observed: Option<LeaseSpec>,
    observed_at: Instant,
    reported_leader: String,
}

impl Elector {
    fn new(client: Client, cfg: LeaderConfig, health: LeaderHealth) -> Self {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            name: cfg.lease_name(),
            identity: cfg.lease_identity(),
            cfg,
            health,
            lease: None,
            observed: None,
            observed_at: Instant::now(),
            reported_leader: String::new(),
        }
    }

    fn desc(&self) -> String {
        format!("{}/{}", self.cfg.namespace, self.name)
    }

    fn is_leader(&self) -> bool {
        self.observed
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str())
    }

    fn spec(
        &self,
        holder: &str,
        duration_secs: i32,
        acquire: Option<MicroTime>,
        renew: MicroTime,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: acquire,
            renew_time: Some(renew),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn object(&self, base: Option<&Lease>, spec: LeaseSpec) -> Lease {
        let mut lease = base.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            spec: None,
        });
        if !self.cfg.labels.is_empty() {
            let labels = lease.metadata.labels.get_or_insert_with(Default::default);
            labels.extend(self.cfg.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        lease.spec = Some(spec);
        lease
    }

    fn set_observed(&mut self, lease: Lease) {
        self.observed = Some(lease.spec.clone().unwrap_or_default());
        self.observed_at = Instant::now();
        self.lease = Some(lease);
        self.observation_changed();
    }

    fn observation_changed(&mut self) {
        let holder = self
            .observed
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        if holder != self.reported_leader {
            debug!(lease = %self.desc(), leader = %holder, "new leader detected");
            self.reported_leader = holder;
        }
        self.health.record(self.is_leader(), self.observed_at);
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, Error> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
            .map_err(|source| Error::LeaseUpdate {
                namespace: self.cfg.namespace.clone(),
                name: self.name.clone(),
                source,
            })
    }

    /// One client-go `tryAcquireOrRenew`; true when this replica holds a freshly
    /// written Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = micro_now();
        let secs = self.cfg.lease_duration_seconds();

        // Fast path: the leader assumes its cached object is current.
        if self.is_leader() && lease_valid(self.observed.as_ref(), self.observed_at, Instant::now())
        {
            let old = self.observed.clone().unwrap_or_default();
            let spec = self.spec(
                &self.identity,
                secs,
                old.acquire_time,
                now.clone(),
                old.lease_transitions.unwrap_or(0),
            );
            let obj = self.object(self.lease.as_ref(), spec);
            match self.replace(&obj).await {
                Ok(l) => {
                    self.set_observed(l);
                    return true;
                }
                Err(error) => {
                    error!(%error, "Failed to update lock optimistically, falling back to slow path")
                }
            }
        }

        let current = match self.api.get_opt(&self.name).await {
            Err(source) => {
                let error = Error::LeaseGet {
                    namespace: self.cfg.namespace.clone(),
                    name: self.name.clone(),
                    source,
                };
                error!(%error, "error retrieving resource lock");
                return false;
            }
            Ok(None) => {
                let spec = self.spec(&self.identity, secs, Some(now.clone()), now, 0);
                let obj = self.object(None, spec);
                return match self.api.create(&PostParams::default(), &obj).await {
                    Ok(l) => {
                        self.set_observed(l);
                        true
                    }
                    Err(error) => {
                        error!(%error, lease = %self.desc(), "error initially creating leader election record");
                        false
                    }
                };
            }
            Ok(Some(l)) => l,
        };

        let spec = current.spec.clone().unwrap_or_default();
        if self.observed.as_ref() != Some(&spec) {
            self.observed = Some(spec.clone());
            self.observed_at = Instant::now();
        }
        self.lease = Some(current);
        self.observation_changed();

        let (acquire, transitions) = match decide(
            Some(&spec),
            self.observed_at,
            Instant::now(),
            &self.identity,
            None,
        ) {
            Decision::Wait | Decision::Lost => {
                debug!(
                    lease = %self.desc(),
                    holder = spec.holder_identity.as_deref().unwrap_or(""),
                    "lock is held by another replica and has not yet expired"
                );
                return false;
            }
            Decision::Renew => {
                self.health.record_slowpath();
                (
                    spec.acquire_time.clone(),
                    spec.lease_transitions.unwrap_or(0),
                )
            }
            Decision::Acquire => (
                Some(now.clone()),
                spec.lease_transitions.unwrap_or(0).saturating_add(1),
            ),
        };
        let new_spec = self.spec(&self.identity, secs, acquire, now, transitions);
        let obj = self.object(self.lease.as_ref(), new_spec);
        match self.replace(&obj).await {
            Ok(l) => {
                self.set_observed(l);
                true
            }
            Err(error) => {
                error!(%error, "Failed to update lock");
                false
            }
        }
    }

    /// Like `try_acquire_or_renew`, but a hung request counts as a failure.
    async fn attempt(&mut self, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, self.try_acquire_or_renew())
            .await
            .unwrap_or(false)
    }

    /// Blocks until this replica holds the Lease (`true`), or until
    /// `shutdown` resolves first (`false`). A request in flight when
    /// `shutdown` resolves is abandoned; nothing is written afterwards.
    async fn acquire(&mut self, shutdown: impl Future<Output = ()>) -> bool {
        info!(lease = %self.desc(), "attempting to acquire leader lease");
        let desc = self.desc();
        let acquired = async {
            loop {
                if self.attempt(Instant::now() + self.cfg.renew_deadline).await {
                    return;
                }
                debug!(lease = %self.desc(), "failed to acquire lease");
                let jitter = 1.0 + rand::random::<f64>() * JITTER_FACTOR;
                tokio::time::sleep(self.cfg.retry_period.mul_f64(jitter)).await;
            }
        };
        tokio::select! {
            () = acquired => {
                info!(lease = %desc, "successfully acquired lease");
                true
            }
            () = shutdown => {
                info!(lease = %desc, "shutting down before acquiring the lease");
                false
            }
        }
    }

    /// Renews every retry period; returns when a renewal round misses the deadline.
    async fn renew_loop(&mut self) {
        loop {
            let deadline = Instant::now() + self.cfg.renew_deadline;
            loop {
                if decide(
                    self.observed.as_ref(),
                    self.observed_at,
                    Instant::now(),
                    &self.identity,
                    Some(deadline),
                ) == Decision::Lost
                {
                    info!(lease = %self.desc(), "failed to renew lease: timed out waiting for the condition");
                    return;
                }
                if self.attempt(deadline).await {
                    trace!(lease = %self.desc(), "successfully renewed lease");
                    break;
                }
                let next = (Instant::now() + self.cfg.retry_period).min(deadline);
                tokio::time::sleep_until(next).await;
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// client-go's `release`: hand the Lease over immediately.
    async fn release(&mut self) {
        if !self.is_leader() {
            return;
        }
        let now = micro_now();
        let transitions = self
            .observed
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        let spec = self.spec("", 1, Some(now.clone()), now, transitions);
        let obj = self.object(self.lease.as_ref(), spec);
        match self.replace(&obj).await {
            Ok(l) => {
                self.set_observed(l);
                info!(lease = %self.desc(), "released lease");
            }
            Err(error) => error!(%error, "Failed to release lock"),
        }
    }

    fn lease_ref(&self) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        self.lease.as_ref().map(|l| l.object_ref(&()))
    }
}

async fn record_event(
    recorder: &EventRecorder,
    lease: Option<k8s_openapi::api::core::v1::ObjectReference>,
    message: String,
) {
    let Some(obj) = lease else { return };
    if let Err(error) = recorder
        .publish(&obj, EventType::Normal, "LeaderElection", &message)
        .await
    {
        warn!(%error, "failed to record leader election event");
    }
}

/// Runs `run` while this replica holds the Lease described by `config`.
///
/// Blocks until the Lease is acquired (retrying until SIGTERM or SIGINT,
/// see [`shutdown::signal`](crate::shutdown::signal)), then calls `run` and
/// renews the Lease concurrently in the same task. Returns
/// [`LeaderOutcome::Lost`] when a renewal misses the renew deadline (the `run`
/// future is dropped first), [`LeaderOutcome::RunCompleted`] when `run`
/// finishes while leading (the Lease is then released if
/// [`LeaderConfig::release_on_exit`], else left to expire as upstream does by
/// default), or [`LeaderOutcome::ShutdownWhileStandby`] when the signal
/// comes before the Lease is held. Once leading, the signal is `run`'s to
/// watch. `run` should spawn CPU-heavy work rather than block its poll, or
/// renewals are delayed.
///
/// Upstream's standby sits in client-go's `RunOrDie` acquire loop; with no
/// SIGTERM handler installed (the default, without the
/// `ReleaseLeaderElectionOnExit` gate) Go's runtime lets the signal kill the
/// process at once. Here the signal is caught (the HTTP server and the
/// controllers watch it), so the standby has to stop on it itself, or it
/// would wait for the kubelet's SIGKILL; it has nothing to clean up.
///
/// Errors: [`Error::LeaderElectionConfig`] for invalid timings; API failures
/// are logged and retried, never returned.
pub async fn run_with_leader_election<F, Fut>(
    client: Client,
    config: LeaderConfig,
    health: LeaderHealth,
    run: F,
) -> Result<LeaderOutcome, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    run_with_leader_election_until(client, config, health, crate::shutdown::signal(), run).await
}

/// [`run_with_leader_election`] with the standby's shutdown signal given as
/// `shutdown`, a future that resolves when the process should stop (for
/// tests, or a process that multiplexes its own signals). `shutdown` is
/// polled only until the Lease is acquired, then dropped.
///
/// Errors: as [`run_with_leader_election`].
pub async fn run_with_leader_election_until<S, F, Fut>(
    client: Client,
    config: LeaderConfig,
    health: LeaderHealth,
    shutdown: S,
    run: F,
) -> Result<LeaderOutcome, Error>
where
    S: Future<Output = ()>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    config.validate()?;
    let recorder = Arc::new(EventRecorder::new(
        client.clone(),
        &format!("{}/{}", config.lock_name, config.identity),
    ));
    let release_on_exit = config.release_on_exit;
    let mut elector = Elector::new(client, config, health);
    if !elector.acquire(shutdown).await {
        return Ok(LeaderOutcome::ShutdownWhileStandby);
    }

    let message = format!("{} became leader", elector.identity);
    let (rec, lease) = (recorder.clone(), elector.lease_ref());
    tokio::spawn(async move { record_event(&rec, lease, message).await });

    info!(lease = %elector.desc(), "became leader, starting");
    let run = run();
    let outcome = tokio::select! {
        () = run => LeaderOutcome::RunCompleted,
        () = elector.renew_loop() => LeaderOutcome::Lost,
    };
    match outcome {
        LeaderOutcome::Lost => {
            let message = format!("{} stopped leading", elector.identity);
            // Best effort, bounded: the process is about to exit.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                record_event(&recorder, elector.lease_ref(), message),
            )
            .await;
        }
        LeaderOutcome::RunCompleted if release_on_exit => elector.release().await,
        LeaderOutcome::RunCompleted | LeaderOutcome::ShutdownWhileStandby => {}
    }
    Ok(outcome)
}

/// [`run_with_leader_election`] with upstream's reaction to loss: log
/// "Stopped leading" and exit the process with status 1. Returns `Ok(())` when
/// `run` completed or a standby was told to shut down (the caller then exits
/// 0), or the configuration error.
pub async fn run_with_leader_election_or_exit<F, Fut>(
    client: Client,
    config: LeaderConfig,
    health: LeaderHealth,
    run: F,
) -> Result<(), Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    match run_with_leader_election(client, config, health, run).await? {
        LeaderOutcome::Lost => {
            error!("Stopped leading");
            std::process::exit(1);
        }
        LeaderOutcome::RunCompleted | LeaderOutcome::ShutdownWhileStandby => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_api::FakeApi;
    use serde_json::json;

    const S: Duration = Duration::from_secs(1);

    fn spec(holder: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn sanitizes_like_csi_lib_utils() {
        assert_eq!(sanitize_lease_name("test!driver/foo"), "test-driver-foo");
        assert_eq!(sanitize_lease_name("driver\\"), "driver-X");
        assert_eq!(
            sanitize_lease_name("hostpath.csi.k8s.io"),
            "hostpath-csi-k8s-io"
        );
        assert_eq!(sanitize_lease_name("ebs.csi.aws.com"), "ebs-csi-aws-com");
        assert_eq!(sanitize_lease_name("UPPER-case-9"), "UPPER-case-9");
        assert_eq!(sanitize_lease_name("a-"), "a-X");
        assert_eq!(sanitize_lease_name("ünï"), "-n-X");
    }

    #[test]
    fn namespace_resolution_order() {
        assert_eq!(
            resolve_namespace_from("flag", Some("env"), Some("file")),
            "flag"
        );
        assert_eq!(resolve_namespace_from("", Some("env"), Some("file")), "env");
        assert_eq!(
            resolve_namespace_from("", Some(""), Some(" file\n")),
            "file"
        );
        assert_eq!(resolve_namespace_from("", None, Some("  \n")), "default");
        assert_eq!(resolve_namespace_from("", None, None), "default");
    }

    fn cfg() -> LeaderConfig {
        LeaderConfig {
            lock_name: "hostpath.csi.k8s.io".into(),
            namespace: "kube-system".into(),
            identity: "pod-a".into(),
            lease_duration: 15 * S,
            renew_deadline: 10 * S,
            retry_period: 5 * S,
            labels: BTreeMap::new(),
            release_on_exit: false,
        }
    }

    #[test]
    fn validation() {
        cfg().validate().unwrap();
        let with = |f: fn(&mut LeaderConfig)| {
            let mut c = cfg();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.lease_duration = 10 * S).is_err());
        assert!(with(|c| c.retry_period = Duration::from_secs_f64(8.4)).is_err());
        assert!(with(|c| c.retry_period = Duration::from_secs(8)).is_ok());
        assert!(with(|c| c.retry_period = Duration::ZERO).is_err());
        assert!(with(|c| c.identity.clear()).is_err());
        let e = with(|c| c.renew_deadline = 20 * S).unwrap_err();
        assert!(matches!(e, Error::LeaderElectionConfig(_)) && e.is_final());
        assert_eq!(cfg().lease_name(), "hostpath-csi-k8s-io");
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let me = "pod-a";
        // Free or missing lease.
        assert_eq!(decide(None, t0, t0, me, None), Decision::Acquire);
        assert_eq!(
            decide(Some(&spec("", 15)), t0, t0, me, None),
            Decision::Acquire
        );
        // Held by us.
        assert_eq!(
            decide(Some(&spec(me, 15)), t0, t0 + 100 * S, me, None),
            Decision::Renew
        );
        // Held by another replica: wait until 15 s after *we* saw it change.
        let other = spec("pod-b", 15);
        assert_eq!(
            decide(Some(&other), t0, t0 + 14 * S, me, None),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&other), t0, t0 + 15 * S, me, None),
            Decision::Acquire
        );
        // The remote renewTime is irrelevant (clock skew): a renewTime far in the
        // past does not make a freshly observed lease expire.
        let mut skewed = other.clone();
        skewed.renew_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
        assert_eq!(decide(Some(&skewed), t0, t0 + S, me, None), Decision::Wait);
        // Missing duration counts as 0: expired.
        let no_dur = LeaseSpec {
            holder_identity: Some("pod-b".into()),
            ..Default::default()
        };
        assert_eq!(decide(Some(&no_dur), t0, t0, me, None), Decision::Acquire);
        // While leading, the renew deadline decides loss first.
        assert_eq!(
            decide(Some(&spec(me, 15)), t0, t0 + 10 * S, me, Some(t0 + 10 * S)),
            Decision::Lost
        );
        assert_eq!(
            decide(Some(&spec(me, 15)), t0, t0 + 9 * S, me, Some(t0 + 10 * S)),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&other), t0, t0 + 9 * S, me, Some(t0 + 10 * S)),
            Decision::Wait
        );
    }

    const LEASE_PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/hostpath-csi-k8s-io";

    #[tokio::test(start_paused = true)]
    async fn creates_lease_runs_and_renews() {
        let fake = FakeApi::default();
        let mut c = cfg();
        c.labels.insert("app".into(), "csi".into());
        let health = LeaderHealth::for_config(&c);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_with_leader_election(
            fake.client(),
            c,
            health.clone(),
            || async {
                let _ = rx.await;
            },
        ));
        tokio::time::sleep(12 * S).await;
        let lease = fake.get(LEASE_PATH).expect("lease created");
        assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(lease["spec"]["leaseTransitions"], 0);
        assert_eq!(lease["metadata"]["labels"]["app"], "csi");
        assert_ne!(
            lease["spec"]["renewTime"], lease["spec"]["acquireTime"],
            "renewed"
        );
        assert!(health.is_leader());
        assert_eq!(
            fake.requests_with_method("PUT"),
            3,
            "fast-path renewals at 0 s, 5 s and 10 s"
        );
        tx.send(()).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), LeaderOutcome::RunCompleted);
        let events = fake.objects("/api/v1/namespaces/kube-system/events/");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["reason"], "LeaderElection");
        assert_eq!(events[0]["message"], "pod-a became leader");
        assert_eq!(
            events[0]["source"]["component"],
            "hostpath.csi.k8s.io/pod-a"
        );
        assert_eq!(events[0]["involvedObject"]["kind"], "Lease");
    }

    fn foreign_lease(holder: &str, transitions: i32) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "hostpath-csi-k8s-io", "namespace": "kube-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": "2020-01-01T00:00:00.000000Z",
                     "renewTime": "2020-01-01T00:00:00.000000Z",
                     "leaseTransitions": transitions}
        })
    }

    #[tokio::test(start_paused = true)]
    async fn takes_over_only_after_the_record_stops_changing() {
        let fake = FakeApi::default();
        fake.put(LEASE_PATH, foreign_lease("go-replica", 3));
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = started.clone();
        let task = tokio::spawn(run_with_leader_election(
            fake.client(),
            cfg(),
            LeaderHealth::for_config(&cfg()),
            move || async move {
                s2.store(true, std::sync::atomic::Ordering::SeqCst);
                std::future::pending::<()>().await;
            },
        ));
        // The Go replica keeps renewing for a while: we must keep waiting even
        // though its renewTime (2020) is ancient by our clock.
        for i in 0..4 {
            tokio::time::sleep(10 * S).await;
            let mut l = foreign_lease("go-replica", 3);
            l["spec"]["renewTime"] = format!("2020-01-01T00:00:{:02}.000000Z", i + 1).into();
            fake.put(LEASE_PATH, l);
            assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
        }
        // It stops renewing: after ≥ 15 s of no change we take over.
        tokio::time::sleep(40 * S).await;
        assert!(started.load(std::sync::atomic::Ordering::SeqCst));
        let lease = fake.get(LEASE_PATH).unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
        assert_eq!(lease["spec"]["leaseTransitions"], 4);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_stops_waiting_on_shutdown() {
        let fake = FakeApi::default();
        fake.put(LEASE_PATH, foreign_lease("go-replica", 3));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = started.clone();
        let health = LeaderHealth::for_config(&cfg());
        let task = tokio::spawn(run_with_leader_election_until(
            fake.client(),
            cfg(),
            health.clone(),
            async move {
                let _ = stopped.await;
            },
            move || async move {
                s2.store(true, std::sync::atomic::Ordering::SeqCst);
            },
        ));
        // The Go replica keeps renewing: we stay a standby.
        for i in 0..3 {
            tokio::time::sleep(10 * S).await;
            let mut l = foreign_lease("go-replica", 3);
            l["spec"]["renewTime"] = format!("2020-01-01T00:00:{:02}.000000Z", i + 1).into();
            fake.put(LEASE_PATH, l);
        }
        assert!(!task.is_finished());
        let gets = fake.requests_with_method("GET");
        assert!(gets >= 3, "the standby polled the Lease ({gets} GETs)");

        let asked = Instant::now();
        stop.send(()).unwrap();
        let outcome = task.await.unwrap().unwrap();
        assert_eq!(outcome, LeaderOutcome::ShutdownWhileStandby);
        assert_eq!(Instant::now(), asked, "no retry period is waited out");
        assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!health.is_leader());
        assert_eq!(
            fake.requests_with_method("PUT"),
            0,
            "the Lease is not written"
        );
        assert_eq!(
            fake.requests_with_method("POST"),
            0,
            "nor an event recorded"
        );
        assert_eq!(
            fake.get(LEASE_PATH).unwrap()["spec"]["holderIdentity"],
            "go-replica"
        );
    }

    /// Shutdown after the Lease is held is `run`'s business: the signal is
    /// no longer watched, and the outcome is `run`'s completion.
    #[tokio::test(start_paused = true)]
    async fn shutdown_after_acquiring_is_left_to_run() {
        let fake = FakeApi::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done, run_done) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_with_leader_election_until(
            fake.client(),
            cfg(),
            LeaderHealth::for_config(&cfg()),
            async move {
                let _ = stopped.await;
            },
            || async move {
                let _ = run_done.await;
            },
        ));
        tokio::time::sleep(S).await;
        assert!(
            stop.is_closed(),
            "the shutdown future is dropped once leading"
        );
        let _ = stop.send(());
        tokio::time::sleep(20 * S).await;
        assert!(!task.is_finished(), "the leader keeps running");
        done.send(()).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), LeaderOutcome::RunCompleted);
    }

    #[tokio::test(start_paused = true)]
    async fn loses_leadership_when_renewals_fail() {
        let fake = FakeApi::default();
        let health = LeaderHealth::for_config(&cfg());
        let task = tokio::spawn(run_with_leader_election(
            fake.client(),
            cfg(),
            health.clone(),
            std::future::pending::<()>,
        ));
        tokio::time::sleep(S).await;
        assert!(health.is_leader());
        fake.fail_all(500);
        let outcome = tokio::time::timeout(30 * S, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(outcome, LeaderOutcome::Lost);
    }

    #[tokio::test(start_paused = true)]
    async fn another_writer_steals_the_lease() {
        let fake = FakeApi::default();
        let task = tokio::spawn(run_with_leader_election(
            fake.client(),
            cfg(),
            LeaderHealth::for_config(&cfg()),
            std::future::pending::<()>,
        ));
        tokio::time::sleep(S).await;
        // Someone overwrites the Lease (e.g. a forced takeover); our optimistic
        // PUT conflicts, the slow path sees the new holder and waits until the
        // renew deadline passes.
        fake.put(LEASE_PATH, foreign_lease("intruder", 1));
        let outcome = tokio::time::timeout(30 * S, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(outcome, LeaderOutcome::Lost);
        assert_eq!(
            fake.get(LEASE_PATH).unwrap()["spec"]["holderIdentity"],
            "intruder"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn releases_on_exit_when_configured() {
        let fake = FakeApi::default();
        let mut c = cfg();
        c.release_on_exit = true;
        let outcome = run_with_leader_election(
            fake.client(),
            c,
            LeaderHealth::for_config(&cfg()),
            || async {
                tokio::time::sleep(S).await;
            },
        )
        .await
        .unwrap();
        assert_eq!(outcome, LeaderOutcome::RunCompleted);
        let lease = fake.get(LEASE_PATH).unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(lease["spec"]["leaseTransitions"], 0);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_config_is_an_error() {
        let fake = FakeApi::default();
        let mut c = cfg();
        c.renew_deadline = 20 * S;
        let r = run_with_leader_election(
            fake.client(),
            c,
            LeaderHealth::for_config(&cfg()),
            || async {},
        )
        .await;
        assert!(matches!(r, Err(Error::LeaderElectionConfig(_))));
    }
}
