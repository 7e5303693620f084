//! The crate's one error type.

use std::time::Duration;

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PV a bound claim names is not cached yet (upstream:
    /// `PV %q bound to pvc %q not found`, retried).
    #[error("PV {pv:?} bound to pvc {claim:?} not found")]
    MissingVolume {
        /// The PV's name.
        pv: String,
        /// `<namespace>/<name>` of the claim.
        claim: String,
    },
    /// The driver call failed; `message` is the text upstream puts into
    /// its `VolumeResizeFailed`/`VolumeModifyFailed` event.
    #[error("{message}")]
    Csi {
        /// The event/log text.
        message: String,
        /// The driver's status, when the call got one.
        status: Option<tonic::Status>,
    },
    /// A request could not be built (empty volume handle, access modes,
    /// translation of a migrated PV, a secret read).
    #[error("{0}")]
    Request(String),
    /// A write to the API server failed; `what` names it as upstream's
    /// messages do.
    #[error("{what}: {source}")]
    Write {
        /// Upstream's wording of the failed step.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Our write met a newer version (409): the watch brings it and
    /// triggers the next reconcile.
    #[error("{0}: the object has been modified")]
    Conflict(String),
    /// An infeasible request is not retried before its slow-set window
    /// ends (upstream's `DelayRetryError`).
    #[error("{message}")]
    DelayRetry {
        /// Upstream's text.
        message: String,
        /// When to look again.
        after: Duration,
    },
    /// The claim cannot be expanded now: its driver only expands offline
    /// and a running pod uses it.
    #[error("{0}")]
    InUse(String),
}

impl Error {
    /// Whether the failure is routine (logged at debug, not as a warning).
    pub fn is_routine(&self) -> bool {
        matches!(self, Error::Conflict(_) | Error::DelayRetry { .. })
    }
}
