//! `--max-grpc-log-length` on the real executable: with `-v=5` the sidecar
//! logs every CSI response at start-up (Probe, GetPluginInfo, the
//! capabilities); a positive length caps each logged response with
//! csi-lib-utils' marker, the default (-1) logs them whole. The driver is
//! the test bed's csi-testdriver; no API server is needed, since the start
//! stops at the missing kubeconfig right after the driver calls.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

/// The test bed's binary directory: `$CSI_TESTBED_BIN`, else what
/// `tests/testbed/build.sh core` prints last (a cached build returns at once).
fn testbed_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(testbed::BIN_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let out = Command::new("bash")
        .arg(testbed::build_script())
        .arg("core")
        .stderr(Stdio::inherit())
        .output()
        .context("run tests/testbed/build.sh core")?;
    ensure!(out.status.success(), "tests/testbed/build.sh core failed");
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or(""),
    ))
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// stderr of `csi-attacher -v=5 <extra>` against the driver on `socket`.
fn attacher_log(socket: &std::path::Path, extra: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_csi-attacher"))
        .arg(format!("--csi-address={}", socket.display()))
        .args(["-v=5", "--kubeconfig=/nonexistent/kubeconfig"])
        .args(extra)
        .env_remove("KUBECONFIG")
        .output()?;
    ensure!(
        out.status.code() == Some(1),
        "expected exit 1 at the kubeconfig, got {:?}",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn max_grpc_log_length_caps_logged_responses() -> anyhow::Result<()> {
    let bin = testbed_bin()?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("csi.sock");
    let _driver = Driver(
        Command::new(bin.join("csi-testdriver"))
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .arg("--enable-attach")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start csi-testdriver")?,
    );
    let t0 = Instant::now();
    while !socket.exists() {
        ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "csi-testdriver socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let marker = "[response body too large, log capped to 20 chars]";
    let capped = attacher_log(&socket, &["--max-grpc-log-length=20"])?;
    let responses: Vec<&str> = capped
        .lines()
        .filter(|l| l.contains("GRPC response"))
        .collect();
    ensure!(responses.len() >= 3, "too few logged responses:\n{capped}");
    let capabilities = responses
        .iter()
        .find(|l| l.contains(marker))
        .with_context(|| format!("no capped response:\n{capped}"))?;
    // The capped text is the first 20 characters of the JSON.
    ensure!(
        !capabilities.contains("PUBLISH_UNPUBLISH_VOLUME"),
        "{capabilities}"
    );

    let whole = attacher_log(&socket, &[])?;
    ensure!(
        !whole.contains("log capped"),
        "capped without the flag:\n{whole}"
    );
    ensure!(
        whole
            .lines()
            .any(|l| l.contains("GRPC response") && l.contains("PUBLISH_UNPUBLISH_VOLUME")),
        "the capabilities response is not logged whole:\n{whole}"
    );
    Ok(())
}
