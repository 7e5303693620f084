//! snapshot-controller's command line: upstream v8.6.0's flags and defaults
//! (kubernetes-csi/external-snapshotter:cmd/snapshot-controller/main.go).
//!
//! Unlike the sidecars, upstream's snapshot-controller does not use
//! csi-lib-utils' `standardflags`: there is no `--csi-address`,
//! `--metrics-address` or `--leader-election-labels`, and giving one exits 2
//! as any unknown flag. [`ControllerArgs::common`] maps the flags it does
//! have onto the runtime's [`CommonArgs`] for the shared start-up code.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{ArgAction, Parser};
use sidecar_runtime::flags::{
    CommonArgs, LoggingArgs, WorkerThreads, parse_go_bool, parse_go_duration,
};

/// All snapshot-controller flags.
#[derive(Debug, Parser)]
#[command(name = "snapshot-controller", disable_version_flag = true)]
#[command(
    about = "Binds VolumeSnapshots to VolumeSnapshotContents and creates the contents of dynamic snapshots (drop-in for kubernetes-csi snapshot-controller)."
)]
pub struct ControllerArgs {
    /// Logging flags.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Absolute path to the kubeconfig file. Required only when running out of cluster.
    #[arg(long, default_value = "")]
    pub kubeconfig: String,
    /// Resync interval of the controller.
    #[arg(long, default_value = "15m", value_parser = parse_go_duration)]
    pub resync_period: Duration,
    /// Show version.
    #[arg(long = "version", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub show_version: bool,
    /// Number of worker threads (per queue: snapshots and contents each get this many).
    #[arg(long, default_value = "10")]
    pub worker_threads: WorkerThreads,

    /// Enables leader election.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub leader_election: bool,
    /// The namespace where the leader election resource exists. Defaults to the pod namespace if not set.
    #[arg(long, default_value = "")]
    pub leader_election_namespace: String,
    /// Duration that non-leader candidates will wait to force acquire leadership.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    pub leader_election_lease_duration: Duration,
    /// Duration that the acting leader will retry refreshing leadership before giving up.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub leader_election_renew_deadline: Duration,
    /// Duration the LeaderElector clients should wait between tries of actions.
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub leader_election_retry_period: Duration,

    /// QPS to use while communicating with the kubernetes apiserver.
    #[arg(long, default_value_t = 5.0)]
    pub kube_api_qps: f64,
    /// Burst to use while communicating with the kubernetes apiserver.
    #[arg(long, default_value_t = 10)]
    pub kube_api_burst: u32,

    /// The TCP network address where the HTTP server for diagnostics, including metrics, will listen (example: :8080). Empty disables the server.
    #[arg(long, default_value = "")]
    pub http_endpoint: String,
    /// The HTTP path where prometheus metrics will be exposed.
    #[arg(long, default_value = "/metrics")]
    pub metrics_path: String,
    /// Initial retry interval of failed volume snapshot creation or deletion. It doubles with each failure, up to retry-interval-max.
    #[arg(long, default_value = "1s", value_parser = parse_go_duration)]
    pub retry_interval_start: Duration,
    /// Maximum retry interval of failed volume snapshot creation or deletion.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    pub retry_interval_max: Duration,
    /// Enables each node to handle snapshotting for the local volumes created on that node (labels contents with the node).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub enable_distributed_snapshotting: bool,
    /// Prevents an unauthorised user from modifying the volume mode when creating a PVC from an existing VolumeSnapshot (copies the PV's volumeMode into the content's sourceVolumeMode).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub prevent_volume_mode_conversion: bool,
    /// Maximum time to wait for CRDs to appear.
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub retry_crd_interval_max: Duration,
    /// Accepted for compatibility and ignored: the Tokio runtime sizes itself.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub automaxprocs: bool,
    /// Comma-separated key=value pairs of feature gates: CSIVolumeGroupSnapshot (default false), ReleaseLeaderElectionOnExit (default false), and the generic Kubernetes component gates.
    #[arg(long, default_value = "", value_parser = sidecar_runtime::feature_gates::parse_pairs)]
    pub feature_gates: BTreeMap<String, bool>,
}

/// The gates upstream's snapshot-controller knows, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureGates {
    /// Beta in v8.6.0, default off: the VolumeGroupSnapshot controllers.
    pub volume_group_snapshot: bool,
    /// Alpha, default off: release the Lease on SIGTERM/SIGINT.
    pub release_leader_election_on_exit: bool,
}

impl ControllerArgs {
    /// The flags the runtime's start-up reads, in its [`CommonArgs`] shape:
    /// no CSI address, no deprecated metrics address, no Lease labels.
    pub fn common(&self) -> CommonArgs {
        CommonArgs {
            csi_address: String::new(),
            kubeconfig: self.kubeconfig.clone(),
            kube_api_qps: self.kube_api_qps,
            kube_api_burst: self.kube_api_burst,
            http_endpoint: self.http_endpoint.clone(),
            metrics_address: String::new(),
            metrics_path: self.metrics_path.clone(),
            leader_election: self.leader_election,
            leader_election_namespace: self.leader_election_namespace.clone(),
            leader_election_lease_duration: self.leader_election_lease_duration,
            leader_election_renew_deadline: self.leader_election_renew_deadline,
            leader_election_retry_period: self.leader_election_retry_period,
            leader_election_labels: Vec::new(),
            show_version: self.show_version,
            automaxprocs: self.automaxprocs,
        }
    }

    /// `--feature-gates` resolved. Errors: `unrecognized feature gate:
    /// <name>` for a gate upstream does not know (upstream exits 255).
    pub fn gates(&self) -> Result<FeatureGates, String> {
        let mut gates = FeatureGates::default();
        for (name, value) in &self.feature_gates {
            match name.as_str() {
                "CSIVolumeGroupSnapshot" => gates.volume_group_snapshot = *value,
                "ReleaseLeaderElectionOnExit" => gates.release_leader_election_on_exit = *value,
                other if sidecar_runtime::feature_gates::is_component_gate(other) => {}
                other => return Err(format!("unrecognized feature gate: {other}")),
            }
        }
        Ok(gates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ControllerArgs, clap::Error> {
        sidecar_runtime::flags::try_parse_args("snapshot-controller", args)
    }

    #[test]
    fn upstream_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.resync_period, Duration::from_secs(15 * 60));
        assert_eq!(a.worker_threads.get(), 10);
        assert!(!a.leader_election);
        assert_eq!(a.leader_election_lease_duration, Duration::from_secs(15));
        assert_eq!(a.leader_election_renew_deadline, Duration::from_secs(10));
        assert_eq!(a.leader_election_retry_period, Duration::from_secs(5));
        assert_eq!(a.kube_api_qps, 5.0);
        assert_eq!(a.kube_api_burst, 10);
        assert_eq!(a.metrics_path, "/metrics");
        assert_eq!(a.retry_interval_start, Duration::from_secs(1));
        assert_eq!(a.retry_interval_max, Duration::from_secs(300));
        assert!(!a.enable_distributed_snapshotting);
        assert!(a.prevent_volume_mode_conversion);
        assert_eq!(a.retry_crd_interval_max, Duration::from_secs(30));
        assert_eq!(a.gates().unwrap(), FeatureGates::default());
    }

    #[test]
    fn go_style_command_line() {
        let a = parse(&[
            "-v=5",
            "-leader-election",
            "-leader-election-namespace=kube-system",
            "-worker-threads=3",
            "-prevent-volume-mode-conversion=false",
            "-http-endpoint=:8080",
            "-feature-gates=CSIVolumeGroupSnapshot=true",
        ])
        .unwrap();
        assert_eq!(a.logging.verbosity, 5);
        assert!(a.leader_election);
        assert_eq!(a.worker_threads.get(), 3);
        assert!(!a.prevent_volume_mode_conversion);
        assert!(a.gates().unwrap().volume_group_snapshot);
        let c = a.common();
        assert_eq!(c.http_address(), Some((":8080", true)));
        assert_eq!(c.leader_election_namespace, "kube-system");
    }

    #[test]
    fn sidecar_only_and_bad_flags_are_usage_errors() {
        for bad in [
            &["-csi-address=/x"][..],
            &["--metrics-address=:1"],
            &["--leader-election-labels=a:b"],
            &["--resync-period=soon"],
            &["--worker-threads=0"],
            &["--feature-gates=CSIVolumeGroupSnapshot"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(sidecar_runtime::flags::exit_code(err.kind()), 2, "{bad:?}");
        }
        let a = parse(&["--feature-gates=Nope=true"]).unwrap();
        assert_eq!(a.gates().unwrap_err(), "unrecognized feature gate: Nope");
    }
}
