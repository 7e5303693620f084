//! Configuration files of the node: containerd's `config.toml`, the CNI
//! bridge conflist and the kubelet's `KubeletConfiguration`, all pointing
//! into the run directory so the host keeps as little as possible.

use std::path::{Path, PathBuf};

/// Name of the test bed's node (and the kubelet's `--hostname-override`).
pub const NODE_NAME: &str = "csitb-node";

/// The node's InternalIP: a /32 from the benchmarking range 198.18.0.0/15,
/// added to `lo` for the node's lifetime (the kubelet refuses a loopback
/// node IP, and these VMs have no dummy interface module).
pub const NODE_IP: &str = "198.18.0.1";

/// The pod network's range, from the same benchmarking block.
pub const POD_SUBNET: &str = "198.19.0.0/24";

/// The CNI bridge device name.
pub const BRIDGE: &str = "cni0";

/// Image references of the node's own images.
pub const PAUSE_IMAGE: &str = "csi-testbed.local/pause:v0";
/// See [`PAUSE_IMAGE`].
pub const DRIVER_IMAGE: &str = "csi-testbed.local/csi-testdriver:v0";
/// See [`PAUSE_IMAGE`].
pub const REGISTRAR_IMAGE: &str = "csi-testbed.local/csi-registrar:v0";

/// Where the node's files live, all under `<run>/node`.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// `<run>/node`.
    pub base: PathBuf,
    /// containerd's `root` (content, snapshots).
    pub containerd_root: PathBuf,
    /// containerd's `state` (sockets, sandbox shm, network namespaces).
    pub containerd_state: PathBuf,
    /// containerd's CRI and API socket.
    pub containerd_socket: PathBuf,
    /// `containerd.toml`.
    pub containerd_config: PathBuf,
    /// CNI configuration directory.
    pub cni_conf_dir: PathBuf,
    /// host-local IPAM's allocation records.
    pub cni_ipam_dir: PathBuf,
    /// The kubelet's `--root-dir`.
    pub kubelet_root: PathBuf,
    /// The kubelet's `podLogsDir`: container logs.
    pub pod_logs: PathBuf,
    /// The kubelet's flex-volume directory (created at start; kept here).
    pub volume_plugins: PathBuf,
    /// `kubelet.yaml`.
    pub kubelet_config: PathBuf,
    /// `kubelet.kubeconfig`.
    pub kubelet_kubeconfig: PathBuf,
    /// Packed image archives.
    pub images: PathBuf,
}

impl NodePaths {
    /// Paths under `<run>/node`; the short prefix keeps unix socket paths
    /// below the 108-byte limit.
    pub fn new(run_dir: &Path) -> Self {
        let base = run_dir.join("node");
        NodePaths {
            containerd_root: base.join("ctrd"),
            containerd_state: base.join("ctrd-state"),
            containerd_socket: base.join("containerd.sock"),
            containerd_config: base.join("containerd.toml"),
            cni_conf_dir: base.join("net.d"),
            cni_ipam_dir: base.join("ipam"),
            kubelet_root: base.join("kubelet"),
            pod_logs: base.join("pod-logs"),
            volume_plugins: base.join("flexvolume"),
            kubelet_config: base.join("kubelet.yaml"),
            kubelet_kubeconfig: base.join("kubelet.kubeconfig"),
            images: base.join("images"),
            base,
        }
    }

    /// The directories whose mounts belong to the node.
    pub fn mount_roots(&self) -> Vec<PathBuf> {
        vec![self.base.clone()]
    }
}

/// containerd 2.x configuration (schema version 3): CRI with runc from
/// `runc_path`, the bridge network, our pause image as sandbox image, and
/// network namespaces under the state directory instead of `/run/netns`.
///
/// `restrict_oom_score_adj`: root on these VMs lacks CAP_SYS_RESOURCE, so
/// containerd may only raise a container's OOM score, never lower it.
pub fn containerd_toml(p: &NodePaths, runc_path: &Path, cni_bin_dir: &Path) -> String {
    format!(
        r#"version = 3
root = "{root}"
state = "{state}"

[grpc]
  address = "{sock}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
"#,
        root = p.containerd_root.display(),
        state = p.containerd_state.display(),
        sock = p.containerd_socket.display(),
        pause = PAUSE_IMAGE,
        cni_bin = cni_bin_dir.display(),
        cni_conf = p.cni_conf_dir.display(),
        runc = runc_path.display(),
    )
}

/// A bridge network on [`BRIDGE`] with host-local addresses from
/// [`POD_SUBNET`], no masquerading (pods need not leave the machine), and
/// IPAM records in the run directory.
pub fn cni_conflist(p: &NodePaths) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "csitb",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": POD_SUBNET }]],
                "dataDir": p.cni_ipam_dir.display().to_string(),
            }
        }]
    })
    .to_string()
}

/// Ports the kubelet listens on.
#[derive(Debug, Clone, Copy)]
pub struct KubeletPorts {
    /// The kubelet API (TLS) on [`NODE_IP`].
    pub api: u16,
    /// `/healthz` on 127.0.0.1.
    pub healthz: u16,
}

/// The `KubeletConfiguration`: cgroup v1 with the cgroupfs driver, swap
/// tolerated, no image garbage collection (images are imported, never
/// pulled), eviction effectively off, client certificates from `ca_file`
/// accepted and every authenticated request allowed (the API server's
/// admin certificate is the only client).
pub fn kubelet_yaml(p: &NodePaths, ports: KubeletPorts, ca_file: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: {api}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
podLogsDir: {pod_logs}
volumePluginDir: {flex}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
registerNode: true
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
serializeImagePulls: false
resolvConf: /etc/resolv.conf
"#,
        ip = NODE_IP,
        api = ports.api,
        healthz = ports.healthz,
        sock = p.containerd_socket.display(),
        pod_logs = p.pod_logs.display(),
        flex = p.volume_plugins.display(),
        ca = ca_file.display(),
    )
}

/// Command-line flags of the kubelet (what its configuration file cannot say).
pub fn kubelet_args(p: &NodePaths) -> Vec<String> {
    vec![
        format!("--config={}", p.kubelet_config.display()),
        format!("--kubeconfig={}", p.kubelet_kubeconfig.display()),
        format!("--root-dir={}", p.kubelet_root.display()),
        format!("--cert-dir={}", p.kubelet_root.join("pki").display()),
        format!("--hostname-override={NODE_NAME}"),
        format!("--node-ip={NODE_IP}"),
        "--v=2".into(),
    ]
}

/// API server flags a node needs: the Node authorizer for the kubelet's
/// identity, the admin certificate as kubelet client, and InternalIP as
/// the only address type so nothing resolves the node's name.
pub fn apiserver_node_args(admin_cert: &Path, admin_key: &Path) -> Vec<String> {
    vec![
        "--authorization-mode=Node,RBAC".into(),
        format!("--kubelet-client-certificate={}", admin_cert.display()),
        format!("--kubelet-client-key={}", admin_key.display()),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_point_into_the_run_dir() {
        let p = NodePaths::new(Path::new("/tmp/csitb-abcdef"));
        let toml = containerd_toml(&p, Path::new("/usr/sbin/runc"), Path::new("/usr/lib/cni"));
        assert!(toml.contains("restrict_oom_score_adj = true"), "{toml}");
        assert!(
            toml.contains("/tmp/csitb-abcdef/node/containerd.sock"),
            "{toml}"
        );
        let cni: serde_json::Value = serde_json::from_str(&cni_conflist(&p)).unwrap();
        assert_eq!(cni["plugins"][0]["ipMasq"], false);
        let yaml = kubelet_yaml(
            &p,
            KubeletPorts { api: 1, healthz: 2 },
            Path::new("/ca.crt"),
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["failCgroupV1"], serde_yaml::Value::Bool(false));
        assert_eq!(v["imageGCHighThresholdPercent"].as_u64(), Some(100));
        assert!(p.containerd_socket.as_os_str().len() < 100);
    }
}
