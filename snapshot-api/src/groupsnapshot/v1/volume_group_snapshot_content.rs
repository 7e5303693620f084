//! [`VolumeGroupSnapshotContent`]: a group snapshot on the storage system,
//! as the cluster-scoped counterpart of a
//! [`VolumeGroupSnapshot`](super::VolumeGroupSnapshot).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::groupsnapshot::shared::{
    VolumeGroupSnapshotContentSource, VolumeGroupSnapshotContentStatus,
};
use crate::snapshot::v1::DeletionPolicy;

/// The `spec` of a [`VolumeGroupSnapshotContent`] (cluster-scoped,
/// `groupsnapshot.storage.k8s.io/v1`, plural
/// `volumegroupsnapshotcontents`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "groupsnapshot.storage.k8s.io",
    version = "v1",
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
