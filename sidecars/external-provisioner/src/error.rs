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
    ///
    /// Displays as `<action>: <API error>`, or the API error alone when
    /// `action` is empty, with the API error as client-go prints it (the
    /// Status message, see [`sidecar_runtime::gofmt::api_error`]), so the
    /// texts match upstream's events.
    #[error("{}", kube_text(.action, .source))]
    Kube {
        /// What was being done, in upstream's words where the text reaches
        /// an event, e.g. `error getting secret creds in namespace team-a`;
        /// empty where upstream passes the API error on unchanged.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Saving the PV of a created volume failed. Upstream's library retries
    /// the save in the background and records no event for it; the text is
    /// its log line's.
    #[error("error saving volume {pv}: {}", sidecar_runtime::gofmt::api_error(.source))]
    SaveVolume {
        /// The PV name.
        pv: String,
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
    /// The volume creation could not be recorded before CreateVolume (see
    /// [`crate::intents`]): retried with the claim's backoff; CreateVolume
    /// is not sent until it is recorded.
    #[error("{0}")]
    Record(String),
    /// CSI migration could not translate a StorageClass or PV between its
    /// in-tree and CSI forms. Final until the object changes.
    #[error("{0}")]
    Migration(String),
}

impl Error {
    /// `true` when retrying with the same inputs cannot succeed: the claim
    /// and volume error policies then retry after `--retry-interval-max`
    /// (or on the object's next change) instead of backing off from
    /// `--retry-interval-start`.
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

    /// Builds [`Error::Kube`] that displays as the API error alone, as
    /// upstream's texts where it returns client-go's error unchanged.
    pub fn api(source: kube::Error) -> Self {
        Error::kube(String::new(), source)
    }
}

fn kube_text(action: &str, source: &kube::Error) -> String {
    let api = sidecar_runtime::gofmt::api_error(source);
    if action.is_empty() {
        api
    } else {
        format!("{action}: {api}")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(message, "NotFound").with_code(404),
        ))
    }

    /// external-provisioner: pkg/controller/controller.go getCredentials
    /// (`error getting secret %s in namespace %s: %v` of client-go's
    /// StatusError, which prints the Status message only).
    #[test]
    fn kube_errors_read_like_client_go() {
        let e = Error::kube(
            "error getting secret creds in namespace team-a",
            not_found("secrets \"creds\" not found"),
        );
        assert_eq!(
            e.to_string(),
            "error getting secret creds in namespace team-a: secrets \"creds\" not found"
        );
        // sig-storage-lib-external-provisioner: controller/volume_store.go
        // doSaveVolume.
        let e = Error::SaveVolume {
            pv: "pvc-1".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure("etcdserver: request timed out", "").with_code(500),
            )),
        };
        assert_eq!(
            e.to_string(),
            "error saving volume pvc-1: etcdserver: request timed out"
        );
        // prepareProvision returns the VolumeAttributesClass GET error as is.
        let e = Error::api(not_found(
            "volumeattributesclasses.storage.k8s.io \"gold\" not found",
        ));
        assert_eq!(
            e.to_string(),
            "volumeattributesclasses.storage.k8s.io \"gold\" not found"
        );
    }
}
