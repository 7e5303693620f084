//! The crate's one error type.

/// Everything a sync of a content can fail with. The texts are upstream's
/// (external-snapshotter pkg/sidecar-controller), since they end up in
/// `status.error.message` and in events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CreateSnapshot, or what it needs (class, parameters, secrets, the
    /// being-created annotation), failed; `message` is upstream's text
    /// after "Failed to create snapshot: ".
    #[error("{message}")]
    Create {
        /// The text.
        message: String,
        /// The driver's status, when the call got one.
        status: Option<tonic::Status>,
    },
    /// A readiness check (ListSnapshots and what it needs) failed.
    #[error("{0}")]
    Check(String),
    /// DeleteSnapshot, or what it needs, failed.
    #[error("{0}")]
    Delete(String),
    /// A write to the API server failed (upstream's
    /// `snapshot controller failed to update <name> on API server: …`).
    #[error("snapshot controller failed to update {name} on API server: {message}")]
    Write {
        /// The content's name.
        name: String,
        /// The API error, as client-go prints it.
        message: String,
        /// Whether the server answered 409 Conflict (the watch brings the
        /// newer version; routine).
        conflict: bool,
    },
}

impl Error {
    /// Whether the failure is routine (logged at debug, not as a warning).
    pub fn is_routine(&self) -> bool {
        matches!(self, Error::Write { conflict: true, .. })
    }

    /// Whether a CreateSnapshot failure proves the driver is not working on
    /// the snapshot any more (upstream `isCSIFinalError`): a gRPC status
    /// other than Canceled, DeadlineExceeded, Unavailable,
    /// ResourceExhausted or Aborted. Failures without a status are not
    /// final (the call may not have been answered).
    pub fn is_final_csi(status: &tonic::Status) -> bool {
        csi_client::error::is_final_code(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn finality_as_upstream() {
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::Aborted,
        ] {
            assert!(!Error::is_final_csi(&Status::new(code, "x")), "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::NotFound, Code::Internal] {
            assert!(Error::is_final_csi(&Status::new(code, "x")), "{code:?}");
        }
        let conflict = Error::Write {
            name: "c".into(),
            message: "m".into(),
            conflict: true,
        };
        assert!(conflict.is_routine());
        assert_eq!(
            conflict.to_string(),
            "snapshot controller failed to update c on API server: m"
        );
    }
}
