//! The one error type of this crate.

use crate::method::Rpc;
use std::time::Duration;
use tonic::Code;

/// Boxed error used as the cause of a failed dial.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to a CSI driver, each variant naming
/// the step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Kubernetes access modes that no CSI access mode represents
    /// (csi-lib-utils `ToCSIAccessMode`'s errors, with its texts).
    #[error("{0}")]
    AccessModes(String),
    /// The `--csi-address` value cannot be dialled (empty, unknown scheme,
    /// TLS scheme, or a TCP address without a port).
    #[error("invalid CSI address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was rejected.
        reason: String,
    },

    /// No connection could be established before the connect timeout
    /// (csi-lib-utils `connection.Connect` failing; sidecars exit 1 on it).
    #[error("failed to connect to CSI driver at {address}: {source}")]
    Connect {
        /// The address as given.
        address: String,
        /// The last dial error, or the timeout.
        #[source]
        source: BoxError,
    },

    /// A CSI RPC returned a non-OK gRPC status (including `DeadlineExceeded`
    /// from the per-call deadline and `Unavailable` from a broken transport).
    #[error("CSI call {rpc} failed: {}", GoStatus(status))]
    Rpc {
        /// Which RPC failed.
        rpc: Rpc,
        /// The status the driver (or the transport) returned.
        status: tonic::Status,
    },

    /// `GetPluginInfo` returned an empty name (csi-lib-utils `rpc.GetDriverName`).
    #[error("driver name is empty")]
    EmptyDriverName,

    /// `Probe` failed with something other than `DeadlineExceeded`
    /// (csi-lib-utils `rpc.ProbeForever`; sidecars exit 1 on it).
    #[error("CSI driver probe failed: {}", GoStatus(.0))]
    ProbeFailed(tonic::Status),
}

impl Error {
    /// Whether the failure proves the driver is *not* still working on the
    /// request, so a retry may safely change its parameters.
    ///
    /// Mirrors the "final error" rule of the controller sidecars: for an RPC
    /// status see [`is_final_code`]. Errors that happened before or without a
    /// completed RPC are treated as not final, the safe side.
    pub fn is_final(&self) -> bool {
        match self {
            Error::Rpc { status, .. } => is_final_code(status.code()),
            Error::EmptyDriverName | Error::AccessModes(_) => true,
            Error::InvalidAddress { .. } | Error::Connect { .. } | Error::ProbeFailed(_) => false,
        }
    }

    /// The gRPC status, when the error came from an RPC.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Rpc { status, .. } | Error::ProbeFailed(status) => Some(status),
            _ => None,
        }
    }

    pub(crate) fn connect_timeout(address: &str, waited: Duration, last: Option<String>) -> Self {
        let mut msg = format!("timed out after {waited:?}");
        if let Some(last) = last {
            msg.push_str(&format!(" (last error: {last})"));
        }
        Error::Connect {
            address: address.to_owned(),
            source: msg.into(),
        }
    }
}

/// Formats a status the way grpc-go's `status.Error` does
/// (`rpc error: code = NotFound desc = …`), so log lines read like upstream's.
#[derive(Debug, Clone, Copy)]
pub struct GoStatus<'a>(pub &'a tonic::Status);

impl std::fmt::Display for GoStatus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rpc error: code = {} desc = {}",
            crate::metrics::code_name(self.0.code()),
            self.0.message()
        )
    }
}

/// Whether a gRPC code means the operation is definitely over on the driver.
///
/// `Cancelled`, `DeadlineExceeded`, `Unavailable` (transport broken or driver
/// restarting), `ResourceExhausted` and `Aborted` (CSI: an operation is
/// pending for the volume) mean the driver may still be working on it; every
/// other code is final.
pub fn is_final_code(code: Code) -> bool {
    !matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unavailable
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finality() {
        let rpc = |code| Error::Rpc {
            rpc: Rpc::CreateVolume,
            status: tonic::Status::new(code, "x"),
        };
        assert!(!rpc(Code::DeadlineExceeded).is_final());
        assert!(!rpc(Code::Aborted).is_final());
        assert!(rpc(Code::InvalidArgument).is_final());
        assert!(rpc(Code::Ok).is_final());
        assert!(!Error::connect_timeout("/x", Duration::from_secs(1), None).is_final());
        assert_eq!(
            rpc(Code::NotFound).to_string(),
            "CSI call /csi.v1.Controller/CreateVolume failed: rpc error: code = NotFound desc = x"
        );
    }
}
