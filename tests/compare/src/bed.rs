//! One implementation's test bed: control plane with the audit log, the CSI
//! driver, a Node, upstream's RBAC, the StorageClass, and the sidecar
//! processes, all started the same way for upstream and ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use csi_client::{ConnectOptions, Connection};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use testbed::{DriverHandle, DriverOptions, ProcessHandle, Testbed, TestbedOptions};

use crate::audit::{self, Requests};
use crate::objects::{DRIVER, NS, storage_class};

/// The sidecar flags both implementations get.
#[derive(Debug, Clone)]
pub struct Flags {
    /// `--kube-api-qps`.
    pub qps: String,
    /// `--kube-api-burst`.
    pub burst: String,
    /// `--worker-threads`.
    pub workers: String,
    /// `--timeout` (Go duration).
    pub timeout: String,
}

/// What a sidecar's test bed needs besides the control plane.
#[derive(Debug, Clone, Copy)]
pub struct Sidecar {
    /// The sidecar's ServiceAccount in [`NS`] (whose requests the audit log
    /// records).
    pub service_account: &'static str,
    /// Upstream's RBAC manifest for it, from `tests/testbed/manifests`.
    pub rbac: &'static str,
    /// The driver advertises PUBLISH_UNPUBLISH_VOLUME and the CSIDriver
    /// requires attach.
    pub attach: bool,
    /// Create the [`crate::objects::CLASS`] StorageClass.
    pub storage_class: bool,
}

/// csi-provisioner's bed.
pub const PROVISIONER: Sidecar = Sidecar {
    service_account: "csi-provisioner",
    rbac: "rbac-csi-provisioner.yaml",
    attach: false,
    storage_class: true,
};

impl Sidecar {
    /// The audit log's user name of the ServiceAccount.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{NS}:{}", self.service_account)
    }
}

/// Which implementation runs and from where.
#[derive(Debug, Clone)]
pub struct Impl {
    /// `upstream` or `ours`.
    pub label: &'static str,
    /// The sidecar's binary.
    pub binary: PathBuf,
}

/// A started test bed for one implementation.
pub struct Bed {
    /// The control plane and child processes.
    pub tb: Testbed,
    /// csi-testdriver.
    pub driver: DriverHandle,
    /// The admin client.
    pub admin: kube::Client,
    /// The sidecar's ServiceAccount kubeconfig.
    kubeconfig: String,
    audit_log: PathBuf,
    user: String,
    /// The implementation under test.
    pub imp: Impl,
    flags: Flags,
}

impl Bed {
    /// Starts a fresh csi-provisioner test bed in `work` for `imp`;
    /// `kcm_args` are extra kube-controller-manager flags.
    pub async fn start(
        work: &Path,
        imp: &Impl,
        flags: &Flags,
        kcm_args: &[&str],
    ) -> anyhow::Result<Bed> {
        Self::start_for(&PROVISIONER, work, imp, flags, kcm_args).await
    }

    /// [`Bed::start`] for `sidecar`: its RBAC and ServiceAccount, the
    /// driver attaching or not, the StorageClass if it needs one.
    pub async fn start_for(
        sidecar: &Sidecar,
        work: &Path,
        imp: &Impl,
        flags: &Flags,
        kcm_args: &[&str],
    ) -> anyhow::Result<Bed> {
        std::fs::create_dir_all(work)?;
        let policy = work.join("audit-policy.yaml");
        let audit_log = work.join("audit.log");
        let user = sidecar.user();
        std::fs::write(&policy, audit::policy(&user))?;
        let _ = std::fs::remove_file(&audit_log);
        let tb = Testbed::start(TestbedOptions {
            force_local: true,
            extra_apiserver_args: vec![
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-format=json".into(),
            ],
            extra_controller_manager_args: kcm_args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
        .await?;
        ensure!(
            imp.binary.is_file(),
            "{} {} not found at {}",
            imp.label,
            sidecar.service_account,
            imp.binary.display()
        );
        tb.create_namespace(NS).await?;
        tb.create_csidriver(DRIVER, sidecar.attach).await?;
        let driver = tb
            .start_driver(DriverOptions {
                enable_attach: sidecar.attach,
                ..DriverOptions::named(DRIVER)
            })
            .await?;
        tb.create_node_with_csinode(
            "compare-node",
            DRIVER,
            driver.node_id(),
            &[],
            BTreeMap::new(),
        )
        .await?;
        tb.apply_manifest(&testbed::manifest_path(sidecar.rbac), &[("NAMESPACE", NS)])
            .await?;
        let kubeconfig = tb
            .service_account_kubeconfig(NS, sidecar.service_account)
            .await?;
        let admin = tb.admin_client();
        if sidecar.storage_class {
            Api::<StorageClass>::all(admin.clone())
                .create(&PostParams::default(), &storage_class())
                .await?;
        }
        Ok(Bed {
            tb,
            driver,
            admin,
            kubeconfig: kubeconfig.to_string_lossy().into_owned(),
            audit_log,
            user,
            imp: imp.clone(),
            flags: flags.clone(),
        })
    }

    /// The sidecar's command line: the shared flags, the CSI socket, `extra`.
    pub fn sidecar_args(&self, socket: &Path, extra: &[String]) -> Vec<String> {
        let f = &self.flags;
        let mut args = vec![
            format!("--csi-address={}", socket.display()),
            format!("--kubeconfig={}", self.kubeconfig),
            format!("--kube-api-qps={}", f.qps),
            format!("--kube-api-burst={}", f.burst),
            format!("--worker-threads={}", f.workers),
            format!("--timeout={}", f.timeout),
        ];
        args.extend(extra.iter().cloned());
        args
    }

    /// Starts the sidecar as `name` with `args`. With `hostname` it runs in
    /// its own UTS namespace under that host name (`unshare`), which is what
    /// both implementations take as their leader-election identity: two
    /// replicas on one machine need different ones, as two pods have.
    pub fn spawn(
        &self,
        name: &str,
        args: &[String],
        hostname: Option<&str>,
    ) -> anyhow::Result<ProcessHandle> {
        // A pod knows its namespace (the ServiceAccount's namespace file);
        // out of cluster POD_NAMESPACE says it, for both implementations.
        let envs = [
            ("KUBECONFIG", self.kubeconfig.as_str()),
            ("POD_NAMESPACE", NS),
        ];
        let p = match hostname {
            None => self.tb.spawn(name, &self.imp.binary, args, &envs)?,
            Some(host) => {
                let mut wrapped: Vec<String> = unshare_prefix();
                wrapped.extend([
                    "sh".into(),
                    "-c".into(),
                    "echo \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"".into(),
                    host.into(),
                    self.imp.binary.display().to_string(),
                ]);
                wrapped.extend(args.iter().cloned());
                self.tb.spawn(name, Path::new("unshare"), &wrapped, &envs)?
            }
        };
        Ok(p)
    }

    /// A CSI connection straight to the driver (not through any proxy).
    pub async fn driver_conn(&self) -> anyhow::Result<Connection> {
        Connection::connect(ConnectOptions::new(
            self.driver.socket_path().display().to_string(),
            Duration::from_secs(30),
        ))
        .await
        .context("connect to csi-testdriver")
    }

    /// The sidecar's requests so far, from the audit log.
    pub async fn requests(&self) -> anyhow::Result<Requests> {
        // The log backend writes synchronously; give closing watches a moment.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let text = std::fs::read_to_string(&self.audit_log)
            .with_context(|| format!("read {}", self.audit_log.display()))?;
        Ok(audit::count(&text, &self.user))
    }
}

/// `unshare --uts` as root; with a user namespace otherwise.
fn unshare_prefix() -> Vec<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if root {
        vec!["--uts".into()]
    } else {
        vec!["--user".into(), "--map-root-user".into(), "--uts".into()]
    }
}

/// The first line of `<binary> --version`.
pub async fn version_of(binary: &Path) -> String {
    match tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await
    {
        Ok(o) => String::from_utf8_lossy(if o.stdout.is_empty() {
            &o.stderr
        } else {
            &o.stdout
        })
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string(),
        Err(e) => format!("(--version failed: {e})"),
    }
}
