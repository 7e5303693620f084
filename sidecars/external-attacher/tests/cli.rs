//! The binary's command-line contract, checked on the real executable:
//! exit codes as upstream's Go flag handling produces them.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csi-attacher"))
}

#[test]
fn unknown_and_removed_flags_exit_2_with_usage() {
    for bad in [
        "-no-such-flag",
        "--connection-timeout=1s",
        "-leader-election-identity=x",
        "-master=https://127.0.0.1",
    ] {
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
        "-worker-threads=0",
        "-resync=x",
        "-max-entries=many",
    ] {
        let out = bin().arg(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn help_exits_0_and_lists_every_flag() {
    let out = bin().arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--csi-address",
        "--kubeconfig",
        "--resync",
        "--timeout",
        "--retry-interval-start",
        "--retry-interval-max",
        "--worker-threads",
        "--max-entries",
        "--default-fstype",
        "--reconcile-sync",
        "--max-grpc-log-length",
        "--feature-gates",
        "--leader-election",
        "--leader-election-namespace",
        "--leader-election-labels",
        "--kube-api-qps",
        "--kube-api-burst",
        "--http-endpoint",
        "--metrics-address",
        "--metrics-path",
        "--automaxprocs",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn version_prints_argv0_and_exits_0() {
    let out = bin().arg("-version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("csi-attacher"));
}

/// An unknown feature gate is refused before the driver is dialled, with
/// status 1 as upstream's `SetFromMap` failure.
#[test]
fn unknown_feature_gate_exits_1() {
    let out = bin()
        .args([
            "-feature-gates=NoSuchGate=true",
            "-csi-address=/nonexistent.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchGate"));
}
