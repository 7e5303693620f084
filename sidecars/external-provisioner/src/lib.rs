//! csi-provisioner: a drop-in replacement for kubernetes-csi
//! external-provisioner.
//!
//! It watches PersistentVolumeClaims whose
//! `volume.kubernetes.io/storage-provisioner` annotation and StorageClass name
//! the CSI driver behind `--csi-address`, calls CreateVolume, and saves a
//! PersistentVolume for each; when a PV with reclaim policy Delete is
//! Released it calls DeleteVolume and removes the PV.
//!
//! Layout: the rules live in pure functions ([`provision::decide_claim`],
//! [`pv::check_response`], [`delete::decide_volume`] and the helpers they
//! use), unit-tested with plain values; [`controller`] does the I/O around
//! them.

pub mod annotations;
pub mod args;
pub mod capabilities;
pub mod controller;
pub mod delete;
pub mod error;
pub mod metrics;
pub mod names;
pub mod parameters;
pub mod provision;
pub mod pv;
pub mod quantity;
pub mod secrets;

pub use error::Error;
