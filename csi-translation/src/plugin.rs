//! [`Plugin`]: the migratable in-tree plugins, and how an object, an in-tree
//! name or a CSI driver name selects one.

use k8s_openapi::api::core::v1::{PersistentVolume, Volume};

use crate::{aws_ebs, azure_disk, azure_file, cinder, gce_pd, portworx, vsphere};

/// The migratable plugins. The order is the one in which a PV that (invalidly)
/// carries several sources is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plugin {
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
    pub(crate) fn in_tree_name(self) -> &'static str {
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

    pub(crate) fn driver(self) -> &'static str {
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

    pub(crate) fn by_driver(driver: &str) -> Option<Plugin> {
        PLUGINS.into_iter().find(|p| p.driver() == driver)
    }

    pub(crate) fn by_in_tree_name(name: &str) -> Option<Plugin> {
        PLUGINS.into_iter().find(|p| p.in_tree_name() == name)
    }

    pub(crate) fn for_pv(pv: &PersistentVolume) -> Option<Plugin> {
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

    pub(crate) fn for_inline(volume: &Volume) -> Option<Plugin> {
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
