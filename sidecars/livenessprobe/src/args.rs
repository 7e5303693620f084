//! The command line of `livenessprobe` and the listeners it implies.

use std::time::Duration;

use clap::Parser;
use sidecar_runtime::flags::{LoggingArgs, parse_go_bool, parse_go_duration};

use crate::Error;

/// `--health-port`'s default; upstream compares the flag with this string,
/// so an explicit `--health-port=9808` still combines with `--http-endpoint`.
pub const DEFAULT_HEALTH_PORT: &str = "9808";

/// Every flag of livenessprobe v2.19.0 with upstream's defaults
/// (livenessprobe: cmd/livenessprobe/main.go, the `flag.*` declarations).
/// There is no `--version`, as upstream: it exits 2.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "livenessprobe",
    about = "Answers HTTP /healthz with the CSI driver's Probe."
)]
pub struct Args {
    /// Address of the CSI driver socket (a path, or unix:///path).
    #[arg(long, default_value = "/run/csi/socket")]
    pub csi_address: String,

    /// Deadline of the connection and the Probe call of each /healthz.
    #[arg(long, default_value = "3s", value_parser = parse_go_duration)]
    pub probe_timeout: Duration,

    /// Deprecated: TCP port of /healthz on 0.0.0.0, unless --http-endpoint is set.
    #[arg(long, default_value = DEFAULT_HEALTH_PORT)]
    pub health_port: String,

    /// TCP address (e.g. `:9808`) serving /healthz and the metrics; replaces --health-port.
    #[arg(long, default_value = "")]
    pub http_endpoint: String,

    /// Deprecated: TCP address serving only the metrics. Exclusive with --http-endpoint.
    #[arg(long, default_value = "")]
    pub metrics_address: String,

    /// HTTP path of the Prometheus metrics.
    #[arg(long, default_value = "/metrics")]
    pub metrics_path: String,

    /// Accepted for compatibility and ignored: the runtime sizes itself.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub automaxprocs: bool,

    /// Logging flags (component-base).
    #[command(flatten)]
    pub logging: LoggingArgs,
}

/// Where what is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// The address of /healthz.
    pub health: String,
    /// Whether the metrics are served next to /healthz (`--http-endpoint`).
    pub metrics_with_health: bool,
    /// A separate metrics listener (`--metrics-address`).
    pub metrics: Option<String>,
}

impl Args {
    /// Checks the flag combinations upstream refuses and decides the
    /// listeners (livenessprobe: cmd/livenessprobe/main.go `main`).
    ///
    /// # Errors
    /// [`Error::HealthPortAndHttpEndpoint`] and
    /// [`Error::MetricsAddressAndHttpEndpoint`]; upstream exits 1 on both.
    pub fn listeners(&self) -> Result<Listeners, Error> {
        let endpoint = !self.http_endpoint.is_empty();
        if endpoint && self.health_port != DEFAULT_HEALTH_PORT {
            return Err(Error::HealthPortAndHttpEndpoint);
        }
        if endpoint && !self.metrics_address.is_empty() {
            return Err(Error::MetricsAddressAndHttpEndpoint);
        }
        Ok(Listeners {
            health: if endpoint {
                self.http_endpoint.clone()
            } else {
                format!("0.0.0.0:{}", self.health_port)
            },
            metrics_with_health: endpoint,
            metrics: (!self.metrics_address.is_empty()).then(|| self.metrics_address.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_runtime::flags::{exit_code, try_parse_from};
    use std::ffi::OsString;

    fn parse(v: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec![OsString::from("livenessprobe")];
        all.extend(v.iter().map(OsString::from));
        try_parse_from(all)
    }

    #[test]
    fn defaults_are_upstreams() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.csi_address, "/run/csi/socket");
        assert_eq!(a.probe_timeout, Duration::from_secs(3));
        assert_eq!(a.health_port, "9808");
        assert_eq!(a.http_endpoint, "");
        assert_eq!(a.metrics_address, "");
        assert_eq!(a.metrics_path, "/metrics");
        assert!(!a.automaxprocs);
        assert_eq!(a.logging, LoggingArgs::default());
        assert_eq!(
            a.listeners().unwrap(),
            Listeners {
                health: "0.0.0.0:9808".into(),
                metrics_with_health: false,
                metrics: None
            }
        );
    }

    #[test]
    fn go_syntax_and_bad_flags() {
        let a = parse(&[
            "-csi-address=/csi/csi.sock",
            "-probe-timeout=10s",
            "-health-port=29653",
            "-v=2",
            "-automaxprocs",
        ])
        .unwrap();
        assert_eq!(a.csi_address, "/csi/csi.sock");
        assert_eq!(a.probe_timeout, Duration::from_secs(10));
        assert_eq!(a.listeners().unwrap().health, "0.0.0.0:29653");
        assert!(a.automaxprocs);
        for bad in [
            &["--version"][..],
            &["--probe-timeout=3"],
            &["--kubeconfig=/x"],
            &["--no-such-flag"],
        ] {
            assert_eq!(exit_code(parse(bad).unwrap_err().kind()), 2, "{bad:?}");
        }
    }

    #[test]
    fn listener_rules() {
        let l = |v: &[&str]| parse(v).unwrap().listeners();
        assert!(matches!(
            l(&["--health-port=1", "--http-endpoint=:2"]),
            Err(Error::HealthPortAndHttpEndpoint)
        ));
        // Compared with the default string, as upstream.
        assert_eq!(
            l(&["--health-port=9808", "--http-endpoint=:2"]).unwrap(),
            Listeners {
                health: ":2".into(),
                metrics_with_health: true,
                metrics: None
            }
        );
        assert!(matches!(
            l(&["--metrics-address=:3", "--http-endpoint=:2"]),
            Err(Error::MetricsAddressAndHttpEndpoint)
        ));
        assert_eq!(
            l(&["--metrics-address=:3"]).unwrap(),
            Listeners {
                health: "0.0.0.0:9808".into(),
                metrics_with_health: false,
                metrics: Some(":3".into())
            }
        );
    }
}
