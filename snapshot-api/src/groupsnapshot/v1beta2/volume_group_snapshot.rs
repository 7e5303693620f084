//! [`VolumeGroupSnapshot`]: a user's request for one snapshot of several
//! claims, taken together.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::snapshot::v1::VolumeSnapshotError;

/// The `spec` of a [`VolumeGroupSnapshot`] (namespaced,
/// `groupsnapshot.storage.k8s.io/v1beta2`, plural `volumegroupsnapshots`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "groupsnapshot.storage.k8s.io",
    version = "v1beta2",
    kind = "VolumeGroupSnapshot",
    plural = "volumegroupsnapshots",
    namespaced,
    status = "VolumeGroupSnapshotStatus",
    derive = "PartialEq",
    doc = "A user's request to snapshot, together, every PersistentVolumeClaim that a \
           label selector matches, or to bind to a pre-existing \
           VolumeGroupSnapshotContent. `spec` is required; `status` is written by the \
           snapshot controller."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotSpec {
    /// Where the group snapshot comes from. Immutable; required.
    pub source: VolumeGroupSnapshotSource,
    /// The VolumeGroupSnapshotClass to use; `None` selects the driver's
    /// default class. Never the empty string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_class_name: Option<String>,
}

/// Where a [`VolumeGroupSnapshot`] comes from. Exactly one field is set (CEL
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

/// The `status` of a [`VolumeGroupSnapshot`].
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
