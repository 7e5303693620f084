//! csi-provisioner's command line: upstream v6.3.0's flags and defaults
//! (`external-provisioner: cmd/csi-provisioner/csi-provisioner.go`), plus the shared sidecar, retry and logging flags from
//! the runtime crate.

use std::time::Duration;

use clap::{ArgAction, Parser};
use sidecar_runtime::flags::{
    CommonArgs, LoggingArgs, RetryArgs, WorkerThreads, parse_go_duration,
};

/// All csi-provisioner flags.
#[derive(Debug, Parser)]
#[command(name = "csi-provisioner", disable_version_flag = true)]
#[command(
    about = "Provisions PersistentVolumes through a CSI driver's CreateVolume/DeleteVolume (drop-in for kubernetes-csi external-provisioner)."
)]
pub struct ProvisionerArgs {
    /// Shared sidecar flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Retry flags.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Logging flags.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Master URL to build a client config from. Either this or kubeconfig needs to be set if the provisioner is being run out of cluster.
    #[arg(long, default_value = "")]
    pub master: String,
    /// Prefix to apply to the name of a created volume.
    #[arg(long, default_value = "pvc")]
    pub volume_name_prefix: String,
    /// Truncates generated UUID of a created volume to this length (-1 keeps it whole).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub volume_name_uuid_length: i64,
    /// Number of provisioner worker threads, in other words nr. of simultaneous CSI calls.
    /// 1 to 65535; 0 (where upstream would provision nothing) is a flag error.
    #[arg(long, default_value = "100")]
    pub worker_threads: WorkerThreads,
    /// Number of simultaneously running threads, handling cloning finalizer removal.
    #[arg(
        long,
        default_value_t = 1,
        help = "Number of cloning-finalizer removal threads [accepted; clone protection is released by the claim workers]"
    )]
    pub cloning_protection_threads: usize,
    /// Period of the orphaned snapshot-finalizer sweep; 0 disables it.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    pub snapshot_orphan_sweep_interval: Duration,
    /// Number of simultaneously running threads, handling CSIStorageCapacity objects.
    #[arg(
        long,
        default_value_t = 1,
        help = "Number of CSIStorageCapacity threads [accepted; one loop serves all pairs]"
    )]
    pub capacity_threads: usize,
    /// Timeout for waiting for creation or deletion of a volume (every CSI call).
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub timeout: Duration,
    /// Late binding: pass only the selected node's topology.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub strict_topology: bool,
    /// Immediate binding: pass aggregated cluster topologies.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub immediate_topology: bool,
    /// Pass PVC and PV metadata to CreateVolume parameters (csi.storage.k8s.io/pvc/name, …/pvc/namespace, …/pv/name).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub extra_create_metadata: bool,
    /// Serve /debug/pprof on the HTTP endpoint.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool, help = "Serve profiling endpoints [accepted; no effect: Go's pprof has no counterpart here]")]
    pub enable_pprof: bool,
    /// fsType used when the StorageClass names none.
    #[arg(long, default_value = "")]
    pub default_fstype: String,
    /// QPS of the client that writes CSIStorageCapacity objects.
    #[arg(long, default_value_t = 1.0)]
    pub kube_api_capacity_qps: f32,
    /// Burst of the client that writes CSIStorageCapacity objects.
    #[arg(long, default_value_t = 5)]
    pub kube_api_capacity_burst: u32,
    /// Produce CSIStorageCapacity objects.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub enable_capacity: bool,
    /// Also produce capacity for Immediate-binding storage classes.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub capacity_for_immediate_binding: bool,
    /// Period of GetCapacity polling.
    #[arg(long, default_value = "1m", value_parser = parse_go_duration)]
    pub capacity_poll_interval: Duration,
    /// Owner of CSIStorageCapacity objects: -1 none, 0 the pod, 1 its controller, …
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub capacity_ownerref_level: i32,
    /// Run one provisioner per node (needs NODE_NAME).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub node_deployment: bool,
    /// In node mode, compete for Immediate-binding PVCs.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub node_deployment_immediate_binding: bool,
    /// In node mode, initial delay before claiming an Immediate PVC.
    #[arg(long, default_value = "20s", value_parser = parse_go_duration)]
    pub node_deployment_base_delay: Duration,
    /// In node mode, maximum delay before claiming an Immediate PVC.
    #[arg(long, default_value = "60s", value_parser = parse_go_duration)]
    pub node_deployment_max_delay: Duration,
    /// Set spec.csi.readOnly on PVs whose claim asks for ReadOnlyMany only.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub controller_publish_readonly: bool,
    /// Refuse restores from snapshots of another volume mode.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true", value_parser = sidecar_runtime::flags::parse_go_bool)]
    pub prevent_volume_mode_conversion: bool,
    /// A set of key=value pairs that describe feature gates: Topology (GA, default true), CrossNamespaceVolumeDataSource (alpha, default false), VolumeAttributesClass (GA, default true), ReleaseLeaderElectionOnExit (alpha, default false), and the generic Kubernetes component gates.
    #[arg(long, default_value = "", value_parser = crate::features::parse_pairs)]
    pub feature_gates: std::collections::BTreeMap<String, bool>,
}

/// The shared flags, for [`sidecar_runtime::app`].
impl sidecar_runtime::app::SidecarArgs for ProvisionerArgs {
    fn common(&self) -> &sidecar_runtime::flags::CommonArgs {
        &self.common
    }
    fn logging(&self) -> &sidecar_runtime::flags::LoggingArgs {
        &self.logging
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProvisionerArgs, clap::Error> {
        sidecar_runtime::flags::try_parse_args("csi-provisioner", args)
    }

    #[test]
    fn upstream_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.common.csi_address, "/run/csi/socket");
        assert_eq!(a.timeout, Duration::from_secs(10));
        assert_eq!(a.worker_threads.get(), 100);
        assert_eq!(a.volume_name_prefix, "pvc");
        assert_eq!(a.volume_name_uuid_length, -1);
        assert!(a.immediate_topology);
        assert!(!a.strict_topology);
        assert!(a.prevent_volume_mode_conversion);
        assert_eq!(a.capacity_poll_interval, Duration::from_secs(60));
        assert_eq!(a.node_deployment_base_delay, Duration::from_secs(20));
        assert_eq!(a.capacity_ownerref_level, 1);
        assert_eq!(a.kube_api_capacity_burst, 5);
        assert_eq!(a.retry.retry_interval_start, Duration::from_secs(1));
        assert_eq!(a.retry.retry_interval_max, Duration::from_secs(300));
    }

    /// 0 would mean "unlimited" to kube-runtime's controller and "no
    /// worker" to upstream; 65536 does not fit its u16. Both are flag
    /// errors (exit 2), not a silent change of meaning.
    #[test]
    fn worker_threads_out_of_range_is_a_flag_error() {
        for bad in ["0", "65536", "-1"] {
            let e = parse(&[&format!("--worker-threads={bad}")]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            assert_eq!(sidecar_runtime::flags::exit_code(e.kind()), 2);
            assert!(e.to_string().contains("must be between 1 and 65535"), "{e}");
        }
        assert_eq!(
            parse(&["-worker-threads=65535"])
                .unwrap()
                .worker_threads
                .get(),
            65535
        );
    }

    #[test]
    fn go_style_command_line_from_the_issue() {
        let a = parse(&[
            "-csi-address=/run/csi/socket",
            "-v=5",
            "-leader-election",
            "-timeout=15s",
            "-worker-threads=10",
        ])
        .unwrap();
        assert_eq!(a.common.csi_address, "/run/csi/socket");
        assert_eq!(a.logging.verbosity, 5);
        assert!(a.common.leader_election);
        assert_eq!(a.timeout, Duration::from_secs(15));
        assert_eq!(a.worker_threads.get(), 10);
    }

    #[test]
    fn separate_values_bools_and_negative_numbers() {
        let a = parse(&[
            "--volume-name-uuid-length",
            "-1",
            "-extra-create-metadata=false",
            "-immediate-topology=false",
            "--capacity-ownerref-level=-1",
            "-timeout",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(a.volume_name_uuid_length, -1);
        assert!(!a.extra_create_metadata);
        assert!(!a.immediate_topology);
        assert_eq!(a.capacity_ownerref_level, -1);
        assert_eq!(a.timeout, Duration::from_secs(90));
    }

    #[test]
    fn unknown_and_removed_flags_are_usage_errors() {
        for bad in [
            &["-no-such-flag"][..],
            &["--provisioner=x"],
            &["--connection-timeout=1s"],
            &["--timeout=soon"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(sidecar_runtime::flags::exit_code(err.kind()), 2, "{bad:?}");
        }
    }
}
