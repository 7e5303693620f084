//! [`Testbed`]: a Kubernetes API to test against (local control plane or the
//! cluster of `$KUBECONFIG`), a run directory, and the child processes.

use std::ffi::OsStr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use kube::config::{Cluster, Kubeconfig};
use rand::Rng;

use crate::binaries;
use crate::control_plane::{self, Ports};
use crate::error::{Error, Result};
use crate::kubeconfig;
use crate::logs;
use crate::pki::Pki;
use crate::process::{Managed, ProcessHandle, STOP_GRACE};

/// Environment variable: `1` keeps the run directory (logs, kubeconfigs,
/// etcd data) after the test bed is dropped; its path is printed to stderr.
pub const KEEP_ENV: &str = "CSI_TESTBED_KEEP";

/// How to start a [`Testbed`].
#[derive(Debug, Clone)]
pub struct TestbedOptions {
    /// Start a local control plane even when `$KUBECONFIG` is set.
    pub force_local: bool,
    /// How long to wait for each control-plane component (etcd `/health`,
    /// kube-apiserver `/readyz`, kube-controller-manager `/healthz`).
    /// Default 120 s.
    pub ready_timeout: Duration,
    /// Start kube-controller-manager (default true). Without it PVCs are
    /// never annotated for provisioning and PV/PVC deletion hangs on
    /// protection finalizers.
    pub start_controller_manager: bool,
    /// Extra kube-apiserver flags, appended after the test bed's own
    /// (a later flag wins over an earlier one for scalar flags).
    pub extra_apiserver_args: Vec<String>,
    /// Extra kube-controller-manager flags, appended after the test bed's own.
    pub extra_controller_manager_args: Vec<String>,
    /// Prepare for a real node ([`Testbed::start_node`]): also build
    /// `build.sh node`, and start kube-apiserver with the Node authorizer and
    /// kubelet client flags. Default false.
    pub node: bool,
    /// Run in-cluster workloads as a Helm chart installs them (Deployments,
    /// DaemonSets, pods using their ServiceAccount's token): the
    /// ServiceAccount admission plugin on, kube-controller-manager also
    /// running [`WORKLOAD_CONTROLLERS`](crate::WORKLOAD_CONTROLLERS) with the
    /// root CA to publish, and kube-scheduler (built by
    /// `tests/testbed/build-chart.sh`). Local mode only; a `$KUBECONFIG`
    /// cluster has all of this. Default false.
    pub workloads: bool,
}

impl Default for TestbedOptions {
    fn default() -> Self {
        TestbedOptions {
            force_local: false,
            ready_timeout: Duration::from_secs(120),
            start_controller_manager: true,
            extra_apiserver_args: Vec::new(),
            extra_controller_manager_args: Vec::new(),
            node: false,
            workloads: false,
        }
    }
}

impl TestbedOptions {
    /// Defaults, but always a local control plane (ignores `$KUBECONFIG`).
    pub fn local() -> Self {
        TestbedOptions {
            force_local: true,
            ..Default::default()
        }
    }

    /// Defaults plus [`TestbedOptions::node`]: a test bed that can run a
    /// kubelet node (or, with `$KUBECONFIG`, use the cluster's nodes).
    pub fn with_node() -> Self {
        TestbedOptions {
            node: true,
            ..Default::default()
        }
    }

    /// [`TestbedOptions::with_node`] plus [`TestbedOptions::workloads`]: a
    /// node that runs Deployments and DaemonSets (e.g. a Helm chart's).
    pub fn with_workloads() -> Self {
        TestbedOptions {
            workloads: true,
            ..Self::with_node()
        }
    }
}

/// The run directory and every child process; dropping it stops the
/// children (newest first) and removes the directory.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) run_dir: PathBuf,
    pub(crate) procs: Mutex<Vec<Arc<Managed>>>,
    pub(crate) logs_dumped: AtomicBool,
}

impl Inner {
    fn create() -> Result<Inner> {
        let mut last_err = None;
        for _ in 0..16 {
            let suffix: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(6)
                .map(|b| char::from(b).to_ascii_lowercase())
                .collect();
            let dir = PathBuf::from(format!("/tmp/csitb-{suffix}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    let inner = Inner {
                        run_dir: dir,
                        procs: Mutex::new(Vec::new()),
                        logs_dumped: AtomicBool::new(false),
                    };
                    for sub in ["etcd", "logs", "pki"] {
                        let p = inner.run_dir.join(sub);
                        std::fs::create_dir(&p)
                            .map_err(|e| Error::io(format!("mkdir {}", p.display()), e))?;
                    }
                    return Ok(inner);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(Error::io(format!("mkdir {}", dir.display()), e)),
            }
        }
        Err(Error::io(
            "mkdir /tmp/csitb-*: every random name taken",
            last_err.unwrap_or_else(|| std::io::Error::other("no attempt")),
        ))
    }

    pub(crate) fn track(&self, p: Arc<Managed>) {
        self.procs.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.run_dir.join("logs")
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let procs = std::mem::take(&mut *self.procs.lock().unwrap_or_else(|e| e.into_inner()));
        for p in procs.iter().rev() {
            p.terminate(STOP_GRACE);
        }
        if std::env::var(KEEP_ENV).as_deref() == Ok("1") {
            eprintln!("csi-testbed: kept run directory {}", self.run_dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.run_dir) {
            eprintln!(
                "csi-testbed: could not remove {}: {e}",
                self.run_dir.display()
            );
        }
    }
}

/// Where the Kubernetes API comes from.
#[derive(Debug)]
enum Mode {
    /// Our own etcd + kube-apiserver (+ kube-controller-manager).
    Local {
        api_port: u16,
        /// What [`Testbed::restart_apiserver`] needs to start it again.
        apiserver: crate::restart::ApiServer,
    },
    /// The cluster of `$KUBECONFIG`; nothing of it is started or stopped.
    External,
}

/// A Kubernetes API to test against plus the processes of one test.
///
/// Two modes:
///
/// * **Local** (default): etcd, kube-apiserver and kube-controller-manager
///   are started as child processes on 127.0.0.1 from the binaries of
///   `tests/testbed/build.sh core` (or `$CSI_TESTBED_BIN`), with a fresh PKI.
/// * **External**: when `$KUBECONFIG` is set and non-empty (and
///   [`TestbedOptions::force_local`] is false) that cluster is used and no
///   control-plane process is started. This is how to run the suite against
///   a kind cluster: `kind create cluster && KUBECONFIG=~/.kube/config cargo
///   test`. The CSI driver and sidecars still run as local processes.
///
/// Either way a short run directory `/tmp/csitb-<6 chars>` holds `logs/`
/// (`<name>.log` per process), `pki/`, `etcd/`, kubeconfigs and the unix
/// sockets (kept short: socket paths must stay under 108 bytes).
///
/// Dropping the test bed stops every child it started (newest first:
/// SIGTERM, up to 5 s, SIGKILL) and removes the run directory unless
/// `CSI_TESTBED_KEEP=1`. If it is dropped during a panic it first prints
/// the logs (see [`Testbed::dump_logs`]).
pub struct Testbed {
    pub(crate) inner: Inner,
    mode: Mode,
    pub(crate) client: kube::Client,
    admin_kubeconfig: PathBuf,
    /// Cluster entry (server, CA) used in service-account kubeconfigs.
    pub(crate) cluster: Cluster,
    bin_dir: PathBuf,
    started_in: Duration,
    pub(crate) seq: AtomicU32,
    /// The local control plane's certificates when it was started for a
    /// node ([`TestbedOptions::node`]); `None` otherwise.
    pub(crate) node_pki: Option<Pki>,
}

impl Testbed {
    /// Starts a test bed (see [`Testbed`] for the two modes).
    ///
    /// In local mode this finds the binaries (may run `build.sh core`, whose
    /// progress goes to stderr), writes the PKI, starts etcd, kube-apiserver
    /// (waits for `/readyz`), writes the admin kubeconfig and starts
    /// kube-controller-manager (waits for `/healthz`). In external mode it
    /// only needs `csi-testdriver` among the binaries and checks that the
    /// API answers.
    ///
    /// Errors: [`Error::Build`] / [`Error::MissingBinary`] when binaries are
    /// missing (tests fail, never skip), [`Error::Start`], [`Error::Exited`]
    /// or [`Error::ReadinessTimeout`] for a process that does not come up
    /// (with its last log lines), [`Error::Pki`], [`Error::Kubeconfig`],
    /// [`Error::Io`]. Everything already started is stopped again.
    pub async fn start(opts: TestbedOptions) -> Result<Testbed> {
        let external = match std::env::var_os("KUBECONFIG") {
            Some(v) if !v.is_empty() && !opts.force_local => Some(v),
            _ => None,
        };
        if external.is_some() {
            let bin_dir = if opts.node {
                // The images for the cluster's nodes are packed from these.
                binaries::locate_set("node", &["csi-testdriver", "csi-registrar", "pause"]).await?
            } else {
                binaries::locate(&["csi-testdriver"]).await?
            };
            let t0 = Instant::now();
            let inner = Inner::create()?;
            return Self::connect_external(inner, bin_dir, t0).await;
        }
        let bin_dir = binaries::locate(&binaries::CORE_BINARIES).await?;
        if opts.workloads && !bin_dir.join("kube-scheduler").is_file() {
            return Err(Error::MissingBinary {
                name: "kube-scheduler".into(),
                dir: bin_dir,
                command: format!(
                    "bash {}",
                    crate::repo_root()
                        .join("tests/testbed/build-chart.sh")
                        .display()
                ),
            });
        }
        if opts.node {
            // Same pins, same directory: build.sh keys both sets alike.
            let node_dir = binaries::locate_set("node", &binaries::NODE_BINARIES).await?;
            if node_dir != bin_dir {
                return Err(Error::Build {
                    command: crate::binaries::set_build_command("node"),
                    reason: format!(
                        "node binaries in {} but core binaries in {}",
                        node_dir.display(),
                        bin_dir.display()
                    ),
                });
            }
        }
        let t0 = Instant::now();
        let inner = Inner::create()?;
        Self::start_local(inner, bin_dir, &opts, t0).await
    }

    async fn connect_external(inner: Inner, bin_dir: PathBuf, t0: Instant) -> Result<Testbed> {
        let config = Kubeconfig::from_env()
            .map_err(|e| Error::Kubeconfig(format!("reading $KUBECONFIG: {e}")))?
            .ok_or_else(|| Error::Kubeconfig("$KUBECONFIG names no file".into()))?;
        let paths: Vec<PathBuf> =
            std::env::split_paths(&std::env::var_os("KUBECONFIG").unwrap_or_default())
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
        // One file: hand it out as is. Several: write the merged view, since
        // the Go sidecars' --kubeconfig takes a single path.
        let admin_kubeconfig = match paths.as_slice() {
            [one] => one.clone(),
            _ => {
                let p = inner.run_dir.join("admin.kubeconfig");
                kubeconfig::write(&p, &config)?;
                p
            }
        };
        let cluster = kubeconfig::current_cluster(&config)?;
        let client = kubeconfig::client_for(config, "$KUBECONFIG").await?;
        client
            .apiserver_version()
            .await
            .map_err(|e| Error::api("GET /version of the $KUBECONFIG cluster", e))?;
        Ok(Testbed {
            inner,
            mode: Mode::External,
            client,
            admin_kubeconfig,
            cluster,
            bin_dir,
            started_in: t0.elapsed(),
            seq: AtomicU32::new(0),
            node_pki: None,
        })
    }

    async fn start_local(
        inner: Inner,
        bin_dir: PathBuf,
        opts: &TestbedOptions,
        t0: Instant,
    ) -> Result<Testbed> {
        let run = inner.run_dir.clone();
        let logs = inner.logs_dir();
        let pki = Pki::generate(&run.join("pki"))?;
        let ports = Ports::pick()?;

        let etcd = Managed::spawn(
            "etcd",
            &bin_dir.join("etcd"),
            control_plane::etcd_args(&ports, &run.join("etcd")),
            &[],
            &logs.join("etcd.log"),
        )?;
        inner.track(etcd.clone());
        control_plane::wait_ready("etcd /health", &etcd, opts.ready_timeout, || {
            control_plane::etcd_healthy(ports.etcd_client)
        })
        .await?;

        let mut args = control_plane::apiserver_args(&ports, &pki, &run.join("pki"));
        if opts.node {
            // --authorization-mode accumulates: replace ours, not append.
            args.retain(|a| !a.starts_with("--authorization-mode="));
            args.extend(crate::node_config::apiserver_node_args(
                &pki.admin_cert,
                &pki.admin_key,
            ));
        }
        if opts.workloads {
            // Pods get their ServiceAccount's token (the chart's sidecars
            // authenticate with it).
            for a in args.iter_mut() {
                if a.starts_with("--disable-admission-plugins=") {
                    *a = "--disable-admission-plugins=TaintNodesByCondition".into();
                }
            }
        }
        args.extend(opts.extra_apiserver_args.iter().cloned());
        let apiserver_args = args.clone();
        let apiserver = Managed::spawn(
            "kube-apiserver",
            &bin_dir.join("kube-apiserver"),
            args,
            &[],
            &logs.join("kube-apiserver.log"),
        )?;
        inner.track(apiserver.clone());

        let admin_kubeconfig = run.join("admin.kubeconfig");
        let admin = kubeconfig::admin_kubeconfig(ports.apiserver, &pki)?;
        kubeconfig::write(&admin_kubeconfig, &admin)?;
        let client = kubeconfig::client_for(admin, "admin kubeconfig").await?;
        control_plane::wait_ready(
            "kube-apiserver /readyz",
            &apiserver,
            opts.ready_timeout,
            || control_plane::get_ok(&client, "/readyz"),
        )
        .await?;

        if opts.start_controller_manager {
            let mut args = control_plane::controller_manager_args(
                &ports,
                &pki,
                &admin_kubeconfig,
                &run.join("pki"),
            );
            if opts.workloads {
                // --controllers accumulates: these join CONTROLLERS.
                args.push(format!(
                    "--controllers={}",
                    control_plane::WORKLOAD_CONTROLLERS
                ));
                args.push(format!("--root-ca-file={}", pki.ca_cert.display()));
            }
            args.extend(opts.extra_controller_manager_args.iter().cloned());
            let kcm = Managed::spawn(
                "kube-controller-manager",
                &bin_dir.join("kube-controller-manager"),
                args,
                &[],
                &logs.join("kube-controller-manager.log"),
            )?;
            inner.track(kcm.clone());
            let kcm_client =
                control_plane::anonymous_client(ports.controller_manager, &pki.ca_der)?;
            control_plane::wait_ready(
                "kube-controller-manager /healthz",
                &kcm,
                opts.ready_timeout,
                || control_plane::get_ok(&kcm_client, "/healthz"),
            )
            .await?;
        }

        if opts.workloads {
            let scheduler = Managed::spawn(
                "kube-scheduler",
                &bin_dir.join("kube-scheduler"),
                control_plane::scheduler_args(&admin_kubeconfig),
                &[],
                &logs.join("kube-scheduler.log"),
            )?;
            inner.track(scheduler);
        }

        let cluster = kubeconfig::local_cluster(ports.apiserver, &pki);
        let started_in = t0.elapsed();
        tracing::info!(?started_in, run_dir = %run.display(), "local control plane ready");
        Ok(Testbed {
            inner,
            mode: Mode::Local {
                api_port: ports.apiserver,
                apiserver: crate::restart::ApiServer::new(
                    apiserver,
                    apiserver_args,
                    opts.ready_timeout,
                ),
            },
            client,
            admin_kubeconfig,
            cluster,
            bin_dir,
            started_in,
            seq: AtomicU32::new(0),
            node_pki: opts.node.then_some(pki),
        })
    }

    /// True when this test bed started its own control plane, false when it
    /// uses the cluster of `$KUBECONFIG`.
    pub fn is_local(&self) -> bool {
        matches!(self.mode, Mode::Local { .. })
    }

    /// The local kube-apiserver, `None` in external mode.
    pub(crate) fn local_apiserver(&self) -> Option<&crate::restart::ApiServer> {
        match &self.mode {
            Mode::Local { apiserver, .. } => Some(apiserver),
            Mode::External => None,
        }
    }

    /// The API server URL, e.g. `https://127.0.0.1:39211`.
    pub fn server_url(&self) -> String {
        match self.mode {
            Mode::Local { api_port, .. } => format!("https://127.0.0.1:{api_port}"),
            Mode::External => self.cluster.server.clone().unwrap_or_default(),
        }
    }

    /// A client with cluster-admin rights (admin certificate in local mode,
    /// the `$KUBECONFIG` user in external mode). Cheap to clone.
    pub fn admin_client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Path of an admin kubeconfig, for `--kubeconfig` of processes: the
    /// test bed's own in local mode; in external mode the `$KUBECONFIG` file
    /// (or, when it lists several files, their merged view in the run
    /// directory).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Wall time of [`Testbed::start`] after the binaries were found: PKI,
    /// etcd, kube-apiserver and kube-controller-manager up and ready (local
    /// mode), or the first API round trip (external mode).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The run directory, `/tmp/csitb-<6 chars>`.
    pub fn run_dir(&self) -> &Path {
        &self.inner.run_dir
    }

    /// The directory holding one `<name>.log` per child process.
    pub fn logs_dir(&self) -> PathBuf {
        self.inner.logs_dir()
    }

    /// The directory holding the Go binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Path of the binary `name` in [`Testbed::bin_dir`] (not checked).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Path of the `csi-testdriver` binary.
    pub fn csi_testdriver(&self) -> PathBuf {
        self.bin("csi-testdriver")
    }

    /// A number unique within this test bed (1, 2, ...), for names of
    /// sockets, logs and test objects.
    pub fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Starts `program` with `args` and extra environment `envs` as a child
    /// process named `name`: stdout and stderr go to `<run>/logs/<name>.log`
    /// (appended, after a header line, so a restarted process keeps one
    /// log). Characters other than `[A-Za-z0-9._-]` in `name` become `_` in
    /// the file name.
    ///
    /// The returned handle stops the process on drop; the test bed stops it
    /// too when dropped.
    ///
    /// Errors: [`Error::Start`] if the program cannot be executed,
    /// [`Error::Io`] if the log cannot be opened.
    pub fn spawn<I, S>(
        &self,
        name: &str,
        program: &Path,
        args: I,
        envs: &[(&str, &str)],
    ) -> Result<ProcessHandle>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = self.logs_dir().join(format!("{}.log", sanitize(name)));
        let p = Managed::spawn(name, program, args, envs, &log)?;
        self.inner.track(p.clone());
        Ok(ProcessHandle::new(p))
    }

    /// Prints the last 200 lines of every log file in
    /// [`Testbed::logs_dir`] to stderr, each headed by its path.
    pub fn dump_logs(&self) {
        self.inner.logs_dumped.store(true, Ordering::Relaxed);
        eprintln!("csi-testbed: logs of {}", self.run_dir().display());
        logs::dump_dir(&self.logs_dir());
    }

    /// Runs a test body against this test bed and prints the logs
    /// ([`Testbed::dump_logs`]) if it fails: when it returns `Err` (the
    /// error is printed too and returned) or panics (the panic then
    /// continues).
    ///
    /// ```no_run
    /// # async fn t() -> anyhow::Result<()> {
    /// let tb = testbed::Testbed::start(Default::default()).await?;
    /// tb.run_test(async |tb| -> anyhow::Result<()> {
    ///     tb.create_csidriver("hostpath.csi.k8s.io", false).await?;
    ///     Ok(())
    /// })
    /// .await
    /// # }
    /// ```
    pub async fn run_test<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: AsyncFnOnce(&Testbed) -> std::result::Result<T, E>,
        E: std::fmt::Display,
    {
        match AssertUnwindSafe(f(self)).catch_unwind().await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                eprintln!("csi-testbed: test failed: {e}");
                self.dump_logs();
                Err(e)
            }
            Err(panic) => {
                self.dump_logs();
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Starts a test bed with `opts` and runs `f` on it as
    /// [`Testbed::run_test`] does; the test bed is dropped afterwards.
    ///
    /// Errors: start errors (converted into `E`) and whatever `f` returns.
    pub async fn run<T, E, F>(opts: TestbedOptions, f: F) -> std::result::Result<T, E>
    where
        F: AsyncFnOnce(&Testbed) -> std::result::Result<T, E>,
        E: std::fmt::Display + From<Error>,
    {
        let tb = Testbed::start(opts).await?;
        tb.run_test(f).await
    }
}

impl std::fmt::Debug for Testbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testbed")
            .field("mode", &self.mode)
            .field("server", &self.server_url())
            .field("run_dir", &self.inner.run_dir)
            .field("bin_dir", &self.bin_dir)
            .field("started_in", &self.started_in)
            .finish_non_exhaustive()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.inner.logs_dumped.load(Ordering::Relaxed) {
            self.dump_logs();
        }
    }
}

/// Maps characters outside `[A-Za-z0-9._-]` to `_` (empty → `process`).
pub(crate) fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "process".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize("csi-provisioner"), "csi-provisioner");
        assert_eq!(sanitize("a/b c"), "a_b_c");
        assert_eq!(sanitize(""), "process");
    }

    #[test]
    fn run_dir_is_short_and_removed() {
        let inner = Inner::create().unwrap();
        let dir = inner.run_dir.clone();
        assert!(dir.as_os_str().len() <= "/tmp/csitb-abcdef".len());
        assert!(dir.join("logs").is_dir() && dir.join("pki").is_dir());
        drop(inner);
        if std::env::var(KEEP_ENV).as_deref() != Ok("1") {
            assert!(!dir.exists());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
