//! The parts of the group snapshot kinds whose shape `v1` and `v1beta2`
//! share (the two versions' schemas are identical in external-snapshotter
//! v8.6.0): sources, statuses and their members. Each version module
//! re-exports them next to its own root types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::snapshot::v1::VolumeSnapshotError;

/// Where a VolumeGroupSnapshot comes from. Exactly one field is set (CEL
/// rules in the CRD); both are immutable once set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotSource {
    /// Selects the claims in the group snapshot's namespace to snapshot
    /// (dynamic group snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// A pre-existing VolumeGroupSnapshotContent to bind to (static group
    /// snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_content_name: Option<String>,
}

/// The `status` of a VolumeGroupSnapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotStatus {
    /// The VolumeGroupSnapshotContent this group snapshot binds to; `None`
    /// until bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_group_snapshot_content_name: Option<String>,
    /// When the storage system cut the group snapshot (from CSI
    /// `creation_time`); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Whether every member snapshot is ready; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error while creating the group snapshot, cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// What a VolumeGroupSnapshotContent stands for. Exactly one field is
/// set (CEL rules in the CRD); immutable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContentSource {
    /// CSI `volume_id`s of the volumes to snapshot together (dynamic
    /// provisioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handles: Option<Vec<String>>,
    /// The handles of a group snapshot that already exists (static
    /// provisioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot_handles: Option<GroupSnapshotHandles>,
}

/// The CSI handles of a pre-existing group snapshot and its members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshotHandles {
    /// CSI `group_snapshot_id`. Required.
    pub volume_group_snapshot_handle: String,
    /// CSI `snapshot_id` of every member snapshot. Required (may be empty).
    pub volume_snapshot_handles: Vec<String>,
}

/// The `status` of a VolumeGroupSnapshotContent, as the CSI
/// snapshotter records the driver's `CreateVolumeGroupSnapshot` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContentStatus {
    /// CSI `group_snapshot_id` the driver returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_handle: Option<String>,
    /// When the group snapshot was cut. Unlike a VolumeSnapshotContent's
    /// nanosecond integer, this is a timestamp, as upstream has it in both versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Whether every member snapshot is ready to restore from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error while creating the group snapshot, cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
    /// One entry per member snapshot, pairing volume and snapshot handles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_info_list: Option<Vec<VolumeSnapshotInfo>>,
}

/// One member of a group snapshot, as the driver reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotInfo {
    /// CSI `volume_id` of the snapshotted volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// CSI `snapshot_id` of the member snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// When the member snapshot was cut, in nanoseconds since the Unix
    /// epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    /// Whether the member snapshot is ready to restore from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Size of the member snapshot in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<i64>,
}
