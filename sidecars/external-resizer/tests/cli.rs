//! The binary's command-line contract, checked on the real executable:
//! exit codes and messages as upstream's Go flag handling produces them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csi-resizer"))
}

#[test]
fn unknown_and_removed_flags_exit_2_with_usage() {
    for bad in ["-no-such-flag", "-csiTimeout=10s"] {
        let out = bin().arg(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("usage"), "{err}");
    }
}

#[test]
fn bad_values_exit_2() {
    for bad in [
        "-timeout=soon",
        "-workers=0",
        "-handle-volume-inuse-error=maybe",
        "-resync-period=1",
    ] {
        let out = bin().arg(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn help_exits_0_and_lists_every_upstream_flag() {
    let out = bin().arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "automaxprocs",
        "csi-address",
        "extra-modify-metadata",
        "feature-gates",
        "handle-volume-inuse-error",
        "http-endpoint",
        "kube-api-burst",
        "kube-api-qps",
        "kubeconfig",
        "leader-election",
        "leader-election-labels",
        "leader-election-lease-duration",
        "leader-election-namespace",
        "leader-election-renew-deadline",
        "leader-election-retry-period",
        "log-flush-frequency",
        "log-json-info-buffer-size",
        "log-json-split-stream",
        "log-text-info-buffer-size",
        "log-text-split-stream",
        "logging-format",
        "master",
        "metrics-address",
        "metrics-path",
        "resync-period",
        "retry-interval-max",
        "retry-interval-start",
        "timeout",
        "version",
        "vmodule",
        "workers",
    ] {
        assert!(
            text.contains(&format!("--{flag}")),
            "--{flag} missing from --help"
        );
    }
}

#[test]
fn version_prints_argv0_and_version() {
    let out = bin().arg("-version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!(
            "{} {}",
            env!("CARGO_BIN_EXE_csi-resizer"),
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("only one of"));
}

#[test]
fn feature_gates_follow_upstream() {
    let bad_syntax = bin()
        .arg("--feature-gates=AnnotateFsResize=maybe")
        .output()
        .unwrap();
    assert_eq!(bad_syntax.status.code(), Some(2));
    let unknown = bin()
        .args([
            "--feature-gates=Topology=true",
            "--csi-address=/nonexistent.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("unrecognized feature gate: Topology")
    );
}

/// A Go-style command line parses: the process gets past flag parsing and
/// waits for the driver instead of exiting 2.
#[test]
fn go_style_command_line_is_accepted() {
    let socket = std::env::temp_dir().join(format!("csi-resizer-cli-{}.sock", std::process::id()));
    let mut child = bin()
        .args([
            &format!("-csi-address={}", socket.display()),
            "-v=5",
            "-leader-election",
            "-timeout=15s",
            "-workers=3",
            "-handle-volume-inuse-error=false",
            "-feature-gates=AnnotateFsResize=true,VolumeAttributesClass=true",
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
