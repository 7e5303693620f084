//! csi-attacher's command line: upstream v4.12.0's flags and defaults
//! (`kubernetes-csi/external-attacher:cmd/csi-attacher/main.go`),
//! plus the shared sidecar, retry and logging flags from the runtime crate.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use sidecar_runtime::flags::{
    CommonArgs, LoggingArgs, RetryArgs, WorkerThreads, parse_go_duration,
};

/// All csi-attacher flags.
#[derive(Debug, Parser)]
#[command(name = "csi-attacher", disable_version_flag = true)]
#[command(
    about = "Attaches volumes for VolumeAttachments through a CSI driver's ControllerPublishVolume/ControllerUnpublishVolume (drop-in for kubernetes-csi external-attacher)."
)]
pub struct AttacherArgs {
    /// Shared sidecar flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// `--retry-interval-start` (1s) and `--retry-interval-max` (5m).
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Logging flags.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Resync interval of the controller.
    #[arg(long, default_value = "10m", value_parser = parse_go_duration)]
    pub resync: Duration,
    /// Timeout for waiting for attaching or detaching the volume.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    pub timeout: Duration,
    /// Number of attacher worker threads: this many attach workers and, in
    /// their own lane, this many detach workers (and PV workers).
    /// 1 to 65535; 0 (which upstream refuses at start-up) is a flag error.
    #[arg(long, default_value = "10")]
    pub worker_threads: WorkerThreads,
    /// Max entries per each page in volume lister call, 0 means no limit.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub max_entries: i32,
    /// The default filesystem type of the volume to publish. Defaults to empty string
    #[arg(long, default_value = "")]
    pub default_fstype: String,
    /// Resync interval of the VolumeAttachment reconciler.
    #[arg(long, default_value = "1m", value_parser = parse_go_duration)]
    pub reconcile_sync: Duration,
    /// The maximum amount of characters logged for every grpc responses. Defaults to no limit
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub max_grpc_log_length: i64,
    /// A set of key=value pairs that describe feature gates: MutableCSINodeAllocatableCount (GA, default true), ReleaseLeaderElectionOnExit (alpha, default false), and the generic Kubernetes component gates (accepted, no effect).
    #[arg(long, default_value = "", value_parser = crate::features::parse_pairs)]
    pub feature_gates: BTreeMap<String, bool>,
}

/// The shared flags, for [`sidecar_runtime::app`].
impl sidecar_runtime::app::SidecarArgs for AttacherArgs {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
    fn logging(&self) -> &LoggingArgs {
        &self.logging
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<AttacherArgs, clap::Error> {
        sidecar_runtime::flags::try_parse_args("csi-attacher", args)
    }

    #[test]
    fn upstream_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.common.csi_address, "/run/csi/socket");
        assert_eq!(a.resync, Duration::from_secs(600));
        assert_eq!(a.timeout, Duration::from_secs(15));
        assert_eq!(a.worker_threads.get(), 10);
        assert_eq!(a.max_entries, 0);
        assert_eq!(a.default_fstype, "");
        assert_eq!(a.reconcile_sync, Duration::from_secs(60));
        assert_eq!(a.max_grpc_log_length, -1);
        assert!(a.feature_gates.is_empty());
        assert_eq!(a.retry.retry_interval_start, Duration::from_secs(1));
        assert_eq!(a.retry.retry_interval_max, Duration::from_secs(300));
        assert_eq!(a.common.kube_api_qps, 5.0);
        assert_eq!(a.common.kube_api_burst, 10);
        assert!(!a.common.leader_election);
    }

    #[test]
    fn go_style_command_line() {
        let a = parse(&[
            "-csi-address=/csi/csi.sock",
            "-v=5",
            "-leader-election",
            "-timeout=1m30s",
            "-worker-threads",
            "50",
            "-max-entries=100",
            "-default-fstype=ext4",
            "-feature-gates=ReleaseLeaderElectionOnExit=true",
        ])
        .unwrap();
        assert_eq!(a.common.csi_address, "/csi/csi.sock");
        assert_eq!(a.logging.verbosity, 5);
        assert!(a.common.leader_election);
        assert_eq!(a.timeout, Duration::from_secs(90));
        assert_eq!(a.worker_threads.get(), 50);
        assert_eq!(a.max_entries, 100);
        assert_eq!(a.default_fstype, "ext4");
        assert_eq!(
            a.feature_gates.get("ReleaseLeaderElectionOnExit"),
            Some(&true)
        );
    }

    #[test]
    fn unknown_removed_and_malformed_flags_are_usage_errors() {
        for bad in [
            &["-no-such-flag"][..],
            &["--connection-timeout=1s"],
            &["--leader-election-type=leases"],
            &["--leader-election-identity=x"],
            &["--timeout=soon"],
            &["--worker-threads=0"],
            &["--master=https://x"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(sidecar_runtime::flags::exit_code(err.kind()), 2, "{bad:?}");
        }
    }
}
