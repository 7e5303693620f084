//! The provisioner's one error type.

/// What went wrong while provisioning or deleting, and whether retrying can
/// help ([`Error::is_final`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The claim itself cannot be provisioned as written (bad access mode,
    /// selector, size, …). Final until the object changes.
    #[error("{0}")]
    InvalidClaim(String),
    /// A StorageClass parameter is invalid. Final until the class changes.
    #[error("{0}")]
    InvalidParameter(String),
    /// The driver lacks a capability the request needs. Final.
    #[error("{0}")]
    Unsupported(String),
    /// A CSI call failed; `status` carries the driver's gRPC code.
    #[error("{}", csi_client::error::GoStatus(.status))]
    Csi {
        /// Which RPC.
        rpc: &'static str,
        /// The driver's answer.
        status: tonic::Status,
    },
    /// The driver answered something that breaks the CSI contract (e.g. an
    /// empty volume ID or less capacity than requested).
    #[error("{0}")]
    BadDriverResponse(String),
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. "create PersistentVolume pvc-…".
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A referenced object is missing from the cache (StorageClass, …):
    /// retried.
    #[error("{0}")]
    Missing(String),
    /// The claim's data source is not usable yet (source claim not Bound,
    /// too small, …): retried, as upstream's NoChange state.
    #[error("{0}")]
    DataSource(String),
    /// Someone else wrote the object since the version this write was based
    /// on (409 Conflict): retried on the version the watch brings next.
    #[error("{0}")]
    Conflict(String),
    /// DeleteVolume is refused while a VolumeAttachment still references the
    /// PV: retried.
    #[error("{0}")]
    StillAttached(String),
    /// CSI migration could not translate a StorageClass or PV between its
    /// in-tree and CSI forms. Final until the object changes.
    #[error("{0}")]
    Migration(String),
}

impl Error {
    /// `true` when retrying with the same inputs cannot succeed.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Error::InvalidClaim(_)
                | Error::InvalidParameter(_)
                | Error::Unsupported(_)
                | Error::Migration(_)
        )
    }

    /// Builds [`Error::Kube`].
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }
}

/// The runtime's write errors: a conflict stays a conflict (retried from the
/// watch); anything else names the write.
impl From<sidecar_runtime::Error> for Error {
    fn from(e: sidecar_runtime::Error) -> Self {
        match e {
            sidecar_runtime::Error::WriteConflict { .. } => Error::Conflict(e.to_string()),
            sidecar_runtime::Error::Write {
                what,
                object,
                source,
            } => Error::kube(format!("{what} {object}"), source),
            other => Error::Missing(other.to_string()),
        }
    }
}
