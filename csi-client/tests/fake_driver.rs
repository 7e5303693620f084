//! End-to-end tests against a fake CSI driver served on a Unix socket.

use csi::controller_service_capability::rpc::Type as CtrlCap;
use csi::plugin_capability::service::Type as PluginCap;
use csi_client::csi::v1 as csi;
use csi_client::csi::v1::controller_server::{Controller, ControllerServer};
use csi_client::csi::v1::identity_server::{Identity, IdentityServer};
use csi_client::{ConnectOptions, Connection, CsiMetrics, Error, LossPolicy, rpc};
use prometheus_client::registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Code, Request, Response, Status};

const DRIVER: &str = "fake.csi.driver.io";

#[derive(Default)]
struct FakeState {
    not_ready_probes: AtomicUsize,
    probes: AtomicUsize,
    create_delay: Mutex<Duration>,
    create_grpc_timeout: Mutex<Option<String>>,
}

#[derive(Clone, Default)]
struct FakeDriver(Arc<FakeState>);

fn service_cap(t: PluginCap) -> csi::PluginCapability {
    csi::PluginCapability {
        r#type: Some(csi::plugin_capability::Type::Service(
            csi::plugin_capability::Service { r#type: t as i32 },
        )),
    }
}

fn ctrl_cap(t: CtrlCap) -> csi::ControllerServiceCapability {
    csi::ControllerServiceCapability {
        r#type: Some(csi::controller_service_capability::Type::Rpc(
            csi::controller_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl Identity for FakeDriver {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: DRIVER.into(),
            vendor_version: "v0.0.1".into(),
            ..Default::default()
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: vec![
                service_cap(PluginCap::ControllerService),
                csi::PluginCapability { r#type: None },
                csi::PluginCapability {
                    r#type: Some(csi::plugin_capability::Type::VolumeExpansion(
                        csi::plugin_capability::VolumeExpansion { r#type: 1 },
                    )),
                },
            ],
        }))
    }

    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        self.0.probes.fetch_add(1, Ordering::SeqCst);
        let not_ready = self
            .0
            .not_ready_probes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Ok(Response::new(csi::ProbeResponse {
            ready: Some(!not_ready),
        }))
    }
}

#[tonic::async_trait]
impl Controller for FakeDriver {
    async fn controller_get_capabilities(
        &self,
        _: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities: vec![
                ctrl_cap(CtrlCap::CreateDeleteVolume),
                ctrl_cap(CtrlCap::ListVolumes),
                csi::ControllerServiceCapability { r#type: None },
            ],
        }))
    }

    async fn create_volume(
        &self,
        request: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *self.0.create_grpc_timeout.lock().unwrap() = timeout;
        let delay = *self.0.create_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let req = request.into_inner();
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(csi::Volume {
                volume_id: format!("id-{}", req.name),
                capacity_bytes: 1024,
                ..Default::default()
            }),
        }))
    }
}

/// A fake driver listening on `<tempdir>/csi.sock`; stops when dropped.
struct Served {
    driver: FakeDriver,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start(driver: FakeDriver) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let mut served = Served {
            driver,
            dir,
            stop: None,
            task: None,
        };
        served.listen().await;
        served
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("csi.sock")
    }

    async fn listen(&mut self) {
        let path = self.socket();
        let _ = std::fs::remove_file(&path);
        let incoming = UnixListenerStream::new(UnixListener::bind(&path).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(IdentityServer::new(self.driver.clone()))
            .add_service(ControllerServer::new(self.driver.clone()))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        self.task = Some(tokio::spawn(async move {
            server.await.unwrap();
        }));
        self.stop = Some(stop);
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

fn options(address: impl Into<String>) -> ConnectOptions {
    let mut opts = ConnectOptions::new(address, Duration::from_secs(5));
    opts.connect_timeout = Some(Duration::from_secs(10));
    opts
}

async fn connect(path: &Path) -> Connection {
    Connection::connect(options(format!("unix://{}", path.display())))
        .await
        .unwrap()
}

#[tokio::test]
async fn driver_name_and_capabilities_over_both_address_forms() {
    let served = Served::start(FakeDriver::default()).await;
    let socket = served.socket();
    for address in [
        format!("unix://{}", socket.display()),
        socket.display().to_string(),
    ] {
        let conn = Connection::connect(options(address.clone())).await.unwrap();
        assert_eq!(conn.address(), address);
        assert_eq!(rpc::driver_name(&conn).await.unwrap(), DRIVER);

        let plugin = rpc::plugin_capabilities(&conn).await.unwrap();
        assert!(plugin.has(PluginCap::ControllerService));
        assert!(!plugin.has(PluginCap::VolumeAccessibilityConstraints));
        assert_eq!(plugin.len(), 1);

        let controller = rpc::controller_capabilities(&conn).await.unwrap();
        assert!(controller.has(CtrlCap::CreateDeleteVolume));
        assert!(controller.has(CtrlCap::ListVolumes));
        assert!(!controller.has(CtrlCap::GetCapacity));
        assert!(rpc::probe(&conn).await.unwrap());
    }
}

#[tokio::test]
async fn unimplemented_rpc_reports_which_call_failed() {
    let served = Served::start(FakeDriver::default()).await;
    let conn = connect(&served.socket()).await;
    // The fake serves no Node service at all.
    let err = rpc::node_capabilities(&conn).await.unwrap_err();
    match &err {
        Error::Rpc { rpc, status } => {
            assert_eq!(rpc.to_string(), "/csi.v1.Node/NodeGetCapabilities");
            assert_eq!(status.code(), Code::Unimplemented);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_final());
}

#[tokio::test]
async fn probe_forever_retries_until_ready() {
    let driver = FakeDriver::default();
    driver.0.not_ready_probes.store(2, Ordering::SeqCst);
    let served = Served::start(driver.clone()).await;
    let conn = connect(&served.socket()).await;

    let started = Instant::now();
    rpc::probe_forever(&conn, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(driver.0.probes.load(Ordering::SeqCst), 3);
    // Immediate first probe, then one per second.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[tokio::test]
async fn slow_driver_gets_deadline_exceeded_and_metrics_count_calls() {
    let driver = FakeDriver::default();
    *driver.0.create_delay.lock().unwrap() = Duration::from_secs(3);
    let served = Served::start(driver.clone()).await;

    let mut registry = Registry::default();
    let metrics = CsiMetrics::register(&mut registry, csi_client::metrics::SIDECAR_SUBSYSTEM);
    let mut opts = options(served.socket().display().to_string());
    opts.timeout = Duration::from_millis(300);
    opts.metrics = Some(metrics);
    let conn = Connection::connect(opts).await.unwrap();

    // Before the name is known the label says so, as upstream does.
    let name = rpc::driver_name(&conn).await.unwrap();
    conn.set_driver_name(&name);
    assert_eq!(conn.driver_name(), DRIVER);

    let started = Instant::now();
    let status = conn
        .create_volume(csi::CreateVolumeRequest {
            name: "pvc-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let sent = driver.0.create_grpc_timeout.lock().unwrap().clone();
    let sent = sent.expect("grpc-timeout header not sent");
    assert!(
        sent.ends_with('m') || sent.ends_with('u') || sent.ends_with('n'),
        "{sent}"
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let count = |driver: &str, code: &str, method: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("csi_sidecar_operations_seconds_count{")
                    && l.contains(&format!("driver_name=\"{driver}\""))
                    && l.contains(&format!("grpc_status_code=\"{code}\""))
                    && l.contains(&format!("method_name=\"{method}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        count("unknown-driver", "OK", "/csi.v1.Identity/GetPluginInfo").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count(
            DRIVER,
            "DeadlineExceeded",
            "/csi.v1.Controller/CreateVolume"
        )
        .as_deref(),
        Some("1"),
        "{text}"
    );
}

#[tokio::test]
async fn connect_timeout_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix://{}", dir.path().join("missing.sock").display());
    let mut opts = options(address.clone());
    opts.connect_timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let err = Connection::connect(opts).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&address), "{text}");
    assert!(text.contains("timed out"), "{text}");
}

#[tokio::test]
async fn loss_is_noticed_without_an_rpc_and_reconnect_recovers() {
    let mut served = Served::start(FakeDriver::default()).await;
    let losses = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&losses);
    let mut opts = options(served.socket().display().to_string());
    opts.timeout = Duration::from_secs(2);
    opts.on_loss = LossPolicy::Callback(Arc::new(move || {
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    let conn = Connection::connect(opts).await.unwrap();
    assert!(rpc::probe(&conn).await.unwrap());
    assert!(!conn.is_lost());

    served.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while losses.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(losses.load(Ordering::SeqCst), 1);
    assert!(conn.is_lost());

    let status = conn.probe(csi::ProbeRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(losses.load(Ordering::SeqCst), 1, "loss reported twice");

    served.listen().await;
    assert!(rpc::probe(&conn).await.unwrap());
    assert!(!conn.is_lost());
    assert_eq!(losses.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn migrated_handles_label_their_calls_once_the_label_is_on() {
    let served = Served::start(FakeDriver::default()).await;
    let mut registry = Registry::default();
    let metrics = CsiMetrics::register(&mut registry, csi_client::metrics::SIDECAR_SUBSYSTEM);
    let mut opts = options(served.socket().display().to_string());
    opts.metrics = Some(metrics.clone());
    let conn = Connection::connect(opts).await.unwrap();
    assert!(!conn.is_for_migrated());

    let name = rpc::driver_name(&conn).await.unwrap();
    conn.set_driver_name(&name);
    // The driver turned out to be a migration target.
    metrics.enable_migration_label();
    assert!(rpc::probe(&conn).await.unwrap());
    let migrated = conn.for_migrated(true);
    assert!(migrated.is_for_migrated());
    assert_eq!(
        migrated.driver_name(),
        DRIVER,
        "handles share the driver name"
    );
    for handle in [&migrated, &conn] {
        handle
            .create_volume(csi::CreateVolumeRequest {
                name: "pvc-3".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    migrated
        .for_migrated(false)
        .probe(csi::ProbeRequest {})
        .await
        .unwrap();

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let count = |method: &str, migrated: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("csi_sidecar_operations_seconds_count{")
                    && l.contains(&format!("method_name=\"{method}\""))
                    && l.contains(&format!("migrated=\"{migrated}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        count("/csi.v1.Controller/CreateVolume", "true").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count("/csi.v1.Controller/CreateVolume", "false").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count("/csi.v1.Identity/Probe", "false").as_deref(),
        Some("2"),
        "{text}"
    );
    assert_eq!(count("/csi.v1.Identity/Probe", "true"), None, "{text}");
    assert!(
        !text.contains("GetPluginInfo"),
        "calls before the switch are not served, as upstream:\n{text}"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_logs_calls_with_secrets_stripped() {
    let served = Served::start(FakeDriver::default()).await;
    let conn = connect(&served.socket()).await;

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("csi_client=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    conn.create_volume(csi::CreateVolumeRequest {
        name: "pvc-2".into(),
        secrets: [("password".to_owned(), "hunter2".to_owned())].into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("GRPC call"), "{logs}");
    assert!(
        logs.contains("method=\"/csi.v1.Controller/CreateVolume\""),
        "{logs}"
    );
    assert!(logs.contains(r#""secrets":"***stripped***""#), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
    assert!(logs.contains("GRPC response"), "{logs}");
    assert!(logs.contains(r#""volume_id":"id-pvc-2""#), "{logs}");
}

const EXIT_CHILD_ENV: &str = "CSI_CLIENT_TEST_EXIT_CHILD";

/// Runs itself in a child process: with `LossPolicy::Exit` the child must
/// exit 1 as soon as the driver goes away, without any RPC in flight.
#[tokio::test]
async fn exit_policy_exits_with_status_1() {
    if std::env::var_os(EXIT_CHILD_ENV).is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        let mut served = Served::start(FakeDriver::default()).await;
        let mut opts = options(served.socket().display().to_string());
        opts.on_loss = LossPolicy::Exit;
        let conn = Connection::connect(opts).await.unwrap();
        assert!(rpc::probe(&conn).await.unwrap());
        served.shutdown().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        std::process::exit(3);
    }
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exit_policy_exits_with_status_1", "--nocapture"])
        .env(EXIT_CHILD_ENV, "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Lost connection to CSI driver, exiting"),
        "{stderr}"
    );
}
