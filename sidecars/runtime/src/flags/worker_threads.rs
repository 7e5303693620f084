//! [`WorkerThreads`]: the value of a sidecar's `--worker-threads` flag.

use std::fmt;
use std::num::NonZeroU16;
use std::str::FromStr;

/// A `--worker-threads` value: how many objects a controller reconciles at
/// once, from 1 to [`WorkerThreads::MAX`] (65535).
///
/// The bounds come from what the workers run on: kube-runtime's
/// `controller::Config::concurrency` is a `u16` in which 0 means
/// *unlimited*, so 0 would silently turn a limit into none, and a value
/// above 65535 cannot be expressed at all. Upstream's Go sidecars accept any
/// `int`; with 0 or a negative count their workqueues start no worker and
/// nothing is ever processed. Both are rejected here when the command line
/// is parsed, so a sidecar exits 2 with the flag's name and the allowed
/// range, as Go's `flag` package does for a malformed value.
///
/// Parsing accepts a decimal integer with an optional leading `+`, like
/// Rust's integer parsing; Go's hexadecimal and octal forms are not
/// accepted. Use it as a clap field type with the sidecar's own default:
///
/// ```
/// use sidecar_runtime::flags::WorkerThreads;
///
/// #[derive(clap::Parser)]
/// struct Args {
///     /// Number of simultaneously running reconciles.
///     #[arg(long, default_value = "10")]
///     worker_threads: WorkerThreads,
/// }
/// let args: Args = sidecar_runtime::flags::try_parse_from(
///     ["csi-foo", "-worker-threads=50"].map(std::ffi::OsString::from),
/// )
/// .unwrap();
/// assert_eq!(args.worker_threads.get(), 50);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerThreads(NonZeroU16);

impl WorkerThreads {
    /// The largest accepted value, `u16::MAX`.
    pub const MAX: u16 = u16::MAX;

    /// `n` workers; `None` for 0.
    pub const fn new(n: u16) -> Option<Self> {
        match NonZeroU16::new(n) {
            Some(n) => Some(WorkerThreads(n)),
            None => None,
        }
    }

    /// The count, at least 1: pass it to
    /// `kube::runtime::controller::Config::concurrency`, where it can never
    /// mean "unlimited".
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl FromStr for WorkerThreads {
    type Err = String;

    /// Parses a decimal count in `1..=65535`. Errors name the range, e.g.
    /// `"0 is not a worker count: must be between 1 and 65535"`.
    fn from_str(s: &str) -> Result<Self, String> {
        let range = || format!("must be between 1 and {}", Self::MAX);
        let n: i128 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a whole number; {}", range()))?;
        u16::try_from(n)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| format!("{n} is not a worker count: {}", range()))
    }
}

impl fmt::Display for WorkerThreads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{exit_code, try_parse_from};
    use clap::Parser;
    use clap::error::ErrorKind;

    #[test]
    fn accepts_one_to_65535() {
        for (text, n) in [("1", 1), ("+7", 7), ("100", 100), ("65535", 65535)] {
            assert_eq!(text.parse::<WorkerThreads>().map(WorkerThreads::get), Ok(n));
        }
        assert_eq!(WorkerThreads::new(3).unwrap().to_string(), "3");
    }

    #[test]
    fn rejects_what_would_mean_unlimited_or_none() {
        let err = |s: &str| s.parse::<WorkerThreads>().unwrap_err();
        assert_eq!(
            err("0"),
            "0 is not a worker count: must be between 1 and 65535"
        );
        assert_eq!(
            err("65536"),
            "65536 is not a worker count: must be between 1 and 65535"
        );
        assert_eq!(
            err("-1"),
            "-1 is not a worker count: must be between 1 and 65535"
        );
        assert_eq!(
            err("ten"),
            "\"ten\" is not a whole number; must be between 1 and 65535"
        );
        assert!(err("0x10").contains("not a whole number"));
        assert!(err("99999999999999999999999999999999999999999").contains("not a whole number"));
        assert!(WorkerThreads::new(0).is_none());
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long, default_value = "100")]
        worker_threads: WorkerThreads,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        try_parse_from(
            std::iter::once("csi-test")
                .chain(args.iter().copied())
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>(),
        )
    }

    #[test]
    fn a_bad_value_is_a_flag_error_with_exit_status_2() {
        assert_eq!(parse(&[]).unwrap().worker_threads.get(), 100);
        assert_eq!(
            parse(&["-worker-threads=8"]).unwrap().worker_threads.get(),
            8
        );
        for bad in [
            "-worker-threads=0",
            "-worker-threads=65536",
            "--worker-threads=-3",
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
            assert_eq!(exit_code(e.kind()), 2);
            let text = e.to_string();
            assert!(text.contains("--worker-threads"), "{text}");
            assert!(text.contains("must be between 1 and 65535"), "{text}");
        }
    }
}
