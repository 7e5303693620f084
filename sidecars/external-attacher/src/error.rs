//! The crate's one error type. Its `Display` is the text upstream stores in
//! `status.attachError.message` / `status.detachError.message`, so users and
//! scripts see the same words from either implementation.

use csi_client::error::GoStatus;
use sidecar_runtime::gofmt::api_error;

/// Why an attach, detach or PV finalizer step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The objects do not allow the step; the message is upstream's text
    /// (e.g. `PersistentVolume "pv" is marked for deletion`).
    #[error("{0}")]
    Invalid(String),
    /// The driver answered ControllerPublish/Unpublish/ListVolumes with an
    /// error: `rpc error: code = … desc = …`, as grpc-go prints it.
    #[error("{}", GoStatus(.status))]
    Csi {
        /// The failing call, for logs.
        rpc: &'static str,
        /// The driver's (or the transport's) status.
        status: tonic::Status,
    },
    /// An API request failed; `what` is upstream's prefix
    /// (e.g. `could not save VolumeAttachment`).
    #[error("{what}: {}", api_error(.source))]
    Api {
        /// Upstream's wording of the failed step.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A rule error with upstream's message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// The gRPC code as `attachError.errorCode` records it (only for errors
    /// that came from the driver, as upstream's `status.FromError`).
    pub fn error_code(&self) -> Option<i32> {
        match self {
            Error::Csi { status, .. } => Some(status.code() as i32),
            _ => None,
        }
    }

    /// Upstream's `isFinalError` (`pkg/attacher/attacher.go`): `Canceled`,
    /// `DeadlineExceeded`, `Unavailable`, `ResourceExhausted`, `Aborted` and
    /// non-gRPC errors may still be in progress on the driver. As upstream,
    /// the result does not change the retry (every error is retried with
    /// the per-VolumeAttachment backoff); it sets the Event's wording.
    pub fn is_final(&self) -> bool {
        match self {
            Error::Csi { status, .. } => !matches!(
                status.code(),
                tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes_as_upstream() {
        let e = Error::Csi {
            rpc: "ControllerPublishVolume",
            status: tonic::Status::not_found("no such volume"),
        };
        assert_eq!(
            e.to_string(),
            "rpc error: code = NotFound desc = no such volume"
        );
        assert_eq!(e.error_code(), Some(5));
        assert!(e.is_final());
        let t = Error::Csi {
            rpc: "ControllerPublishVolume",
            status: tonic::Status::deadline_exceeded("slow"),
        };
        assert!(!t.is_final());
        assert_eq!(Error::invalid("x").error_code(), None);
        assert!(!Error::invalid("x").is_final());
    }
}
