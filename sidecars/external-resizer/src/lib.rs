//! csi-resizer: a drop-in replacement for kubernetes-csi external-resizer
//! (v2.2.0).
//!
//! It watches PersistentVolumeClaims bound to PVs of the CSI driver behind
//! `--csi-address`. A claim asking for more storage than it has is
//! expanded with ControllerExpandVolume; the PV gets the new capacity and
//! the claim either its new `status.capacity` (controller-only expansion)
//! or `FileSystemResizePending` for kubelet's NodeExpandVolume. With
//! RecoverVolumeExpansionFailure the target is recorded in
//! `status.allocatedResources` and the progress in
//! `status.allocatedResourceStatuses`, so a user can lower a request that
//! failed. A claim whose `spec.volumeAttributesClassName` changes is
//! modified with ControllerModifyVolume.
//!
//! Layout: the rules are pure functions in [`resize`], [`modify`] and
//! [`request`], unit-tested with plain values; [`controller`] does the I/O
//! around them and [`startup`] what upstream's `main.go` decides.
//!
//! # Beyond upstream
//!
//! * The status write after a successful ControllerExpandVolume is
//!   re-applied to the newest claim when the claim was edited meanwhile
//!   (409), instead of being lost until the next resync re-expands.
//! * An infeasible answer starts the slow-retry window at once, so the
//!   watch event of the resizer's own status write does not call the
//!   driver a second time.

pub mod args;
pub mod controller;
pub mod error;
pub mod features;
pub mod modify;
pub mod names;
pub mod request;
pub mod resize;
pub mod startup;

pub use error::Error;
