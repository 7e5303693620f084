//! [`VolumeSnapshotClass`]: driver and parameters for dynamically created
//! snapshots.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;

/// The fields of a [`VolumeSnapshotClass`] (cluster-scoped,
/// `snapshot.storage.k8s.io/v1`, plural `volumesnapshotclasses`). A class
/// has no `spec`: these fields sit at the top level of the object, next to
/// `metadata`, and are reached as `class.spec` on the Rust side.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotClass",
    plural = "volumesnapshotclasses",
    no_spec,
    derive = "PartialEq",
    doc = "Describes how snapshots of one CSI driver are created. The annotation \
           `snapshot.storage.kubernetes.io/is-default-class: \"true\"` marks the \
           driver's default class."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotClassFields {
    /// Name of the CSI driver that takes the snapshots. Required.
    pub driver: String,
    /// Opaque parameters for CSI `CreateSnapshot`; keys with the prefix
    /// `csi.storage.k8s.io/` are read by the snapshotter itself (secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
    /// The deletion policy copied into each VolumeSnapshotContent created
    /// through this class. Required.
    pub deletion_policy: DeletionPolicy,
}
