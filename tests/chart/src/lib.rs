//! The Helm chart `charts/csi-sidecars`: its values as Rust types
//! ([`values::Values`]), the generated `values.schema.json` ([`schema_text`]),
//! the snapshot CRDs vendored into its `crds/` from the pinned Go module
//! ([`vendor_crds`]) and the helm binary of the test bed ([`helm`]).
//!
//! `cargo run -p chart --bin chart-schema` rewrites the schema;
//! `-- --vendor-crds` also writes `files/snapshot-crds/`. The tests in `tests/` lint and
//! render the chart, dry-run it against a real API server and install it on
//! the test bed's node.

pub mod values;

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// File name of the schema in the chart directory.
pub const SCHEMA_FILE: &str = "values.schema.json";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The test bed could not provide a binary or module.
    #[error(transparent)]
    Testbed(#[from] testbed::Error),
    /// `build-chart.sh` failed or printed no directory.
    #[error("{command} failed: {reason}")]
    Build {
        /// The command to run by hand.
        command: String,
        /// Why.
        reason: String,
    },
}

/// `charts/csi-sidecars` in this workspace.
pub fn chart_dir() -> PathBuf {
    testbed::repo_root().join("charts/csi-sidecars")
}

/// The JSON schema of [`values::Values`], with a note that it is generated.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(values::Values))
        .expect("a schemars schema is JSON");
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$comment".into(),
            "Generated from tests/chart/src/values.rs by `cargo run -p chart --bin chart-schema`; do not edit."
                .into(),
        );
    }
    schema
}

/// [`schema`] as the text of `values.schema.json` (pretty, final newline).
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("JSON serializes");
    text.push('\n');
    text
}

/// `tests/testbed/build-chart.sh`.
pub fn build_chart_script() -> PathBuf {
    testbed::repo_root().join("tests/testbed/build-chart.sh")
}

/// The directory holding `helm` and `kube-scheduler` (and the test bed's
/// core binaries): `$CSI_TESTBED_BIN` when it has both, else what
/// `bash tests/testbed/build-chart.sh` prints (building them once).
///
/// Errors: [`Error::Build`] with the command to run.
pub fn tools_dir() -> Result<PathBuf, Error> {
    // One build check per test process.
    static DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut cached = DIR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = cached.as_ref() {
        return Ok(dir.clone());
    }
    let dir = locate_tools()?;
    *cached = Some(dir.clone());
    Ok(dir)
}

fn locate_tools() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os(testbed::BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.join("helm").is_file() && dir.join("kube-scheduler").is_file() {
            return Ok(dir);
        }
    }
    let command = format!("bash {}", build_chart_script().display());
    let out = std::process::Command::new("bash")
        .arg(build_chart_script())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Build {
            command: command.clone(),
            reason: format!("cannot run bash: {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Build {
            command,
            reason: format!("{} (its stderr is above)", out.status),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Error::Build {
            command: command.clone(),
            reason: "it printed no directory".into(),
        })?;
    if !dir.join("helm").is_file() {
        return Err(Error::Build {
            command,
            reason: format!("no helm in {}", dir.display()),
        });
    }
    Ok(dir)
}

/// Path of the test bed's helm ([`tools_dir`]).
///
/// Errors: as [`tools_dir`].
pub fn helm() -> Result<PathBuf, Error> {
    Ok(tools_dir()?.join("helm"))
}

/// Directory of the vendored snapshot CRDs in the chart.
pub const SNAPSHOT_CRDS_DIR: &str = "files/snapshot-crds";

/// Copies the snapshot CRDs ([`testbed::SNAPSHOT_CRD_FILES`], from
/// external-snapshotter/client/v8 as `tests/testbed/go/go.mod` pins it) into
/// `<chart>/files/snapshot-crds/`, which the chart renders (kept on
/// uninstall) when `snapshotController.enabled` and `installCRDs`. They are
/// not committed: upstream's files stay upstream's, and this writes them
/// from the pinned module. Returns the written paths.
///
/// Errors: [`Error::Testbed`] when the module is not in the module cache
/// (its message has the `go mod download` command), [`Error::Io`].
pub async fn vendor_crds(chart: &Path) -> Result<Vec<PathBuf>, Error> {
    let module = testbed::snapshot_client_module_dir().await?;
    let dir = chart.join(SNAPSHOT_CRDS_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        what: format!("mkdir {}", dir.display()),
        source,
    })?;
    let mut written = Vec::new();
    for file in testbed::SNAPSHOT_CRD_FILES {
        let from = module.join(file);
        let name = from.file_name().map(PathBuf::from).unwrap_or_default();
        let to = dir.join(name);
        // The module cache's files are read-only; write a fresh file.
        let text = std::fs::read(&from).map_err(|source| Error::Io {
            what: format!("read {}", from.display()),
            source,
        })?;
        // Tests running at once may vendor together: write, then rename.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.{seq}.tmp", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &to))
            .map_err(|source| Error::Io {
                what: format!("write {}", to.display()),
                source,
            })?;
        written.push(to);
    }
    Ok(written)
}
