//! The binary's command-line contract, checked on the real executable:
//! every flag of upstream v8.6.0's csi-snapshotter, and its exit codes.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csi-snapshotter"))
}

#[test]
fn unknown_and_removed_flags_exit_2_with_usage() {
    for bad in [
        "-no-such-flag",
        "--enable-volume-group-snapshots",
        "--master=http://x",
        "--connection-timeout=10s",
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
        "-extra-create-metadata=maybe",
        "-snapshot-name-uuid-length=x",
        "-resync-period=1",
    ] {
        let out = bin().arg(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn help_lists_every_upstream_flag() {
    let out = bin().arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    // `csi-snapshotter -h` of upstream v8.6.0, every flag.
    for flag in [
        "automaxprocs",
        "csi-address",
        "extra-create-metadata",
        "feature-gates",
        "groupsnapshot-name-prefix",
        "groupsnapshot-name-uuid-length",
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
        "metrics-address",
        "metrics-path",
        "node-deployment",
        "resync-period",
        "retry-interval-max",
        "retry-interval-start",
        "snapshot-name-prefix",
        "snapshot-name-uuid-length",
        "timeout",
        "v",
        "version",
        "vmodule",
        "worker-threads",
    ] {
        let long = format!("--{flag}");
        // Clap prints `--flag <VALUE>` or `--flag[=<VALUE>]`.
        let listed = text
            .split([' ', ',', '\n'])
            .map(|w| w.split(['[', '=']).next().unwrap_or(""))
            .any(|w| w == long);
        assert!(listed, "--{flag} missing from --help");
    }
}

#[test]
fn upstream_start_up_checks_exit_1_or_255() {
    let run = |args: &[&str]| {
        bin()
            .args(args)
            .arg("--csi-address=/nonexistent.sock")
            .output()
            .unwrap()
    };
    let out = run(&["--node-deployment", "--leader-election"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node-deployment"));
    let out = run(&["--snapshot-name-prefix="]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["--feature-gates=Topology=true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized feature gate: Topology"));
    let out = bin()
        .args(["--node-deployment", "--csi-address=/nonexistent.sock"])
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NODE_NAME"));
}

#[test]
fn version_prints_argv0_and_version() {
    let out = bin().arg("-version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "{} {}",
            env!("CARGO_BIN_EXE_csi-snapshotter"),
            env!("CARGO_PKG_VERSION")
        )
    );
}
