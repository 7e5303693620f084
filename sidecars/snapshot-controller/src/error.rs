//! The one error type of snapshot-controller.

/// What failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sync failed with upstream's reconcile error text; it is retried
    /// with the object's backoff.
    #[error("{0}")]
    Sync(String),
    /// A write built from a cached version that was no longer the newest
    /// (409, or 422 from a JSON patch's resourceVersion test). Routine: the
    /// newer version arrives through the watch and is synced again; no
    /// Warning event.
    #[error("{0} was changed meanwhile, will sync the newer version")]
    Stale(String),
    /// The snapshot CRDs were not served within `--retry-crd-interval-max`
    /// (final: the process exits 1).
    #[error("failed to ensure CRDs exist: {0}")]
    Crds(String),
}

impl Error {
    /// True for [`Error::Stale`].
    pub fn is_routine(&self) -> bool {
        matches!(self, Error::Stale(_))
    }

    /// A sync error from any message.
    pub fn sync(message: impl Into<String>) -> Self {
        Error::Sync(message.into())
    }
}
