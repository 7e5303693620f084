//! The claim's storage request in bytes; the quantity arithmetic itself is
//! [`sidecar_runtime::quantity`].

pub use sidecar_runtime::quantity::{from_bytes, go_value};

use crate::error::Error;

/// [`sidecar_runtime::quantity::to_bytes`] with the provisioner's error.
///
/// Errors: [`Error::InvalidClaim`] (final) for text that is not a quantity,
/// a negative value, or a value beyond `i64`.
pub fn to_bytes(q: &str) -> Result<i64, Error> {
    sidecar_runtime::quantity::to_bytes(q)
        .map_err(|_| Error::InvalidClaim(format!("invalid storage quantity {q:?}")))
}

/// The claim's `spec.resources.requests.storage` in bytes.
///
/// Errors: [`Error::InvalidClaim`] (final) when it is missing or not a
/// quantity.
pub fn claim_request_bytes(
    pvc: &k8s_openapi::api::core::v1::PersistentVolumeClaim,
) -> Result<i64, Error> {
    let q = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .ok_or_else(|| Error::InvalidClaim("claim has no storage request".into()))?;
    to_bytes(&q.0)
}
