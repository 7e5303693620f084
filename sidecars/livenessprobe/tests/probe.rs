//! The real binary against a fake CSI driver: start-up, every /healthz
//! answer upstream gives, and the metrics.

mod common;

use std::time::Duration;

use common::{Child, DRIVER, FakeDriver, ProbeMode, Served, free_port, get, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_livenessprobe");

fn args(socket: &std::path::Path, port: u16, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("-csi-address={}", socket.display()),
        format!("-http-endpoint=127.0.0.1:{port}"),
        "-probe-timeout=1s".to_owned(),
        "-v=5".to_owned(),
    ];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_as_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let port = free_port();
    // Started before the driver: it must wait, not exit and not serve.
    let mut probe = Child::spawn(BIN, &args(&socket, port, &[]), dir.path().join("probe.log"));
    assert!(
        probe
            .exit_within(Duration::from_millis(1500))
            .await
            .is_none(),
        "exited without a driver: {}",
        probe.log()
    );
    assert!(
        get(port, "/healthz").await.is_none(),
        "served before the driver answered"
    );

    let served = Served::start(FakeDriver::default(), &socket);
    let driver = served.driver.clone();
    let (code, head, body) = wait_for("/healthz", Duration::from_secs(10), || {
        get(port, "/healthz")
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ok"), "{}", probe.log());
    assert!(head.contains("text/plain; charset=utf-8"));

    let cases = [
        (ProbeMode::Unset, 200, "ok".to_owned()),
        (
            ProbeMode::NotReady,
            500,
            "driver responded but is not ready".to_owned(),
        ),
        (
            ProbeMode::Fail(tonic::Code::FailedPrecondition, "disk on fire"),
            500,
            "rpc error: code = FailedPrecondition desc = disk on fire".to_owned(),
        ),
        (
            ProbeMode::Slow(Duration::from_secs(3)),
            500,
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded".to_owned(),
        ),
        (ProbeMode::Ready, 200, "ok".to_owned()),
    ];
    for (mode, want_code, want_body) in cases {
        *driver.probe.lock().unwrap() = mode.clone();
        let started = std::time::Instant::now();
        let (code, _, body) = get(port, "/healthz").await.unwrap();
        assert_eq!(
            (code, body.as_str()),
            (want_code, want_body.as_str()),
            "{mode:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{mode:?} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(get(port, "/other").await.unwrap().0, 404);

    // A fresh connection per check: a removed socket is noticed.
    drop(served);
    std::fs::remove_file(&socket).unwrap();
    let (code, _, body) = get(port, "/healthz").await.unwrap();
    assert_eq!((code, body.as_str()), (500, "context deadline exceeded"));
    // And a driver back on a new socket is probed again.
    let _served = Served::start(driver, &socket);
    assert_eq!(get(port, "/healthz").await.unwrap().0, 200);

    let (code, head, metrics) = get(port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(head.contains("openmetrics"), "{head}");
    for needle in [
        "# HELP csi_sidecar_operations_seconds [ALPHA] Container Storage Interface operation duration with gRPC error code status total",
        &format!(
            "csi_sidecar_operations_seconds_count{{driver_name=\"{DRIVER}\",grpc_status_code=\"OK\",method_name=\"/csi.v1.Identity/Probe\"}}"
        ),
        &format!(
            "csi_sidecar_operations_seconds_count{{driver_name=\"{DRIVER}\",grpc_status_code=\"FailedPrecondition\",method_name=\"/csi.v1.Identity/Probe\"}} 1"
        ),
        &format!(
            "csi_sidecar_operations_seconds_count{{driver_name=\"{DRIVER}\",grpc_status_code=\"DeadlineExceeded\",method_name=\"/csi.v1.Identity/Probe\"}} 1"
        ),
        "csi_sidecar_operations_seconds_count{driver_name=\"unknown-driver\",grpc_status_code=\"OK\",method_name=\"/csi.v1.Identity/GetPluginInfo\"} 1",
        "# HELP process_start_time_seconds [ALPHA] Start time of the process since unix epoch in seconds.",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    assert!(
        !metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    assert!(probe.child.try_wait().unwrap().is_none(), "{}", probe.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_port_serves_no_metrics_and_metrics_address_does() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let _served = Served::start(FakeDriver::default(), &socket);
    let (health, metrics) = (free_port(), free_port());
    let _probe = Child::spawn(
        BIN,
        &[
            format!("--csi-address=unix://{}", socket.display()),
            format!("--health-port={health}"),
            format!("--metrics-address=127.0.0.1:{metrics}"),
            "--metrics-path=/m".to_owned(),
        ],
        dir.path().join("probe.log"),
    );
    let (code, _, _) = wait_for("/healthz", Duration::from_secs(10), || {
        get(health, "/healthz")
    })
    .await;
    assert_eq!(code, 200);
    assert_eq!(get(health, "/m").await.unwrap().0, 404);
    let (code, _, body) = get(metrics, "/m").await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("csi_sidecar_operations_seconds"), "{body}");
    assert_eq!(get(metrics, "/healthz").await.unwrap().0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_without_a_name_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let driver = FakeDriver::default();
    *driver.name.lock().unwrap() = String::new();
    let _served = Served::start(driver, &socket);
    let mut probe = Child::spawn(
        BIN,
        &args(&socket, free_port(), &[]),
        dir.path().join("p.log"),
    );
    let status = probe
        .exit_within(Duration::from_secs(10))
        .await
        .expect("still running");
    assert_eq!(status.code(), Some(1), "{}", probe.log());
    assert!(
        probe.log().contains("driver name is empty"),
        "{}",
        probe.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_health_port_exits_0_as_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let _served = Served::start(FakeDriver::default(), &socket);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut probe = Child::spawn(BIN, &args(&socket, port, &[]), dir.path().join("p.log"));
    let status = probe
        .exit_within(Duration::from_secs(10))
        .await
        .expect("still running");
    assert_eq!(status.code(), Some(0), "{}", probe.log());
}
