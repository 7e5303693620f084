//! The binary's command-line contract, checked on the real executable:
//! exit codes and messages as upstream's Go flag handling produces them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csi-provisioner"))
}

#[test]
fn unknown_flag_exits_2_with_usage() {
    let out = bin().arg("-no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-flag"), "{err}");
    assert!(err.to_lowercase().contains("usage"), "{err}");
}

#[test]
fn bad_value_exits_2() {
    let out = bin().arg("-timeout=soon").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// 0 workers would run nothing upstream and "unlimited" in kube-runtime;
/// it is refused at parse time like any malformed flag value.
#[test]
fn worker_threads_out_of_range_exits_2() {
    for bad in ["-worker-threads=0", "-worker-threads=65536"] {
        let out = bin().arg(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must be between 1 and 65535"), "{err}");
    }
}

#[test]
fn help_exits_0_and_lists_every_flag() {
    let out = bin().arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--csi-address"), "{text}");
    for flag in [
        "--enable-capacity",
        "--node-deployment",
        "--snapshot-orphan-sweep-interval",
        "--feature-gates",
        "--leader-election-labels",
        "--kube-api-capacity-qps",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
    assert!(
        text.contains("no effect"),
        "--enable-pprof should say it has no effect"
    );
}

#[test]
fn version_prints_argv0_and_version() {
    let out = bin().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!(
            "{} {}",
            env!("CARGO_BIN_EXE_csi-provisioner"),
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn metrics_address_and_http_endpoint_together_exit_1() {
    let out = bin()
        .args([
            "--metrics-address=:8080",
            "--http-endpoint=:8081",
            "--csi-address=/nonexistent.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only one of"), "{err}");
}

/// The command line from the issue parses: the process gets past flag
/// parsing and waits for the driver instead of exiting 2.
#[test]
fn go_style_command_line_is_accepted() {
    let dir = std::env::temp_dir().join(format!("csi-prov-cli-{}", std::process::id()));
    let socket = dir.join("missing.sock");
    let mut child = bin()
        .args([
            &format!("-csi-address={}", socket.display()),
            "-v=5",
            "-leader-election",
            "-timeout=15s",
            "-worker-threads=10",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn feature_gates_follow_upstream() {
    let bad_syntax = bin()
        .arg("--feature-gates=Topology=maybe")
        .output()
        .unwrap();
    assert_eq!(bad_syntax.status.code(), Some(2));
    let unknown = bin()
        .args([
            "--feature-gates=NoSuch=true",
            "--csi-address=/nonexistent.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unrecognized feature gate: NoSuch"));
}
