//! The crate's single error type.

/// A failed runtime operation. Each variant names the operation; [`Error::is_final`]
/// tells whether retrying the same operation can help.
///
/// Sidecars map these to upstream's exit codes: flag errors found by clap exit 2
/// (see [`crate::flags`]); everything else that is fatal at startup exits 1.
///
/// The variants carrying a `kube::Error` (configuration, Lease, Event and
/// write failures) exist only with the `kube` feature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[cfg(feature = "kube")]
    /// Reading or interpreting the kubeconfig file named by `--kubeconfig` / `KUBECONFIG`.
    #[error("failed to load kubeconfig {path:?}: {source}")]
    Kubeconfig {
        /// The file that was read.
        path: String,
        /// What went wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[cfg(feature = "kube")]
    /// Building the in-cluster configuration (service-account token, CA, env).
    #[error("failed to build in-cluster config: {0}")]
    InClusterConfig(#[source] kube::config::InClusterError),
    #[cfg(feature = "kube")]
    /// Building the HTTP client stack from a loaded configuration.
    #[error("failed to create Kubernetes client: {0}")]
    ClientBuild(#[source] kube::Error),
    /// Binding the HTTP (metrics / healthz) listener.
    #[error("failed to listen on {addr}: {source}")]
    HttpBind {
        /// The address as given on the command line.
        addr: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server stopped with an I/O error.
    #[error("HTTP server failed: {0}")]
    HttpServe(#[source] std::io::Error),
    #[cfg(feature = "kube")]
    /// Reading the leader-election Lease.
    #[error("failed to get lease {namespace}/{name}: {source}")]
    LeaseGet {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What went wrong.
        #[source]
        source: kube::Error,
    },
    #[cfg(feature = "kube")]
    /// Creating or updating the leader-election Lease.
    #[error("failed to update lease {namespace}/{name}: {source}")]
    LeaseUpdate {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What went wrong (a 409 Conflict means another replica wrote first).
        #[source]
        source: kube::Error,
    },
    /// The leader-election timings violate `lease > renew > 1.2 × retry > 0`.
    #[error("invalid leader election configuration: {0}")]
    LeaderElectionConfig(String),
    #[cfg(feature = "kube")]
    /// Creating or patching a core/v1 Event.
    #[error("failed to record event {reason:?} on {object}: {source}")]
    EventCreate {
        /// `<namespace>/<name>` of the involved object.
        object: String,
        /// The event reason.
        reason: String,
        /// What went wrong.
        #[source]
        source: kube::Error,
    },
    /// Installing the global tracing subscriber, or an invalid `RUST_LOG`.
    #[error("failed to initialise logging: {0}")]
    LoggingInit(String),
    /// Text that is not a Kubernetes resource quantity (or one out of range).
    #[error("invalid quantity {0:?}")]
    InvalidQuantity(String),
    /// A semantic check across flags that clap cannot express (upstream exits 1).
    #[error("{0}")]
    FlagValidation(String),
    /// Connecting to the CSI driver, or one of the start-up RPCs.
    #[error("{what}: {source}")]
    Csi {
        /// What was being done, e.g. "GetPluginInfo".
        what: String,
        /// The client error.
        #[source]
        source: csi_client::Error,
    },
    #[cfg(feature = "kube")]
    /// An Update answered 409 Conflict: someone else wrote the object since
    /// the version the write was built from (see [`crate::write`]).
    #[error("{object} changed meanwhile ({what}); retrying on its new version")]
    WriteConflict {
        /// What the write was for, e.g. "record volume creation on".
        what: String,
        /// `<Kind> <namespace>/<name>`.
        object: String,
    },
    #[cfg(feature = "kube")]
    /// An Update failed otherwise.
    #[error("{what} {object}: {source}")]
    Write {
        /// What the write was for.
        what: String,
        /// `<Kind> <namespace>/<name>`.
        object: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Whether repeating the same operation cannot succeed without a change of
    /// input or environment.
    ///
    /// Configuration, flag, logging and bind errors are final. API errors are
    /// transient when the server says so (409 Conflict, 429, 5xx) or when the
    /// request never got an answer (connection or timeout errors); other API
    /// status codes (403, 404, 422, …) are final.
    pub fn is_final(&self) -> bool {
        match self {
            Error::HttpBind { .. }
            | Error::LeaderElectionConfig(_)
            | Error::LoggingInit(_)
            | Error::FlagValidation(_)
            | Error::InvalidQuantity(_)
            | Error::Csi { .. } => true,
            Error::HttpServe(_) => false,
            #[cfg(feature = "kube")]
            Error::Kubeconfig { .. } | Error::InClusterConfig(_) | Error::ClientBuild(_) => true,
            #[cfg(feature = "kube")]
            Error::WriteConflict { .. } => false,
            #[cfg(feature = "kube")]
            Error::LeaseGet { source, .. }
            | Error::LeaseUpdate { source, .. }
            | Error::EventCreate { source, .. }
            | Error::Write { source, .. } => kube_error_is_final(source),
        }
    }
}

/// API answers that are worth retrying: conflicts, throttling and server-side failures.
#[cfg(feature = "kube")]
fn kube_error_is_final(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => {
            let code = status.code;
            !(code == 409 || code == 429 || code >= 500)
        }
        kube::Error::SerdeError(_) | kube::Error::BuildRequest(_) => true,
        _ => false,
    }
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "y").with_code(code),
        ))
    }

    #[test]
    fn finality() {
        let lease = |code| Error::LeaseUpdate {
            namespace: "ns".into(),
            name: "l".into(),
            source: api(code),
        };
        assert!(!lease(409).is_final());
        assert!(!lease(500).is_final());
        assert!(!lease(429).is_final());
        assert!(lease(403).is_final());
        assert!(Error::FlagValidation("x".into()).is_final());
        assert!(
            lease(409)
                .to_string()
                .starts_with("failed to update lease ns/l")
        );
    }
}
