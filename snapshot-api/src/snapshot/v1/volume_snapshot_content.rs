//! [`VolumeSnapshotContent`]: a snapshot on the storage system, as the
//! cluster-scoped counterpart of a [`VolumeSnapshot`](super::VolumeSnapshot).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DeletionPolicy, VolumeSnapshotError};

/// The `spec` of a [`VolumeSnapshotContent`] (cluster-scoped,
/// `snapshot.storage.k8s.io/v1`, plural `volumesnapshotcontents`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotContent",
    plural = "volumesnapshotcontents",
    status = "VolumeSnapshotContentStatus",
    derive = "PartialEq",
    doc = "A snapshot taken on the storage system, created by the snapshot controller \
           for a VolumeSnapshot or by an administrator for a pre-existing snapshot. \
           `spec` is required; `status` is written by the CSI snapshotter."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    /// The VolumeSnapshot this content is bound to (`name` and `namespace`
    /// required, `uid` once bound). Required.
    pub volume_snapshot_ref: ObjectReference,
    /// What happens to the physical snapshot when this content, or its bound
    /// VolumeSnapshot, is deleted. Required.
    pub deletion_policy: DeletionPolicy,
    /// Name of the CSI driver that manages the snapshot, as in
    /// `GetPluginInfo`. Required.
    pub driver: String,
    /// The VolumeSnapshotClass the snapshot was created with; may be
    /// `None` for pre-existing snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// The volume or snapshot handle this content stands for. Immutable;
    /// required.
    pub source: VolumeSnapshotContentSource,
    /// `volumeMode` (`"Filesystem"` or `"Block"`) of the volume the snapshot
    /// was taken of; `None` when unknown. Go writes `null` for unknown;
    /// the API server drops it, and this type omits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume_mode: Option<String>,
}

/// What a [`VolumeSnapshotContent`] stands for. Exactly one field is set
/// (CEL rules in the CRD); immutable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    /// CSI `volume_id` of the volume to snapshot (dynamic provisioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// CSI `snapshot_id` of a snapshot that already exists (static
    /// provisioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

/// The `status` of a [`VolumeSnapshotContent`], as the CSI snapshotter
/// records the driver's `CreateSnapshot` / `ListSnapshots` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    /// CSI `snapshot_id` the driver returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// When the snapshot was cut, in nanoseconds since the Unix epoch (CSI
    /// `creation_time`); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    /// Size of the snapshot in bytes (CSI `size_bytes`), never negative;
    /// `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub restore_size: Option<i64>,
    /// Whether a volume can be restored from the snapshot (CSI
    /// `ready_to_use`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error while creating the snapshot, cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
    /// CSI `group_snapshot_id` of the group snapshot this snapshot belongs
    /// to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_handle: Option<String>,
}
