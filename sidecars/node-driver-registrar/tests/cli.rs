//! The binary's command line as upstream's Go flag handling answers it.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csi-node-driver-registrar"))
}

#[test]
fn bad_flags_exit_2_with_usage() {
    for flag in ["-no-such-flag", "-kubeconfig=/k"] {
        let out = bin().arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("usage"), "{flag}: {err}");
    }
    // A bare number is not a Go duration.
    for flag in ["-timeout=60", "-health-port=x"] {
        let out = bin().arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid value"),
            "{flag}"
        );
    }
}

#[test]
fn help_exits_0_and_lists_every_flag() {
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--csi-address",
        "--kubelet-registration-path",
        "--plugin-registration-path",
        "--timeout",
        "--http-endpoint",
        "--health-port",
        "--enable-pprof",
        "--mode",
        "--connection-timeout",
        "--version",
        "--automaxprocs",
        "--v",
        "--logging-format",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn version_prints_argv0_and_version_before_any_check() {
    let out = bin().arg("-version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "{} {}",
            env!("CARGO_BIN_EXE_csi-node-driver-registrar"),
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn missing_registration_path_exits_1_even_in_probe_mode() {
    for extra in [&[][..], &["--mode=kubelet-registration-probe"]] {
        let out = bin().args(extra).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("kubelet-registration-path is a required parameter"),
            "{err}"
        );
    }
}

#[test]
fn probe_mode_exits_0_at_once() {
    let out = bin()
        .args([
            "--kubelet-registration-path=/var/lib/kubelet/plugins/x/csi.sock",
            "--mode=kubelet-registration-probe",
            "--csi-address=/nonexistent.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn health_port_with_http_endpoint_exits_1() {
    let out = bin()
        .args([
            "--kubelet-registration-path=/k",
            "--health-port=9809",
            "--http-endpoint=:9809",
            "--csi-address=/nonexistent.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only one of"));
}
