//! Go-`flag`-compatible command line on top of clap.
//!
//! The upstream sidecars parse flags with Go's `flag` package (plus klog /
//! component-base logging flags). Manifests in the wild therefore use forms
//! clap does not accept natively. This module closes the gap:
//!
//! * single-dash long flags (`-csi-address=/x`, `-leader-election`) are
//!   rewritten to `--…` by [`normalize_go_args`];
//! * Go booleans: `--flag`, `--flag=true|false|1|0|t|f|…`; a bare boolean never
//!   consumes the next argument, so `-leader-election false` leaves `false` as
//!   a stray positional argument, which is an error exactly as in Go;
//! * Go durations (`1m30s`, `300ms`, `0`) via [`parse_go_duration`];
//! * repeated flags: the last occurrence wins (Go semantics), except
//!   `--leader-election-labels`, which accumulates;
//! * exit codes: a flag error prints the message and usage to stderr and exits 2,
//!   `-h`/`--help` prints help and exits 0 (Go's `flag.ExitOnError`).
//!
//! The standard flag sets are [`CommonArgs`] (csi-lib-utils `standardflags`),
//! [`RetryArgs`] and [`LoggingArgs`] (component-base logging). A sidecar
//! flattens them into its own `clap::Parser` and adds its per-sidecar flags
//! (`--timeout`, `--worker-threads`, …, whose defaults differ per sidecar;
//! [`WorkerThreads`] is the type of the latter).
//! The sidecar's parser must **not** use `#[command(version)]`: `--version` is
//! a plain boolean in [`CommonArgs`] handled by [`print_version_and_exit_if_requested`].

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;

use crate::Error;

mod worker_threads;

pub use worker_threads::WorkerThreads;

/// Rewrites Go-style single-dash long flags into clap's double-dash form.
///
/// The first element is the program name and is kept as is. For the others:
/// `-name=value` / `-name` (name longer than one character) become
/// `--name=value` / `--name`; single-character short flags (`-v=5`, `-v`, `-h`),
/// `-v<digits>` (`-v5`), negative numbers used as values (`-1`, `-0.5`), a lone
/// `-`, and anything already starting with `--` are untouched. After a bare `--`
/// nothing is rewritten any more. Non-UTF-8 arguments are passed through.
pub fn normalize_go_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rewriting = true;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || !rewriting {
            out.push(arg);
            continue;
        }
        if arg == OsStr::new("--") {
            rewriting = false;
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some(s) if needs_second_dash(s) => out.push(OsString::from(format!("-{s}"))),
            _ => out.push(arg),
        }
    }
    out
}

/// Whether `s` is a single-dash flag whose name is longer than one character.
fn needs_second_dash(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('-') else {
        return false;
    };
    if rest.starts_with('-') {
        return false;
    }
    let name = rest.split('=').next().unwrap_or_default();
    if name.chars().count() <= 1 {
        return false;
    }
    // A value such as `-10` for a numeric flag, not a flag.
    if name.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return false;
    }
    // klog's `-v5`: short flag with attached value.
    if let Some(digits) = name.strip_prefix('v')
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
    {
        return false;
    }
    true
}

/// Parses a boolean the way Go's `strconv.ParseBool` does: `1 t T TRUE true True`
/// and `0 f F FALSE false False`; anything else is an error.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// Parses a duration the way Go's `time.ParseDuration` does, for non-negative values.
///
/// A duration is a sequence of decimal numbers, each with an optional fraction
/// and a mandatory unit: `ns`, `us`, `µs` (or `μs`), `ms`, `s`, `m`, `h`,
/// e.g. `15s`, `1m30s`, `1.5s`, `300ms`, `2h45m`. A unitless value is only
/// accepted for `0`. A leading `+` is allowed; a negative duration is rejected
/// (`-0` is zero), since no sidecar flag accepts one. Values beyond Go's range
/// (about 292 years) are rejected.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    const MAX_NANOS: u128 = i64::MAX as u128;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        let mut nanos = int.checked_mul(unit_nanos).ok_or_else(err)?;
        // Go truncates fractional nanoseconds; only the first digits matter.
        let mut scale = unit_nanos;
        for d in frac_part.bytes().take(30) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(err)?;
        if total > MAX_NANOS {
            return Err(err());
        }
        rest = after;
    }
    if negative && total != 0 {
        return Err(format!("negative duration {s:?} is not allowed"));
    }
    // total ≤ i64::MAX, so it fits in u64.
    Ok(Duration::from_nanos(
        u64::try_from(total).map_err(|_| err())?,
    ))
}

/// Parses one `key:value` item of `--leader-election-labels`. Like upstream, an
/// item must contain exactly one `:`; keys and values are not trimmed.
pub fn parse_label(item: &str) -> Result<(String, String), String> {
    let mut parts = item.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(v), None) => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("malformed item in list of labels: {item}")),
    }
}

/// The csi-lib-utils `standardflags` set shared by provisioner, attacher,
/// resizer and snapshotter, with upstream names and defaults.
///
/// `--timeout` and the worker-count flag are not here because their defaults
/// differ per sidecar.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct CommonArgs {
    /// Address of the CSI driver socket (a path, or unix:///path).
    #[arg(long, default_value = "/run/csi/socket")]
    pub csi_address: String,

    /// Path to a kubeconfig file; empty means in-cluster configuration. The
    /// KUBECONFIG environment variable, when set, takes precedence (as in
    /// external-provisioner); see [`CommonArgs::kubeconfig_path`].
    #[arg(long, default_value = "")]
    pub kubeconfig: String,

    /// Maximum sustained requests per second to the API server (client-go token bucket).
    #[arg(long, default_value_t = 5.0)]
    pub kube_api_qps: f64,

    /// Maximum burst of requests to the API server above the QPS rate.
    #[arg(long, default_value_t = 10)]
    pub kube_api_burst: u32,

    /// TCP address (e.g. `:8080`) for metrics and the leader-election health
    /// check; empty disables the server.
    #[arg(long, default_value = "")]
    pub http_endpoint: String,

    /// Deprecated: TCP address for metrics only. Mutually exclusive with --http-endpoint.
    #[arg(long, default_value = "")]
    pub metrics_address: String,

    /// HTTP path where Prometheus metrics are served.
    #[arg(long, default_value = "/metrics")]
    pub metrics_path: String,

    /// Enable Lease-based leader election.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease; defaults to the pod's namespace.
    #[arg(long, default_value = "")]
    pub leader_election_namespace: String,

    /// How long non-leaders wait after the last observed Lease change before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    pub leader_election_lease_duration: Duration,

    /// How long the leader keeps retrying to renew before giving up leadership.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub leader_election_renew_deadline: Duration,

    /// Interval between leader-election attempts.
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub leader_election_retry_period: Duration,

    /// Labels put on the Lease while this replica leads, as `key:value,key:value`.
    /// May be repeated; later keys override earlier ones.
    #[arg(long, value_delimiter = ',', value_parser = parse_label, action = clap::ArgAction::Append)]
    pub leader_election_labels: Vec<(String, String)>,

    /// Print the version and exit.
    #[arg(long = "version", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub show_version: bool,

    /// Accepted for compatibility and ignored: the Tokio runtime sizes itself.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub automaxprocs: bool,
}

impl CommonArgs {
    /// Cross-flag checks clap cannot express. Fails with
    /// [`Error::FlagValidation`] (`only one of `--metrics-address` and
    /// `--http-endpoint` can be set`) when both addresses are given; upstream
    /// exits 1 in that case.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.metrics_address.is_empty() && !self.http_endpoint.is_empty() {
            return Err(Error::FlagValidation(
                "only one of `--metrics-address` and `--http-endpoint` can be set".into(),
            ));
        }
        Ok(())
    }

    /// The kubeconfig file to load: a non-empty `KUBECONFIG` environment
    /// variable wins over `--kubeconfig` (external-provisioner behaviour; the
    /// variable holds a single path, not a colon-separated list). `None` means
    /// in-cluster configuration.
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        kubeconfig_path_from(std::env::var_os("KUBECONFIG"), &self.kubeconfig)
    }

    /// `--leader-election-labels` merged into one map, later occurrences winning.
    pub fn leader_election_labels(&self) -> BTreeMap<String, String> {
        self.leader_election_labels.iter().cloned().collect()
    }

    /// The address the HTTP server should listen on (`--http-endpoint`, else
    /// the deprecated `--metrics-address`), and whether the leader-election
    /// health check is served there (only with `--http-endpoint`, as upstream).
    pub fn http_address(&self) -> Option<(&str, bool)> {
        if !self.http_endpoint.is_empty() {
            Some((&self.http_endpoint, true))
        } else if !self.metrics_address.is_empty() {
            Some((&self.metrics_address, false))
        } else {
            None
        }
    }
}

fn kubeconfig_path_from(env: Option<OsString>, flag: &str) -> Option<PathBuf> {
    match env {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ if !flag.is_empty() => Some(PathBuf::from(flag)),
        _ => None,
    }
}

/// Per-object retry backoff flags (`--retry-interval-start`, `--retry-interval-max`),
/// used by provisioner, attacher, resizer and snapshotter with these defaults.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct RetryArgs {
    /// Delay before the first retry of a failed operation; doubles on each failure.
    #[arg(long, default_value = "1s", value_parser = parse_go_duration)]
    pub retry_interval_start: Duration,

    /// Upper bound of the per-object retry delay.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    pub retry_interval_max: Duration,
}

/// `--logging-format` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// klog text lines: header, quoted message, `key="value"` pairs.
    #[default]
    Text,
    /// One klog-compatible JSON object per line.
    Json,
}

/// The component-base logging flags every upstream sidecar accepts.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct LoggingArgs {
    /// Log verbosity (klog levels: 0–2 info, 3–4 debug, 5+ trace).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,

    /// Per-file verbosity (accepted for compatibility; use RUST_LOG instead).
    #[arg(long, default_value = "")]
    pub vmodule: String,

    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub logging_format: LogFormat,

    /// Maximum time between log flushes (accepted; logs are written unbuffered).
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub log_flush_frequency: Duration,

    /// Text format: write info messages to stdout and errors to stderr.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub log_text_split_stream: bool,

    /// JSON format: write info messages to stdout and errors to stderr.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, action = clap::ArgAction::Set)]
    pub log_json_split_stream: bool,

    /// Text format info buffer size (accepted and ignored).
    #[arg(long, default_value = "0")]
    pub log_text_info_buffer_size: String,

    /// JSON format info buffer size (accepted and ignored).
    #[arg(long, default_value = "0")]
    pub log_json_info_buffer_size: String,
}

impl LoggingArgs {
    /// Whether info-level output goes to stdout (split stream for the chosen format).
    pub fn split_stream(&self) -> bool {
        match self.logging_format {
            LogFormat::Text => self.log_text_split_stream,
            LogFormat::Json => self.log_json_split_stream,
        }
    }
}

impl Default for LoggingArgs {
    fn default() -> Self {
        LoggingArgs {
            verbosity: 0,
            vmodule: String::new(),
            logging_format: LogFormat::Text,
            log_flush_frequency: Duration::from_secs(5),
            log_text_split_stream: false,
            log_json_split_stream: false,
            log_text_info_buffer_size: "0".into(),
            log_json_info_buffer_size: "0".into(),
        }
    }
}

/// The process exit code for a clap outcome, mirroring Go's `flag.ExitOnError`:
/// 0 for help and version output, 2 for every parse error.
pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ => 2,
    }
}

/// Normalises `args` (program name first) with [`normalize_go_args`] and parses
/// them into `T` with Go semantics (repeated flags override). Returns clap's
/// error unchanged, including the help "errors" for `-h`/`--help`.
pub fn try_parse_from<T, I>(args: I) -> Result<T, clap::Error>
where
    T: clap::Parser,
    I: IntoIterator<Item = OsString>,
{
    let mut cmd = T::command().args_override_self(true);
    let mut matches = cmd.try_get_matches_from_mut(normalize_go_args(args))?;
    T::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
}

/// [`try_parse_from`] of `argv0` followed by `args`: a command line
/// written out in a test or a caller, e.g.
/// `try_parse_args::<Args>("csi-resizer", &["-v=5", "--timeout=30s"])`.
///
/// Errors: as [`try_parse_from`].
pub fn try_parse_args<T: clap::Parser>(argv0: &str, args: &[&str]) -> Result<T, clap::Error> {
    try_parse_from(
        std::iter::once(argv0)
            .chain(args.iter().copied())
            .map(OsString::from),
    )
}

/// Parses the process's command line into `T` (see [`try_parse_from`]).
///
/// On `-h`/`--help` prints help to stdout and exits 0; on an unknown flag or a
/// bad value prints the error and usage to stderr and exits 2, like Go.
pub fn parse<T: clap::Parser>() -> T {
    match try_parse_from(std::env::args_os()) {
        Ok(t) => t,
        Err(e) => {
            // If printing fails there is nowhere left to report it.
            let _ = e.print();
            std::process::exit(exit_code(e.kind()));
        }
    }
}

/// When `--version` was given, prints `<argv0> <version>` to stdout (argv0 as it
/// appeared on the command line, like Go's `os.Args[0]`) and exits 0.
pub fn print_version_and_exit_if_requested(common: &CommonArgs, version: &str) {
    if common.show_version {
        let argv0 = std::env::args_os().next().unwrap_or_default();
        println!("{} {version}", argv0.to_string_lossy());
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    #[command(name = "test-sidecar")]
    struct TestCli {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        retry: RetryArgs,
        #[command(flatten)]
        logging: LoggingArgs,
        #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
        timeout: Duration,
        #[arg(long, default_value = "100")]
        worker_threads: WorkerThreads,
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn parse_args(v: &[&str]) -> Result<TestCli, clap::Error> {
        let mut all = vec!["csi-test"];
        all.extend_from_slice(v);
        try_parse_from(os(&all))
    }

    #[test]
    fn normalizes_go_style_flags() {
        let got = normalize_go_args(os(&[
            "-prog",
            "-csi-address=/x",
            "-kubeconfig",
            "/k",
            "-v=5",
            "-v",
            "5",
            "-v5",
            "-h",
            "--http-endpoint=:8080",
            "-",
            "-1",
            "-vmodule=a=1",
            "--",
            "-not-rewritten",
        ]));
        assert_eq!(
            got,
            os(&[
                "-prog",
                "--csi-address=/x",
                "--kubeconfig",
                "/k",
                "-v=5",
                "-v",
                "5",
                "-v5",
                "-h",
                "--http-endpoint=:8080",
                "-",
                "-1",
                "--vmodule=a=1",
                "--",
                "-not-rewritten",
            ])
        );
    }

    #[test]
    fn parses_a_typical_go_command_line() {
        let cli = parse_args(&[
            "-csi-address=/run/csi/socket",
            "-v=5",
            "-leader-election",
            "-timeout=15s",
            "-worker-threads=10",
        ])
        .unwrap();
        assert_eq!(cli.common.csi_address, "/run/csi/socket");
        assert_eq!(cli.logging.verbosity, 5);
        assert!(cli.common.leader_election);
        assert_eq!(cli.timeout, Duration::from_secs(15));
        assert_eq!(cli.worker_threads.get(), 10);
    }

    #[test]
    fn defaults_match_upstream() {
        let cli = parse_args(&[]).unwrap();
        let c = &cli.common;
        assert_eq!(c.csi_address, "/run/csi/socket");
        assert_eq!(c.kubeconfig, "");
        assert_eq!(c.kube_api_qps, 5.0);
        assert_eq!(c.kube_api_burst, 10);
        assert_eq!(c.metrics_path, "/metrics");
        assert!(!c.leader_election && !c.show_version && !c.automaxprocs);
        assert_eq!(c.leader_election_lease_duration, Duration::from_secs(15));
        assert_eq!(c.leader_election_renew_deadline, Duration::from_secs(10));
        assert_eq!(c.leader_election_retry_period, Duration::from_secs(5));
        assert!(c.leader_election_labels.is_empty());
        assert_eq!(cli.retry.retry_interval_start, Duration::from_secs(1));
        assert_eq!(cli.retry.retry_interval_max, Duration::from_secs(300));
        assert_eq!(cli.logging, LoggingArgs::default());
        assert_eq!(c.http_address(), None);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_flag_exits_2_and_help_exits_0() {
        let e = parse_args(&["-no-such-flag"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert_eq!(exit_code(e.kind()), 2);
        let e = parse_args(&["-h"]).unwrap_err();
        assert_eq!(exit_code(e.kind()), 0);
        let e = parse_args(&["--help"]).unwrap_err();
        assert_eq!(exit_code(e.kind()), 0);
        let e = parse_args(&["--timeout=fast"]).unwrap_err();
        assert_eq!(exit_code(e.kind()), 2);
        let e = parse_args(&["--logging-format=xml"]).unwrap_err();
        assert_eq!(exit_code(e.kind()), 2);
    }

    #[test]
    fn go_booleans() {
        assert!(
            parse_args(&["--leader-election=true"])
                .unwrap()
                .common
                .leader_election
        );
        assert!(
            !parse_args(&["--leader-election=false"])
                .unwrap()
                .common
                .leader_election
        );
        for t in ["1", "t", "T", "TRUE", "True"] {
            let a = format!("-leader-election={t}");
            assert!(parse_args(&[&a]).unwrap().common.leader_election, "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "False"] {
            let a = format!("-leader-election={f}");
            assert!(!parse_args(&[&a]).unwrap().common.leader_election, "{f}");
        }
        assert!(parse_args(&["--leader-election=yes"]).is_err());
        // A bare bool does not swallow the next argument.
        let cli = parse_args(&["-leader-election", "-timeout=15s"]).unwrap();
        assert!(cli.common.leader_election);
        assert_eq!(cli.timeout, Duration::from_secs(15));
        let e = parse_args(&["-leader-election", "false"]).unwrap_err();
        assert_eq!(exit_code(e.kind()), 2);
        // Go: the last occurrence wins.
        let cli = parse_args(&["--leader-election", "--leader-election=false"]).unwrap();
        assert!(!cli.common.leader_election);
        let cli = parse_args(&["--timeout=1s", "--timeout=2s"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(2));
        let cli = parse_args(&["--version", "--automaxprocs", "--log-json-split-stream"]).unwrap();
        assert!(cli.common.show_version && cli.common.automaxprocs);
        assert!(cli.logging.log_json_split_stream);
    }

    #[test]
    fn verbosity_forms() {
        for form in [
            &["-v=3"][..],
            &["-v", "3"],
            &["-v3"],
            &["--v=3"],
            &["--v", "3"],
        ] {
            assert_eq!(parse_args(form).unwrap().logging.verbosity, 3, "{form:?}");
        }
        let cli = parse_args(&["--logging-format=json", "-vmodule=x=2"]).unwrap();
        assert_eq!(cli.logging.logging_format, LogFormat::Json);
        assert_eq!(cli.logging.vmodule, "x=2");
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("15s"), Duration::from_secs(15));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("2us"), Duration::from_micros(2));
        assert_eq!(ok("2µs"), Duration::from_micros(2));
        assert_eq!(ok("2μs"), Duration::from_micros(2));
        assert_eq!(ok("10ns"), Duration::from_nanos(10));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        for bad in [
            "",
            "5",
            "10",
            "s",
            "1x",
            "1.s.",
            "-5s",
            "1s-",
            ".s",
            "9999999999h",
            "+",
            "1 s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ok("1.s"), Duration::from_secs(1));
    }

    #[test]
    fn labels() {
        let cli = parse_args(&[
            "--leader-election-labels=a:1,b:2",
            "-leader-election-labels",
            "c:3,a:9",
        ])
        .unwrap();
        let m = cli.common.leader_election_labels();
        assert_eq!(m.len(), 3);
        assert_eq!(m["a"], "9");
        assert_eq!(m["b"], "2");
        assert_eq!(m["c"], "3");
        for bad in ["a", "a:1:2", "a:1,b", "a:1,,b:2", ""] {
            let arg = format!("--leader-election-labels={bad}");
            let e = parse_args(&[&arg]).unwrap_err();
            assert_eq!(exit_code(e.kind()), 2, "{bad:?}");
        }
        assert_eq!(parse_label("k:"), Ok(("k".into(), String::new())));
    }

    #[test]
    fn metrics_address_and_http_endpoint_are_exclusive() {
        let cli = parse_args(&["--metrics-address=:1", "--http-endpoint=:2"]).unwrap();
        let e = cli.common.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "only one of `--metrics-address` and `--http-endpoint` can be set"
        );
        let cli = parse_args(&["--metrics-address=:1"]).unwrap();
        assert_eq!(cli.common.http_address(), Some((":1", false)));
        let cli = parse_args(&["--http-endpoint=:2"]).unwrap();
        assert_eq!(cli.common.http_address(), Some((":2", true)));
    }

    #[test]
    fn kubeconfig_env_overrides_flag() {
        assert_eq!(
            kubeconfig_path_from(Some("/env".into()), "/flag"),
            Some(PathBuf::from("/env"))
        );
        assert_eq!(
            kubeconfig_path_from(Some("".into()), "/flag"),
            Some(PathBuf::from("/flag"))
        );
        assert_eq!(kubeconfig_path_from(None, ""), None);
    }
}
