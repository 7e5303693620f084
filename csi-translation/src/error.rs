//! [`TranslationError`], the one error type of this crate.

/// Why a translation failed. Every variant names the offending object, value
/// or parameter; none is retryable with the same input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslationError {
    /// No migratable plugin has this in-tree name (StorageClass translation).
    #[error("no CSI migration logic for in-tree plugin {0:?}")]
    UnknownInTreePlugin(String),
    /// No in-tree plugin migrates to this CSI driver (CSI → in-tree, handle repair).
    #[error("no in-tree plugin migrates to CSI driver {0:?}")]
    UnknownCsiDriver(String),
    /// The PV or in-line volume has no source that a migratable plugin handles.
    /// The string describes the object, e.g. `persistent volume "pv-1"`.
    #[error("{0} has no volume source that CSI migration can translate")]
    NotMigratable(String),
    /// A PV handed to CSI → in-tree translation has no `spec.csi`.
    #[error("persistent volume {0:?} has no CSI volume source")]
    MissingCsiSource(String),
    /// A plugin translator got an object without its own source.
    #[error("{object} has no {source_field} volume source")]
    MissingSource {
        /// The field that should have been set, e.g. `awsElasticBlockStore`.
        source_field: &'static str,
        /// The object, e.g. `persistent volume "pv-1"`.
        object: String,
    },
    /// A volume ID or handle does not have the format the plugin expects.
    #[error("invalid {driver} volume handle {handle:?}: {reason}")]
    InvalidVolumeHandle {
        /// The CSI driver whose format applies.
        driver: &'static str,
        /// The handle or in-tree volume ID as given.
        handle: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node ID (from CSINode) does not have the format the plugin expects.
    #[error("invalid {driver} node ID {node_id:?}: {reason}")]
    InvalidNodeId {
        /// The CSI driver whose format applies.
        driver: &'static str,
        /// The node ID as given.
        node_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CSI volume attribute has a value the in-tree source cannot hold.
    #[error("invalid volume attribute {key}={value:?}: {reason}")]
    InvalidVolumeAttribute {
        /// The attribute name.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CSI volume attribute that the in-tree source needs is absent.
    #[error("{driver} volume attribute {key:?} is missing")]
    MissingVolumeAttribute {
        /// The CSI driver.
        driver: &'static str,
        /// The attribute name.
        key: &'static str,
    },
    /// Zones from which no (single) region or node affinity can be derived.
    #[error("invalid zones {zones:?}: {reason}")]
    InvalidZones {
        /// The zones as given.
        zones: Vec<String>,
        /// What is wrong with them.
        reason: String,
    },
    /// A StorageClass whose parameters and allowed topologies contradict each
    /// other. Displays the text alone, which for zone parameters next to
    /// allowedTopologies is csi-translation-lib's.
    #[error("{0}")]
    InvalidStorageClass(String),
    /// An Azure disk of a kind (`Shared`, `Dedicated`) the CSI driver cannot use.
    #[error("azure disk kind {0:?} cannot be migrated to CSI: only Managed disks can")]
    UnsupportedAzureDiskKind(String),
    /// An Azure File PV with neither `secretNamespace` nor a claim to take the
    /// namespace from.
    #[error(
        "persistent volume {0:?} has no secret namespace in spec.azureFile.secretNamespace or spec.claimRef"
    )]
    MissingSecretNamespace(String),
}

/// Result of a translation.
pub type Result<T, E = TranslationError> = std::result::Result<T, E>;
