//! The binary's command-line contract, checked on the real executable:
//! exit codes as upstream's Go flag handling and `klog.Fatal` produce them.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snapshot-controller"))
}

#[test]
fn sidecar_flags_and_bad_values_exit_2() {
    for bad in [
        "-no-such-flag",
        "-csi-address=/run/csi/socket",
        "-metrics-address=:8080",
        "-worker-threads=0",
        "-resync-period=1",
        "-prevent-volume-mode-conversion=maybe",
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
        "kubeconfig",
        "resync-period",
        "version",
        "worker-threads",
        "leader-election",
        "leader-election-namespace",
        "leader-election-lease-duration",
        "leader-election-renew-deadline",
        "leader-election-retry-period",
        "kube-api-qps",
        "kube-api-burst",
        "http-endpoint",
        "metrics-path",
        "retry-interval-start",
        "retry-interval-max",
        "enable-distributed-snapshotting",
        "prevent-volume-mode-conversion",
        "retry-crd-interval-max",
        "feature-gates",
        "automaxprocs",
    ] {
        assert!(
            text.contains(&format!("--{flag}")),
            "--{flag} missing:\n{text}"
        );
    }
}

#[test]
fn version_prints_argv0_and_version() {
    let out = bin().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_end().ends_with(&format!(
            "snapshot-controller {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[test]
fn unknown_feature_gate_is_fatal() {
    let out = bin()
        .arg("--feature-gates=NoSuchGate=true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn no_api_server_exits_1() {
    let dir = std::env::temp_dir().join(format!("snapc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    // An API server that refuses connections: the CRD wait gives up.
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = bin()
        .arg(format!("--kubeconfig={}", kc.display()))
        .arg("--retry-crd-interval-max=1s")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
