//! The annotation, finalizer, label and parameter names that
//! snapshot-controller and csi-snapshotter (and csi-provisioner, for
//! restores) write on snapshot objects and read back from each other.
//! They are part of the API between the two controllers, so a Go replica
//! and a Rust one must agree on every string: each value is the one
//! external-snapshotter v8.6.0 uses (`pkg/utils/util.go`).

/// The prefix of StorageClass/VolumeSnapshotClass parameters that are meant
/// for the sidecar and stripped before `CreateSnapshot`.
pub const CSI_PARAMETER_PREFIX: &str = "csi.storage.k8s.io/";

/// Class parameters naming the Secret for CreateSnapshot and DeleteSnapshot.
pub const SNAPSHOTTER_SECRET_NAME_KEY: &str = "csi.storage.k8s.io/snapshotter-secret-name";
/// Namespace half of [`SNAPSHOTTER_SECRET_NAME_KEY`].
pub const SNAPSHOTTER_SECRET_NAMESPACE_KEY: &str =
    "csi.storage.k8s.io/snapshotter-secret-namespace";
/// Class parameters naming the Secret for ListSnapshots.
pub const SNAPSHOTTER_LIST_SECRET_NAME_KEY: &str =
    "csi.storage.k8s.io/snapshotter-list-secret-name";
/// Namespace half of [`SNAPSHOTTER_LIST_SECRET_NAME_KEY`].
pub const SNAPSHOTTER_LIST_SECRET_NAMESPACE_KEY: &str =
    "csi.storage.k8s.io/snapshotter-list-secret-namespace";
/// Group class parameters naming the Secret for CreateVolumeGroupSnapshot
/// and DeleteVolumeGroupSnapshot.
pub const GROUP_SNAPSHOTTER_SECRET_NAME_KEY: &str =
    "csi.storage.k8s.io/group-snapshotter-secret-name";
/// Namespace half of [`GROUP_SNAPSHOTTER_SECRET_NAME_KEY`].
pub const GROUP_SNAPSHOTTER_SECRET_NAMESPACE_KEY: &str =
    "csi.storage.k8s.io/group-snapshotter-secret-namespace";
/// Group class parameters naming the Secret for GetVolumeGroupSnapshot.
pub const GROUP_SNAPSHOTTER_GET_SECRET_NAME_KEY: &str =
    "csi.storage.k8s.io/group-snapshotter-get-secret-name";
/// Namespace half of [`GROUP_SNAPSHOTTER_GET_SECRET_NAME_KEY`].
pub const GROUP_SNAPSHOTTER_GET_SECRET_NAMESPACE_KEY: &str =
    "csi.storage.k8s.io/group-snapshotter-get-secret-namespace";

/// `--extra-create-metadata` parameters passed to CreateSnapshot.
pub const VOLUME_SNAPSHOT_NAME_KEY: &str = "csi.storage.k8s.io/volumesnapshot/name";
/// See [`VOLUME_SNAPSHOT_NAME_KEY`].
pub const VOLUME_SNAPSHOT_NAMESPACE_KEY: &str = "csi.storage.k8s.io/volumesnapshot/namespace";
/// See [`VOLUME_SNAPSHOT_NAME_KEY`].
pub const VOLUME_SNAPSHOT_CONTENT_NAME_KEY: &str = "csi.storage.k8s.io/volumesnapshotcontent/name";
/// `--extra-create-metadata` parameters passed to CreateVolumeGroupSnapshot.
pub const VOLUME_GROUP_SNAPSHOT_NAME_KEY: &str = "csi.storage.k8s.io/volumegroupsnapshot/name";
/// See [`VOLUME_GROUP_SNAPSHOT_NAME_KEY`].
pub const VOLUME_GROUP_SNAPSHOT_NAMESPACE_KEY: &str =
    "csi.storage.k8s.io/volumegroupsnapshot/namespace";
/// See [`VOLUME_GROUP_SNAPSHOT_NAME_KEY`].
pub const VOLUME_GROUP_SNAPSHOT_CONTENT_NAME_KEY: &str =
    "csi.storage.k8s.io/volumegroupsnapshotcontent/name";

/// Finalizer on a VolumeSnapshotContent bound to a VolumeSnapshot (added by
/// snapshot-controller, removed once the content may go).
pub const VOLUME_SNAPSHOT_CONTENT_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";
/// Finalizer on a VolumeSnapshot bound to its content.
pub const VOLUME_SNAPSHOT_BOUND_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
/// Finalizer on a VolumeSnapshot while a claim is being restored from it.
pub const VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection";
/// Finalizer on a VolumeSnapshot that belongs to a VolumeGroupSnapshot.
pub const VOLUME_SNAPSHOT_IN_GROUP_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-in-group-protection";
/// Finalizer on a PersistentVolumeClaim while a snapshot of it is being taken.
pub const PVC_AS_SOURCE_FINALIZER: &str = "snapshot.storage.kubernetes.io/pvc-as-source-protection";
/// Finalizer on a VolumeGroupSnapshotContent bound to a VolumeGroupSnapshot.
pub const VOLUME_GROUP_SNAPSHOT_CONTENT_FINALIZER: &str =
    "groupsnapshot.storage.kubernetes.io/volumegroupsnapshotcontent-bound-protection";
/// Finalizer on a VolumeGroupSnapshot bound to its content.
pub const VOLUME_GROUP_SNAPSHOT_BOUND_FINALIZER: &str =
    "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-bound-protection";

/// Annotation (value `"true"`) marking the default VolumeSnapshotClass of a driver.
pub const IS_DEFAULT_SNAPSHOT_CLASS: &str = "snapshot.storage.kubernetes.io/is-default-class";
/// Annotation (value `"true"`) marking the default VolumeGroupSnapshotClass of a driver.
pub const IS_DEFAULT_GROUP_SNAPSHOT_CLASS: &str =
    "groupsnapshot.storage.kubernetes.io/is-default-class";

/// On a VolumeSnapshotContent: snapshot-controller saw its VolumeSnapshot
/// being deleted; csi-snapshotter then applies the deletion policy.
pub const ANN_VOLUME_SNAPSHOT_BEING_DELETED: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted";
/// On a VolumeSnapshotContent: csi-snapshotter has sent CreateSnapshot and
/// has not yet had a success or a final error. While it is set the content
/// must not be deleted without asking the driver (the crash-safety record).
pub const ANN_VOLUME_SNAPSHOT_BEING_CREATED: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-being-created";
/// The group counterpart of [`ANN_VOLUME_SNAPSHOT_BEING_CREATED`].
pub const ANN_VOLUME_GROUP_SNAPSHOT_BEING_CREATED: &str =
    "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-created";
/// The group counterpart of [`ANN_VOLUME_SNAPSHOT_BEING_DELETED`].
pub const ANN_VOLUME_GROUP_SNAPSHOT_BEING_DELETED: &str =
    "groupsnapshot.storage.kubernetes.io/volumegroupsnapshot-being-deleted";

/// On a VolumeSnapshotContent: the Secret DeleteSnapshot needs, copied from
/// the class at creation so deletion works after the class is gone.
pub const ANN_DELETION_SECRET_NAME: &str = "snapshot.storage.kubernetes.io/deletion-secret-name";
/// Namespace half of [`ANN_DELETION_SECRET_NAME`].
pub const ANN_DELETION_SECRET_NAMESPACE: &str =
    "snapshot.storage.kubernetes.io/deletion-secret-namespace";
/// The group counterpart of [`ANN_DELETION_SECRET_NAME`].
pub const ANN_DELETION_GROUP_SECRET_NAME: &str =
    "groupsnapshot.storage.kubernetes.io/deletion-secret-name";
/// Namespace half of [`ANN_DELETION_GROUP_SECRET_NAME`].
pub const ANN_DELETION_GROUP_SECRET_NAMESPACE: &str =
    "groupsnapshot.storage.kubernetes.io/deletion-secret-namespace";

/// On a member VolumeSnapshotContent of a group: the group snapshot's
/// handle; csi-snapshotter does not call CreateSnapshot for such a content.
pub const ANN_VOLUME_GROUP_SNAPSHOT_HANDLE: &str =
    "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle";

/// Label on a VolumeSnapshotContent naming the node whose csi-snapshotter
/// handles it (distributed snapshotting).
pub const MANAGED_BY_LABEL: &str = "snapshot.storage.kubernetes.io/managed-by";
