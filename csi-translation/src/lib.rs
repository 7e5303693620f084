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
mod error;
mod gce_pd;
mod plugin;
mod portworx;
#[cfg(test)]
mod testutil;
mod topology;
mod vsphere;

use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolume, Volume};
use k8s_openapi::api::storage::v1::StorageClass;

pub use error::{Result, TranslationError};
use plugin::Plugin;

/// StorageClass parameter with the filesystem type in the in-tree plugins.
const FS_TYPE_PARAM: &str = "fstype";
/// The same parameter as the external-provisioner expects it for CSI drivers.
const CSI_FS_TYPE_PARAM: &str = "csi.storage.k8s.io/fstype";
/// Volume attribute carrying a partition number (AWS EBS, GCE PD).
const PARTITION_ATTRIBUTE: &str = "partition";

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
mod tests;
