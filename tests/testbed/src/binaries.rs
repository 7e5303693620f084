//! Finding the Go binaries (etcd, kube-apiserver, kube-controller-manager,
//! kubectl, csi-testdriver): `CSI_TESTBED_BIN`, or `tests/testbed/build.sh core`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};

/// Environment variable naming a directory that already holds the binaries;
/// when set, `build.sh` is not run.
pub const BIN_ENV: &str = "CSI_TESTBED_BIN";

/// The binaries of `build.sh`'s `core` set.
pub const CORE_BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "csi-testdriver",
];

/// The binaries of `build.sh`'s `node` set (a kubelet node's own programs
/// and those packed into its images).
pub const NODE_BINARIES: [&str; 7] = [
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "csi-registrar",
    "pause",
    "csi-testdriver",
];

/// The workspace root, derived from this crate's manifest directory at
/// compile time (`<root>/tests/testbed`).
pub fn repo_root() -> PathBuf {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    raw.canonicalize().unwrap_or(raw)
}

/// Path of `tests/testbed/build.sh`.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("build.sh")
}

/// The shell command that builds the core binaries, for error messages.
pub fn build_command() -> String {
    set_build_command("core")
}

/// The shell command that builds `set` (`core`, `node`, ...).
pub(crate) fn set_build_command(set: &str) -> String {
    format!("bash {} {set}", build_script().display())
}

/// Finds the binary directory and checks that every name in `required` is an
/// executable file there.
///
/// Uses `$CSI_TESTBED_BIN` when set and non-empty; otherwise runs
/// `bash tests/testbed/build.sh core` (its stderr goes straight to this
/// process's stderr, progress included; a cached build returns at once) and
/// takes the last line of its stdout.
///
/// Errors: [`Error::Build`] if the script cannot run or fails,
/// [`Error::MissingBinary`] naming the first missing binary.
pub async fn locate(required: &[&str]) -> Result<PathBuf> {
    locate_set("core", required).await
}

/// [`locate`] for `build.sh`'s set `set`.
pub(crate) async fn locate_set(set: &str, required: &[&str]) -> Result<PathBuf> {
    let dir = match std::env::var(BIN_ENV) {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => run_build_script(set).await?,
    };
    check_binaries_for(&dir, required, set)?;
    Ok(dir)
}

/// Checks that every name in `required` is a file in `dir`.
pub(crate) fn check_binaries(dir: &Path, required: &[&str]) -> Result<()> {
    check_binaries_for(dir, required, "core")
}

fn check_binaries_for(dir: &Path, required: &[&str], set: &str) -> Result<()> {
    for name in required {
        if !dir.join(name).is_file() {
            return Err(Error::MissingBinary {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                command: set_build_command(set),
            });
        }
    }
    Ok(())
}

async fn run_build_script(set: &str) -> Result<PathBuf> {
    let command = set_build_command(set);
    let mut child = tokio::process::Command::new("bash")
        .arg(build_script())
        .arg(set)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Build {
            command: command.clone(),
            reason: format!("cannot run bash: {e}"),
        })?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .await
            .map_err(|e| Error::Build {
                command: command.clone(),
                reason: format!("reading its stdout: {e}"),
            })?;
    }
    let status = child.wait().await.map_err(|e| Error::Build {
        command: command.clone(),
        reason: format!("waiting for it: {e}"),
    })?;
    if !status.success() {
        return Err(Error::Build {
            command,
            reason: format!("{status} (its stderr is above)"),
        });
    }
    last_line(&out).map(PathBuf::from).ok_or(Error::Build {
        command,
        reason: "it printed no binary directory on stdout".into(),
    })
}

/// The last non-blank line of `text`, trimmed.
fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(last_line("x\n/a/b\n\n"), Some("/a/b"));
        assert_eq!(last_line("  \n"), None);
    }

    #[test]
    fn missing_binary_names_it_and_the_command() {
        let err = check_binaries(Path::new("/nonexistent"), &["kube-apiserver"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("kube-apiserver"), "{msg}");
        assert!(msg.contains("build.sh core"), "{msg}");
    }

    #[test]
    fn repo_root_has_the_workspace_manifest() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(build_script().is_file());
    }
}
