//! CSI migration: translation between the in-tree volume plugins of Kubernetes
//! and the CSI drivers that replaced them. This is the Rust counterpart of
//! `k8s.io/csi-translation-lib` (its `CSITranslator` and `plugins` package),
//! which the upstream csi-provisioner, csi-attacher and csi-resizer link.
//!
//! Where the sidecars use it:
//!
//! * the provisioner rewrites a StorageClass whose `provisioner` is an in-tree
//!   name into one the CSI driver understands
//!   ([`translate_in_tree_storage_class_to_csi`]), and stores the PV it
//!   provisioned for such a class in the in-tree shape
//!   ([`translate_csi_pv_to_in_tree`]);
//! * the provisioner (delete), attacher and resizer read in-tree PVs through
//!   their CSI shape ([`translate_in_tree_pv_to_csi`]), and in-line pod volumes
//!   through [`translate_in_tree_inline_volume_to_csi`];
//! * the attacher's reconciler completes GCE handles that lack project and zone
//!   from the node ID before comparing them ([`repair_volume_handle`]).
//!
//! | in-tree plugin | CSI driver | CSI topology key |
//! |---|---|---|
//! | `kubernetes.io/aws-ebs` | `ebs.csi.aws.com` | `topology.ebs.csi.aws.com/zone` |
//! | `kubernetes.io/gce-pd` | `pd.csi.storage.gke.io` | `topology.gke.io/zone` |
//! | `kubernetes.io/azure-disk` | `disk.csi.azure.com` | `topology.disk.csi.azure.com/zone` |
//! | `kubernetes.io/azure-file` | `file.csi.azure.com` | none |
//! | `kubernetes.io/cinder` | `cinder.csi.openstack.org` | `topology.cinder.csi.openstack.org/zone` |
//! | `kubernetes.io/vsphere-volume` | `csi.vsphere.vmware.com` | `topology.csi.vmware.com/zone` and `…/region` |
//! | `kubernetes.io/portworx-volume` | `pxd.portworx.com` | none |
//!
//! The per-plugin modules describe exactly what each translation changes. The
//! behaviour follows the csi-translation-lib of Kubernetes 1.34, with these
//! deliberate differences:
//!
//! * Nothing panics: a vSphere in-line volume with a storage policy (a nil
//!   dereference upstream) is translated with that policy.
//! * Where upstream's result depends on Go's random map order, this one is
//!   deterministic or an error: a StorageClass with two zone parameters
//!   (`zone` and `zones`) is rejected, as the in-tree provisioners did.
//! * A vSphere CSI PV without the `initialvolumefilepath` attribute is an error
//!   instead of an in-tree PV with an empty (invalid) volume path.
//! * Partition attributes equal to `0` or empty mean "no partition" in both
//!   directions, so `partition` stays absent as Go's zero value would be.
//! * The retired RBD and CephFS translations are not included.
//!
//! Every function takes its input by reference and returns a new object.

mod aws_ebs;
mod azure_disk;
mod azure_file;
mod cinder;
mod gce_pd;
mod portworx;
#[cfg(test)]
mod testutil;
mod topology;
mod vsphere;

use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolume, Volume};
use k8s_openapi::api::storage::v1::StorageClass;

/// StorageClass parameter with the filesystem type in the in-tree plugins.
const FS_TYPE_PARAM: &str = "fstype";
/// The same parameter as the external-provisioner expects it for CSI drivers.
const CSI_FS_TYPE_PARAM: &str = "csi.storage.k8s.io/fstype";
/// Volume attribute carrying a partition number (AWS EBS, GCE PD).
const PARTITION_ATTRIBUTE: &str = "partition";

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

/// The migratable plugins. The order is the one in which a PV that (invalidly)
/// carries several sources is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plugin {
    GcePd,
    AwsEbs,
    Cinder,
    AzureDisk,
    AzureFile,
    VSphere,
    Portworx,
}

const PLUGINS: [Plugin; 7] = [
    Plugin::GcePd,
    Plugin::AwsEbs,
    Plugin::Cinder,
    Plugin::AzureDisk,
    Plugin::AzureFile,
    Plugin::VSphere,
    Plugin::Portworx,
];

impl Plugin {
    fn in_tree_name(self) -> &'static str {
        match self {
            Plugin::GcePd => gce_pd::IN_TREE_NAME,
            Plugin::AwsEbs => aws_ebs::IN_TREE_NAME,
            Plugin::Cinder => cinder::IN_TREE_NAME,
            Plugin::AzureDisk => azure_disk::IN_TREE_NAME,
            Plugin::AzureFile => azure_file::IN_TREE_NAME,
            Plugin::VSphere => vsphere::IN_TREE_NAME,
            Plugin::Portworx => portworx::IN_TREE_NAME,
        }
    }

    fn driver(self) -> &'static str {
        match self {
            Plugin::GcePd => gce_pd::DRIVER_NAME,
            Plugin::AwsEbs => aws_ebs::DRIVER_NAME,
            Plugin::Cinder => cinder::DRIVER_NAME,
            Plugin::AzureDisk => azure_disk::DRIVER_NAME,
            Plugin::AzureFile => azure_file::DRIVER_NAME,
            Plugin::VSphere => vsphere::DRIVER_NAME,
            Plugin::Portworx => portworx::DRIVER_NAME,
        }
    }

    fn by_driver(driver: &str) -> Option<Plugin> {
        PLUGINS.into_iter().find(|p| p.driver() == driver)
    }

    fn by_in_tree_name(name: &str) -> Option<Plugin> {
        PLUGINS.into_iter().find(|p| p.in_tree_name() == name)
    }

    fn for_pv(pv: &PersistentVolume) -> Option<Plugin> {
        let spec = pv.spec.as_ref()?;
        PLUGINS.into_iter().find(|p| match p {
            Plugin::GcePd => spec.gce_persistent_disk.is_some(),
            Plugin::AwsEbs => spec.aws_elastic_block_store.is_some(),
            Plugin::Cinder => spec.cinder.is_some(),
            Plugin::AzureDisk => spec.azure_disk.is_some(),
            Plugin::AzureFile => spec.azure_file.is_some(),
            Plugin::VSphere => spec.vsphere_volume.is_some(),
            Plugin::Portworx => spec.portworx_volume.is_some(),
        })
    }

    fn for_inline(volume: &Volume) -> Option<Plugin> {
        PLUGINS.into_iter().find(|p| match p {
            Plugin::GcePd => volume.gce_persistent_disk.is_some(),
            Plugin::AwsEbs => volume.aws_elastic_block_store.is_some(),
            Plugin::Cinder => volume.cinder.is_some(),
            Plugin::AzureDisk => volume.azure_disk.is_some(),
            Plugin::AzureFile => volume.azure_file.is_some(),
            Plugin::VSphere => volume.vsphere_volume.is_some(),
            Plugin::Portworx => volume.portworx_volume.is_some(),
        })
    }
}

/// The in-tree plugin name that CSI driver `csi_driver` replaces, e.g.
/// `"ebs.csi.aws.com"` → `Some("kubernetes.io/aws-ebs")`; `None` for drivers
/// that are not migration targets.
///
/// Mirrors `CSITranslator.GetInTreeNameFromCSIName` (an error upstream where
/// this returns `None`).
pub fn in_tree_name_for_driver(csi_driver: &str) -> Option<&'static str> {
    Plugin::by_driver(csi_driver).map(Plugin::in_tree_name)
}

/// The CSI driver that replaces in-tree plugin `in_tree`, e.g.
/// `"kubernetes.io/gce-pd"` → `Some("pd.csi.storage.gke.io")`; `None` for
/// plugins without migration.
///
/// Mirrors `CSITranslator.GetCSINameFromInTreeName` (an error upstream where
/// this returns `None`).
pub fn driver_for_in_tree_name(in_tree: &str) -> Option<&'static str> {
    Plugin::by_in_tree_name(in_tree).map(Plugin::driver)
}

/// Whether `csi_driver` is the migration target of an in-tree plugin, i.e. a
/// sidecar serving it must also handle in-tree objects (exact, case-sensitive
/// match).
///
/// Mirrors `CSITranslator.IsMigratedCSIDriverByName`.
pub fn is_migratable_driver(csi_driver: &str) -> bool {
    Plugin::by_driver(csi_driver).is_some()
}

/// Whether `in_tree` names an in-tree plugin that has migration logic (exact,
/// case-sensitive match), e.g. a StorageClass `provisioner`.
///
/// Mirrors `CSITranslator.IsMigratableIntreePluginByName`.
pub fn is_migrated_in_tree_name(in_tree: &str) -> bool {
    Plugin::by_in_tree_name(in_tree).is_some()
}

/// Whether `pv` uses an in-tree source that can be translated to CSI.
///
/// Mirrors `CSITranslator.IsPVMigratable`.
pub fn is_pv_migratable(pv: &PersistentVolume) -> bool {
    Plugin::for_pv(pv).is_some()
}

/// Whether the pod volume `volume` uses an in-tree source that can be
/// translated to CSI.
///
/// Mirrors `CSITranslator.IsInlineMigratable`.
pub fn is_inline_migratable(volume: &Volume) -> bool {
    Plugin::for_inline(volume).is_some()
}

/// The in-tree plugin name of the source `pv` uses, e.g.
/// `Some("kubernetes.io/gce-pd")`; `None` when it uses no migratable source.
///
/// Mirrors `CSITranslator.GetInTreePluginNameFromSpec(pv, nil)`.
pub fn plugin_name_for_pv(pv: &PersistentVolume) -> Option<&'static str> {
    Plugin::for_pv(pv).map(Plugin::in_tree_name)
}

/// A copy of `sc` (a StorageClass of in-tree plugin `in_tree_name`) rewritten
/// for the CSI driver: parameters renamed or added as the driver expects them
/// (e.g. `fstype` → `csi.storage.k8s.io/fstype`), `zone`/`zones` turned into
/// `allowedTopologies` under the driver's topology key, and zone keys in
/// existing `allowedTopologies` renamed to it. `provisioner` is left as is
/// except for Portworx. See each plugin module for details.
///
/// Errors: [`TranslationError::UnknownInTreePlugin`] for a name without
/// migration; [`TranslationError::InvalidStorageClass`] when zone parameters
/// and `allowedTopologies` are both set, or two zone parameters are.
///
/// Mirrors `CSITranslator.TranslateInTreeStorageClassToCSI`.
pub fn translate_in_tree_storage_class_to_csi(
    in_tree_name: &str,
    sc: &StorageClass,
) -> Result<StorageClass> {
    let plugin = Plugin::by_in_tree_name(in_tree_name)
        .ok_or_else(|| TranslationError::UnknownInTreePlugin(in_tree_name.to_owned()))?;
    let sc = sc.clone();
    match plugin {
        Plugin::GcePd => gce_pd::storage_class_to_csi(sc),
        Plugin::AwsEbs => aws_ebs::storage_class_to_csi(sc),
        Plugin::Cinder => cinder::storage_class_to_csi(sc),
        Plugin::AzureDisk => azure_disk::storage_class_to_csi(sc),
        Plugin::AzureFile => Ok(sc),
        Plugin::VSphere => vsphere::storage_class_to_csi(sc),
        Plugin::Portworx => Ok(portworx::storage_class_to_csi(sc)),
    }
}

/// A copy of `pv` with its in-tree source replaced by the equivalent
/// `spec.csi`: driver, volume handle in the driver's format, `fsType`,
/// `readOnly` and volume attributes, plus node affinity whose zone keys use the
/// driver's topology key. Everything else (metadata, claim, capacity, …) is
/// kept.
///
/// Errors: [`TranslationError::NotMigratable`] when `pv` has no migratable
/// source; plugin errors such as [`TranslationError::InvalidVolumeHandle`] for
/// an in-tree volume ID that cannot become a handle.
///
/// Mirrors `CSITranslator.TranslateInTreePVToCSI`.
pub fn translate_in_tree_pv_to_csi(pv: &PersistentVolume) -> Result<PersistentVolume> {
    let plugin =
        Plugin::for_pv(pv).ok_or_else(|| TranslationError::NotMigratable(describe_pv(pv)))?;
    let pv = pv.clone();
    match plugin {
        Plugin::GcePd => gce_pd::pv_to_csi(pv),
        Plugin::AwsEbs => aws_ebs::pv_to_csi(pv),
        Plugin::Cinder => cinder::pv_to_csi(pv),
        Plugin::AzureDisk => azure_disk::pv_to_csi(pv),
        Plugin::AzureFile => azure_file::pv_to_csi(pv),
        Plugin::VSphere => vsphere::pv_to_csi(pv),
        Plugin::Portworx => portworx::pv_to_csi(pv),
    }
}

/// A copy of `pv` (with `spec.csi` of a migration driver) whose CSI source is
/// replaced by the in-tree source of the plugin that driver replaces; node
/// affinity is moved back to Kubernetes zone/region keys and matching labels
/// are added where the plugin did so in-tree.
///
/// Errors: [`TranslationError::MissingCsiSource`] without `spec.csi`;
/// [`TranslationError::UnknownCsiDriver`] for a driver without migration;
/// plugin errors for handles or attributes the in-tree source cannot express.
///
/// Mirrors `CSITranslator.TranslateCSIPVToInTree`.
pub fn translate_csi_pv_to_in_tree(pv: &PersistentVolume) -> Result<PersistentVolume> {
    let driver = pv
        .spec
        .as_ref()
        .and_then(|spec| spec.csi.as_ref())
        .map(|csi| csi.driver.as_str())
        .ok_or_else(|| TranslationError::MissingCsiSource(pv_name(pv).to_owned()))?;
    let plugin = Plugin::by_driver(driver)
        .ok_or_else(|| TranslationError::UnknownCsiDriver(driver.into()))?;
    let pv = pv.clone();
    match plugin {
        Plugin::GcePd => gce_pd::pv_to_in_tree(pv),
        Plugin::AwsEbs => aws_ebs::pv_to_in_tree(pv),
        Plugin::Cinder => cinder::pv_to_in_tree(pv),
        Plugin::AzureDisk => azure_disk::pv_to_in_tree(pv),
        Plugin::AzureFile => azure_file::pv_to_in_tree(pv),
        Plugin::VSphere => vsphere::pv_to_in_tree(pv),
        Plugin::Portworx => portworx::pv_to_in_tree(pv),
    }
}

/// A PV that stands for the in-tree pod volume `volume`: its name is unique
/// per backing volume (it is used for the staging path), `spec.csi` is built as
/// for PVs, access modes are the plugin's (e.g. `ReadOnlyMany` for read-only
/// GCE PDs) and `volumeMode` is `Filesystem`. `pod_namespace` is only used by
/// Azure File, whose secret lives in the pod's namespace (`default` when
/// empty).
///
/// Errors: [`TranslationError::NotMigratable`] when `volume` has no migratable
/// source; plugin errors as for [`translate_in_tree_pv_to_csi`].
///
/// Mirrors `CSITranslator.TranslateInTreeInlineVolumeToCSI`.
pub fn translate_in_tree_inline_volume_to_csi(
    volume: &Volume,
    pod_namespace: &str,
) -> Result<PersistentVolume> {
    let plugin = Plugin::for_inline(volume)
        .ok_or_else(|| TranslationError::NotMigratable(format!("volume {:?}", volume.name)))?;
    let mut pv = match plugin {
        Plugin::GcePd => gce_pd::inline_to_csi(volume),
        Plugin::AwsEbs => aws_ebs::inline_to_csi(volume),
        Plugin::Cinder => cinder::inline_to_csi(volume),
        Plugin::AzureDisk => azure_disk::inline_to_csi(volume),
        Plugin::AzureFile => azure_file::inline_to_csi(volume, pod_namespace),
        Plugin::VSphere => vsphere::inline_to_csi(volume),
        Plugin::Portworx => portworx::inline_to_csi(volume),
    }?;
    pv.spec
        .get_or_insert_default()
        .volume_mode
        .get_or_insert_with(|| "Filesystem".to_owned());
    Ok(pv)
}

/// The handle under which CSI driver `csi_driver` reports volume `handle` as
/// published to node `node_id`. Only GCE PD changes anything: a handle
/// translated from an in-tree PV (`projects/UNSPECIFIED/zones/<zone or
/// UNSPECIFIED>/disks/<name>`, or `…/regions/…`) gets the node's project, and
/// the node's zone (or its region) where the handle says `UNSPECIFIED`. Node
/// IDs look like `projects/<project>/zones/<zone>/instances/<name>`. All other
/// drivers return `handle` unchanged.
///
/// Errors: [`TranslationError::UnknownCsiDriver`] for drivers without
/// migration; for GCE PD, [`TranslationError::InvalidVolumeHandle`] /
/// [`TranslationError::InvalidNodeId`] when either has fewer than six
/// `/`-separated parts or the handle is neither zonal nor regional, and
/// [`TranslationError::InvalidZones`] when the node's zone has no region.
///
/// Mirrors `CSITranslator.RepairVolumeHandle`.
pub fn repair_volume_handle(csi_driver: &str, handle: &str, node_id: &str) -> Result<String> {
    match Plugin::by_driver(csi_driver) {
        Some(Plugin::GcePd) => gce_pd::repair_volume_handle(handle, node_id),
        Some(_) => Ok(handle.to_owned()),
        None => Err(TranslationError::UnknownCsiDriver(csi_driver.to_owned())),
    }
}

fn pv_name(pv: &PersistentVolume) -> &str {
    pv.metadata.name.as_deref().unwrap_or_default()
}

/// `persistent volume "<name>"`, for error messages.
fn describe_pv(pv: &PersistentVolume) -> String {
    format!("persistent volume {:?}", pv_name(pv))
}

/// Removes and returns `spec.csi` of a PV being translated back to in-tree.
fn take_csi(pv: &mut PersistentVolume) -> Result<CSIPersistentVolumeSource> {
    pv.spec
        .as_mut()
        .and_then(|spec| spec.csi.take())
        .ok_or_else(|| TranslationError::MissingCsiSource(pv_name(pv).to_owned()))
}

/// The error for a plugin translator called without its source.
fn missing_source(source_field: &'static str, object: String) -> TranslationError {
    TranslationError::MissingSource {
        source_field,
        object,
    }
}

/// Parses the `partition` volume attribute; empty and `0` mean none.
fn parse_partition(value: &str) -> Result<Option<i32>> {
    if value.is_empty() {
        return Ok(None);
    }
    let n: i32 = value.parse().map_err(|e: std::num::ParseIntError| {
        TranslationError::InvalidVolumeAttribute {
            key: PARTITION_ATTRIBUTE.to_owned(),
            value: value.to_owned(),
            reason: format!("not a 32-bit integer: {e}"),
        }
    })?;
    Ok((n != 0).then_some(n))
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::topology::{REGION_BETA, REGION_GA, ZONE_BETA, ZONE_GA};
    use super::*;
    use k8s_openapi::api::core::v1::{
        AWSElasticBlockStoreVolumeSource, AzureDiskVolumeSource, AzureFileVolumeSource,
        CinderPersistentVolumeSource, CinderVolumeSource, GCEPersistentDiskVolumeSource,
        PersistentVolumeSpec, PortworxVolumeSource, VsphereVirtualDiskVolumeSource,
    };

    const PAIRS: [(&str, &str); 7] = [
        ("kubernetes.io/aws-ebs", "ebs.csi.aws.com"),
        ("kubernetes.io/gce-pd", "pd.csi.storage.gke.io"),
        ("kubernetes.io/azure-disk", "disk.csi.azure.com"),
        ("kubernetes.io/azure-file", "file.csi.azure.com"),
        ("kubernetes.io/cinder", "cinder.csi.openstack.org"),
        ("kubernetes.io/vsphere-volume", "csi.vsphere.vmware.com"),
        ("kubernetes.io/portworx-volume", "pxd.portworx.com"),
    ];

    #[test]
    fn names_map_both_ways_for_every_plugin() {
        for (in_tree, driver) in PAIRS {
            assert_eq!(driver_for_in_tree_name(in_tree), Some(driver));
            assert_eq!(in_tree_name_for_driver(driver), Some(in_tree));
            assert!(is_migratable_driver(driver), "{driver}");
            assert!(is_migrated_in_tree_name(in_tree), "{in_tree}");
            // The two namespaces never mix.
            assert!(!is_migratable_driver(in_tree), "{in_tree}");
            assert!(!is_migrated_in_tree_name(driver), "{driver}");
        }
    }

    #[test]
    fn unknown_and_retired_names_do_not_map() {
        for name in [
            "",
            "hostpath.csi.k8s.io",
            "kubernetes.io/rbd",
            "rbd.csi.ceph.com",
            "kubernetes.io/cephfs",
            "EBS.CSI.AWS.COM",
            "kubernetes.io/AWS-EBS",
        ] {
            assert_eq!(in_tree_name_for_driver(name), None, "{name}");
            assert_eq!(driver_for_in_tree_name(name), None, "{name}");
            assert!(!is_migratable_driver(name), "{name}");
            assert!(!is_migrated_in_tree_name(name), "{name}");
        }
    }

    fn pv_with(spec: PersistentVolumeSpec) -> PersistentVolume {
        PersistentVolume {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: some("pv-1"),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn in_tree_pvs() -> Vec<(&'static str, PersistentVolume)> {
        vec![
            (
                "kubernetes.io/gce-pd",
                pv_with(PersistentVolumeSpec {
                    gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                        pd_name: "test-disk".into(),
                        fs_type: some("ext4"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
            (
                "kubernetes.io/aws-ebs",
                pv_with(PersistentVolumeSpec {
                    aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                        volume_id: "vol01".into(),
                        fs_type: some("ext3"),
                        partition: Some(1),
                        read_only: Some(true),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "kubernetes.io/cinder",
                pv_with(PersistentVolumeSpec {
                    cinder: Some(CinderPersistentVolumeSource {
                        volume_id: "vol1".into(),
                        fs_type: some("ext4"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
            (
                "kubernetes.io/azure-disk",
                pv_with(PersistentVolumeSpec {
                    azure_disk: Some(AzureDiskVolumeSource {
                        disk_name: "disk-1".into(),
                        disk_uri: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/disk-1".into(),
                        caching_mode: some("ReadOnly"),
                        fs_type: some("xfs"),
                        kind: some("Managed"),
                        read_only: Some(false),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "kubernetes.io/portworx-volume",
                pv_with(PersistentVolumeSpec {
                    portworx_volume: Some(PortworxVolumeSource {
                        volume_id: "px-1".into(),
                        fs_type: some("ext4"),
                        read_only: None,
                    }),
                    ..Default::default()
                }),
            ),
        ]
    }

    #[test]
    fn round_trip_restores_the_original_pv() {
        for (in_tree, pv) in in_tree_pvs() {
            assert!(is_pv_migratable(&pv), "{in_tree}");
            assert_eq!(plugin_name_for_pv(&pv), Some(in_tree));
            let csi = translate_in_tree_pv_to_csi(&pv).unwrap();
            let spec = csi.spec.as_ref().unwrap();
            assert_eq!(
                spec.csi.as_ref().map(|c| c.driver.as_str()),
                driver_for_in_tree_name(in_tree),
                "{in_tree}"
            );
            assert_eq!(
                plugin_name_for_pv(&csi),
                None,
                "{in_tree}: in-tree source left behind"
            );
            let back = translate_csi_pv_to_in_tree(&csi).unwrap();
            assert_eq!(back, pv, "{in_tree}");
        }
    }

    #[test]
    fn every_plugin_is_recognised_on_pvs_and_inline_volumes() {
        let spec_cases: Vec<(&str, PersistentVolumeSpec)> = vec![
            (
                "kubernetes.io/azure-file",
                PersistentVolumeSpec {
                    azure_file: Some(Default::default()),
                    ..Default::default()
                },
            ),
            (
                "kubernetes.io/vsphere-volume",
                PersistentVolumeSpec {
                    vsphere_volume: Some(Default::default()),
                    ..Default::default()
                },
            ),
        ];
        let mut all: Vec<(&str, PersistentVolume)> = in_tree_pvs();
        all.extend(spec_cases.into_iter().map(|(n, s)| (n, pv_with(s))));
        assert_eq!(all.len(), PAIRS.len());
        for (name, pv) in &all {
            assert_eq!(plugin_name_for_pv(pv), Some(*name));
        }
        for volume in inline_volumes() {
            assert!(is_inline_migratable(&volume), "{}", volume.name);
        }
        // Not migratable: no spec, a CSI PV, an NFS PV, an emptyDir volume.
        let not = [
            PersistentVolume::default(),
            pv_with(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: "pd.csi.storage.gke.io".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            pv_with(PersistentVolumeSpec {
                nfs: Some(Default::default()),
                ..Default::default()
            }),
        ];
        for pv in &not {
            assert!(!is_pv_migratable(pv));
            assert_eq!(plugin_name_for_pv(pv), None);
        }
        let empty_dir = Volume {
            name: "scratch".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        };
        assert!(!is_inline_migratable(&empty_dir));
    }

    fn inline_volumes() -> Vec<Volume> {
        let base = |name: &str| Volume {
            name: name.into(),
            ..Default::default()
        };
        vec![
            Volume {
                gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                    pd_name: "pd-a".into(),
                    ..Default::default()
                }),
                ..base("gce")
            },
            Volume {
                aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                    volume_id: "vol-0a".into(),
                    ..Default::default()
                }),
                ..base("ebs")
            },
            Volume {
                cinder: Some(CinderVolumeSource {
                    volume_id: "c-a".into(),
                    ..Default::default()
                }),
                ..base("cinder")
            },
            Volume {
                azure_disk: Some(AzureDiskVolumeSource {
                    disk_name: "d-a".into(),
                    disk_uri: "uri-a".into(),
                    ..Default::default()
                }),
                ..base("azuredisk")
            },
            Volume {
                azure_file: Some(AzureFileVolumeSource {
                    secret_name: "s-a".into(),
                    share_name: "share-a".into(),
                    ..Default::default()
                }),
                ..base("azurefile")
            },
            Volume {
                vsphere_volume: Some(VsphereVirtualDiskVolumeSource {
                    volume_path: "[ds] kubevols/a.vmdk".into(),
                    ..Default::default()
                }),
                ..base("vsphere")
            },
            Volume {
                portworx_volume: Some(PortworxVolumeSource {
                    volume_id: "px-a".into(),
                    ..Default::default()
                }),
                ..base("portworx")
            },
        ]
    }

    /// Gives each inline source in `volumes` a different backing volume.
    fn with_other_backing_volumes(mut volumes: Vec<Volume>) -> Vec<Volume> {
        for v in &mut volumes {
            if let Some(s) = &mut v.gce_persistent_disk {
                s.pd_name = "pd-b".into();
            }
            if let Some(s) = &mut v.aws_elastic_block_store {
                s.volume_id = "vol-0b".into();
            }
            if let Some(s) = &mut v.cinder {
                s.volume_id = "c-b".into();
            }
            if let Some(s) = &mut v.azure_disk {
                s.disk_uri = "uri-b".into();
            }
            if let Some(s) = &mut v.azure_file {
                s.share_name = "share-b".into();
            }
            if let Some(s) = &mut v.vsphere_volume {
                s.volume_path = "[ds] kubevols/b.vmdk".into();
            }
            if let Some(s) = &mut v.portworx_volume {
                s.volume_id = "px-b".into();
            }
        }
        volumes
    }

    #[test]
    fn inline_translation_names_are_unique_and_filesystem_mode() {
        let first = inline_volumes();
        let second = with_other_backing_volumes(inline_volumes());
        for (a, b) in first.iter().zip(&second) {
            let pa = translate_in_tree_inline_volume_to_csi(a, "").unwrap();
            let pb = translate_in_tree_inline_volume_to_csi(b, "").unwrap();
            assert_ne!(pa.metadata.name, pb.metadata.name, "{}", a.name);
            assert!(pa.metadata.name.as_deref().is_some_and(|n| !n.is_empty()));
            let spec = pa.spec.unwrap();
            assert_eq!(
                spec.volume_mode.as_deref(),
                Some("Filesystem"),
                "{}",
                a.name
            );
            let csi = spec.csi.unwrap();
            assert!(is_migratable_driver(&csi.driver), "{}", a.name);
            assert!(!csi.volume_handle.is_empty(), "{}", a.name);
        }
    }

    #[test]
    fn dispatch_errors_name_what_is_wrong() {
        let sc = storage_class(&[], None);
        assert_eq!(
            translate_in_tree_storage_class_to_csi("kubernetes.io/rbd", &sc),
            Err(TranslationError::UnknownInTreePlugin(
                "kubernetes.io/rbd".into()
            ))
        );
        let nfs = pv_with(PersistentVolumeSpec {
            nfs: Some(Default::default()),
            ..Default::default()
        });
        let err = translate_in_tree_pv_to_csi(&nfs).unwrap_err();
        assert_eq!(
            err,
            TranslationError::NotMigratable("persistent volume \"pv-1\"".into())
        );
        assert!(err.to_string().contains("pv-1"), "{err}");

        assert_eq!(
            translate_csi_pv_to_in_tree(&nfs),
            Err(TranslationError::MissingCsiSource("pv-1".into()))
        );
        let foreign = pv_with(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: "hostpath.csi.k8s.io".into(),
                volume_handle: "h".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            translate_csi_pv_to_in_tree(&foreign),
            Err(TranslationError::UnknownCsiDriver(
                "hostpath.csi.k8s.io".into()
            ))
        );
        let empty_dir = Volume {
            name: "scratch".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            translate_in_tree_inline_volume_to_csi(&empty_dir, "ns"),
            Err(TranslationError::NotMigratable("volume \"scratch\"".into()))
        );
    }

    #[test]
    fn storage_class_dispatch_reaches_the_plugin() {
        let sc = storage_class(&[("fstype", "ext4"), ("type", "gp3")], None);
        let cases = [
            ("kubernetes.io/aws-ebs", Some("ext4")),
            ("kubernetes.io/gce-pd", Some("ext4")),
            ("kubernetes.io/cinder", Some("ext4")),
            ("kubernetes.io/vsphere-volume", Some("ext4")),
            // These two keep fstype as it is.
            ("kubernetes.io/azure-disk", None),
            ("kubernetes.io/azure-file", None),
            ("kubernetes.io/portworx-volume", None),
        ];
        for (in_tree, csi_fs_type) in cases {
            let got = translate_in_tree_storage_class_to_csi(in_tree, &sc).unwrap();
            let params = got.parameters.unwrap_or_default();
            assert_eq!(
                params.get(CSI_FS_TYPE_PARAM).map(String::as_str),
                csi_fs_type,
                "{in_tree}"
            );
        }
    }

    #[test]
    fn repair_volume_handle_only_changes_gce_handles() {
        let node = "projects/p1/zones/us-central1-c/instances/n1";
        let unspecified = "projects/UNSPECIFIED/zones/UNSPECIFIED/disks/d1";
        assert_eq!(
            repair_volume_handle("pd.csi.storage.gke.io", unspecified, node).unwrap(),
            "projects/p1/zones/us-central1-c/disks/d1"
        );
        for (_, driver) in PAIRS.iter().filter(|(_, d)| *d != "pd.csi.storage.gke.io") {
            assert_eq!(
                repair_volume_handle(driver, unspecified, "whatever").unwrap(),
                unspecified,
                "{driver}"
            );
        }
        assert_eq!(
            repair_volume_handle("hostpath.csi.k8s.io", "h", node),
            Err(TranslationError::UnknownCsiDriver(
                "hostpath.csi.k8s.io".into()
            ))
        );
    }

    /// The node-affinity families of upstream's topology tests, end to end:
    /// in-tree → CSI gives the expected CSI affinity, and translating back
    /// leaves no CSI key while a Kubernetes zone key is present.
    #[test]
    fn topology_survives_translation_in_both_directions() {
        struct Case {
            name: &'static str,
            source: fn() -> PersistentVolumeSpec,
            labels: Vec<(&'static str, &'static str)>,
            terms: Vec<Term>,
            csi_key: &'static str,
            want: Vec<Term>,
        }
        fn gce() -> PersistentVolumeSpec {
            PersistentVolumeSpec {
                gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                    pd_name: "test-disk".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        fn ebs() -> PersistentVolumeSpec {
            PersistentVolumeSpec {
                aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                    volume_id: "vol-01".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        fn cinder() -> PersistentVolumeSpec {
            PersistentVolumeSpec {
                cinder: Some(CinderPersistentVolumeSource {
                    volume_id: "vol1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        const GCE: &str = "topology.gke.io/zone";
        const EBS: &str = "topology.ebs.csi.aws.com/zone";
        const CINDER: &str = "topology.cinder.csi.openstack.org/zone";
        let beta = vec![(ZONE_BETA, "us-east1-a"), (REGION_BETA, "us-east1")];
        let ga = vec![(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")];
        let aws_beta = vec![(ZONE_BETA, "us-east-1a"), (REGION_BETA, "us-east-1")];
        let cases = vec![
            Case {
                name: "GCE beta labels",
                source: gce,
                labels: beta.clone(),
                terms: vec![],
                csi_key: GCE,
                want: vec![vec![(GCE, &["us-east1-a"])]],
            },
            Case {
                name: "GCE GA labels",
                source: gce,
                labels: ga.clone(),
                terms: vec![],
                csi_key: GCE,
                want: vec![vec![(GCE, &["us-east1-a"])]],
            },
            Case {
                name: "GCE beta affinity",
                source: gce,
                labels: vec![],
                terms: vec![vec![(ZONE_BETA, &["us-east1-b"])]],
                csi_key: GCE,
                want: vec![vec![(GCE, &["us-east1-b"])]],
            },
            Case {
                name: "GCE CSI affinity already",
                source: gce,
                labels: vec![],
                terms: vec![vec![(GCE, &["us-east1-b"])]],
                csi_key: GCE,
                want: vec![vec![(GCE, &["us-east1-b"])]],
            },
            Case {
                name: "GCE labels and affinity: affinity wins",
                source: gce,
                labels: beta.clone(),
                terms: vec![vec![(ZONE_BETA, &["us-east1-b"])]],
                csi_key: GCE,
                want: vec![vec![(GCE, &["us-east1-b"])]],
            },
            Case {
                name: "GCE regional label",
                source: gce,
                labels: vec![(ZONE_BETA, "europe-west1-b__europe-west1-c")],
                terms: vec![],
                csi_key: GCE,
                want: vec![vec![(GCE, &["europe-west1-b", "europe-west1-c"])]],
            },
            Case {
                name: "GCE regional affinity",
                source: gce,
                labels: vec![],
                terms: vec![vec![(ZONE_GA, &["europe-west1-b", "europe-west1-c"])]],
                csi_key: GCE,
                want: vec![vec![(GCE, &["europe-west1-b", "europe-west1-c"])]],
            },
            Case {
                name: "GCE regional label and other affinity",
                source: gce,
                labels: vec![(ZONE_GA, "europe-west1-b__europe-west1-c")],
                terms: vec![vec![(ZONE_GA, &["europe-west1-f", "europe-west1-g"])]],
                csi_key: GCE,
                want: vec![vec![(GCE, &["europe-west1-f", "europe-west1-g"])]],
            },
            Case {
                name: "GCE several terms",
                source: gce,
                labels: vec![],
                terms: vec![
                    vec![(ZONE_GA, &["europe-west1-f"])],
                    vec![(ZONE_GA, &["europe-west1-g"])],
                ],
                csi_key: GCE,
                want: vec![
                    vec![(GCE, &["europe-west1-f"])],
                    vec![(GCE, &["europe-west1-g"])],
                ],
            },
            Case {
                name: "EBS beta labels",
                source: ebs,
                labels: aws_beta.clone(),
                terms: vec![],
                csi_key: EBS,
                want: vec![vec![(EBS, &["us-east-1a"])]],
            },
            Case {
                name: "EBS GA labels and affinity",
                source: ebs,
                labels: vec![(ZONE_GA, "us-east-1a")],
                terms: vec![vec![(ZONE_GA, &["us-east-2a"])]],
                csi_key: EBS,
                want: vec![vec![(EBS, &["us-east-2a"])]],
            },
            Case {
                name: "Cinder zone label",
                source: cinder,
                labels: vec![(ZONE_BETA, "nova")],
                terms: vec![],
                csi_key: CINDER,
                want: vec![vec![(CINDER, &["nova"])]],
            },
            Case {
                name: "Cinder labels and affinity",
                source: cinder,
                labels: vec![(ZONE_BETA, "nova")],
                terms: vec![vec![(ZONE_BETA, &["az-2"])]],
                csi_key: CINDER,
                want: vec![vec![(CINDER, &["az-2"])]],
            },
        ];
        for case in cases {
            let mut pv = pv_with((case.source)());
            pv.metadata.labels = map(&case.labels);
            pv.spec.as_mut().unwrap().node_affinity = (!case.terms.is_empty())
                .then(|| affinity(&case.terms))
                .flatten();
            let csi = translate_in_tree_pv_to_csi(&pv).unwrap();
            let got = csi.spec.as_ref().unwrap().node_affinity.clone();
            assert_eq!(got, affinity(&case.want), "{}", case.name);

            let back = translate_csi_pv_to_in_tree(&csi).unwrap();
            let back_affinity = back.spec.as_ref().unwrap().node_affinity.as_ref();
            assert!(
                !topology::affinity_has_key(back_affinity, case.csi_key),
                "{}: CSI key left: {back_affinity:?}",
                case.name
            );
            assert!(
                topology::affinity_has_key(back_affinity, ZONE_GA)
                    || topology::affinity_has_key(back_affinity, ZONE_BETA),
                "{}: no Kubernetes zone key: {back_affinity:?}",
                case.name
            );
        }
    }
}
