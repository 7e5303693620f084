//! Static builds of our own binaries, for the node's images: a one-binary
//! image has no C library, so the binary must not need one.

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, Result};

/// The flags of [`static_binary`]: glibc linked in, and no position
/// independence, so the binary carries no relocations to apply at start
/// (a static-pie binary dirties every page of its relocated data, about
/// 4 MiB of RSS for our node sidecars).
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// Environment variable naming a prebuilt static binary instead, as
/// `CSI_E2E_STATIC_<BIN>` with the binary's name upper-cased and `-` as
/// `_` (e.g. `CSI_E2E_STATIC_LIVENESSPROBE`).
pub fn static_binary_env(bin: &str) -> String {
    format!("CSI_E2E_STATIC_{}", bin.to_uppercase().replace('-', "_"))
}

/// Builds binary `bin` of workspace package `package` statically
/// (profile `node-release`: small, LTO, no unwinding; [`STATIC_RUSTFLAGS`]; for this machine's
/// `<arch>-unknown-linux-gnu`) with the cargo running the tests, and
/// returns its path; the variable of [`static_binary_env`] overrides it.
/// A built binary costs only cargo's up-to-date check.
///
/// Errors: [`Error::Io`] with cargo's output when the build fails.
pub fn static_binary(package: &str, bin: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(static_binary_env(bin)) {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let out = Command::new(cargo)
        .current_dir(crate::repo_root())
        .args([
            "build",
            "--profile",
            "node-release",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", &target, "-p", package, "--bin", bin])
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        .output()
        .map_err(|e| Error::io("run cargo build for a static binary", e))?;
    let failed = |why: String| {
        Error::io(
            format!(
                "cargo build --profile node-release --target {target} -p {package} --bin {bin}"
            ),
            std::io::Error::other(why),
        )
    };
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| failed(format!("no executable named {bin} in cargo's output")))
}
