//! [`VolumeGroupSnapshot`]: a user's request for one snapshot of several
//! claims, taken together.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::groupsnapshot::shared::{VolumeGroupSnapshotSource, VolumeGroupSnapshotStatus};

/// The `spec` of a [`VolumeGroupSnapshot`] (namespaced,
/// `groupsnapshot.storage.k8s.io/v1`, plural `volumegroupsnapshots`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "groupsnapshot.storage.k8s.io",
    version = "v1",
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
