//! `groupsnapshot.storage.k8s.io/v1beta2`, the version external-snapshotter
//! v8.6.0's group snapshot CRDs store. Mirrors the Go package
//! `client/v8/apis/volumegroupsnapshot/v1beta2`; the deletion policy and the
//! error type are shared with [`snapshot::v1`](crate::snapshot::v1), as in Go.

mod volume_group_snapshot;
mod volume_group_snapshot_class;
mod volume_group_snapshot_content;

pub use volume_group_snapshot::{
    VolumeGroupSnapshot, VolumeGroupSnapshotSource, VolumeGroupSnapshotSpec,
    VolumeGroupSnapshotStatus,
};
pub use volume_group_snapshot_class::{VolumeGroupSnapshotClass, VolumeGroupSnapshotClassFields};
pub use volume_group_snapshot_content::{
    GroupSnapshotHandles, VolumeGroupSnapshotContent, VolumeGroupSnapshotContentSource,
    VolumeGroupSnapshotContentSpec, VolumeGroupSnapshotContentStatus, VolumeSnapshotInfo,
};

/// The API version of this module's types,
/// `groupsnapshot.storage.k8s.io/v1beta2`.
pub const API_VERSION: &str = "groupsnapshot.storage.k8s.io/v1beta2";
