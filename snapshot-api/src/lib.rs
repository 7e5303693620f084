//! The Kubernetes volume snapshot API as Rust types, for every sidecar and
//! controller that reads or writes snapshots (csi-provisioner for
//! restore-from-snapshot, csi-snapshotter, snapshot-controller).
//!
//! The types follow the CustomResourceDefinitions that external-snapshotter
//! v8.6.0 ships (`client/config/crd`), field for field:
//!
//! * `snapshot.storage.k8s.io/v1` in [`snapshot::v1`]: [`VolumeSnapshot`],
//!   [`VolumeSnapshotContent`] and [`VolumeSnapshotClass`], the stored and
//!   only served version.
//! * `groupsnapshot.storage.k8s.io/v1` in [`groupsnapshot::v1`] and
//!   `groupsnapshot.storage.k8s.io/v1beta2` in [`groupsnapshot::v1beta2`]:
//!   VolumeGroupSnapshot, VolumeGroupSnapshotContent and
//!   VolumeGroupSnapshotClass. v8.6.0's controllers use `v1`; its CRDs store
//!   `v1beta2`, the newest version older CRDs (v8.4, v8.5) serve. The two
//!   schemas are the same.
//!
//! Each root type is a `kube` custom resource (`kube::Resource`,
//! `kube::CustomResourceExt`, `schemars::JsonSchema`), so `kube::Api<T>`
//! works with it directly. The CRDs themselves are never generated from
//! these types for a cluster: clusters get upstream's manifests unchanged,
//! and the tests check that every property of upstream's schemas exists
//! here with the same JSON type, and that objects survive a round trip
//! through JSON unchanged.
//!
//! Fields that Go marks `omitempty` are `Option`s skipped when `None`;
//! required fields (as the CRD schema's `required` lists them) are plain
//! values. Timestamps written by the API server (`creationTime` of a
//! VolumeSnapshot, error times) are [`Time`](k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
//! timestamps copied from the CSI driver into contents are Unix nanoseconds
//! (`i64`), as upstream stores them.
//!
//! This crate does no I/O and has no errors of its own.

pub mod groupsnapshot;
pub mod names;
pub mod snapshot;

pub use snapshot::v1::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
