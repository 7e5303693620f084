//! [`VolumeSnapshotError`]: the last error the snapshot controllers met.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The last error seen while creating a snapshot, in the `status.error` of a
/// VolumeSnapshot, VolumeSnapshotContent, VolumeGroupSnapshot or
/// VolumeGroupSnapshotContent. The controllers keep retrying and clear it on
/// success.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotError {
    /// Human-readable error. Logged by upstream's controllers, so drivers
    /// must not put secrets in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the error happened (RFC 3339, second precision on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}
