//! csi-resizer's command line: upstream v2.2.0's flags and defaults
//! (kubernetes-csi/external-resizer:cmd/csi-resizer/main.go), plus the
//! shared sidecar, retry and logging flags from the runtime crate.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{ArgAction, Parser};
use sidecar_runtime::flags::{
    CommonArgs, LoggingArgs, RetryArgs, WorkerThreads, parse_go_bool, parse_go_duration,
};

/// All csi-resizer flags.
#[derive(Debug, Parser)]
#[command(name = "csi-resizer", disable_version_flag = true)]
#[command(
    about = "Expands and modifies volumes through a CSI driver's ControllerExpandVolume/ControllerModifyVolume (drop-in for kubernetes-csi external-resizer)."
)]
pub struct ResizerArgs {
    /// Shared sidecar flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// `--retry-interval-start` (1s) and `--retry-interval-max` (5m).
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Logging flags.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Master URL to build a client config from. Either this or kubeconfig needs to be set if the resizer is being run out of cluster.
    #[arg(long, default_value = "")]
    pub master: String,
    /// Resync period for cache.
    #[arg(long, default_value = "10m", value_parser = parse_go_duration)]
    pub resync_period: Duration,
    /// Concurrency to process multiple resize requests (per controller: resize and modify each get this many).
    #[arg(long, default_value = "10")]
    pub workers: WorkerThreads,
    /// Timeout of every CSI call (upstream's help says "for waiting for CSI driver socket").
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub timeout: Duration,
    /// Flag to turn on/off capability to handle volume in use error in resizer controller (watches Pods).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub handle_volume_inuse_error: bool,
    /// If set, add pv/pvc metadata to plugin modify requests as parameters.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_parser = parse_go_bool)]
    pub extra_modify_metadata: bool,
    /// A set of key=value pairs that describe feature gates: AnnotateFsResize (alpha, default false), RecoverVolumeExpansionFailure (GA, default true), VolumeAttributesClass (GA, default true), ReleaseLeaderElectionOnExit (alpha, default false), and the generic Kubernetes component gates.
    #[arg(long, default_value = "", value_parser = crate::features::parse_pairs)]
    pub feature_gates: BTreeMap<String, bool>,
}

/// The shared flags, for [`sidecar_runtime::app`].
impl sidecar_runtime::app::SidecarArgs for ResizerArgs {
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

    fn parse(args: &[&str]) -> Result<ResizerArgs, clap::Error> {
        sidecar_runtime::flags::try_parse_args("csi-resizer", args)
    }

    #[test]
    fn upstream_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.common.csi_address, "/run/csi/socket");
        assert_eq!(a.timeout, Duration::from_secs(10));
        assert_eq!(a.workers.get(), 10);
        assert_eq!(a.resync_period, Duration::from_secs(600));
        assert!(a.handle_volume_inuse_error);
        assert!(!a.extra_modify_metadata);
        assert_eq!(a.retry.retry_interval_start, Duration::from_secs(1));
        assert_eq!(a.retry.retry_interval_max, Duration::from_secs(300));
        assert_eq!(a.common.kube_api_qps, 5.0);
        assert_eq!(a.common.kube_api_burst, 10);
        assert!(a.feature_gates.is_empty());
    }

    #[test]
    fn go_style_command_line() {
        let a = parse(&[
            "-csi-address=/csi/csi.sock",
            "-v=5",
            "-leader-election",
            "-timeout=30s",
            "-workers=3",
            "-handle-volume-inuse-error=false",
            "-extra-modify-metadata",
            "-feature-gates=AnnotateFsResize=true",
        ])
        .unwrap();
        assert_eq!(a.common.csi_address, "/csi/csi.sock");
        assert_eq!(a.logging.verbosity, 5);
        assert!(a.common.leader_election);
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.workers.get(), 3);
        assert!(!a.handle_volume_inuse_error);
        assert!(a.extra_modify_metadata);
        assert_eq!(a.feature_gates.get("AnnotateFsResize"), Some(&true));
    }

    #[test]
    fn bad_and_unknown_flags_are_usage_errors() {
        for bad in [
            &["-no-such-flag"][..],
            &["--csiTimeout=1s"],
            &["--timeout=soon"],
            &["--workers=0"],
            &["--feature-gates=AnnotateFsResize"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(sidecar_runtime::flags::exit_code(err.kind()), 2, "{bad:?}");
        }
    }
}
