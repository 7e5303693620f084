//! The binary's command line as upstream's Go flag handling answers it.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livenessprobe"))
}

#[test]
fn unknown_flags_and_version_exit_2_with_usage() {
    // livenessprobe has no --version: upstream exits 2 on it.
    for flag in ["-no-such-flag", "--version", "-kubeconfig=/k"] {
        let out = bin().arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("usage"), "{flag}: {err}");
    }
    let out = bin().arg("-probe-timeout=3").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_exits_0_and_lists_every_flag() {
    let out = bin().arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--csi-address",
        "--probe-timeout",
        "--health-port",
        "--http-endpoint",
        "--metrics-address",
        "--metrics-path",
        "--automaxprocs",
        "--v",
        "--logging-format",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn conflicting_listeners_exit_1() {
    for args in [
        ["--health-port=1234", "--http-endpoint=:9808"],
        ["--metrics-address=:1", "--http-endpoint=:9808"],
    ] {
        let out = bin()
            .args(args)
            .arg("--csi-address=/nonexistent.sock")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("only one of"), "{err}");
    }
}
