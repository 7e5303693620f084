//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that stops the registrar, each naming the step that failed.
/// Every variant ends the process with status 1, as upstream's
/// `klog.Fatal`/`os.Exit(1)` paths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--kubelet-registration-path` is empty.
    #[error("kubelet-registration-path is a required parameter")]
    MissingKubeletRegistrationPath,

    /// Both `--health-port` (> 0) and `--http-endpoint` are set.
    #[error("only one of `--health-port` and `--http-endpoint` can be set")]
    HealthPortAndHttpEndpoint,

    /// The driver cannot be reached or did not say its name.
    #[error("error connecting to CSI driver: {0}")]
    Driver(#[source] csi_client::Error),

    /// The driver's name cannot be part of a socket file name.
    #[error("driver name {0:?} cannot be used in a socket file name")]
    BadDriverName(String),

    /// Something other than a socket sits where the registration socket goes.
    #[error("file exists in socketPath {0} but it's not a socket")]
    NotASocket(PathBuf),

    /// The registration socket could not be removed, created or set up.
    #[error("{what} {path}: {source}")]
    Socket {
        /// The step: "removing", "listening on", "setting the mode of", ….
        what: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The registration socket stopped accepting connections.
    #[error("accepting on the registration socket failed: {0}")]
    Accept(#[source] std::io::Error),

    /// The /healthz listener could not be bound.
    #[error(transparent)]
    Http(#[from] sidecar_runtime::Error),

    /// The SIGTERM handler could not be installed.
    #[error("cannot handle SIGTERM: {0}")]
    Signal(#[source] std::io::Error),

    /// The driver came back under another name; its registration socket
    /// name would change, so the container has to start over.
    #[error("CSI driver name changed from {old:?} to {new:?}; restarting")]
    DriverRenamed {
        /// The name registered.
        old: String,
        /// The name the driver now reports.
        new: String,
    },
}
