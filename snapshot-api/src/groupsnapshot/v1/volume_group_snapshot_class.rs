//! [`VolumeGroupSnapshotClass`]: driver and parameters for dynamically
//! created group snapshots.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::snapshot::v1::DeletionPolicy;

/// The fields of a [`VolumeGroupSnapshotClass`] (cluster-scoped,
/// `groupsnapshot.storage.k8s.io/v1`, plural
/// `volumegroupsnapshotclasses`). Like a VolumeSnapshotClass it has no
/// `spec`: these fields sit at the top level of the object.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "groupsnapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeGroupSnapshotClass",
    plural = "volumegroupsnapshotclasses",
    no_spec,
    derive = "PartialEq",
    doc = "Describes how group snapshots of one CSI driver are created. The annotation \
           `groupsnapshot.storage.kubernetes.io/is-default-class: \"true\"` marks the \
           driver's default class."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotClassFields {
    /// Name of the CSI driver that takes the group snapshots. Required.
    pub driver: String,
    /// Opaque parameters for CSI `CreateVolumeGroupSnapshot`; keys with the
    /// prefix `csi.storage.k8s.io/` are read by the snapshotter itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
    /// The deletion policy copied into each VolumeGroupSnapshotContent
    /// created through this class. Required.
    pub deletion_policy: DeletionPolicy,
}
