//! Decide what a PersistentVolume needs from this provisioner: the PV
//! finalizer added or removed, or DeleteVolume then the PV deleted.
//!
//! Mirrors the library's `shouldDelete` and the always-on
//! HonorPVReclaimPolicy finalizer rules (`sig-storage-lib-external-provisioner:
//! controller/controller.go`), with CSI migration:
//! in-tree PVs of a migration driver are owned and deleted through their CSI
//! translation ([`crate::migration`]).

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::annotations::{DELETION_SECRET_NAME, DELETION_SECRET_NAMESPACE, PV_FINALIZER};
use crate::error::Error;
use crate::migration::{csi_view, deletion_class, handled_in_tree, owns_volume};
use crate::secrets::{SecretKind, SecretRef, TemplateContext, secret_reference};

/// What to do with a PV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeAction {
    /// Not ours, or nothing to do.
    Nothing,
    /// A bound PV with reclaim policy Delete lacks our finalizer.
    AddFinalizer,
    /// Reclaim policy is Retain/Recycle but our finalizer is still there.
    RemoveFinalizer,
    /// Released with reclaim policy Delete, but a VolumeAttachment still
    /// references the PV: DeleteVolume must wait for the detach (upstream
    /// refuses with an error and a Warning on every retry; we wait quietly).
    WaitForDetach(Attachment),
    /// Released with reclaim policy Delete: DeleteVolume, then delete the PV
    /// object, then remove the finalizer.
    Delete {
        /// `spec.csi.volumeHandle`, of the CSI translation for an in-tree PV.
        volume_id: String,
        /// The secret DeleteVolume needs, if any.
        secret: Option<SecretRef>,
        /// The PV is an in-tree PV read through its CSI translation: the
        /// DeleteVolume call counts as `migrated` in the metrics.
        migrated: bool,
    },
}

/// A VolumeAttachment that references a PV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// VolumeAttachment name.
    pub name: String,
    /// The node it attaches to.
    pub node: String,
}

/// True when this provisioner owns `pv` (provisioned-by annotation, else
/// `spec.csi.driver` for PVs without it; for a migration driver also its
/// in-tree name and `pv.kubernetes.io/migrated-to`, see
/// [`owns_volume`]).
pub fn is_ours(pv: &PersistentVolume, driver_name: &str) -> bool {
    owns_volume(pv, driver_name)
}

fn has_finalizer(pv: &PersistentVolume) -> bool {
    pv.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == PV_FINALIZER))
}

/// Decides what `pv` needs. `class` is its StorageClass from the cache, used
/// only to resolve the deletion secret for PVs created before the deletion
/// secret annotations existed. `attachment` is a VolumeAttachment that
/// references the PV, when the driver has PUBLISH_UNPUBLISH_VOLUME (else
/// `None`, as upstream does not look).
///
/// A PV of the driver's in-tree plugin that kube-controller-manager handles
/// itself ([`handled_in_tree`]) only loses our finalizer.
///
/// Errors, with upstream's texts (`Delete`): [`Error::InvalidClaim`]
/// `invalid CSI PV` when a PV to delete has no `spec.csi` (nor a
/// translatable in-tree source); [`Error::Migration`] when its in-tree
/// source or class cannot be translated; secret template errors from the
/// StorageClass fallback, as `failed to get secretreference for volume
/// <pv>: <error>`. The secret is resolved before the attachment is looked
/// at, as upstream does.
pub fn decide_volume(
    pv: &PersistentVolume,
    class: Option<&StorageClass>,
    driver_name: &str,
    attachment: Option<Attachment>,
) -> Result<VolumeAction, Error> {
    let finalizer = has_finalizer(pv);
    if handled_in_tree(pv, driver_name) {
        return Ok(if finalizer {
            VolumeAction::RemoveFinalizer
        } else {
            VolumeAction::Nothing
        });
    }
    if !is_ours(pv, driver_name) {
        return Ok(VolumeAction::Nothing);
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let policy = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .unwrap_or("Delete");
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let deleting = pv.metadata.deletion_timestamp.is_some();

    if policy != "Delete" {
        return Ok(if finalizer {
            VolumeAction::RemoveFinalizer
        } else {
            VolumeAction::Nothing
        });
    }
    if phase == "Bound" && !deleting && !finalizer {
        return Ok(VolumeAction::AddFinalizer);
    }
    if phase != "Released" || (deleting && !finalizer) {
        return Ok(VolumeAction::Nothing);
    }
    let (csi_pv, migrated) = csi_view(pv)?;
    let csi = csi_pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .ok_or_else(|| Error::InvalidClaim("invalid CSI PV".into()))?;
    let secret = deletion_secret(&csi_pv, class, migrated, driver_name)?;
    if let Some(a) = attachment {
        return Ok(VolumeAction::WaitForDetach(a));
    }
    Ok(VolumeAction::Delete {
        volume_id: csi.volume_handle.clone(),
        secret,
        migrated,
    })
}

/// The DeleteVolume secret: the PV's deletion-secret annotations ("" and ""
/// mean none); without them, the StorageClass templates resolved with what
/// the claimRef tells (no claim annotations at delete time). For a
/// `migrated` (translated in-tree) PV an in-tree class is translated first,
/// as upstream, so its templates read as provisioning read them.
fn deletion_secret(
    pv: &PersistentVolume,
    class: Option<&StorageClass>,
    migrated: bool,
    driver_name: &str,
) -> Result<Option<SecretRef>, Error> {
    let ann = pv.metadata.annotations.clone().unwrap_or_default();
    if let (Some(name), Some(namespace)) = (
        ann.get(DELETION_SECRET_NAME),
        ann.get(DELETION_SECRET_NAMESPACE),
    ) {
        if name.is_empty() && namespace.is_empty() {
            return Ok(None);
        }
        return Ok(Some(SecretRef {
            name: name.clone(),
            namespace: namespace.clone(),
        }));
    }
    let Some(class) = class else { return Ok(None) };
    let class = deletion_class(class, migrated, driver_name)?;
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let Some(claim_ref) = claim_ref else {
        return Ok(None);
    };
    let params = class.parameters.clone().unwrap_or_default();
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    // Upstream builds a claim from the claimRef: its name and namespace are
    // known (possibly empty), its annotations are not.
    let ctx = TemplateContext {
        pv_name: &pv_name,
        pvc_name: Some(claim_ref.name.as_deref().unwrap_or_default()),
        pvc_namespace: Some(claim_ref.namespace.as_deref().unwrap_or_default()),
        pvc_annotations: None,
    };
    secret_reference(SecretKind::Provisioner, &params, &ctx).map_err(|e| {
        Error::InvalidParameter(format!(
            "failed to get secretreference for volume {pv_name}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::PROVISIONED_BY;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, ObjectReference, PersistentVolumeSpec, PersistentVolumeStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    const DRIVER: &str = "hostpath.csi.k8s.io";

    fn pv(phase: &str, policy: &str, finalizer: bool, deleting: bool) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-1".into()),
                annotations: Some(
                    [
                        (PROVISIONED_BY.to_string(), DRIVER.to_string()),
                        (DELETION_SECRET_NAME.to_string(), String::new()),
                        (DELETION_SECRET_NAMESPACE.to_string(), String::new()),
                    ]
                    .into(),
                ),
                finalizers: finalizer.then(|| {
                    vec![
                        PV_FINALIZER.to_string(),
                        "kubernetes.io/pv-protection".into(),
                    ]
                }),
                deletion_timestamp: deleting.then(|| Time(jiff_now())),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                persistent_volume_reclaim_policy: Some(policy.into()),
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER.into(),
                    volume_handle: "vol-1".into(),
                    ..Default::default()
                }),
                claim_ref: Some(ObjectReference {
                    name: Some("data".into()),
                    namespace: Some("team-a".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn jiff_now() -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH
    }

    #[test]
    fn finalizer_and_delete_table() {
        use VolumeAction::*;
        let del = Delete {
            volume_id: "vol-1".into(),
            secret: None,
            migrated: false,
        };
        let cases = [
            // phase, policy, finalizer, deleting → action
            ("Bound", "Delete", false, false, AddFinalizer),
            ("Bound", "Delete", true, false, Nothing),
            ("Bound", "Delete", false, true, Nothing),
            ("Released", "Delete", true, false, del.clone()),
            ("Released", "Delete", false, false, del.clone()),
            ("Released", "Delete", true, true, del.clone()),
            ("Released", "Delete", false, true, Nothing),
            ("Released", "Retain", true, false, RemoveFinalizer),
            ("Released", "Retain", false, false, Nothing),
            ("Bound", "Recycle", true, false, RemoveFinalizer),
            ("Available", "Delete", true, false, Nothing),
            ("Failed", "Delete", true, false, Nothing),
        ];
        for (phase, policy, fin, deleting, want) in cases {
            assert_eq!(
                decide_volume(&pv(phase, policy, fin, deleting), None, DRIVER, None).unwrap(),
                want,
                "{phase} {policy} fin={fin} deleting={deleting}"
            );
        }
    }

    #[test]
    fn foreign_volumes_are_ignored() {
        assert_eq!(
            decide_volume(
                &pv("Released", "Delete", true, false),
                None,
                "other.csi",
                None
            )
            .unwrap(),
            VolumeAction::Nothing
        );
        let mut static_pv = pv("Released", "Delete", false, false);
        static_pv.metadata.annotations = None;
        assert!(
            is_ours(&static_pv, DRIVER),
            "static CSI PVs of our driver are ours"
        );
        assert!(!is_ours(&static_pv, "other.csi"));
    }

    #[test]
    fn deletion_secret_from_annotations_or_class() {
        let mut with = pv("Released", "Delete", true, false);
        let ann = with.metadata.annotations.as_mut().unwrap();
        ann.insert(DELETION_SECRET_NAME.into(), "creds".into());
        ann.insert(DELETION_SECRET_NAMESPACE.into(), "kube-system".into());
        let want = Some(SecretRef {
            name: "creds".into(),
            namespace: "kube-system".into(),
        });
        assert!(
            matches!(decide_volume(&with, None, DRIVER, None).unwrap(), VolumeAction::Delete { secret, .. } if secret == want)
        );

        let mut legacy = pv("Released", "Delete", true, false);
        legacy.metadata.annotations =
            Some([(PROVISIONED_BY.to_string(), DRIVER.to_string())].into());
        let class = StorageClass {
            provisioner: DRIVER.into(),
            parameters: Some(
                [
                    (
                        "csi.storage.k8s.io/provisioner-secret-name".to_string(),
                        "${pvc.name}-creds".to_string(),
                    ),
                    (
                        "csi.storage.k8s.io/provisioner-secret-namespace".to_string(),
                        "${pvc.namespace}".to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let want = Some(SecretRef {
            name: "data-creds".into(),
            namespace: "team-a".into(),
        });
        assert!(
            matches!(decide_volume(&legacy, Some(&class), DRIVER, None).unwrap(), VolumeAction::Delete { secret, .. } if secret == want)
        );
    }

    /// VolumeFailedDelete texts, as upstream words them (external-provisioner:
    /// pkg/controller/controller.go Delete and getSecretsFromSC).
    #[test]
    fn deletion_error_texts_match_upstream() {
        let mut broken = pv("Released", "Delete", true, false);
        broken.spec.as_mut().unwrap().csi = None;
        assert_eq!(
            decide_volume(&broken, None, DRIVER, None)
                .unwrap_err()
                .to_string(),
            "invalid CSI PV"
        );

        let mut legacy = pv("Released", "Delete", true, false);
        legacy.metadata.annotations =
            Some([(PROVISIONED_BY.to_string(), DRIVER.to_string())].into());
        let class = |name: &str, namespace: &str| StorageClass {
            provisioner: DRIVER.into(),
            parameters: Some(
                [
                    (
                        "csi.storage.k8s.io/provisioner-secret-name".to_string(),
                        name.to_string(),
                    ),
                    (
                        "csi.storage.k8s.io/provisioner-secret-namespace".to_string(),
                        namespace.to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let va = Attachment {
            name: "csi-123".into(),
            node: "node-1".into(),
        };
        let cases = [
            (
                class("${pvc.annotations['k']}", "ns"),
                "failed to get secretreference for volume pvc-1: error resolving value \"${pvc.annotations['k']}\": invalid tokens: [\"pvc.annotations['k']\"]",
            ),
            (
                class("s", ""),
                "failed to get secretreference for volume pvc-1: failed to get name and namespace template from params: Provisioner secrets specified in parameters but value of either namespace or name is empty",
            ),
        ];
        for (sc, want) in cases {
            // The secret is resolved before the attachment is looked at.
            let err = decide_volume(&legacy, Some(&sc), DRIVER, Some(va.clone())).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn deletion_waits_for_detach_but_finalizers_do_not() {
        let va = Attachment {
            name: "csi-123".into(),
            node: "node-1".into(),
        };
        assert_eq!(
            decide_volume(
                &pv("Released", "Delete", true, false),
                None,
                DRIVER,
                Some(va.clone())
            )
            .unwrap(),
            VolumeAction::WaitForDetach(va.clone())
        );
        // An attachment does not change finalizer maintenance.
        assert_eq!(
            decide_volume(
                &pv("Bound", "Delete", false, false),
                None,
                DRIVER,
                Some(va.clone())
            )
            .unwrap(),
            VolumeAction::AddFinalizer
        );
        assert_eq!(
            decide_volume(
                &pv("Released", "Retain", true, false),
                None,
                DRIVER,
                Some(va)
            )
            .unwrap(),
            VolumeAction::RemoveFinalizer
        );
    }
}
