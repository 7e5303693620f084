//! [`VolumeGroupSnapshotContent`]: a group snapshot on the storage system,
//! as the cluster-scoped counterpart of a
//! [`VolumeGroupSnapshot`](super::VolumeGroupSnapshot).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::snapshot::v1::{DeletionPolicy, VolumeSnapshotError};

/// The `spec` of a [`VolumeGroupSnapshotContent`] (cluster-scoped,
/// `groupsnapshot.storage.k8s.io/v1beta2`, plural
/// `volumegroupsnapshotcontents`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "groupsnapshot.storage.k8s.io",
    version = "v1beta2",
    kind = "VolumeGroupSnapshotContent",
    plural = "volumegroupsnapshotcontents",
    status = "VolumeGroupSnapshotContentStatus",
    derive = "PartialEq",
    doc = "A group snapshot taken on the storage system, created by the snapshot \
           controller for a VolumeGroupSnapshot or by an administrator for a \
           pre-existing group snapshot. `spec` is required; `status` is written by the \
           CSI snapshotter."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContentSpec {
    /// The VolumeGroupSnapshot this content is bound to (`name` and
    /// `namespace` required, `uid` once bound). Required.
    pub volume_group_snapshot_ref: ObjectReference,
    /// What happens to the physical group snapshot when this content, or
    /// its bound VolumeGroupSnapshot, is deleted. Required.
    pub deletion_policy: DeletionPolicy,
    /// Name of the CSI driver that manages the group snapshot. Required.
    pub driver: String,
    /// The VolumeGroupSnapshotClass the group snapshot was created with;
    /// may be `None` for pre-existing group snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_class_name: Option<String>,
    /// The volumes or snapshots this content stands for. Immutable;
    /// required.
    pub source: VolumeGroupSnapshotContentSource,
}

/// What a [`VolumeGroupSnapshotContent`] stands for. Exactly one field is
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

/// The `status` of a [`VolumeGroupSnapshotContent`], as the CSI
/// snapshotter records the driver's `CreateVolumeGroupSnapshot` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotContentStatus {
    /// CSI `group_snapshot_id` the driver returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_handle: Option<String>,
    /// When the group snapshot was cut. Unlike a VolumeSnapshotContent's
    /// nanosecond integer, this is a timestamp, as upstream's v1beta2 has it.
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
