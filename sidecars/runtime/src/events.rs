//! A core/v1 Event recorder.
//!
//! The upstream sidecars record events through client-go's legacy recorder,
//! which writes `v1 Event` objects; their RBAC grants only core (`""`) `events`
//! `create/update/patch`. kube's `events.k8s.io` recorder would need different
//! RBAC, so this recorder writes core/v1 Events the way client-go does:
//!
//! * name `<object name>.<hex Unix nanoseconds>`, in the object's namespace or
//!   `default` for cluster-scoped objects;
//! * `involvedObject` = the given reference, `source.component` and
//!   `reportingComponent` = the component; `source.host` and
//!   `reportingInstance` stay empty, as client-go's legacy recorder copies
//!   them from `EventSource.Host`, which the sidecars never set;
//!   `firstTimestamp` = `lastTimestamp` = now, `count` = 1;
//! * a repeat of the same (object, type, reason, message) within
//!   [`AGGREGATION_WINDOW`] patches `count` and `lastTimestamp` of the earlier
//!   Event instead of creating a new one (client-go's `EventCorrelator`
//!   de-duplication). If that Event is gone (404), a new one is created.
//!
//! Simplifications against client-go, by design: no "similar events"
//! aggregation (same reason, different messages) and no per-object spam
//! token bucket; the de-duplication cache holds at most [`CACHE_CAPACITY`] entries.
//!
//! Messages are stored verbatim in the cluster: callers must not put secrets in
//! them. Publishing errors are returned for the caller to log; they must never
//! be fatal to a sidecar.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::Error;

/// How long a published Event can absorb identical repeats.
pub const AGGREGATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Maximum number of remembered Events for de-duplication.
pub const CACHE_CAPACITY: usize = 4096;

/// Event severity, the core/v1 `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Informational (`Normal`).
    Normal,
    /// Something went wrong (`Warning`).
    Warning,
}

impl EventType {
    /// The API string: `Normal` or `Warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Seen {
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
}

/// Records core/v1 Events for one component (see the module documentation).
/// Cheap to share behind an `Arc`.
pub struct EventRecorder {
    client: Client,
    component: String,
    seen: Mutex<HashMap<String, Seen>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

/// What [`EventRecorder::publish`] will do for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Create,
    Bump {
        namespace: String,
        name: String,
        count: i32,
    },
}

impl EventRecorder {
    /// A recorder whose events carry `component` as `source.component` and
    /// `reportingComponent`, and no `source.host` or `reportingInstance`
    /// (see the module documentation).
    pub fn new(client: Client, component: &str) -> Self {
        EventRecorder {
            client,
            component: component.to_owned(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The component events are attributed to.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Records one event about `obj`.
    ///
    /// Errors: [`Error::EventCreate`] when the API server rejects the create or
    /// patch (e.g. RBAC, namespace terminating). Log and carry on.
    pub async fn publish(
        &self,
        obj: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        let key = cache_key(obj, type_, reason, message);
        let now = Instant::now();
        let err = |source| Error::EventCreate {
            object: format!(
                "{}/{}",
                obj.namespace.as_deref().unwrap_or(""),
                obj.name.as_deref().unwrap_or("")
            ),
            reason: reason.to_owned(),
            source,
        };
        if let Action::Bump {
            namespace,
            name,
            count,
        } = self.plan(&key, now)
        {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(Timestamp::now()),
                "message": message,
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => self.forget(&key),
                Err(e) => return Err(err(e)),
            }
        }
        let event = self.build(obj, type_, reason, message);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event)
            .await
            .map_err(err)?;
        self.remember(key, namespace, name, now);
        Ok(())
    }

    /// Decides between a fresh Event and bumping a cached one; bumps the count
    /// eagerly so concurrent repeats get distinct counts.
    fn plan(&self, key: &str, now: Instant) -> Action {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(key) {
            Some(s) if now.duration_since(s.first) < AGGREGATION_WINDOW => {
                s.count = s.count.saturating_add(1);
                Action::Bump {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            _ => Action::Create,
        }
    }

    fn forget(&self, key: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn remember(&self, key: String, namespace: String, name: String, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= CACHE_CAPACITY {
            seen.retain(|_, s| now.duration_since(s.first) < AGGREGATION_WINDOW);
            if seen.len() >= CACHE_CAPACITY {
                seen.clear();
            }
        }
        seen.insert(
            key,
            Seen {
                namespace,
                name,
                count: 1,
                first: now,
            },
        );
    }

    fn build(&self, obj: &ObjectReference, type_: EventType, reason: &str, message: &str) -> Event {
        let now = Timestamp::now();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let namespace = obj
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{nanos:x}", obj.name.as_deref().unwrap_or(""))),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(type_.as_str().to_owned()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            // client-go: `ReportingInstance = source.Host`, empty.
            reporting_instance: None,
            ..Default::default()
        }
    }
}

fn cache_key(obj: &ObjectReference, type_: EventType, reason: &str, message: &str) -> String {
    let f = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        f(&obj.api_version),
        f(&obj.kind),
        f(&obj.namespace),
        f(&obj.name),
        f(&obj.uid),
        type_.as_str().to_owned(),
        reason.to_owned(),
        message.to_owned(),
    ]
    .join("\u{0}")
}

/// Events go through a bounded queue to one writer task, as client-go's
/// broadcaster does (1000 deep, dropped when full): a reconcile never waits
/// for an event write, and event writes cannot crowd the client's token
/// bucket with many at once.
pub struct EventQueue {
    tx: tokio::sync::mpsc::Sender<(ObjectReference, EventType, String, String)>,
}

impl EventQueue {
    /// Queue depth, as client-go's `maxQueuedEvents`.
    pub const DEPTH: usize = 1000;

    /// Writes of one event before it is dropped, as client-go's
    /// `maxTriesPerEvent`. Only transient failures ([`Error::is_final`]
    /// false: 409, 429, 5xx, no answer) are retried; a final one (403
    /// because RBAC grants no events, 422) drops the event at once.
    pub const MAX_TRIES: u32 = 12;

    /// Pause between tries, as client-go's broadcaster `sleepDuration`.
    pub const RETRY_INTERVAL: Duration = Duration::from_secs(10);

    /// Starts the writer task on the current runtime.
    pub fn start(recorder: EventRecorder) -> Self {
        Self::spawn(recorder, None)
    }

    /// Like [`start`](Self::start), but each write first waits for a spare
    /// token of `budget` ([`ApiBudget::acquire_spare`]): events are
    /// informational, so under a throttle backlog they wait for the work
    /// itself, and when the queue is full they are dropped as client-go
    /// drops them. `recorder` must use the unthrottled client that goes with
    /// `budget` ([`Prepaid`](crate::kube_client::Prepaid)).
    ///
    /// [`ApiBudget::acquire_spare`]: crate::kube_client::ApiBudget::acquire_spare
    pub fn start_spare(recorder: EventRecorder, budget: crate::kube_client::ApiBudget) -> Self {
        Self::spawn(recorder, Some(budget))
    }

    fn spawn(recorder: EventRecorder, budget: Option<crate::kube_client::ApiBudget>) -> Self {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(ObjectReference, EventType, String, String)>(Self::DEPTH);
        tokio::spawn(async move {
            while let Some((obj, type_, reason, message)) = rx.recv().await {
                for attempt in 1..=Self::MAX_TRIES {
                    if let Some(b) = &budget {
                        b.acquire_spare().await;
                    }
                    let Err(e) = recorder.publish(&obj, type_, &reason, &message).await else {
                        break;
                    };
                    if e.is_final() || attempt == Self::MAX_TRIES {
                        tracing::warn!(error = %e, reason = %reason, attempt, "failed to record event, dropping it");
                        break;
                    }
                    tracing::debug!(error = %e, reason = %reason, attempt, "failed to record event, will retry");
                    // client-go spreads the first retry over the interval so
                    // that many writers do not retry in step.
                    let wait = if attempt == 1 {
                        Self::RETRY_INTERVAL.mul_f64(rand::random::<f64>())
                    } else {
                        Self::RETRY_INTERVAL
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        });
        EventQueue { tx }
    }

    /// Queues an event; drops it (with a debug line) when the queue is full.
    pub fn send(&self, obj: &ObjectReference, type_: EventType, reason: &str, message: &str) {
        if self
            .tx
            .try_send((obj.clone(), type_, reason.to_string(), message.to_string()))
            .is_err()
        {
            tracing::debug!(reason, "event queue full, event dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_api::FakeApi;

    fn pvc() -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some("ns1".into()),
            name: Some("claim".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn creates_core_v1_event() {
        let fake = FakeApi::default();
        let rec = EventRecorder::new(fake.client(), "csi-provisioner");
        rec.publish(
            &pvc(),
            EventType::Normal,
            "Provisioning",
            "External provisioner is provisioning",
        )
        .await
        .unwrap();
        let events = fake.objects("/api/v1/namespaces/ns1/events/");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        let name = e["metadata"]["name"].as_str().unwrap();
        let (prefix, hex) = name.split_once('.').unwrap();
        assert_eq!(prefix, "claim");
        assert!(
            hex.len() >= 15 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{hex}"
        );
        assert_eq!(e["involvedObject"]["kind"], "PersistentVolumeClaim");
        assert_eq!(e["involvedObject"]["uid"], "uid-1");
        assert_eq!(e["type"], "Normal");
        assert_eq!(e["reason"], "Provisioning");
        assert_eq!(e["count"], 1);
        assert_eq!(e["source"]["component"], "csi-provisioner");
        assert_eq!(e["reportingComponent"], "csi-provisioner");
        // client-go's legacy recorder (tools/record/event.go generateEvent)
        // sets `reportingInstance` from `source.host`, which the sidecars
        // leave empty: neither may carry the host name.
        for field in [&e["reportingInstance"], &e["source"]["host"]] {
            assert!(
                field.is_null() || *field == "",
                "expected empty, got {field}"
            );
        }
        assert!(e["firstTimestamp"].is_string());
        assert_eq!(e["firstTimestamp"], e["lastTimestamp"]);
    }

    #[tokio::test]
    async fn repeats_are_aggregated() {
        let fake = FakeApi::default();
        let rec = EventRecorder::new(fake.client(), "c");
        for _ in 0..3 {
            rec.publish(&pvc(), EventType::Warning, "ProvisioningFailed", "boom")
                .await
                .unwrap();
        }
        rec.publish(&pvc(), EventType::Warning, "ProvisioningFailed", "other")
            .await
            .unwrap();
        let events = fake.objects("/api/v1/namespaces/ns1/events/");
        assert_eq!(events.len(), 2);
        let boom = events.iter().find(|e| e["message"] == "boom").unwrap();
        assert_eq!(boom["count"], 3);
        assert_eq!(fake.requests_with_method("PATCH"), 2);
    }

    #[tokio::test]
    async fn deleted_event_is_recreated() {
        let fake = FakeApi::default();
        let rec = EventRecorder::new(fake.client(), "c");
        rec.publish(&pvc(), EventType::Normal, "R", "m")
            .await
            .unwrap();
        fake.clear();
        rec.publish(&pvc(), EventType::Normal, "R", "m")
            .await
            .unwrap();
        let events = fake.objects("/api/v1/namespaces/ns1/events/");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["count"], 1);
    }

    #[tokio::test]
    async fn cluster_scoped_objects_go_to_default() {
        let fake = FakeApi::default();
        let rec = EventRecorder::new(fake.client(), "c");
        let pv = ObjectReference {
            kind: Some("PersistentVolume".into()),
            name: Some("pv-1".into()),
            ..Default::default()
        };
        rec.publish(&pv, EventType::Warning, "VolumeFailedDelete", "x")
            .await
            .unwrap();
        assert_eq!(fake.objects("/api/v1/namespaces/default/events/").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_retries_transient_failures_and_drops_final_ones() {
        let fake = FakeApi::default();
        fake.fail_all(503);
        let queue = EventQueue::start(EventRecorder::new(fake.client(), "c"));
        queue.send(&pvc(), EventType::Normal, "Transient", "m");
        tokio::time::sleep(EventQueue::RETRY_INTERVAL * 2).await;
        let tries = fake.requests_with_method("POST");
        assert!(tries >= 2, "a 503 is retried: {tries} tries");
        assert!(fake.objects("/api/v1/namespaces/ns1/events/").is_empty());
        fake.heal();
        tokio::time::sleep(EventQueue::RETRY_INTERVAL * 2).await;
        assert_eq!(fake.objects("/api/v1/namespaces/ns1/events/").len(), 1);

        fake.fail_all(403);
        let before = fake.requests_with_method("POST");
        queue.send(&pvc(), EventType::Normal, "Final", "other");
        tokio::time::sleep(EventQueue::RETRY_INTERVAL * 3).await;
        assert_eq!(
            fake.requests_with_method("POST"),
            before + 1,
            "a 403 is not retried"
        );
    }

    #[tokio::test]
    async fn api_errors_are_returned() {
        let fake = FakeApi::default();
        fake.fail_all(403);
        let rec = EventRecorder::new(fake.client(), "c");
        let e = rec
            .publish(&pvc(), EventType::Normal, "R", "m")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::EventCreate { .. }));
        assert!(e.is_final());
    }
}
