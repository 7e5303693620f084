//! The real binary next to a fake CSI driver, with this test playing the
//! kubelet on the registration socket: GetInfo, NotifyRegistrationStatus,
//! /healthz, SIGTERM, a stale socket, and beyond upstream the re-created
//! socket after a driver restart or a deleted socket.

#[path = "../../livenessprobe/tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Child, DRIVER, FakeDriver, Served, free_port, get, wait_for};
use csi_client::pluginregistration::registration_client::RegistrationClient;
use csi_client::pluginregistration::{InfoRequest, PluginInfo, RegistrationStatus};
use node_driver_registrar::socket::socket_id;

const BIN: &str = env!("CARGO_BIN_EXE_csi-node-driver-registrar");
const RECREATED: &str = "Re-creating the registration socket";
const HOST_PATH: &str = "/var/lib/kubelet/plugins/fake.csi.driver.io/csi.sock";

struct Setup {
    dir: tempfile::TempDir,
    driver: Served,
    registry: PathBuf,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let driver = Served::start(FakeDriver::default(), &dir.path().join("csi.sock"));
        let registry = dir.path().join("registry");
        std::fs::create_dir(&registry).unwrap();
        Setup {
            dir,
            driver,
            registry,
            port: free_port(),
        }
    }

    fn reg_socket(&self) -> PathBuf {
        self.registry.join(format!("{DRIVER}-reg.sock"))
    }

    fn spawn(&self) -> Child {
        Child::spawn(
            BIN,
            &[
                format!("-csi-address={}", self.driver.path.display()),
                format!("-kubelet-registration-path={HOST_PATH}"),
                format!("-plugin-registration-path={}", self.registry.display()),
                format!("-http-endpoint=127.0.0.1:{}", self.port),
                "-v=5".into(),
            ],
            self.dir.path().join("registrar.log"),
        )
    }
}

async fn kubelet(socket: &Path) -> Option<RegistrationClient<tonic::transport::Channel>> {
    let channel = csi_client::dial_once(socket.to_str()?).await.ok()?;
    Some(RegistrationClient::new(channel))
}

async fn get_info(socket: &Path) -> Option<PluginInfo> {
    let mut k = kubelet(socket).await?;
    k.get_info(InfoRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

async fn notify(socket: &Path, registered: bool, error: &str) -> Result<(), tonic::Status> {
    let mut k = kubelet(socket).await.expect("dial registration socket");
    k.notify_registration_status(RegistrationStatus {
        plugin_registered: registered,
        error: error.into(),
    })
    .await
    .map(|_| ())
}

/// Waits for the `n`th re-creation of the registration socket (the file
/// system may give the new socket the old one's inode, so the log says it).
async fn recreated(registrar: &Child, n: usize) {
    for _ in 0..200 {
        if registrar.log().matches(RECREATED).count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no re-created registration socket #{n}:\n{}",
        registrar.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_answers_health_and_deregisters_on_sigterm() {
    let s = Setup::new();
    // A socket left by an ungraceful stop is replaced.
    let stale = std::os::unix::net::UnixListener::bind(s.reg_socket()).unwrap();
    drop(stale);
    let mut registrar = s.spawn();
    let reg = s.reg_socket();
    let info = wait_for("GetInfo", Duration::from_secs(10), || get_info(&reg)).await;
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, DRIVER);
    assert_eq!(info.endpoint, HOST_PATH);
    assert_eq!(info.supported_versions, vec!["1.0.0".to_owned()]);
    let mode = std::fs::metadata(s.reg_socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    let (code, head, body) = wait_for("/healthz", Duration::from_secs(10), || {
        get(s.port, "/healthz")
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    assert!(head.contains("text/plain; charset=utf-8"));
    assert_eq!(
        get(s.port, "/metrics").await.unwrap().0,
        404,
        "the registrar serves no metrics"
    );

    notify(&s.reg_socket(), true, "").await.unwrap();
    notify(&s.reg_socket(), true, "").await.unwrap();
    let log = registrar.log();
    assert!(log.contains("The kubelet registered the driver"), "{log}");
    assert!(
        log.contains("CSI driver node info") && log.contains("node-1"),
        "{log}"
    );

    let pid = registrar.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = registrar
        .exit_within(Duration::from_secs(5))
        .await
        .expect("still running");
    assert_eq!(status.code(), Some(0), "{}", registrar.log());
    assert!(!s.reg_socket().exists(), "SIGTERM must remove the socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_registration_exits_1_before_answering() {
    let s = Setup::new();
    let mut registrar = s.spawn();
    let reg = s.reg_socket();
    wait_for("GetInfo", Duration::from_secs(10), || get_info(&reg)).await;
    let err = notify(
        &s.reg_socket(),
        false,
        "plugin registration failed with err: boom",
    )
    .await
    .unwrap_err();
    // The process is gone before it answers: the call sees the transport break.
    assert_ne!(err.code(), tonic::Code::Ok);
    let status = registrar
        .exit_within(Duration::from_secs(5))
        .await
        .expect("still running");
    assert_eq!(status.code(), Some(1));
    let log = registrar.log();
    assert!(
        log.contains("Registration process failed with error, restarting registration container"),
        "{log}"
    );
    assert!(log.contains("boom"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_restart_and_deleted_socket_renew_the_registration() {
    let mut s = Setup::new();
    let registrar = s.spawn();
    let reg = s.reg_socket();
    wait_for("the registration socket", Duration::from_secs(10), || {
        get_info(&reg)
    })
    .await;
    let first = socket_id(&reg).unwrap();
    notify(&s.reg_socket(), true, "").await.unwrap();

    // The driver dies and comes back (new node ID) on a new socket.
    let path = s.driver.path.clone();
    let driver = std::mem::replace(
        &mut s.driver,
        Served::start(FakeDriver::default(), &s.dir.path().join("other.sock")),
    )
    .stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        socket_id(&s.reg_socket()),
        Some(first),
        "re-registered while the driver was away"
    );
    assert!(!registrar.log().contains(RECREATED), "{}", registrar.log());
    *driver.node_id.lock().unwrap() = "node-2".into();
    s.driver = Served::start(driver, &path);
    recreated(&registrar, 1).await;
    let info = get_info(&s.reg_socket()).await.unwrap();
    assert_eq!(info.name, DRIVER);
    let log = registrar.log();
    assert!(
        log.contains("Lost the connection to the CSI driver"),
        "{log}"
    );
    assert!(log.contains("the CSI driver restarted"), "{log}");
    assert!(log.contains("node-2"), "{log}");

    // Someone deletes the registration socket: it comes back.
    std::fs::remove_file(s.reg_socket()).unwrap();
    recreated(&registrar, 2).await;
    assert!(get_info(&s.reg_socket()).await.is_some());
    assert!(
        registrar
            .log()
            .contains("the registration socket was removed"),
        "{}",
        registrar.log()
    );
    assert_eq!(get(s.port, "/healthz").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_the_way_exits_1() {
    let s = Setup::new();
    std::fs::write(s.reg_socket(), b"not a socket").unwrap();
    let mut registrar = s.spawn();
    let status = registrar
        .exit_within(Duration::from_secs(10))
        .await
        .expect("still running");
    assert_eq!(status.code(), Some(1));
    assert!(
        registrar.log().contains("but it's not a socket"),
        "{}",
        registrar.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_driver_exits_1_after_the_connect_timeout() {
    // 30 s as upstream would make this test slow; an empty name is as fatal
    // and immediate.
    let s = Setup::new();
    *s.driver.driver.name.lock().unwrap() = String::new();
    let mut registrar = s.spawn();
    let status = registrar
        .exit_within(Duration::from_secs(10))
        .await
        .expect("still running");
    assert_eq!(status.code(), Some(1));
    assert!(
        registrar.log().contains("driver name is empty"),
        "{}",
        registrar.log()
    );
}
