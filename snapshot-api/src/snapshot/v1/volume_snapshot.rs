//! [`VolumeSnapshot`]: a user's request for a snapshot of a claim, or for
//! access to an existing snapshot.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::VolumeSnapshotError;

/// The `spec` of a [`VolumeSnapshot`] (namespaced,
/// `snapshot.storage.k8s.io/v1`, plural `volumesnapshots`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    plural = "volumesnapshots",
    namespaced,
    status = "VolumeSnapshotStatus",
    derive = "PartialEq",
    doc = "A user's request to snapshot a PersistentVolumeClaim, or to bind to a \
           pre-existing VolumeSnapshotContent. `spec` is required; `status` is written \
           by the snapshot controller."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// Where the snapshot comes from. Immutable; required.
    pub source: VolumeSnapshotSource,
    /// The VolumeSnapshotClass to use; `None` selects the default class of
    /// the driver (upstream fails the snapshot when a driver has several
    /// defaults). Never the empty string (the CRD rejects it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// Where a [`VolumeSnapshot`] comes from. Exactly one field is set (the CRD
/// enforces it with CEL rules); both are immutable once set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// A claim in the snapshot's namespace to take a new snapshot of
    /// (dynamic snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    /// A pre-existing VolumeSnapshotContent to bind to (static snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

/// The `status` of a [`VolumeSnapshot`]. Users must check that snapshot and
/// content point at each other before trusting
/// `bound_volume_snapshot_content_name`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// The VolumeSnapshotContent this snapshot binds to; `None` until bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    /// When the storage system cut the snapshot (from CSI `creation_time`);
    /// `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Whether a volume can be restored from the snapshot; `None` when
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Smallest volume size the snapshot can be restored to (from CSI
    /// `size_bytes`), as a quantity such as `"1Gi"`; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<Quantity>,
    /// The last error while creating the snapshot, cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
    /// The VolumeGroupSnapshot this snapshot was taken as part of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_name: Option<String>,
}
