//! The attach, detach and PV reconciles with their I/O faked: an in-memory
//! API server behind a real `kube::Client` and a fake CSI driver on a Unix
//! socket behind a real [`Connection`]. Each test checks which requests and
//! RPCs a path makes, in which order (one journal for both), and what ends
//! up in the objects; modelled on upstream's `csi_handler_test.go`
//! (TestCSIHandler: attach, detach, errors, finalizers, secrets).

use super::*;

use csi_client::csi::v1 as csi;
use csi_client::csi::v1::controller_server::{Controller as CsiController, ControllerServer};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, SecretReference};
use k8s_openapi::api::storage::v1::{
    CSINodeDriver, CSINodeSpec, VolumeAttachmentSource, VolumeAttachmentSpec,
    VolumeAttachmentStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use serde_json::json;
use sidecar_runtime::workqueue::QueueMetrics;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

const DRIVER: &str = "csi.test.io";
const FIN: &str = "external-attacher/csi-test-io";
const NODE: &str = "node1";
const NODE_ID: &str = "node-id-1";
const PV_PATH: &str = "/api/v1/persistentvolumes/pv1";
const VA_PATH: &str = "/apis/storage.k8s.io/v1/volumeattachments/va1";

/// API requests and CSI calls in the order they happened.
type Journal = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
struct ApiState {
    objects: BTreeMap<String, Value>,
    rv: u64,
    /// Every request with its body.
    requests: Vec<(Method, String, Value)>,
}

/// An in-memory API server: GET, merge and JSON patches (`…/status`
/// patches the object at the path without it), POST of Events.
#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    journal: Journal,
}

fn api_status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": reason, "reason": reason, "code": code}),
    )
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeApi {
    fn client(&self) -> Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let json_patch = parts
                    .headers
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json-patch"));
                let (code, value) = me.handle(&parts.method, parts.uri.path(), json_patch, &bytes);
                let resp = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                    .header("content-type", "application/json")
                    .body(Body::from(value.to_string().into_bytes()))
                    .expect("valid response");
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        Client::new(svc, "default")
    }

    fn handle(&self, method: &Method, path: &str, json_patch: bool, body: &[u8]) -> (u16, Value) {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let short = path
            .trim_start_matches("/apis/storage.k8s.io/v1/")
            .trim_start_matches("/api/v1/");
        if !short.ends_with("/events") {
            self.journal
                .lock()
                .unwrap()
                .push(format!("{method} {short}"));
        }
        let mut st = self.state.lock().unwrap();
        st.requests
            .push((method.clone(), path.to_owned(), parsed.clone()));
        match *method {
            Method::GET => match st.objects.get(path) {
                Some(o) => (200, o.clone()),
                None => api_status(404, "NotFound"),
            },
            Method::POST => (201, parsed),
            Method::PATCH => {
                let key = path.strip_suffix("/status").unwrap_or(path).to_owned();
                let Some(mut obj) = st.objects.get(&key).cloned() else {
                    return api_status(404, "NotFound");
                };
                if json_patch {
                    let Ok(ops) = serde_json::from_value::<json_patch::Patch>(parsed) else {
                        return api_status(400, "BadRequest");
                    };
                    if json_patch::patch(&mut obj, &ops).is_err() {
                        return api_status(422, "Invalid");
                    }
                } else {
                    merge(&mut obj, &parsed);
                }
                st.rv += 1;
                obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
                st.objects.insert(key, obj.clone());
                (200, obj)
            }
            _ => api_status(405, "MethodNotAllowed"),
        }
    }

    /// Stores `obj` at `path` with a new resourceVersion and returns it.
    fn put(&self, path: &str, mut obj: Value) -> Value {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
        st.objects.insert(path.to_owned(), obj.clone());
        obj
    }

    fn get(&self, path: &str) -> Value {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(path)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Reasons of the Events posted so far.
    fn event_reasons(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p, _)| *m == Method::POST && p.ends_with("/events"))
            .filter_map(|(_, _, b)| b["reason"].as_str().map(str::to_string))
            .collect()
    }
}

#[derive(Default)]
struct DriverState {
    publish: Vec<csi::ControllerPublishVolumeRequest>,
    unpublish: Vec<csi::ControllerUnpublishVolumeRequest>,
    fail: Option<tonic::Code>,
}

/// A CSI controller that records ControllerPublish/Unpublish and answers
/// with a `device` publish context, or fails with the injected code.
#[derive(Clone)]
struct FakeDriver {
    state: Arc<Mutex<DriverState>>,
    journal: Journal,
}

impl FakeDriver {
    fn fail_with(&self, code: tonic::Code) {
        self.state.lock().unwrap().fail = Some(code);
    }
    fn published(&self) -> Vec<csi::ControllerPublishVolumeRequest> {
        self.state.lock().unwrap().publish.clone()
    }
    fn unpublished(&self) -> Vec<csi::ControllerUnpublishVolumeRequest> {
        self.state.lock().unwrap().unpublish.clone()
    }
}

#[tonic::async_trait]
impl CsiController for FakeDriver {
    async fn controller_publish_volume(
        &self,
        request: tonic::Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<tonic::Response<csi::ControllerPublishVolumeResponse>, tonic::Status> {
        self.journal
            .lock()
            .unwrap()
            .push("ControllerPublishVolume".into());
        let mut st = self.state.lock().unwrap();
        st.publish.push(request.into_inner());
        if let Some(code) = st.fail {
            return Err(tonic::Status::new(code, "injected"));
        }
        Ok(tonic::Response::new(csi::ControllerPublishVolumeResponse {
            publish_context: [("device".to_string(), "/dev/fake".to_string())].into(),
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: tonic::Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<tonic::Response<csi::ControllerUnpublishVolumeResponse>, tonic::Status> {
        self.journal
            .lock()
            .unwrap()
            .push("ControllerUnpublishVolume".into());
        let mut st = self.state.lock().unwrap();
        st.unpublish.push(request.into_inner());
        if let Some(code) = st.fail {
            return Err(tonic::Status::new(code, "injected"));
        }
        Ok(tonic::Response::new(
            csi::ControllerUnpublishVolumeResponse {},
        ))
    }
}

/// The faked API server and driver around one [`Context`].
struct Harness {
    api: FakeApi,
    driver: FakeDriver,
    journal: Journal,
    ctx: Arc<Context>,
    vas: Writer<VolumeAttachment>,
    pvs: Writer<PersistentVolume>,
    _nodes: Writer<CSINode>,
    _dir: tempfile::TempDir,
}

const ATTACHING: Capabilities = Capabilities {
    publish_unpublish: true,
    publish_readonly: false,
    list_published_nodes: false,
    single_node_multi_writer: false,
};

async fn harness(caps: Capabilities) -> Harness {
    let journal = Journal::default();
    let api = FakeApi {
        state: Arc::default(),
        journal: journal.clone(),
    };
    let driver = FakeDriver {
        state: Arc::default(),
        journal: journal.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let incoming = UnixListenerStream::new(UnixListener::bind(&socket).unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(ControllerServer::new(driver.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(async move {
        let _ = server.await;
    });
    let csi = Connection::connect(csi_client::ConnectOptions::new(
        socket.display().to_string(),
        Duration::from_secs(5),
    ))
    .await
    .unwrap();

    let client = api.client();
    let (attachments, vas) = reflector::store::<VolumeAttachment>();
    let (volumes, pvs) = reflector::store::<PersistentVolume>();
    let (csinodes, mut nodes) = reflector::store::<CSINode>();
    let mut csinode = CSINode::default();
    csinode.metadata.name = Some(NODE.into());
    csinode.spec = CSINodeSpec {
        drivers: vec![CSINodeDriver {
            name: DRIVER.into(),
            node_id: NODE_ID.into(),
            ..Default::default()
        }],
    };
    nodes.apply_watcher_event(&watcher::Event::Apply(csinode));
    let mut registry = Registry::default();
    let queues = QueueMetrics::register(&mut registry, &QUEUES);
    let ctx = Arc::new(Context {
        client: client.clone(),
        csi,
        s: Settings {
            driver: DRIVER.into(),
            caps,
            timeout: Duration::from_secs(5),
            default_fstype: String::new(),
            max_entries: 0,
            error_codes: true,
            workers: 1,
            reconcile_sync: Duration::ZERO,
            resync: Duration::ZERO,
            migration: false,
        },
        finalizer: FIN.into(),
        attachments,
        volumes,
        csinodes,
        recorder: EventQueue::start(sidecar_runtime::events::EventRecorder::new(
            client,
            "csi-attacher",
        )),
        backoff: PerObjectBackoff::new(Duration::from_millis(10), Duration::from_millis(100)),
        attach_queue: Queue::new(QUEUES[0], queues.clone()),
        detach_queue: Queue::new(QUEUES[1], queues.clone()),
        pv_queue: Queue::new(QUEUES[2], queues),
        force: Mutex::default(),
        busy: Mutex::default(),
        backlog: Backlog::default(),
        metrics: BacklogMetrics::register(&mut registry),
        own_writes: Default::default(),
    });
    Harness {
        api,
        driver,
        journal,
        ctx,
        vas,
        pvs,
        _nodes: nodes,
        _dir: dir,
    }
}

impl Harness {
    /// Stores `va` in the API server and the cache; returns it as stored.
    fn add_va(&mut self, va: VolumeAttachment) -> Arc<VolumeAttachment> {
        let stored = self.api.put(VA_PATH, serde_json::to_value(&va).unwrap());
        let va: VolumeAttachment = serde_json::from_value(stored).unwrap();
        self.vas
            .apply_watcher_event(&watcher::Event::Apply(va.clone()));
        Arc::new(va)
    }

    fn add_pv(&mut self, pv: PersistentVolume) -> Arc<PersistentVolume> {
        let stored = self.api.put(PV_PATH, serde_json::to_value(&pv).unwrap());
        let pv: PersistentVolume = serde_json::from_value(stored).unwrap();
        self.pvs
            .apply_watcher_event(&watcher::Event::Apply(pv.clone()));
        Arc::new(pv)
    }

    fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }

    /// Waits (up to 2 s) for the event writer to post an Event `reason`.
    async fn wait_event(&self, reason: &str) -> bool {
        for _ in 0..40 {
            if self.api.event_reasons().iter().any(|r| r == reason) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

fn va() -> VolumeAttachment {
    let mut va = VolumeAttachment::default();
    va.metadata.name = Some("va1".into());
    va.metadata.uid = Some("uid-va1".into());
    va.spec = VolumeAttachmentSpec {
        attacher: DRIVER.into(),
        node_name: NODE.into(),
        source: VolumeAttachmentSource {
            persistent_volume_name: Some("pv1".into()),
            ..Default::default()
        },
    };
    va
}

/// A VolumeAttachment we attached, now deleted by the attach/detach controller.
fn deleted_va() -> VolumeAttachment {
    let mut va = va();
    va.metadata.finalizers = Some(vec![FIN.into()]);
    va.metadata.annotations = Some(
        [(
            crate::names::NODE_ID_ANNOTATION.to_string(),
            NODE_ID.to_string(),
        )]
        .into(),
    );
    va.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    va.status = Some(VolumeAttachmentStatus {
        attached: true,
        ..Default::default()
    });
    va
}

fn pv() -> PersistentVolume {
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some("pv1".into());
    pv.metadata.finalizers = Some(vec!["kubernetes.io/pv-protection".into()]);
    pv.spec = Some(PersistentVolumeSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        csi: Some(CSIPersistentVolumeSource {
            driver: DRIVER.into(),
            volume_handle: "vol-1".into(),
            fs_type: Some("ext4".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    pv
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn attach_adds_both_finalizers_before_publishing_then_marks_attached() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let va = h.add_va(va());
    reconcile_attach(va, h.ctx.clone()).await.unwrap();

    assert_eq!(
        h.journal(),
        [
            "PATCH persistentvolumes/pv1",
            "PATCH volumeattachments/va1",
            "ControllerPublishVolume",
            "PATCH volumeattachments/va1/status",
        ]
    );
    let published = h.driver.published();
    assert_eq!(published[0].volume_id, "vol-1");
    assert_eq!(
        published[0].node_id, NODE_ID,
        "the node ID comes from the CSINode"
    );
    assert!(!published[0].readonly);
    let cap = published[0].volume_capability.clone().unwrap();
    assert!(matches!(
        cap.access_type,
        Some(csi::volume_capability::AccessType::Mount(ref m)) if m.fs_type == "ext4"
    ));
    let pv = h.api.get(PV_PATH);
    assert_eq!(
        strings(&pv["metadata"]["finalizers"]),
        ["kubernetes.io/pv-protection", FIN],
        "our finalizer is appended to the PV's"
    );
    let va = h.api.get(VA_PATH);
    assert_eq!(strings(&va["metadata"]["finalizers"]), [FIN]);
    assert_eq!(
        va["metadata"]["annotations"][crate::names::NODE_ID_ANNOTATION],
        NODE_ID
    );
    assert_eq!(va["status"]["attached"], true);
    assert_eq!(va["status"]["attachmentMetadata"]["device"], "/dev/fake");
}

#[tokio::test]
async fn attach_error_is_saved_with_its_code_and_reported_as_an_event() {
    let mut h = harness(ATTACHING).await;
    h.driver.fail_with(tonic::Code::ResourceExhausted);
    h.add_pv(pv());
    let va = h.add_va(va());
    let err = reconcile_attach(va, h.ctx.clone()).await.unwrap_err();
    assert!(err.to_string().contains("ResourceExhausted"), "{err}");

    let va = h.api.get(VA_PATH);
    let e = &va["status"]["attachError"];
    assert_eq!(
        e["message"],
        "rpc error: code = ResourceExhausted desc = injected"
    );
    assert_eq!(e["errorCode"], 8);
    assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    assert!(
        va["status"]["attached"].is_null(),
        "not marked attached: {va}"
    );
    // The finalizer written before the publish stays: an attachment that
    // may exist on the driver is never forgotten.
    assert_eq!(strings(&va["metadata"]["finalizers"]), [FIN]);
    assert!(h.wait_event("AttachFailed").await, "no AttachFailed event");
}

#[tokio::test]
async fn attached_volume_attachment_is_not_published_again() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let mut attached = va();
    attached.metadata.finalizers = Some(vec![FIN.into()]);
    attached.status = Some(VolumeAttachmentStatus {
        attached: true,
        ..Default::default()
    });
    let va = h.add_va(attached);
    reconcile_attach(va, h.ctx.clone()).await.unwrap();
    assert!(h.journal().is_empty(), "{:?}", h.journal());
}

#[tokio::test]
async fn deleting_pv_is_refused_without_publishing() {
    let mut h = harness(ATTACHING).await;
    let mut deleting = pv();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    h.add_pv(deleting);
    let va = h.add_va(va());
    let err = reconcile_attach(va, h.ctx.clone()).await.unwrap_err();
    assert!(h.driver.published().is_empty());
    // Only the error report is written.
    assert_eq!(h.journal(), ["PATCH volumeattachments/va1/status"]);
    let saved = h.api.get(VA_PATH)["status"]["attachError"]["message"].clone();
    assert_eq!(saved, err.to_string());
}

#[tokio::test]
async fn missing_pv_is_an_attach_error_without_publishing() {
    let mut h = harness(ATTACHING).await;
    let va = h.add_va(va());
    let err = reconcile_attach(va, h.ctx.clone()).await.unwrap_err();
    assert!(err.to_string().contains("pv1"), "{err}");
    assert!(h.driver.published().is_empty());
    assert_eq!(h.journal(), ["PATCH volumeattachments/va1/status"]);
}

#[tokio::test]
async fn publish_secrets_are_read_and_sent() {
    let mut h = harness(ATTACHING).await;
    let mut with_secret = pv();
    if let Some(csi) = with_secret.spec.as_mut().and_then(|s| s.csi.as_mut()) {
        csi.controller_publish_secret_ref = Some(SecretReference {
            name: Some("creds".into()),
            namespace: Some("ns1".into()),
        });
    }
    h.add_pv(with_secret);
    h.api.put(
        "/api/v1/namespaces/ns1/secrets/creds",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "creds", "namespace": "ns1"},
               "data": {"user": "YWxpY2U="}}),
    );
    let va = h.add_va(va());
    reconcile_attach(va, h.ctx.clone()).await.unwrap();
    let published = h.driver.published();
    assert_eq!(
        published[0].secrets.get("user").map(String::as_str),
        Some("alice")
    );
    assert!(
        h.journal()
            .contains(&"GET namespaces/ns1/secrets/creds".to_string())
    );
}

#[tokio::test]
async fn trivial_handler_marks_attached_without_the_driver() {
    let mut h = harness(Capabilities::default()).await;
    h.add_pv(pv());
    let va = h.add_va(va());
    reconcile_attach(va, h.ctx.clone()).await.unwrap();
    assert_eq!(h.journal(), ["PATCH volumeattachments/va1/status"]);
    let va = h.api.get(VA_PATH);
    assert_eq!(va["status"]["attached"], true);
    assert!(va["metadata"]["finalizers"].is_null(), "no finalizer: {va}");
}

#[tokio::test]
async fn detach_unpublishes_then_removes_the_finalizer_then_the_status() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let va = h.add_va(deleted_va());
    reconcile_detach(va, h.ctx.clone()).await.unwrap();
    assert_eq!(
        h.journal(),
        [
            "ControllerUnpublishVolume",
            "PATCH volumeattachments/va1",
            "PATCH volumeattachments/va1/status",
        ]
    );
    let unpublished = h.driver.unpublished();
    assert_eq!(unpublished[0].volume_id, "vol-1");
    assert_eq!(unpublished[0].node_id, NODE_ID);
    let va = h.api.get(VA_PATH);
    assert!(
        va["metadata"]["finalizers"].is_null(),
        "finalizer left: {va}"
    );
    assert_eq!(va["status"]["attached"], false);
}

#[tokio::test]
async fn detach_error_keeps_the_finalizer_and_is_reported() {
    let mut h = harness(ATTACHING).await;
    h.driver.fail_with(tonic::Code::Internal);
    h.add_pv(pv());
    let va = h.add_va(deleted_va());
    reconcile_detach(va, h.ctx.clone()).await.unwrap_err();
    assert_eq!(
        h.journal(),
        [
            "ControllerUnpublishVolume",
            "PATCH volumeattachments/va1/status"
        ]
    );
    let va = h.api.get(VA_PATH);
    assert_eq!(strings(&va["metadata"]["finalizers"]), [FIN]);
    assert_eq!(
        va["status"]["detachError"]["message"],
        "rpc error: code = Internal desc = injected"
    );
    assert!(
        va["status"]["detachError"]["errorCode"].is_null(),
        "no code on detach errors"
    );
    assert_eq!(va["status"]["attached"], true);
    assert!(h.wait_event("DetachFailed").await, "no DetachFailed event");
}

#[tokio::test]
async fn deleted_volume_attachment_without_our_finalizer_is_left_alone() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let mut foreign = deleted_va();
    foreign.metadata.finalizers = Some(vec!["someone.else/finalizer".into()]);
    let va = h.add_va(foreign);
    reconcile_detach(va, h.ctx.clone()).await.unwrap();
    assert!(h.journal().is_empty(), "{:?}", h.journal());
}

#[tokio::test]
async fn detach_uses_the_node_id_annotation_when_the_csinode_is_gone() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let mut va = deleted_va();
    va.spec.node_name = "gone-node".into();
    let va = h.add_va(va);
    reconcile_detach(va, h.ctx.clone()).await.unwrap();
    assert_eq!(h.driver.unpublished()[0].node_id, NODE_ID);
}

#[tokio::test]
async fn pv_finalizer_goes_once_the_pv_is_deleted_and_unused() {
    let mut h = harness(ATTACHING).await;
    let mut deleting = pv();
    deleting.metadata.finalizers = Some(vec!["kubernetes.io/pv-protection".into(), FIN.into()]);
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));

    // Still referenced by a VolumeAttachment: kept.
    let pv = h.add_pv(deleting.clone());
    h.add_va(deleted_va());
    reconcile_pv(pv, h.ctx.clone()).await.unwrap();
    assert!(h.journal().is_empty(), "{:?}", h.journal());

    // The VolumeAttachment is gone: removed with a guarded JSON patch.
    h.vas
        .apply_watcher_event(&watcher::Event::Delete(deleted_va()));
    let pv = h.add_pv(deleting);
    reconcile_pv(pv, h.ctx.clone()).await.unwrap();
    assert_eq!(h.journal(), ["PATCH persistentvolumes/pv1"]);
    assert_eq!(
        strings(&h.api.get(PV_PATH)["metadata"]["finalizers"]),
        ["kubernetes.io/pv-protection"]
    );
}

#[tokio::test]
async fn live_pv_keeps_its_finalizer() {
    let mut h = harness(ATTACHING).await;
    let mut live = pv();
    live.metadata.finalizers = Some(vec![FIN.into()]);
    let pv = h.add_pv(live);
    reconcile_pv(pv, h.ctx.clone()).await.unwrap();
    assert!(h.journal().is_empty(), "{:?}", h.journal());
}

fn attached_va() -> VolumeAttachment {
    let mut va = va();
    va.metadata.finalizers = Some(vec![FIN.into()]);
    va.metadata.annotations = Some(
        [(
            crate::names::NODE_ID_ANNOTATION.to_string(),
            NODE_ID.to_string(),
        )]
        .into(),
    );
    va.status = Some(VolumeAttachmentStatus {
        attached: true,
        ..Default::default()
    });
    va
}

#[tokio::test]
async fn forced_attach_publishes_again_when_the_status_is_what_reconciliation_saw() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let va = h.add_va(attached_va());
    // The reconciliation saw it attached while the driver did not list it.
    h.ctx.force.lock().unwrap().insert("va1".into(), true);
    reconcile_attach(va, h.ctx.clone()).await.unwrap();
    // The whole attach again (this PV lacked our finalizer).
    assert_eq!(
        h.journal(),
        [
            "PATCH persistentvolumes/pv1",
            "ControllerPublishVolume",
            "PATCH volumeattachments/va1/status"
        ]
    );
    assert!(
        h.ctx.force.lock().unwrap().is_empty(),
        "the mark is used up"
    );
}

#[tokio::test]
async fn forced_attach_is_dropped_once_an_attach_in_flight_settled_it() {
    let mut h = harness(ATTACHING).await;
    h.add_pv(pv());
    let va = h.add_va(attached_va());
    // The reconciliation saw it not attached yet (its attach was in
    // flight, the driver already listed it); it is attached now.
    h.ctx.force.lock().unwrap().insert("va1".into(), false);
    reconcile_attach(va, h.ctx.clone()).await.unwrap();
    assert!(h.journal().is_empty(), "{:?}", h.journal());
    assert!(
        h.ctx.force.lock().unwrap().is_empty(),
        "the mark is used up"
    );
}
