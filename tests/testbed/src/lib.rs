//! Real-cluster test bed for the CSI sidecars.
//!
//! [`Testbed::start`] gives a test a Kubernetes API server and a place to run
//! processes:
//!
//! * **Local mode** (default): etcd, kube-apiserver and
//!   kube-controller-manager run as child processes on 127.0.0.1, built by
//!   `tests/testbed/build.sh core` (or taken from `$CSI_TESTBED_BIN`). No
//!   kubelet, no scheduler: tests create Nodes/CSINodes themselves
//!   ([`Testbed::create_node_with_csinode`]).
//! * **External mode**: with `$KUBECONFIG` set (e.g. to a kind cluster's
//!   kubeconfig) that cluster is used instead and no control plane is
//!   started: `KUBECONFIG=$HOME/.kube/config cargo test -p <crate>`.
//!
//! The CSI driver is `csi-testdriver` ([`Testbed::start_driver`]),
//! Kubernetes' e2e mock CSI service with volumes in memory. Sidecars are
//! started with [`Testbed::spawn`], usually with a kubeconfig from
//! [`Testbed::service_account_kubeconfig`] so they run under upstream's RBAC
//! (see `manifests/` and [`Testbed::apply_manifest`]).
//!
//! **A real node** ([`Testbed::start_node`], with
//! [`TestbedOptions::with_node`]): a kubelet from the pinned
//! `k8s.io/kubernetes` and containerd from its Go module (`build.sh node`),
//! runc and the CNI plugins from Debian, our static binaries packed into
//! OCI images and imported (never pulled). One node per machine (file
//! lock); its teardown undoes every host change and compares the host
//! state before and after. With `$KUBECONFIG`, the cluster's own nodes are
//! used instead.
//!
//! Missing binaries make [`Testbed::start`] fail with the command that
//! builds them: tests fail, they never skip. Every child writes to
//! `<run dir>/logs/<name>.log`; [`Testbed::run_test`] prints those logs when
//! a test body fails. `CSI_TESTBED_KEEP=1` keeps the run directory.

mod binaries;
mod cluster;
mod control_plane;
mod delay_proxy;
mod driver;
mod error;
mod host_state;
mod kubeconfig;
mod logs;
mod manifest;
mod node;
mod node_config;
mod node_images;
mod node_lock;
mod node_teardown;
mod pki;
mod poll;
mod process;
mod restart;
mod snapshot_crds;
mod static_bin;
mod testbed;
mod workload;

pub use binaries::{BIN_ENV, CORE_BINARIES, NODE_BINARIES, build_command, build_script, repo_root};
pub use cluster::{CONTROLLER_MANAGED_ATTACH, TOKEN_EXPIRATION_SECONDS};
pub use control_plane::{CONTROLLERS, WORKLOAD_CONTROLLERS};
pub use delay_proxy::DelayProxy;
pub use driver::{
    DEFAULT_DRIVER_NAME, DRIVER_READY_TIMEOUT, DriverHandle, DriverOptions, wait_for_socket,
};
pub use error::{Error, Result};
pub use host_state::{HostState, WATCHED_PATHS, WATCHED_SYSCTLS};
pub use kubeconfig::CONTEXT_NAME;
pub use logs::{DUMP_LINES, tail_file};
pub use manifest::{parse_documents, substitute};
pub use node::{
    DEFAULT_KUBELET_ROOT, DRIVER_POD_LABEL, NODE_READY_TIMEOUT, Node, NodeDriver, NodeDriverOptions,
};
pub use node_config::{
    BRIDGE, DRIVER_IMAGE, NODE_IP, NODE_NAME, NodePaths, PAUSE_IMAGE, POD_SUBNET, REGISTRAR_IMAGE,
};
pub use node_images::NODE_IMAGES;
pub use node_lock::{NODE_LOCK_PATH, NodeLock};
pub use node_teardown::TeardownReport;
pub use pki::ADMIN_USER;
pub use poll::poll;
pub use process::{ProcessHandle, STOP_GRACE};
pub use snapshot_crds::{
    CRD_ESTABLISHED_TIMEOUT, SNAPSHOT_CLIENT_MODULE, SNAPSHOT_CRD_FILES, snapshot_client_module_dir,
};
pub use static_bin::{STATIC_RUSTFLAGS, static_binary, static_binary_env};
pub use testbed::{KEEP_ENV, Testbed, TestbedOptions};
pub use workload::workload_pod;

/// Path of a file in `tests/testbed/manifests/`, e.g.
/// `manifest_path("rbac-csi-provisioner.yaml")`.
pub fn manifest_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(file)
}
