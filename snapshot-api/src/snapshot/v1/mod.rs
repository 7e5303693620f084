//! `snapshot.storage.k8s.io/v1`, the version external-snapshotter v8.6.0
//! stores and serves (`v1beta1` is listed in its CRDs but no longer served).
//! Mirrors the Go package `client/v8/apis/volumesnapshot/v1`.

mod deletion_policy;
mod snapshot_error;
mod volume_snapshot;
mod volume_snapshot_class;
mod volume_snapshot_content;

pub use deletion_policy::DeletionPolicy;
pub use snapshot_error::VolumeSnapshotError;
pub use volume_snapshot::{
    VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec, VolumeSnapshotStatus,
};
pub use volume_snapshot_class::{VolumeSnapshotClass, VolumeSnapshotClassFields};
pub use volume_snapshot_content::{
    VolumeSnapshotContent, VolumeSnapshotContentSource, VolumeSnapshotContentSpec,
    VolumeSnapshotContentStatus,
};

/// The API version of this module's types, `snapshot.storage.k8s.io/v1`.
pub const API_VERSION: &str = "snapshot.storage.k8s.io/v1";
