//! The `snapshot.storage.k8s.io` API group: single-volume snapshots.

pub mod v1;

/// The API group of [`v1`]'s types.
pub const GROUP: &str = "snapshot.storage.k8s.io";
