//! snapshot-controller: a drop-in replacement for kubernetes-csi's common
//! snapshot controller (external-snapshotter v8.6.0,
//! `cmd/snapshot-controller`).
//!
//! It watches VolumeSnapshots and VolumeSnapshotContents cluster-wide. A
//! snapshot of a claim gets a content named `snapcontent-<snapshot UID>`
//! (class, driver and deletion policy from its VolumeSnapshotClass, the
//! default class of the claim's driver when it names none) that the CSI
//! driver's csi-snapshotter sidecar turns into a real snapshot; a snapshot
//! naming an existing content is bound to it after checking that the content
//! points back. The content's status is copied into the snapshot's
//! (`boundVolumeSnapshotContentName`, `readyToUse`, `restoreSize`,
//! `creationTime`, `error`). The claim carries
//! `snapshot.storage.kubernetes.io/pvc-as-source-protection` while a
//! snapshot of it is being taken; snapshots and contents carry the bound
//! protection finalizers; deleting a snapshot marks its content
//! `volumesnapshot-being-deleted` and, for `deletionPolicy: Delete`,
//! deletes it.
//!
//! Layout: the decisions are pure functions in [`rules`], unit-tested with
//! plain values; [`controller`] does the I/O around them; [`args`] are the
//! flags, [`metrics`] upstream's `snapshot_controller_*` metrics and
//! [`startup`] what upstream's `main.go` does before the controllers run.
//!
//! With `--enable-distributed-snapshotting` Nodes are watched too and a
//! dynamic content is labelled `snapshot.storage.kubernetes.io/managed-by`
//! with the node its PV's node affinity selects.
//!
//! Not implemented (yet): the VolumeGroupSnapshot controllers
//! (`--feature-gates=CSIVolumeGroupSnapshot=true` is accepted and logged as
//! unsupported).

pub mod args;
pub mod controller;
pub mod error;
pub mod metrics;
pub mod rules;
pub mod startup;

pub use error::Error;

/// The Lease upstream's snapshot-controller holds with `--leader-election`.
pub const LEASE_NAME: &str = "snapshot-controller-leader";

/// The events' `source.component` and the client's user agent.
pub const COMPONENT: &str = "snapshot-controller";
