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
//! them. CSI migration (claims, StorageClasses and PVs of the in-tree plugin
//! a migration driver replaced) is decided in [`migration`].
//!
//! # No leaked volumes
//!
//! Upstream keeps "CreateVolume may be in flight" only in memory
//! (external-provisioner#486): if the process dies during CreateVolume and the
//! claim is deleted before it restarts, the driver keeps a volume no PV
//! records. Here that intent lives in the cluster:
//!
//! 1. Before the first CreateVolume for a claim, the claim gets the finalizer
//!    [`annotations::CREATE_INTENT_FINALIZER`], written with an Update
//!    carrying the cached resourceVersion (upstream's RBAC grants `update` on
//!    claims).
//! 2. Once the PV is saved, the finalizer is removed. A crash between the two
//!    is repaired by the next reconcile ([`provision::ClaimDecision::ReleaseIntent`]).
//! 3. A claim deleted while the finalizer is on it stays Terminating. The
//!    provisioner repeats CreateVolume, which is idempotent by name, to learn
//!    the volume ID, then calls DeleteVolume and removes the finalizer
//!    ([`provision::ClaimDecision::Undo`]). If CreateVolume fails with a code
//!    that proves no volume exists ([`classify::proves_nothing_created`]), the
//!    finalizer is simply removed. Otherwise the claim stays Terminating and
//!    the call is retried with a Warning event, so a problem shows instead of
//!    a silent leak.
//!
//! Cost: two more writes per provisioned claim than upstream makes. During a
//! rollback to the Go provisioner, claims that were mid-provisioning keep
//! the finalizer, which the Go provisioner does not know; remove it by hand
//! (`kubectl patch pvc … --type=json -p '[{"op":"remove","path":"/metadata/finalizers/N"}]'`).

pub mod annotations;
pub mod args;
pub mod capabilities;
pub mod capacity;
pub mod capacity_controller;
mod claims;
pub mod classify;
pub mod controller;
pub mod datasource;
pub mod delete;
pub mod error;
pub mod features;
pub mod metrics;
pub mod migration;
pub mod names;
pub mod node_deployment;
pub mod parameters;
mod prepare;
pub mod provision;
pub mod pv;
pub mod quantity;
pub mod secrets;
pub mod snapshot;
pub mod snapshot_sweep;
pub mod startup;
#[cfg(test)]
mod test_fixtures;
pub mod topology;
mod volumes;

pub use error::Error;
