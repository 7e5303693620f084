//! Annotation, label and finalizer strings shared with upstream and with
//! kube-controller-manager. Changing any of them breaks drop-in compatibility.

/// PVC: the provisioner kube-controller-manager chose (GA key).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// PVC: the same, beta key (read when the GA key is absent).
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// PVC: node picked by the scheduler for WaitForFirstConsumer classes.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// PVC: legacy selected-node key, read when the GA key is absent.
pub const ALPHA_SELECTED_NODE: &str = "volume.alpha.kubernetes.io/selected-node";
/// PVC and PV: the CSI driver kube-controller-manager migrated this in-tree
/// claim or volume to (CSI migration).
pub const MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// PV: which provisioner created it.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// PV: name of the secret DeleteVolume needs ("" when none).
pub const DELETION_SECRET_NAME: &str = "volume.kubernetes.io/provisioner-deletion-secret-name";
/// PV: namespace of that secret ("" when none).
pub const DELETION_SECRET_NAMESPACE: &str =
    "volume.kubernetes.io/provisioner-deletion-secret-namespace";
/// PV: name of the secret ControllerModifyVolume needs (external-resizer).
pub const MODIFY_SECRET_NAME: &str = "volume.kubernetes.io/controller-modify-secret-name";
/// PV: namespace of that secret.
pub const MODIFY_SECRET_NAMESPACE: &str = "volume.kubernetes.io/controller-modify-secret-namespace";
/// PV `spec.csi.volumeAttributes` key naming this provisioner instance.
pub const PROVISIONER_IDENTITY: &str = "storage.kubernetes.io/csiProvisionerIdentity";
/// PV finalizer held until DeleteVolume succeeded.
pub const PV_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";
/// PVC finalizer with which earlier versions recorded that CreateVolume may
/// have been called for this claim and no PV records the volume yet. Ours,
/// not upstream's. No longer written (the record is now kept in Leases, see
/// [`crate::intents`]), but claims that carry it are still finished and
/// released.
pub const CREATE_INTENT_FINALIZER: &str =
    "external-provisioner.volume.kubernetes.io/create-in-progress";
/// Source-PVC finalizer held while a clone of it is being provisioned.
pub const CLONE_FINALIZER: &str = "provisioner.storage.kubernetes.io/cloning-protection";
