//! The objects every scenario creates: names, the StorageClass, claims, and
//! the PVs a real cluster holds after provisioning (for the memory scenario).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The CSI driver's name (csi-driver-host-path's).
pub const DRIVER: &str = "hostpath.csi.k8s.io";
/// Namespace of the sidecar, its ServiceAccount and the measured claims.
pub const NS: &str = "compare";
/// Namespace of the claims that exist before the sidecar starts.
pub const EXISTING_NS: &str = "compare-existing";
/// The StorageClass of every claim.
pub const CLASS: &str = "compare";
/// Size of every claim.
pub const SIZE: &str = "1Mi";
/// Bytes of [`SIZE`].
pub const SIZE_BYTES: i64 = 1024 * 1024;
/// PV finalizer the provisioner holds until DeleteVolume succeeded.
pub const PV_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";

/// `Delete` policy, `Immediate` binding, provisioned by [`DRIVER`].
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

/// A ReadWriteOnce claim of [`SIZE`] in [`CLASS`].
pub fn claim(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(CLASS.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(SIZE.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The PV name a provisioner gives the volume of a claim: `pvc-<claim uid>`.
pub fn pv_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The PV the provisioner would have written for `claim` (namespace
/// `namespace`, UID `uid`) and driver volume `handle`: pre-bound through
/// `claimRef` with the UID, `Delete` policy as the class says, the
/// `provisioned-by` annotation, the empty deletion-secret annotations and
/// the provisioner's PV finalizer. kube-controller-manager's binder then
/// completes the binding as after a real provisioning.
pub fn provisioned_pv(namespace: &str, claim: &str, uid: &str, handle: &str) -> PersistentVolume {
    let annotations = BTreeMap::from([
        ("pv.kubernetes.io/provisioned-by".to_string(), DRIVER.into()),
        (
            "volume.kubernetes.io/provisioner-deletion-secret-name".into(),
            String::new(),
        ),
        (
            "volume.kubernetes.io/provisioner-deletion-secret-namespace".into(),
            String::new(),
        ),
    ]);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name(uid)),
            annotations: Some(annotations),
            finalizers: Some(vec![PV_FINALIZER.into()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some(BTreeMap::from([("storage".into(), Quantity(SIZE.into()))])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace.into()),
                name: Some(claim.into()),
                uid: Some(uid.into()),
                ..Default::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER.into(),
                volume_handle: handle.into(),
                volume_attributes: Some(BTreeMap::from([(
                    "storage.kubernetes.io/csiProvisionerIdentity".into(),
                    format!("compare-{DRIVER}"),
                )])),
                ..Default::default()
            }),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some(CLASS.into()),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioned_pv_is_prebound_and_deletable_by_the_provisioner_only() {
        let pv = provisioned_pv(EXISTING_NS, "c-1", "1234", "7");
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234"));
        let spec = pv.spec.unwrap();
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(claim_ref.uid.as_deref(), Some("1234"));
        assert_eq!(claim_ref.name.as_deref(), Some("c-1"));
        assert_eq!(spec.csi.unwrap().volume_handle, "7");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(
            pv.metadata.finalizers.unwrap(),
            vec![PV_FINALIZER.to_string()]
        );
        assert_eq!(
            pv.metadata.annotations.unwrap()["pv.kubernetes.io/provisioned-by"],
            DRIVER
        );
    }
}
