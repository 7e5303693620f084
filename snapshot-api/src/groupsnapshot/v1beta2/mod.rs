//! `groupsnapshot.storage.k8s.io/v1beta2`, the version external-snapshotter
//! v8.6.0's group snapshot CRDs store. Mirrors the Go package
//! `client/v8/apis/volumegroupsnapshot/v1beta2`; the deletion policy and the
//! error type are shared with [`snapshot::v1`](crate::snapshot::v1), as in Go,
//! and the sources and statuses with [`super::v1`], whose schema is the same.

mod volume_group_snapshot;
mod volume_group_snapshot_class;
mod volume_group_snapshot_content;

pub use super::shared::{
    GroupSnapshotHandles, VolumeGroupSnapshotContentSource, VolumeGroupSnapshotContentStatus,
    VolumeGroupSnapshotSource, VolumeGroupSnapshotStatus, VolumeSnapshotInfo,
};
pub use volume_group_snapshot::{VolumeGroupSnapshot, VolumeGroupSnapshotSpec};
pub use volume_group_snapshot_class::{VolumeGroupSnapshotClass, VolumeGroupSnapshotClassFields};
pub use volume_group_snapshot_content::{
    VolumeGroupSnapshotContent, VolumeGroupSnapshotContentSpec,
};

/// The API version of this module's types,
/// `groupsnapshot.storage.k8s.io/v1beta2`.
pub const API_VERSION: &str = "groupsnapshot.storage.k8s.io/v1beta2";
