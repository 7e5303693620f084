//! The snapshot.storage.k8s.io CRDs (VolumeSnapshot, VolumeSnapshotContent,
//! VolumeSnapshotClass) for restore-from-snapshot tests.
//!
//! The CRD manifests are read at run time from the external-snapshotter
//! client Go module that `tests/testbed/go/go.mod` already requires, in the
//! test bed's module cache; they are never copied into this repository.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};

use crate::cluster::is_already_exists;
use crate::error::{Error, Result};
use crate::logs::tail_file;
use crate::manifest::parse_documents;
use crate::testbed::Testbed;

/// Go module holding the CRD manifests, pinned by `tests/testbed/go/go.mod`.
pub const SNAPSHOT_CLIENT_MODULE: &str = "github.com/kubernetes-csi/external-snapshotter/client/v8";

/// The manifests installed by [`Testbed::install_snapshot_crds`], relative
/// to [`SNAPSHOT_CLIENT_MODULE`]'s directory, in install order.
pub const SNAPSHOT_CRD_FILES: [&str; 3] = [
    "config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
    "config/crd/snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
    "config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml",
];

/// How long [`Testbed::install_snapshot_crds`] waits for each CRD to report
/// `Established`.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

const LOG_TAIL_LINES: usize = 40;

/// `tests/testbed/go`, the test bed's Go module.
fn go_module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// The Go module cache `build.sh` uses: `$CSI_TESTBED_CACHE/gomod`, where
/// the cache defaults to `${XDG_CACHE_HOME:-$HOME/.cache}/csi-testbed`.
fn go_mod_cache() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let cache = non_empty("CSI_TESTBED_CACHE")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("csi-testbed")))
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache/csi-testbed")))
        .unwrap_or_else(|| PathBuf::from(".cache/csi-testbed"));
    cache.join("gomod")
}

/// The environment of every `go` command here, as `build.sh` sets it.
fn go_env() -> [(&'static str, String); 4] {
    [
        ("GOMODCACHE", go_mod_cache().display().to_string()),
        ("GOWORK", "off".into()),
        ("GOFLAGS", "-mod=readonly".into()),
        ("GOTOOLCHAIN", "local".into()),
    ]
}

/// A shell command running `go <args>` in `tests/testbed/go` with
/// [`go_env`], for error messages.
fn go_command_line(args: &str) -> String {
    let env: Vec<String> = go_env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "cd {} && {} go {args}",
        go_module_dir().display(),
        env.join(" ")
    )
}

/// Directory of [`SNAPSHOT_CLIENT_MODULE`] in the test bed's module cache,
/// found with `go list -m -f '{{.Dir}}'` run in `tests/testbed/go` (module
/// cache, `GOWORK=off`, `GOFLAGS=-mod=readonly`, `GOTOOLCHAIN=local`, as
/// `build.sh`).
///
/// Errors: [`Error::Build`] when `go` cannot run or fails, or the module is
/// not downloaded; the message carries the `go mod download` command that
/// fetches it.
pub async fn snapshot_client_module_dir() -> Result<PathBuf> {
    let list = go_command_line(&format!(
        "list -m -f '{{{{.Dir}}}}' {SNAPSHOT_CLIENT_MODULE}"
    ));
    let download = go_command_line(&format!("mod download {SNAPSHOT_CLIENT_MODULE}"));
    let out = tokio::process::Command::new("go")
        .args(["list", "-m", "-f", "{{.Dir}}", SNAPSHOT_CLIENT_MODULE])
        .current_dir(go_module_dir())
        .envs(go_env())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Build {
            command: list.clone(),
            reason: format!("cannot run `go` ({e}); the test bed needs Go >= 1.26 on PATH"),
        })?;
    if !out.status.success() {
        return Err(Error::Build {
            command: list,
            reason: format!(
                "{}: {}; fetch the module with `{download}`",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() || !Path::new(&dir).is_dir() {
        return Err(Error::Build {
            command: list,
            reason: format!(
                "module {SNAPSHOT_CLIENT_MODULE} is not in the module cache {}; fetch it with \
                 `{download}`",
                go_mod_cache().display()
            ),
        });
    }
    Ok(PathBuf::from(dir))
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn serves_v1(crd: &CustomResourceDefinition) -> bool {
    crd.spec.versions.iter().any(|v| v.name == "v1" && v.served)
}

impl Testbed {
    /// Installs the VolumeSnapshotClass, VolumeSnapshotContent and
    /// VolumeSnapshot CRDs (`snapshot.storage.k8s.io/v1`) from
    /// [`SNAPSHOT_CLIENT_MODULE`] ([`SNAPSHOT_CRD_FILES`], read from the
    /// module cache at run time) and waits until each reports the
    /// `Established` condition.
    ///
    /// Idempotent: a CRD that already exists is left as it is (an external
    /// cluster may carry its own snapshotter release), provided it serves
    /// `v1`. Only the CRDs are installed, no snapshot controller.
    ///
    /// Errors: [`Error::Build`] when the module cannot be located (with the
    /// command that fetches it), [`Error::Manifest`] for a missing or
    /// unparsable manifest or an existing CRD without a served `v1`,
    /// [`Error::Api`] for a rejected create, [`Error::ReadinessTimeout`]
    /// after [`CRD_ESTABLISHED_TIMEOUT`] without `Established`.
    pub async fn install_snapshot_crds(&self) -> Result<()> {
        let module = snapshot_client_module_dir().await?;
        let api: Api<CustomResourceDefinition> = Api::all(self.admin_client());
        let mut names = Vec::new();
        for file in SNAPSHOT_CRD_FILES {
            let path = module.join(file);
            let manifest_err = |reason: String| Error::Manifest {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                manifest_err(format!(
                    "cannot read it ({e}); module {SNAPSHOT_CLIENT_MODULE} at {} lacks the \
                     file, re-fetch it with `{}`",
                    module.display(),
                    go_command_line(&format!("mod download {SNAPSHOT_CLIENT_MODULE}"))
                ))
            })?;
            for obj in parse_documents(&text).map_err(manifest_err)? {
                let crd: CustomResourceDefinition = serde_json::to_value(&obj)
                    .and_then(serde_json::from_value)
                    .map_err(|e| manifest_err(format!("not a CustomResourceDefinition: {e}")))?;
                let name = crd.metadata.name.clone().unwrap_or_default();
                match api.create(&PostParams::default(), &crd).await {
                    Ok(_) => {}
                    Err(e) if is_already_exists(&e) => {
                        let live = api.get(&name).await.map_err(|e| {
                            Error::api(format!("get CustomResourceDefinition {name}"), e)
                        })?;
                        if !serves_v1(&live) {
                            return Err(manifest_err(format!(
                                "CustomResourceDefinition {name} already exists but does not \
                                 serve v1; delete it or upgrade the cluster's snapshot CRDs"
                            )));
                        }
                    }
                    Err(e) => {
                        return Err(Error::api(
                            format!("create CustomResourceDefinition {name}"),
                            e,
                        ));
                    }
                }
                names.push(name);
            }
        }
        for name in names {
            self.wait_crd_established(&api, &name).await?;
        }
        Ok(())
    }

    async fn wait_crd_established(
        &self,
        api: &Api<CustomResourceDefinition>,
        name: &str,
    ) -> Result<()> {
        let start = Instant::now();
        let mut last_error: String;
        loop {
            match api.get(name).await {
                Ok(crd) if is_established(&crd) => return Ok(()),
                Ok(crd) => {
                    last_error = format!(
                        "conditions: {:?}",
                        crd.status.and_then(|s| s.conditions).unwrap_or_default()
                    )
                }
                Err(e) => last_error = e.to_string(),
            }
            if start.elapsed() >= CRD_ESTABLISHED_TIMEOUT {
                let log_tail = if self.is_local() {
                    tail_file(&self.logs_dir().join("kube-apiserver.log"), LOG_TAIL_LINES)
                } else {
                    String::new()
                };
                return Err(Error::ReadinessTimeout {
                    what: format!("CustomResourceDefinition {name} Established"),
                    waited: start.elapsed(),
                    last_error,
                    log_tail,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_commands_name_module_and_environment() {
        let cmd = go_command_line(&format!("mod download {SNAPSHOT_CLIENT_MODULE}"));
        assert!(cmd.contains("tests/testbed/go && "), "{cmd}");
        for part in [
            "GOWORK=off",
            "GOFLAGS=-mod=readonly",
            "GOTOOLCHAIN=local",
            "/gomod ",
            "go mod download github.com/kubernetes-csi/external-snapshotter/client/v8",
        ] {
            assert!(cmd.contains(part), "{cmd} lacks {part}");
        }
    }

    #[test]
    fn established_condition() {
        let mut crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "volumesnapshots.snapshot.storage.k8s.io"},
            "spec": {
                "group": "snapshot.storage.k8s.io",
                "names": {"kind": "VolumeSnapshot", "plural": "volumesnapshots"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true}]
            },
            "status": {"conditions": [
                {"type": "NamesAccepted", "status": "True"},
                {"type": "Established", "status": "False"}
            ]}
        }))
        .unwrap();
        assert!(serves_v1(&crd));
        assert!(!is_established(&crd));
        crd.status.as_mut().unwrap().conditions.as_mut().unwrap()[1].status = "True".into();
        assert!(is_established(&crd));
        crd.spec.versions[0].served = false;
        assert!(!serves_v1(&crd));
    }
}
