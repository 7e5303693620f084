//! The one error type of snapshot-controller.

/// What failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sync failed with upstream's reconcile error text; it is retried
    /// with the object's backoff.
    #[error("{0}")]
    Sync(String),
    /// The snapshot CRDs were not served within `--retry-crd-interval-max`
    /// (final: the process exits 1).
    #[error("failed to ensure CRDs exist: {0}")]
    Crds(String),
}

impl Error {
    /// A sync error from any message.
    pub fn sync(message: impl Into<String>) -> Self {
        Error::Sync(message.into())
    }
}
