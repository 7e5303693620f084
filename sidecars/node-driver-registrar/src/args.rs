//! The command line of `csi-node-driver-registrar` and the start-up
//! decisions taken from it alone.

use std::time::Duration;

use clap::Parser;
use sidecar_runtime::flags::{LoggingArgs, parse_go_bool, parse_go_duration};

use crate::Error;

/// The `--mode` value that only exits 0 (upstream keeps it for old exec
/// liveness probes).
pub const PROBE_MODE: &str = "kubelet-registration-probe";

/// Every flag of node-driver-registrar v2.17.0 with upstream's defaults
/// (node-driver-registrar: cmd/csi-node-driver-registrar/main.go, the
/// `flag.*` declarations).
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "csi-node-driver-registrar",
    about = "Registers a CSI driver with the kubelet (plugin-registration API)."
)]
pub struct Args {
    /// Address of the CSI driver socket inside the container (a path, or unix:///path).
    #[arg(long, default_value = "/run/csi/socket")]
    pub csi_address: String,

    /// Path of the CSI driver socket on the host, handed to the kubelet verbatim. Required.
    #[arg(long, default_value = "")]
    pub kubelet_registration_path: String,

    /// Directory in which `<driver>-reg.sock` is created (the host's
    /// `<kubelet root>/plugins_registry` mounted in).
    #[arg(long, default_value = "/registration")]
    pub plugin_registration_path: String,

    /// Deadline of GetPluginInfo at start and of the /healthz self-check.
    #[arg(long, default_value = "1s", value_parser = parse_go_duration)]
    pub timeout: Duration,

    /// TCP address (e.g. `:9809`) serving /healthz; empty disables it.
    #[arg(long, default_value = "")]
    pub http_endpoint: String,

    /// Deprecated: serve /healthz on `:<port>` when > 0. Exclusive with --http-endpoint.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub health_port: i64,

    /// Accepted for compatibility; has no effect (Go's profiler has no Rust counterpart).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub enable_pprof: bool,

    /// Deprecated: `kubelet-registration-probe` exits 0 at once; anything else registers.
    #[arg(long, default_value = "")]
    pub mode: String,

    /// Deprecated and without effect.
    #[arg(long, default_value = "0", value_parser = parse_go_duration)]
    pub connection_timeout: Duration,

    /// Print the version and exit.
    #[arg(long = "version", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub show_version: bool,

    /// Accepted for compatibility and ignored: the runtime sizes itself.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub automaxprocs: bool,

    /// Logging flags (component-base).
    #[command(flatten)]
    pub logging: LoggingArgs,
}

/// What the process does once its flags are known.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// `--mode=kubelet-registration-probe`: exit 0 at once.
    ExitForProbeMode,
    /// Register the driver.
    Register(Config),
}

/// The validated settings of a registering run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--csi-address`.
    pub csi_address: String,
    /// `--kubelet-registration-path`, returned to the kubelet as the endpoint.
    pub kubelet_registration_path: String,
    /// `--plugin-registration-path`.
    pub plugin_registration_path: String,
    /// `--timeout`.
    pub timeout: Duration,
    /// Where /healthz is served, if anywhere.
    pub http_address: Option<String>,
    /// Warnings to log once logging is up (deprecated flags in use).
    pub warnings: Vec<&'static str>,
}

impl Args {
    /// Decides what to run, in upstream's order
    /// (node-driver-registrar: cmd/csi-node-driver-registrar/main.go `main`):
    /// a missing `--kubelet-registration-path` fails even in probe mode,
    /// then probe mode exits, then `--health-port` with `--http-endpoint`
    /// fails.
    ///
    /// # Errors
    /// [`Error::MissingKubeletRegistrationPath`] and
    /// [`Error::HealthPortAndHttpEndpoint`]; upstream exits 1 on both.
    pub fn plan(&self) -> Result<Plan, Error> {
        if self.kubelet_registration_path.is_empty() {
            return Err(Error::MissingKubeletRegistrationPath);
        }
        if self.mode == PROBE_MODE {
            return Ok(Plan::ExitForProbeMode);
        }
        let http_address = match (self.health_port > 0, self.http_endpoint.is_empty()) {
            (true, false) => return Err(Error::HealthPortAndHttpEndpoint),
            (true, true) => Some(format!(":{}", self.health_port)),
            (false, false) => Some(self.http_endpoint.clone()),
            (false, true) => None,
        };
        let mut warnings = Vec::new();
        if !self.connection_timeout.is_zero() {
            warnings.push("--connection-timeout is deprecated and will have no effect");
        }
        if self.enable_pprof {
            warnings.push("--enable-pprof has no effect: there is no Go profiler to serve");
        }
        Ok(Plan::Register(Config {
            csi_address: self.csi_address.clone(),
            kubelet_registration_path: self.kubelet_registration_path.clone(),
            plugin_registration_path: self.plugin_registration_path.clone(),
            timeout: self.timeout,
            http_address,
            warnings,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_runtime::flags::{exit_code, try_parse_from};
    use std::ffi::OsString;

    fn parse(v: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec![OsString::from("csi-node-driver-registrar")];
        all.extend(v.iter().map(OsString::from));
        try_parse_from(all)
    }

    #[test]
    fn defaults_are_upstreams() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.csi_address, "/run/csi/socket");
        assert_eq!(a.kubelet_registration_path, "");
        assert_eq!(a.plugin_registration_path, "/registration");
        assert_eq!(a.timeout, Duration::from_secs(1));
        assert_eq!(a.http_endpoint, "");
        assert_eq!(a.health_port, 0);
        assert!(!a.enable_pprof && !a.show_version && !a.automaxprocs);
        assert_eq!(a.mode, "");
        assert_eq!(a.connection_timeout, Duration::ZERO);
        assert_eq!(a.logging, LoggingArgs::default());
    }

    #[test]
    fn go_syntax_as_charts_write_it() {
        let a = parse(&[
            "-csi-address=/csi/csi.sock",
            "-kubelet-registration-path",
            "/var/lib/kubelet/plugins/x/csi.sock",
            "-v=5",
            "-http-endpoint=:9809",
            "-timeout=5s",
            "-enable-pprof",
            "--automaxprocs=false",
        ])
        .unwrap();
        assert_eq!(a.csi_address, "/csi/csi.sock");
        assert_eq!(
            a.kubelet_registration_path,
            "/var/lib/kubelet/plugins/x/csi.sock"
        );
        assert_eq!(a.logging.verbosity, 5);
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert!(a.enable_pprof && !a.automaxprocs);
    }

    #[test]
    fn bad_flags_exit_2() {
        for bad in [
            &["-no-such-flag"][..],
            &["--timeout=60"],
            &["--health-port=x"],
            &["--kubeconfig=/k"],
            &["--enable-pprof=maybe"],
            &["-enable-pprof", "false"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(exit_code(e.kind()), 2, "{bad:?}");
        }
    }

    fn plan(v: &[&str]) -> Result<Plan, Error> {
        parse(v).unwrap().plan()
    }

    #[test]
    fn plan_follows_upstreams_order() {
        assert!(matches!(
            plan(&["--mode=kubelet-registration-probe"]),
            Err(Error::MissingKubeletRegistrationPath)
        ));
        assert_eq!(
            plan(&[
                "--kubelet-registration-path=/k",
                "--mode=kubelet-registration-probe",
                "--health-port=1",
                "--http-endpoint=:2"
            ])
            .unwrap(),
            Plan::ExitForProbeMode
        );
        assert!(matches!(
            plan(&[
                "--kubelet-registration-path=/k",
                "--health-port=9809",
                "--http-endpoint=:9809"
            ]),
            Err(Error::HealthPortAndHttpEndpoint)
        ));
        let Plan::Register(c) =
            plan(&["--kubelet-registration-path=/k", "--mode=registration"]).unwrap()
        else {
            panic!("not registering")
        };
        assert_eq!(c.http_address, None);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn health_address() {
        let address = |v: &[&str]| match plan(v).unwrap() {
            Plan::Register(c) => c.http_address,
            Plan::ExitForProbeMode => panic!("probe mode"),
        };
        assert_eq!(
            address(&["--kubelet-registration-path=/k", "--health-port=9809"]),
            Some(":9809".into())
        );
        assert_eq!(
            address(&[
                "--kubelet-registration-path=/k",
                "--http-endpoint=127.0.0.1:1"
            ]),
            Some("127.0.0.1:1".into())
        );
        // A non-positive port is "disabled", as upstream's `> 0` check.
        assert_eq!(
            address(&[
                "--kubelet-registration-path=/k",
                "--health-port=-1",
                "--http-endpoint=:5"
            ]),
            Some(":5".into())
        );
    }

    #[test]
    fn deprecated_flags_warn() {
        let Plan::Register(c) = plan(&[
            "--kubelet-registration-path=/k",
            "--connection-timeout=10s",
            "--enable-pprof",
        ])
        .unwrap() else {
            panic!("not registering")
        };
        assert_eq!(c.warnings.len(), 2);
        assert!(c.warnings[0].contains("deprecated"));
    }
}
