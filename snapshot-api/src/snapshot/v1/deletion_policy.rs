//! [`DeletionPolicy`]: what happens to a snapshot on the storage system when
//! its content object goes away.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the CSI snapshotter does with the physical snapshot when a
/// VolumeSnapshotContent (or group content) is deleted, or its VolumeSnapshot
/// is. Serialised as the strings `"Delete"` and `"Retain"`, the only values
/// upstream's CRDs accept (`enum` in the schema).
///
/// Shared by the group snapshot types, as upstream's Go types share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// The snapshot on the storage system is deleted (CSI `DeleteSnapshot`)
    /// together with the content object.
    Delete,
    /// The snapshot on the storage system is kept; only the Kubernetes
    /// objects go away.
    Retain,
}
