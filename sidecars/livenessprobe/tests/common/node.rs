//! What the node sidecars' end-to-end tests share: the driver pod with our
//! csi-node-driver-registrar and livenessprobe (static release builds packed
//! into images and imported into the test bed's containerd), and reads of
//! what the kubelet made of it. node-driver-registrar's e2e test includes
//! this file too.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver};
use kube::Api;
use testbed::{Node, NodeDriver, Testbed};

/// The driver's name in these tests.
pub const DRIVER: &str = "hostpath.csi.k8s.io";
/// The topology key csi-testdriver reports with `--enable-topology`.
pub const TOPOLOGY_KEY: &str = "topology.hostpath.csi/node";
/// How long a node-side change may take.
pub const WAIT: Duration = Duration::from_secs(120);

const REGISTRAR_IMAGE: &str = "csi-testbed.local/csi-node-driver-registrar:ours";
const LIVENESSPROBE_IMAGE: &str = "csi-testbed.local/livenessprobe:ours";

/// The driver pod with our sidecars.
pub struct Ours {
    /// The pod and the driver's socket on this machine.
    pub driver: NodeDriver,
    /// The registrar's /healthz port (host network).
    pub registrar_port: u16,
    /// livenessprobe's port (host network).
    pub liveness_port: u16,
    /// The ConfigMap the driver's node ID comes from.
    pub node_id_configmap: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Builds our two binaries statically (or takes `CSI_E2E_STATIC_*`),
/// imports them and runs the driver pod of `node-csi-driver-ours.yaml`
/// with node ID `node_id`; returns once the kubelet lists the driver in
/// CSINode.
pub async fn deploy_ours(
    node: &Node<'_>,
    namespace: &str,
    node_id: &str,
    topology: bool,
) -> anyhow::Result<Ours> {
    let t = std::time::Instant::now();
    let (registrar, livenessprobe) = tokio::task::spawn_blocking(|| {
        anyhow::Ok((
            testbed::static_binary("node-driver-registrar", "csi-node-driver-registrar")?,
            testbed::static_binary("livenessprobe", "livenessprobe")?,
        ))
    })
    .await??;
    eprintln!(
        "e2e_node: static builds of our sidecars ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = std::time::Instant::now();
    node.import_images(&[
        (REGISTRAR_IMAGE, registrar.as_path()),
        (LIVENESSPROBE_IMAGE, livenessprobe.as_path()),
    ])
    .await?;
    let (registrar_port, liveness_port) = (free_port(), free_port());
    let (rp, lp) = (registrar_port.to_string(), liveness_port.to_string());
    let driver = node
        .deploy_csi_driver_from(
            namespace,
            DRIVER,
            &testbed::manifest_path("node-csi-driver-ours.yaml"),
            &[
                ("REGISTRAR_IMAGE", REGISTRAR_IMAGE),
                ("LIVENESSPROBE_IMAGE", LIVENESSPROBE_IMAGE),
                ("NODE_ID", node_id),
                ("ENABLE_TOPOLOGY", if topology { "true" } else { "false" }),
                ("REGISTRAR_PORT", &rp),
                ("LIVENESS_PORT", &lp),
            ],
        )
        .await?;
    eprintln!(
        "e2e_node: images imported, driver pod running and registered by our registrar in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let node_id_configmap = format!("{}-node-id", driver.pod);
    Ok(Ours {
        driver,
        registrar_port,
        liveness_port,
        node_id_configmap,
    })
}

/// The driver's entry in the node's CSINode, if any.
pub async fn csinode_driver(tb: &Testbed, node: &str) -> anyhow::Result<Option<CSINodeDriver>> {
    let api: Api<CSINode> = Api::all(tb.admin_client());
    Ok(api
        .get_opt(node)
        .await?
        .and_then(|c| c.spec.drivers.into_iter().find(|d| d.name == DRIVER)))
}

/// Restart count of `container` in the pod.
pub async fn restarts(tb: &Testbed, ours: &Ours, container: &str) -> anyhow::Result<i32> {
    let pods: Api<Pod> = Api::namespaced(tb.admin_client(), &ours.driver.namespace);
    let pod = pods.get(&ours.driver.pod).await?;
    pod.status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().find(|c| c.name == container))
        .map(|c| c.restart_count)
        .with_context(|| format!("no status of container {container}"))
}

pub use testbed::poll;

/// SIGKILLs the driver's process (found by its unique `--state-dir`
/// argument in `/proc`); the kubelet then restarts the container.
pub fn kill_driver(node: &Node<'_>) -> anyhow::Result<()> {
    let marker = format!(
        "--state-dir={}/plugins/{DRIVER}/volumes",
        node.kubelet_root().display()
    );
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("csi-testdriver")) && args.contains(&marker) {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "kill -KILL {pid} failed");
            killed += 1;
        }
    }
    anyhow::ensure!(
        killed == 1,
        "expected one csi-testdriver process with {marker}, killed {killed}"
    );
    Ok(())
}

/// The driver's plugin directory on this machine (`/csi` in the pod).
pub fn plugin_dir(node: &Node<'_>) -> PathBuf {
    node.kubelet_root().join("plugins").join(DRIVER)
}

/// How many times `needle` occurs in `container`'s log.
pub fn log_count(node: &Node<'_>, ours: &Ours, container: &str, needle: &str) -> usize {
    node.container_log(&ours.driver.namespace, &ours.driver.pod, container)
        .matches(needle)
        .count()
}

/// `VmRSS` in KiB of the running `/<binary>` whose arguments include
/// `marker` (e.g. its port flag), for printing; `None` if not found.
pub fn rss_kib(binary: &str, marker: &str) -> Option<u64> {
    let want = format!("/{binary}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first() == Some(&want) && args.iter().any(|a| a.contains(marker)) {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        }
    }
    None
}

/// Prints the RSS of our two sidecars in the driver pod.
pub fn print_rss(ours: &Ours, when: &str) {
    let show = |kib: Option<u64>| match kib {
        Some(k) => format!("{:.1} MiB", k as f64 / 1024.0),
        None => "not found".to_owned(),
    };
    eprintln!(
        "e2e_node: RSS {when}: csi-node-driver-registrar {}, livenessprobe {}",
        show(rss_kib(
            "csi-node-driver-registrar",
            &format!(":{}", ours.registrar_port)
        )),
        show(rss_kib(
            "livenessprobe",
            &format!(":{}", ours.liveness_port)
        )),
    );
}
