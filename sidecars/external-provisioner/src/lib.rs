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
//! records. Here that intent lives in the cluster ([`intents`],
//! [`intent_log`]):
//!
//! 1. Before the first CreateVolume for a claim, the claim is recorded as an
//!    annotation on one of [`intents::SHARDS`] Leases, in batches: every
//!    claim waiting while a write is on its way joins the next one.
//! 2. Once the PV is saved, the entry is dropped (lazily, batched too). A
//!    crash between the two is repaired by the next reconcile
//!    ([`provision::ClaimDecision::ReleaseIntent`]).
//! 3. A claim deleted while recorded is gone at once; the provisioner
//!    repeats CreateVolume from the recorded claim, which is idempotent by
//!    name, to learn the volume ID, then calls DeleteVolume and drops the
//!    entry ([`provision::ClaimDecision::Undo`]). If CreateVolume fails with
//!    a code that proves no volume exists ([`classify::proves_nothing_created`]),
//!    the entry is simply dropped. Otherwise it stays and is retried with a
//!    Warning event, so a problem shows instead of a silent leak.
//!
//! Cost: a few Lease writes per burst of claims instead of upstream's
//! nothing. Where RBAC refuses the Leases, the intent falls back to the
//! per-claim finalizer [`annotations::CREATE_INTENT_FINALIZER`] (two claim
//! Updates per volume; a deleted claim then stays Terminating until its
//! volume is undone); claims carrying it, from the fallback or from earlier
//! versions, are finished and released. During a rollback to the Go
//! provisioner the Leases are inert.

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
pub mod intent_log;
pub mod intents;
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
