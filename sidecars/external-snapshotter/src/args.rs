//! csi-snapshotter's command line: upstream v8.6.0's flags and defaults
//! (external-snapshotter: cmd/csi-snapshotter/main.go), plus the shared
//! csi-lib-utils `standardflags` set, retry and logging flags from the
//! runtime crate.
//!
//! Upstream removed `--enable-volume-group-snapshots` (v8.2, replaced by the
//! `CSIVolumeGroupSnapshot` gate) and has no `--master`; both are unknown
//! flags here too (exit 2), so a manifest that works upstream works here.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{ArgAction, Parser};
use sidecar_runtime::flags::{
    CommonArgs, LoggingArgs, RetryArgs, WorkerThreads, parse_go_bool, parse_go_duration,
};

/// All csi-snapshotter flags.
#[derive(Debug, Parser)]
#[command(name = "csi-snapshotter", disable_version_flag = true)]
#[command(
    about = "Creates and deletes snapshots through a CSI driver's CreateSnapshot/DeleteSnapshot for VolumeSnapshotContents (drop-in for kubernetes-csi external-snapshotter's csi-snapshotter)."
)]
pub struct SnapshotterArgs {
    /// Shared sidecar flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// `--retry-interval-start` (1s) and `--retry-interval-max` (5m): the
    /// per-content backoff of failed operations and of readiness polls.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Logging flags.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Resync interval of the controller.
    #[arg(long, default_value = "15m", value_parser = parse_go_duration)]
    pub resync_period: Duration,
    /// Prefix to apply to the name of a created snapshot (must not be empty).
    #[arg(long, default_value = "snapshot")]
    pub snapshot_name_prefix: String,
    /// Length in characters of the VolumeSnapshot UID (dashes removed) in a created snapshot's name; -1 keeps the UID whole.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub snapshot_name_uuid_length: i64,
    /// Number of worker threads (concurrent contents, and again concurrent group contents).
    #[arg(long, default_value = "10")]
    pub worker_threads: WorkerThreads,
    /// The timeout of every CSI call.
    #[arg(long, default_value = "1m", value_parser = parse_go_duration)]
    pub timeout: Duration,
    /// If set, add snapshot metadata to plugin snapshot requests as parameters.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_parser = parse_go_bool)]
    pub extra_create_metadata: bool,
    /// Run next to the driver on every node and handle only the contents labelled `snapshot.storage.kubernetes.io/managed-by=$NODE_NAME`.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_parser = parse_go_bool)]
    pub node_deployment: bool,
    /// Prefix to apply to the name of a created group snapshot.
    #[arg(long, default_value = "groupsnapshot")]
    pub groupsnapshot_name_prefix: String,
    /// Length in characters of the VolumeGroupSnapshot UID in a created group snapshot's name; -1 keeps it whole.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub groupsnapshot_name_uuid_length: i64,
    /// key=value pairs: CSIVolumeGroupSnapshot (beta, default false), ReleaseLeaderElectionOnExit (alpha, default false), and the generic Kubernetes component gates.
    #[arg(long, default_value = "", value_parser = sidecar_runtime::feature_gates::parse_pairs)]
    pub feature_gates: BTreeMap<String, bool>,
}

/// The shared flags, for [`sidecar_runtime::app`].
impl sidecar_runtime::app::SidecarArgs for SnapshotterArgs {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
    fn logging(&self) -> &LoggingArgs {
        &self.logging
    }
}

impl SnapshotterArgs {
    /// The checks upstream makes after parsing, each an exit 1 there:
    /// `--node-deployment` with `--leader-election`, an empty
    /// `--snapshot-name-prefix` (and, with group snapshots on, an empty
    /// `--groupsnapshot-name-prefix`). A UID length outside -1..=32, which
    /// upstream accepts and then panics on at the first snapshot, is
    /// refused here at start.
    pub fn validate(&self, group_snapshots: bool) -> Result<(), String> {
        if self.node_deployment && self.common.leader_election {
            return Err("Leader election cannot happen when node-deployment is set to true".into());
        }
        if self.snapshot_name_prefix.is_empty() {
            return Err("Snapshot name prefix cannot be of length 0".into());
        }
        if group_snapshots && self.groupsnapshot_name_prefix.is_empty() {
            return Err("group snapshot name prefix cannot be of length 0".into());
        }
        for (flag, n) in [
            (
                "--snapshot-name-uuid-length",
                self.snapshot_name_uuid_length,
            ),
            (
                "--groupsnapshot-name-uuid-length",
                self.groupsnapshot_name_uuid_length,
            ),
        ] {
            if !(-1..=32).contains(&n) {
                return Err(format!(
                    "{flag}={n}: must be -1 (whole UID) or 0 to 32 characters"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SnapshotterArgs, clap::Error> {
        sidecar_runtime::flags::try_parse_args("csi-snapshotter", args)
    }

    #[test]
    fn upstream_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.common.csi_address, "/run/csi/socket");
        assert_eq!(a.timeout, Duration::from_secs(60));
        assert_eq!(a.worker_threads.get(), 10);
        assert_eq!(a.resync_period, Duration::from_secs(900));
        assert_eq!(a.snapshot_name_prefix, "snapshot");
        assert_eq!(a.snapshot_name_uuid_length, -1);
        assert_eq!(a.groupsnapshot_name_prefix, "groupsnapshot");
        assert_eq!(a.groupsnapshot_name_uuid_length, -1);
        assert!(!a.extra_create_metadata);
        assert!(!a.node_deployment);
        assert_eq!(a.retry.retry_interval_start, Duration::from_secs(1));
        assert_eq!(a.retry.retry_interval_max, Duration::from_secs(300));
        assert_eq!(a.common.kube_api_qps, 5.0);
        assert_eq!(a.common.kube_api_burst, 10);
        assert!(a.feature_gates.is_empty());
        assert!(a.validate(false).is_ok());
    }

    #[test]
    fn go_style_command_line() {
        let a = parse(&[
            "-csi-address=/csi/csi.sock",
            "-v=5",
            "-leader-election",
            "-timeout=30s",
            "-worker-threads=3",
            "-snapshot-name-prefix=snap",
            "-snapshot-name-uuid-length=8",
            "-extra-create-metadata",
            "-feature-gates=CSIVolumeGroupSnapshot=true",
        ])
        .unwrap();
        assert_eq!(a.common.csi_address, "/csi/csi.sock");
        assert_eq!(a.logging.verbosity, 5);
        assert!(a.common.leader_election);
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.worker_threads.get(), 3);
        assert_eq!(a.snapshot_name_prefix, "snap");
        assert_eq!(a.snapshot_name_uuid_length, 8);
        assert!(a.extra_create_metadata);
        assert_eq!(a.feature_gates.get("CSIVolumeGroupSnapshot"), Some(&true));
    }

    #[test]
    fn bad_and_unknown_flags_are_usage_errors() {
        for bad in [
            &["-no-such-flag"][..],
            &["--master=http://x"],
            &["--enable-volume-group-snapshots"],
            &["--timeout=soon"],
            &["--worker-threads=0"],
            &["--feature-gates=CSIVolumeGroupSnapshot"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(sidecar_runtime::flags::exit_code(err.kind()), 2, "{bad:?}");
        }
    }

    #[test]
    fn cross_flag_checks_as_upstream() {
        let a = parse(&["--node-deployment", "--leader-election"]).unwrap();
        assert!(a.validate(false).unwrap_err().contains("node-deployment"));
        let a = parse(&["--snapshot-name-prefix="]).unwrap();
        assert!(a.validate(false).unwrap_err().contains("prefix"));
        let a = parse(&["--groupsnapshot-name-prefix="]).unwrap();
        assert!(a.validate(false).is_ok());
        assert!(a.validate(true).is_err());
        let a = parse(&["--snapshot-name-uuid-length=33"]).unwrap();
        assert!(a.validate(false).is_err());
    }
}
