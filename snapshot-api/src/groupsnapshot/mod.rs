//! The `groupsnapshot.storage.k8s.io` API group: crash-consistent snapshots
//! of several volumes taken together.
//!
//! external-snapshotter v8.6.0's CRDs serve `v1beta1` (deprecated),
//! `v1beta2` (stored) and `v1`; `v1` and `v1beta2` have the same schema, so
//! the two modules share every type below the root and spec ones. Its
//! controllers read and write `v1`; clusters with v8.4/v8.5 CRDs serve
//! `v1beta2` and not `v1`.

mod shared;
pub mod v1;
pub mod v1beta2;

/// The API group of [`v1`]'s and [`v1beta2`]'s types.
pub const GROUP: &str = "groupsnapshot.storage.k8s.io";
