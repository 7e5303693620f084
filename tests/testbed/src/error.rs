//! The one error type of the test bed: each variant names the step that failed.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while starting or driving the test bed.
///
/// Every variant says which step failed, so a failing test's message points
/// at the process, file or API call to look at. Where a process is involved
/// the last lines of its log are included.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `tests/testbed/build.sh` could not be run or failed.
    #[error("build: `{command}` failed: {reason}")]
    Build {
        /// The command that was run (or would be run to build the binaries).
        command: String,
        /// Exit status or I/O error.
        reason: String,
    },

    /// A binary the test bed needs is not in the binary directory.
    #[error(
        "build: binary `{name}` not found in {dir}; build it with `{command}` \
         (or point CSI_TESTBED_BIN at a directory that has it)"
    )]
    MissingBinary {
        /// Binary name, e.g. `kube-apiserver`.
        name: String,
        /// Directory that was searched.
        dir: PathBuf,
        /// The command that builds it.
        command: String,
    },

    /// Something the node needs from the host is missing: a Debian package's
    /// file or a program on PATH.
    #[error(
        "host: {what} is missing ({path}); install the Debian package `{package}` \
         (`apt-get install -y {package}`, as .ci/run does)"
    )]
    HostPrerequisite {
        /// What the node needs it for, e.g. `runc`.
        what: String,
        /// The file or program looked for.
        path: String,
        /// The Debian package that provides it.
        package: String,
    },

    /// The node could not be torn down completely: the host differs from
    /// its state before the node started.
    #[error("node teardown left host changes:\n{0}")]
    Teardown(String),

    /// A child process could not be spawned.
    #[error("start {process}: {source}")]
    Start {
        /// Log name of the process, e.g. `etcd`.
        process: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },

    /// A child process exited while the test bed waited for it to become ready.
    #[error("start {process}: exited early with {status}; last log lines:\n{log_tail}")]
    Exited {
        /// Log name of the process.
        process: String,
        /// Its exit status, as text.
        status: String,
        /// The last lines of its log file.
        log_tail: String,
    },

    /// Something did not become ready in time.
    #[error(
        "readiness timeout: {what} not ready after {:.1}s (last error: {last_error}); \
         last log lines:\n{log_tail}",
        waited.as_secs_f64()
    )]
    ReadinessTimeout {
        /// What was waited for, e.g. `kube-apiserver /readyz`.
        what: String,
        /// How long the test bed waited.
        waited: Duration,
        /// The last probe error seen.
        last_error: String,
        /// The last lines of the relevant log file.
        log_tail: String,
    },

    /// [`crate::poll`] gave up.
    #[error("timed out after {waited:?} waiting for {what}")]
    PollTimeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },

    /// Certificate or key generation failed.
    #[error("pki: {0}")]
    Pki(String),

    /// A kubeconfig could not be read, written or turned into a client.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),

    /// A manifest file could not be read or parsed.
    #[error("manifest {}: {reason}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A Kubernetes API call failed.
    #[error("api call {what}: {source}")]
    Api {
        /// Which call, e.g. `create Node n1`.
        what: String,
        /// The client error (status code and message for API errors).
        #[source]
        source: Box<kube::Error>,
    },

    /// A file-system operation on the run directory failed.
    #[error("io {what}: {source}")]
    Io {
        /// Which operation, on which path.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a kube error with a description of the call that failed.
    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// Wraps an I/O error with a description of the operation that failed.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The HTTP status code when this is an API error answered by the server
    /// (e.g. 403, 404, 409), `None` otherwise.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
