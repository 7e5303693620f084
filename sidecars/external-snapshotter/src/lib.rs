//! csi-snapshotter: a drop-in replacement for the sidecar half of
//! kubernetes-csi external-snapshotter (v8.6.0).
//!
//! It watches the VolumeSnapshotContents of the CSI driver behind
//! `--csi-address`. A dynamic content (`spec.source.volumeHandle`, made by
//! snapshot-controller for a VolumeSnapshot) is cut with CreateSnapshot and
//! its `status` (`snapshotHandle`, `creationTime`, `readyToUse`,
//! `restoreSize`, `error`) written; a pre-provisioned one
//! (`spec.source.snapshotHandle`) is looked up with ListSnapshots. A
//! content being deleted with policy Delete, once snapshot-controller has
//! marked it `volumesnapshot-being-deleted`, is removed with
//! DeleteSnapshot, then its bound finalizer is released.
//!
//! The `volumesnapshot-being-created` annotation is written before every
//! CreateSnapshot and removed after a success or a final error: while it
//! is set the content is not deleted, so a sidecar killed mid-call
//! repeats CreateSnapshot (same name, idempotent on the driver) after the
//! restart and then deletes what it finds, leaving no orphaned snapshot.
//!
//! Layout: the rules are pure functions in [`rules`], unit-tested with
//! plain values; [`controller`] does the I/O and [`startup`] what
//! upstream's `main.go` decides.

pub mod args;
pub mod controller;
pub mod error;
pub mod features;
pub mod names;
pub mod rules;
pub mod startup;

pub use error::Error;
