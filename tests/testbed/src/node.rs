//! [`Testbed::start_node`]: a real kubelet node next to the local control
//! plane (containerd + runc + CNI bridge, our images imported), or the
//! nodes of the `$KUBECONFIG` cluster.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use k8s_openapi::api::storage::v1::CSINode;
use kube::Api;
use kube::api::ListParams;

use crate::error::{Error, Result};
use crate::host_state::HostState;
use crate::kubeconfig;
use crate::logs::tail_file;
use crate::node_config::{self, KubeletPorts, NODE_IP, NODE_NAME, NodePaths};
use crate::node_images;
use crate::node_lock::NodeLock;
use crate::node_teardown::{self, TeardownReport};
use crate::process::ProcessHandle;
use crate::testbed::Testbed;

/// How long [`Testbed::start_node`] waits for the Node to be Ready, and
/// [`Node::deploy_csi_driver`] for the driver pod and its registration.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The kubelet root directory of a `$KUBECONFIG` cluster's nodes, unless
/// `CSI_TESTBED_KUBELET_ROOT` says otherwise.
pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";

/// Label of the driver pods [`Node::deploy_csi_driver`] creates; teardown
/// deletes every other pod on the node first.
pub const DRIVER_POD_LABEL: (&str, &str) = ("csi-testbed/role", "csi-driver");

/// What the local node runs and must undo; moved into the teardown thread.
#[derive(Debug)]
pub(crate) struct LocalNode {
    pub(crate) paths: NodePaths,
    pub(crate) bin_dir: PathBuf,
    pub(crate) admin_kubeconfig: PathBuf,
    pub(crate) before: HostState,
    pub(crate) containerd: Option<ProcessHandle>,
    pub(crate) kubelet: Option<ProcessHandle>,
    pub(crate) _lock: NodeLock,
}

/// A node to run pods on.
///
/// Local mode: a kubelet and containerd started by the test bed on this
/// machine (one at a time per machine, see [`crate::NODE_LOCK_PATH`]).
/// [`Node::teardown`] (or dropping it, also during a panic) deletes the
/// workload pods, then the driver pods, stops the kubelet and containerd
/// and undoes every host change; it must be dropped before its
/// [`Testbed`].
///
/// External mode (`$KUBECONFIG`): a Ready node of that cluster; nothing is
/// started, so teardown has nothing to undo (the test deletes what it
/// created there).
#[derive(Debug)]
pub struct Node<'a> {
    tb: &'a Testbed,
    name: String,
    kubelet_root: PathBuf,
    pod_logs: Option<PathBuf>,
    started_in: Duration,
    local: Option<LocalNode>,
    drop_report: Arc<Mutex<Option<TeardownReport>>>,
}

/// How [`Node::deploy_csi_driver_opts`] runs the test driver.
#[derive(Debug, Clone, Default)]
pub struct NodeDriverOptions {
    /// ControllerExpandVolume answers `node_expansion_required` and the
    /// node service advertises EXPAND_VOLUME.
    pub node_expansion_required: bool,
    /// Advertise PUBLISH_UNPUBLISH_VOLUME (`--enable-attach`): the kubelet
    /// then waits for a VolumeAttachment an attacher has marked attached,
    /// and NodeStageVolume needs its `device` publish context. The driver
    /// keeps the mock service's own node ID (its ControllerPublishVolume
    /// accepts no other).
    pub enable_attach: bool,
    /// NodeGetInfo `max_volumes_per_node`; ControllerPublishVolume beyond
    /// it fails with ResourceExhausted. 0: no limit.
    pub attach_limit: u32,
}

/// A CSI driver pod on a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeDriver {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// The driver's name (CSIDriver, GetPluginInfo).
    pub driver_name: String,
    /// The driver's socket on the node's file system
    /// (`<kubelet root>/plugins/<driver>/csi.sock`): on this machine in
    /// local mode, so host processes (our sidecars) can use it.
    pub socket: PathBuf,
}

fn missing(what: &str, path: &str, package: &str) -> Error {
    Error::HostPrerequisite {
        what: what.into(),
        path: path.into(),
        package: package.into(),
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}

/// Host programs the node needs: runc, the CNI plugins, iptables, iproute2.
/// Returns runc's path and the CNI plugin directory.
///
/// Errors: [`Error::HostPrerequisite`] naming the Debian package.
pub(crate) fn check_host() -> Result<(PathBuf, PathBuf)> {
    let runc = on_path("runc").ok_or_else(|| missing("runc", "runc on PATH", "runc"))?;
    let cni = ["/usr/lib/cni", "/opt/cni/bin"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("bridge").is_file())
        .ok_or_else(|| {
            missing(
                "the CNI bridge plugin",
                "/usr/lib/cni/bridge",
                "containernetworking-plugins",
            )
        })?;
    for plugin in ["host-local", "loopback"] {
        if !cni.join(plugin).is_file() {
            return Err(missing(
                &format!("the CNI {plugin} plugin"),
                &cni.join(plugin).display().to_string(),
                "containernetworking-plugins",
            ));
        }
    }
    for (program, package) in [
        ("iptables", "iptables"),
        ("iptables-save", "iptables"),
        ("ip6tables-save", "iptables"),
        ("ip", "iproute2"),
        ("mount", "mount"),
    ] {
        if on_path(program).is_none() {
            return Err(missing(program, &format!("{program} on PATH"), package));
        }
    }
    Ok((runc, cni))
}

async fn run_checked(program: &str, args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| Error::io(format!("run {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::io(
            format!("{program} {}", args.join(" ")),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ))
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("bind 127.0.0.1:0 for a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("local_addr of a free port", e))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

fn node_ready(n: &KubeNode) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Testbed {
    /// Starts a kubelet node (local mode) or picks a Ready node of the
    /// `$KUBECONFIG` cluster (`$CSI_TESTBED_NODE` if set).
    ///
    /// Local mode needs [`TestbedOptions::node`](crate::TestbedOptions):
    /// it takes the machine's node lock, records the host state, adds
    /// [`NODE_IP`] to `lo`, starts containerd, imports the pause, driver and
    /// registrar images, starts the kubelet and waits until the Node is
    /// Ready. Progress and timings go to stderr.
    ///
    /// Errors: [`Error::HostPrerequisite`] for a missing Debian package,
    /// [`Error::Exited`] / [`Error::ReadinessTimeout`] with the log tail of
    /// containerd or the kubelet, [`Error::Io`], [`Error::Api`]. Whatever
    /// was started is torn down again.
    pub async fn start_node(&self) -> Result<Node<'_>> {
        if !self.is_local() {
            return self.external_node().await;
        }
        let pki = self.node_pki.clone().ok_or_else(|| {
            Error::Kubeconfig(
                "start the test bed with TestbedOptions::with_node() to run a node".into(),
            )
        })?;
        let t0 = Instant::now();
        let (runc, cni_bin) = check_host()?;
        let lock = NodeLock::acquire().await?;
        let paths = NodePaths::new(self.run_dir());
        let before = HostState::capture(&paths.mount_roots())?;
        let mut node = Node {
            tb: self,
            name: NODE_NAME.into(),
            kubelet_root: paths.kubelet_root.clone(),
            pod_logs: Some(paths.pod_logs.clone()),
            started_in: Duration::ZERO,
            drop_report: Arc::default(),
            local: Some(LocalNode {
                paths: paths.clone(),
                bin_dir: self.bin_dir().to_path_buf(),
                admin_kubeconfig: self.admin_kubeconfig().to_path_buf(),
                before,
                containerd: None,
                kubelet: None,
                _lock: lock,
            }),
        };
        // From here on, dropping `node` undoes what was done so far.
        for d in [
            &paths.base,
            &paths.cni_conf_dir,
            &paths.cni_ipam_dir,
            &paths.kubelet_root,
            &paths.pod_logs,
            &paths.volume_plugins,
        ] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("mkdir {}", d.display()), e))?;
        }
        write(
            &paths.containerd_config,
            &node_config::containerd_toml(&paths, &runc, &cni_bin),
        )?;
        write(
            &paths.cni_conf_dir.join("10-csitb-bridge.conflist"),
            &node_config::cni_conflist(&paths),
        )?;
        let ports = KubeletPorts {
            api: free_port()?,
            healthz: free_port()?,
        };
        write(
            &paths.kubelet_config,
            &node_config::kubelet_yaml(&paths, ports, &pki.ca_cert),
        )?;
        let kc = kubeconfig::single_context(
            &self.cluster,
            &format!("system:node:{NODE_NAME}"),
            serde_json::json!({
                "client-certificate": pki.kubelet_cert.display().to_string(),
                "client-key": pki.kubelet_key.display().to_string(),
            }),
            None,
        )?;
        kubeconfig::write(&paths.kubelet_kubeconfig, &kc)?;

        run_checked(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"],
        )
        .await?;

        // The shim is looked up on PATH next to containerd.
        let path_env = format!(
            "{}:{}",
            self.bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let containerd = self.spawn(
            "containerd",
            &self.bin("containerd"),
            [
                "--config".to_string(),
                paths.containerd_config.display().to_string(),
            ],
            &[("PATH", path_env.as_str())],
        )?;
        crate::driver::wait_for_socket(
            &containerd,
            &paths.containerd_socket,
            Duration::from_secs(60),
        )
        .await?;
        if let Some(l) = node.local.as_mut() {
            l.containerd = Some(containerd);
        }
        let t_images = Instant::now();
        let archives = node_images::pack_all(self.bin_dir(), &paths.images)?;
        node_images::import_all(&self.bin("ctr"), &paths.containerd_socket, &archives).await?;
        eprintln!(
            "csi-testbed: node images packed and imported in {:.1}s",
            t_images.elapsed().as_secs_f64()
        );

        let kubelet = self.spawn(
            "kubelet",
            &self.bin("kubelet"),
            node_config::kubelet_args(&paths),
            &[("PATH", path_env.as_str())],
        )?;
        let nodes: Api<KubeNode> = Api::all(self.admin_client());
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        let mut last = String::from("Node not registered yet");
        loop {
            if let Some(status) = kubelet.exit_status() {
                return Err(Error::Exited {
                    process: "kubelet".into(),
                    status: status.to_string(),
                    log_tail: kubelet.log_tail(60),
                });
            }
            match nodes.get_opt(NODE_NAME).await {
                Ok(Some(n)) if node_ready(&n) => break,
                Ok(Some(_)) => last = "Node registered, not Ready".into(),
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Error::ReadinessTimeout {
                    what: format!("Node {NODE_NAME} Ready"),
                    waited: NODE_READY_TIMEOUT,
                    last_error: last,
                    log_tail: kubelet.log_tail(60),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if let Some(l) = node.local.as_mut() {
            l.kubelet = Some(kubelet);
        }
        node.started_in = t0.elapsed();
        eprintln!(
            "csi-testbed: node {NODE_NAME} Ready in {:.1}s",
            node.started_in.as_secs_f64()
        );
        Ok(node)
    }

    async fn external_node(&self) -> Result<Node<'_>> {
        let nodes: Api<KubeNode> = Api::all(self.admin_client());
        let name = match std::env::var("CSI_TESTBED_NODE") {
            Ok(n) if !n.is_empty() => n,
            _ => nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| Error::api("list Nodes", e))?
                .items
                .into_iter()
                .find(node_ready)
                .and_then(|n| n.metadata.name)
                .ok_or_else(|| Error::ReadinessTimeout {
                    what: "a Ready node in the $KUBECONFIG cluster".into(),
                    waited: Duration::ZERO,
                    last_error: "no Node is Ready".into(),
                    log_tail: String::new(),
                })?,
        };
        let archives = node_images::pack_all(self.bin_dir(), &self.run_dir().join("images"))?;
        eprintln!(
            "csi-testbed: using node {name} of $KUBECONFIG; its runtime needs these images \
             (e.g. `kind load image-archive <file>` for each): {}",
            archives
                .iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        Ok(Node {
            tb: self,
            name,
            kubelet_root: std::env::var_os("CSI_TESTBED_KUBELET_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBELET_ROOT)),
            pod_logs: None,
            started_in: Duration::ZERO,
            local: None,
            drop_report: Arc::default(),
        })
    }
}

impl Node<'_> {
    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the test bed runs this node's kubelet itself.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The kubelet's root directory on the node.
    pub fn kubelet_root(&self) -> &Path {
        &self.kubelet_root
    }

    /// Wall time from [`Testbed::start_node`]'s call to the Node being
    /// Ready (local mode; zero in external mode).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Where dropping the node without [`Node::teardown`] (a panic, an early
    /// return) leaves its teardown report, for tests of that path.
    pub fn drop_report(&self) -> Arc<Mutex<Option<TeardownReport>>> {
        self.drop_report.clone()
    }

    /// The kubelet's log file (local mode).
    pub fn kubelet_log(&self) -> Option<&Path> {
        self.local
            .as_ref()
            .and_then(|l| l.kubelet.as_ref())
            .map(|k| k.log_path())
    }

    /// Runs `driver_name` as a node plugin: the csi-testdriver and the
    /// stand-in registrar in one privileged pod on this node
    /// (`manifests/node-csi-driver.yaml`), then waits until the pod runs and
    /// the kubelet lists the driver in the node's CSINode (registration
    /// done).
    ///
    /// Errors: [`Error::Manifest`], [`Error::Api`],
    /// [`Error::ReadinessTimeout`] with the pod's status and the kubelet's
    /// log tail.
    pub async fn deploy_csi_driver(
        &self,
        namespace: &str,
        driver_name: &str,
    ) -> Result<NodeDriver> {
        self.deploy_csi_driver_with(namespace, driver_name, false)
            .await
    }

    /// [`Node::deploy_csi_driver`]; with `node_expansion_required` the
    /// driver answers ControllerExpandVolume with
    /// `node_expansion_required` and advertises the node EXPAND_VOLUME
    /// capability, so the kubelet finishes expansions with
    /// NodeExpandVolume.
    pub async fn deploy_csi_driver_with(
        &self,
        namespace: &str,
        driver_name: &str,
        node_expansion_required: bool,
    ) -> Result<NodeDriver> {
        let opts = NodeDriverOptions {
            node_expansion_required,
            ..Default::default()
        };
        self.deploy_csi_driver_opts(namespace, driver_name, &opts)
            .await
    }

    /// [`Node::deploy_csi_driver`] with the driver's [`NodeDriverOptions`].
    ///
    /// Errors: as [`Node::deploy_csi_driver`].
    pub async fn deploy_csi_driver_opts(
        &self,
        namespace: &str,
        driver_name: &str,
        opts: &NodeDriverOptions,
    ) -> Result<NodeDriver> {
        let expansion = opts.node_expansion_required.to_string();
        let attach = opts.enable_attach.to_string();
        let limit = opts.attach_limit.to_string();
        // The mock service accepts ControllerPublishVolume only for its own
        // node ID, so an attaching driver keeps it; otherwise the node's
        // name, as csi-driver-host-path reports.
        let node_id = if opts.enable_attach {
            ""
        } else {
            self.name.as_str()
        };
        self.deploy_csi_driver_from(
            namespace,
            driver_name,
            &crate::manifest_path("node-csi-driver.yaml"),
            &[
                ("REGISTRAR_IMAGE", node_config::REGISTRAR_IMAGE),
                ("NODE_EXPANSION_REQUIRED", expansion.as_str()),
                ("ENABLE_ATTACH", attach.as_str()),
                ("ATTACH_LIMIT", limit.as_str()),
                ("NODE_ID", node_id),
            ],
        )
        .await
    }

    /// [`Node::deploy_csi_driver`] with another pod manifest, for tests of
    /// node sidecars (our registrar, livenessprobe) in the driver's pod.
    /// `manifest` gets `${NAMESPACE}`, `${POD_NAME}`, `${NODE_NAME}`,
    /// `${DRIVER_NAME}`, `${KUBELET_ROOT}` and `${DRIVER_IMAGE}`, plus
    /// `extra`; its pod must carry [`DRIVER_POD_LABEL`] and a container
    /// named `registrar` (its log is shown when registration times out).
    ///
    /// Errors: as [`Node::deploy_csi_driver`].
    pub async fn deploy_csi_driver_from(
        &self,
        namespace: &str,
        driver_name: &str,
        manifest: &Path,
        extra: &[(&str, &str)],
    ) -> Result<NodeDriver> {
        let pod = format!("csi-driver-{}", self.tb.next_seq());
        let root = self.kubelet_root.display().to_string();
        let mut vars = vec![
            ("NAMESPACE", namespace),
            ("POD_NAME", pod.as_str()),
            ("NODE_NAME", self.name.as_str()),
            ("DRIVER_NAME", driver_name),
            ("KUBELET_ROOT", root.as_str()),
            ("DRIVER_IMAGE", node_config::DRIVER_IMAGE),
        ];
        vars.extend_from_slice(extra);
        self.tb.apply_manifest(manifest, &vars).await?;
        let pods: Api<Pod> = Api::namespaced(self.tb.admin_client(), namespace);
        self.wait_pod_running(&pods, &pod).await?;
        let csinodes: Api<CSINode> = Api::all(self.tb.admin_client());
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            if let Ok(Some(c)) = csinodes.get_opt(&self.name).await
                && c.spec.drivers.iter().any(|d| d.name == driver_name)
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::ReadinessTimeout {
                    what: format!("{driver_name} in CSINode {}", self.name),
                    waited: NODE_READY_TIMEOUT,
                    last_error: "the kubelet has not registered the driver".into(),
                    log_tail: self.log_tails(&[(namespace, &pod, "registrar")]),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(NodeDriver {
            namespace: namespace.into(),
            pod,
            driver_name: driver_name.into(),
            socket: self
                .kubelet_root
                .join("plugins")
                .join(driver_name)
                .join("csi.sock"),
        })
    }

    /// Packs each `(reference, static binary)` into a one-binary OCI image
    /// (entrypoint `/<binary name>`) and imports it into the node's
    /// containerd, for pods that run our own binaries. Local mode only.
    ///
    /// Errors: [`Error::Io`] when packing or `ctr images import` fails;
    /// [`Error::Kubeconfig`] in external mode (load the images yourself).
    pub async fn import_images(&self, images: &[(&str, &Path)]) -> Result<()> {
        let Some(local) = &self.local else {
            return Err(Error::Kubeconfig(
                "images can only be imported into the test bed's own node".into(),
            ));
        };
        let archives = images
            .iter()
            .map(|(reference, binary)| {
                let name = binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let out = local.paths.images.join(format!("{name}.tar"));
                node_images::pack(reference, binary, &out)?;
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        node_images::import_all(
            &local.bin_dir.join("ctr"),
            &local.paths.containerd_socket,
            &archives,
        )
        .await
    }

    /// Waits until pod `name` is Running with every container ready.
    ///
    /// Errors: [`Error::ReadinessTimeout`] after [`NODE_READY_TIMEOUT`] with
    /// the pod's last status and the kubelet's log tail; [`Error::Api`].
    pub async fn wait_pod_running(&self, pods: &Api<Pod>, name: &str) -> Result<()> {
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            let p = pods
                .get(name)
                .await
                .map_err(|e| Error::api(format!("get Pod {name}"), e))?;
            let status = p.status.clone().unwrap_or_default();
            let ready = status.phase.as_deref() == Some("Running")
                && status
                    .container_statuses
                    .as_ref()
                    .is_some_and(|cs| cs.iter().all(|c| c.ready));
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::ReadinessTimeout {
                    what: format!("Pod {name} Running"),
                    waited: NODE_READY_TIMEOUT,
                    last_error: serde_json::to_string(&status).unwrap_or_default(),
                    log_tail: self
                        .kubelet_log()
                        .map(|l| tail_file(l, 60))
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The log of `container` in pod `namespace/pod` as the kubelet wrote it
    /// (CRI log format, every attempt concatenated). Local mode only: empty
    /// in external mode.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let Some(dir) = &self.pod_logs else {
            return String::new();
        };
        let prefix = format!("{namespace}_{pod}_");
        let mut out = String::new();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return out;
        };
        let mut pod_dirs: Vec<_> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path().join(container))
            .collect();
        pod_dirs.sort();
        for d in pod_dirs {
            let mut files: Vec<_> = std::fs::read_dir(&d)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            for f in files {
                out.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
            }
        }
        out
    }

    fn log_tails(&self, containers: &[(&str, &str, &str)]) -> String {
        let mut s = String::new();
        for (ns, pod, c) in containers {
            let log = self.container_log(ns, pod, c);
            let tail = crate::logs::tail_text(&log, 30);
            s.push_str(&format!("--- {ns}/{pod} {c}:\n{tail}\n"));
        }
        if let Some(l) = self.kubelet_log() {
            s.push_str(&format!("--- kubelet:\n{}\n", tail_file(l, 40)));
        }
        s
    }

    /// Tears the node down now (see [`Node`]) and reports the host state
    /// before the node and after teardown.
    ///
    /// Errors: [`Error::Teardown`] listing what differs or failed, with both
    /// states; the report is printed to stderr either way.
    pub async fn teardown(mut self) -> Result<TeardownReport> {
        let Some(local) = self.local.take() else {
            return Ok(TeardownReport::external());
        };
        let report = tokio::task::spawn_blocking(move || node_teardown::run(local))
            .await
            .map_err(|e| Error::io("node teardown thread", std::io::Error::other(e)))?;
        eprintln!("{report}");
        if report.is_clean() {
            Ok(report)
        } else {
            Err(Error::Teardown(report.to_string()))
        }
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            // A panic or early return: tear down on a thread of its own,
            // with its own runtime, since this one may be blocked here.
            let report = std::thread::spawn(move || node_teardown::run(local)).join();
            match report {
                Ok(r) => {
                    eprintln!("{r}");
                    *self.drop_report.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
                Err(_) => eprintln!("csi-testbed: node teardown panicked"),
            }
        }
    }
}
