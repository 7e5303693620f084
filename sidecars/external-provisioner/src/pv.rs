//! The PersistentVolume saved after a successful CreateVolume.
//!
//! Mirrors external-provisioner's PV construction plus the library's
//! post-processing (claimRef, finalizer, provisioned-by, storage class):
//! `external-provisioner: pkg/controller/controller.go` `Provision`, and
//! `sig-storage-lib-external-provisioner: controller/controller.go`
//! `provisionClaimOperation`.

use std::collections::BTreeMap;

use csi_client::csi::v1::CreateVolumeResponse;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, SecretReference,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::annotations::{
    DELETION_SECRET_NAME, DELETION_SECRET_NAMESPACE, MODIFY_SECRET_NAME, MODIFY_SECRET_NAMESPACE,
    PROVISIONED_BY, PROVISIONER_IDENTITY, PV_FINALIZER,
};
use crate::datasource::DataSource;
use crate::error::Error;
use crate::migration::back_to_in_tree;
use crate::provision::ProvisionPlan;
use crate::quantity;
use crate::secrets::SecretRef;
use crate::topology::node_affinity;

/// What to do with a CreateVolume answer.
#[derive(Debug)]
pub enum ResponseCheck {
    /// Save this PV.
    Save(Box<PersistentVolume>),
    /// The driver made a volume that breaks the request (smaller than asked,
    /// or without the requested content): delete `volume_id` and report the
    /// error (upstream's clean-ups).
    TooSmall {
        /// The volume to delete.
        volume_id: String,
        /// The error to report afterwards.
        error: Error,
    },
    /// The volume was made for a translated in-tree StorageClass but its PV
    /// cannot be expressed in the in-tree form: delete `volume_id` and report
    /// the (final) error, as upstream.
    Untranslatable {
        /// The volume to delete.
        volume_id: String,
        /// The translation error to report afterwards.
        error: Error,
    },
}

const TOO_SMALL: &str = "created volume capacity";
const NO_CONTENT: &str = "volume content source missing";

/// The error to report when the clean-up DeleteVolume of a
/// [`ResponseCheck::TooSmall`] volume failed too, as upstream's `Provision`
/// words it: `<error>. Cleanup of volume <pv> failed, volume is orphaned:
/// <cleanup error>` (`cleanup` in lower case after a missing content
/// source).
pub fn cleanup_failed(error: Error, pv_name: &str, cleanup: &Error) -> Error {
    let text = error.to_string();
    let word = if text.starts_with(TOO_SMALL) {
        "Cleanup"
    } else {
        "cleanup"
    };
    Error::BadDriverResponse(format!(
        "{text}. {word} of volume {pv_name} failed, volume is orphaned: {cleanup}"
    ))
}

/// Checks the driver's answer and builds the PV; for a translated in-tree
/// class ([`ProvisionPlan::migrated`]) the PV is turned back into the in-tree
/// form ([`crate::migration::back_to_in_tree`]).
///
/// `identity` is this instance's `storage.kubernetes.io/csiProvisionerIdentity`
/// value (`<unix ms>-<0..9999>-<driver>`).
///
/// Errors: [`Error::BadDriverResponse`] when the response has no volume or an
/// empty volume ID.
pub fn check_response(
    plan: &ProvisionPlan,
    pvc: &PersistentVolumeClaim,
    driver_name: &str,
    identity: &str,
    response: &CreateVolumeResponse,
) -> Result<ResponseCheck, Error> {
    let volume = response
        .volume
        .as_ref()
        .ok_or_else(|| Error::BadDriverResponse("CreateVolume response has no volume".into()))?;
    if volume.volume_id.is_empty() {
        return Err(Error::BadDriverResponse(
            "CreateVolume response has an empty volume_id".into(),
        ));
    }
    // Upstream's clean-ups, in its order: first the size, then the content.
    let bytes = volume.capacity_bytes;
    if bytes > 0 && bytes < plan.requested_bytes {
        return Ok(ResponseCheck::TooSmall {
            volume_id: volume.volume_id.clone(),
            error: Error::BadDriverResponse(format!(
                "{TOO_SMALL} {bytes} less than requested capacity {}",
                plan.requested_bytes
            )),
        });
    }
    if plan.data_source != DataSource::None && volume.content_source.is_none() {
        // A volume made without the requested content would silently hand
        // out an empty disk.
        return Ok(ResponseCheck::TooSmall {
            volume_id: volume.volume_id.clone(),
            error: Error::BadDriverResponse(NO_CONTENT.into()),
        });
    }
    let size = if bytes > 0 {
        bytes
    } else {
        plan.requested_bytes
    };

    let mut attributes: BTreeMap<String, String> =
        [(PROVISIONER_IDENTITY.to_string(), identity.to_string())].into();
    attributes.extend(
        volume
            .volume_context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );

    let (del_name, del_ns) = plan
        .provisioner_secret
        .as_ref()
        .map(|s| (s.name.clone(), s.namespace.clone()))
        .unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = [
        (PROVISIONED_BY.to_string(), plan.provisioned_by.clone()),
        (DELETION_SECRET_NAME.to_string(), del_name),
        (DELETION_SECRET_NAMESPACE.to_string(), del_ns),
    ]
    .into();
    if let Some(s) = &plan.pv_secrets.controller_modify {
        annotations.insert(MODIFY_SECRET_NAME.to_string(), s.name.clone());
        annotations.insert(MODIFY_SECRET_NAMESPACE.to_string(), s.namespace.clone());
    }

    let spec = pvc.spec.clone().unwrap_or_default();
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(plan.pv_name.clone()),
            annotations: Some(annotations),
            finalizers: Some(vec![PV_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some([("storage".to_string(), Quantity(quantity::from_bytes(size)))].into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: pvc.metadata.name.clone(),
                namespace: pvc.metadata.namespace.clone(),
                uid: pvc.metadata.uid.clone(),
                resource_version: pvc.metadata.resource_version.clone(),
                ..Default::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: driver_name.to_string(),
                volume_handle: volume.volume_id.clone(),
                fs_type: (!plan.fs_type.is_empty()).then(|| plan.fs_type.clone()),
                volume_attributes: Some(attributes),
                read_only: plan.read_only.then_some(true),
                controller_publish_secret_ref: secret_ref(&plan.pv_secrets.controller_publish),
                node_stage_secret_ref: secret_ref(&plan.pv_secrets.node_stage),
                node_publish_secret_ref: secret_ref(&plan.pv_secrets.node_publish),
                controller_expand_secret_ref: secret_ref(&plan.pv_secrets.controller_expand),
                node_expand_secret_ref: secret_ref(&plan.pv_secrets.node_expand),
            }),
            mount_options: (!plan.mount_options.is_empty()).then(|| plan.mount_options.clone()),
            persistent_volume_reclaim_policy: Some(plan.reclaim_policy.clone()),
            storage_class_name: Some(plan.storage_class.clone()),
            volume_mode: Some(if plan.block { "Block" } else { "Filesystem" }.into()),
            volume_attributes_class_name: plan.volume_attributes_class.clone(),
            node_affinity: if plan.topology {
                node_affinity(&volume.accessible_topology)
            } else {
                None
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    match back_to_in_tree(pv, plan.migrated) {
        Ok(pv) => Ok(ResponseCheck::Save(Box::new(pv))),
        Err(error) => Ok(ResponseCheck::Untranslatable {
            volume_id: volume.volume_id.clone(),
            error,
        }),
    }
}

fn secret_ref(s: &Option<SecretRef>) -> Option<SecretReference> {
    s.as_ref().map(|s| SecretReference {
        name: Some(s.name.clone()),
        namespace: Some(s.namespace.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::tests::{DRIVER, UID, cfg, claim, class};
    use crate::provision::{ClaimDecision, decide_claim};
    use csi_client::csi::v1::Volume;

    fn plan(params: &[(&str, &str)]) -> ProvisionPlan {
        match decide_claim(&claim(), Some(&class(params)), |_| false, false, &cfg()).unwrap() {
            ClaimDecision::Provision { plan, .. } => *plan,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn response(id: &str, bytes: i64) -> CreateVolumeResponse {
        CreateVolumeResponse {
            volume: Some(Volume {
                volume_id: id.into(),
                capacity_bytes: bytes,
                volume_context: [("zone".to_string(), "a".to_string())].into(),
                ..Default::default()
            }),
        }
    }

    fn saved(check: ResponseCheck) -> PersistentVolume {
        match check {
            ResponseCheck::Save(pv) => *pv,
            ResponseCheck::TooSmall { error, .. } => panic!("too small: {error}"),
            ResponseCheck::Untranslatable { error, .. } => panic!("untranslatable: {error}"),
        }
    }

    #[test]
    fn pv_carries_everything_upstream_writes() {
        let p = plan(&[
            ("csi.storage.k8s.io/fstype", "ext4"),
            ("csi.storage.k8s.io/provisioner-secret-name", "creds"),
            (
                "csi.storage.k8s.io/provisioner-secret-namespace",
                "kube-system",
            ),
            ("csi.storage.k8s.io/controller-expand-secret-name", "exp"),
            (
                "csi.storage.k8s.io/controller-expand-secret-namespace",
                "kube-system",
            ),
        ]);
        let pv = saved(
            check_response(&p, &claim(), DRIVER, "1-2-drv", &response("vol-7", 2 << 30)).unwrap(),
        );
        let meta = &pv.metadata;
        assert_eq!(meta.name.as_deref(), Some(format!("pvc-{UID}").as_str()));
        let ann = meta.annotations.as_ref().unwrap();
        assert_eq!(ann[PROVISIONED_BY], DRIVER);
        assert_eq!(ann[DELETION_SECRET_NAME], "creds");
        assert_eq!(ann[DELETION_SECRET_NAMESPACE], "kube-system");
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&[PV_FINALIZER.to_string()][..])
        );
        let spec = pv.spec.unwrap();
        assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        assert_eq!(spec.mount_options, Some(vec!["noatime".to_string()]));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(claim_ref.uid.as_deref(), Some(UID));
        assert_eq!(claim_ref.namespace.as_deref(), Some("team-a"));
        assert_eq!(claim_ref.resource_version.as_deref(), Some("7"));
        let csi = spec.csi.unwrap();
        assert_eq!(csi.driver, DRIVER);
        assert_eq!(csi.volume_handle, "vol-7");
        assert_eq!(csi.fs_type.as_deref(), Some("ext4"));
        let attrs = csi.volume_attributes.unwrap();
        assert_eq!(attrs[PROVISIONER_IDENTITY], "1-2-drv");
        assert_eq!(attrs["zone"], "a");
        assert_eq!(
            csi.controller_expand_secret_ref.unwrap().name.as_deref(),
            Some("exp")
        );
        assert!(csi.node_stage_secret_ref.is_none());
        assert!(csi.read_only.is_none());
    }

    #[test]
    fn no_secret_writes_empty_deletion_annotations() {
        let pv =
            saved(check_response(&plan(&[]), &claim(), DRIVER, "id", &response("v", 0)).unwrap());
        let ann = pv.metadata.annotations.unwrap();
        assert_eq!(ann[DELETION_SECRET_NAME], "");
        assert_eq!(ann[DELETION_SECRET_NAMESPACE], "");
        // capacity 0 means "as requested".
        assert_eq!(pv.spec.unwrap().capacity.unwrap()["storage"].0, "1Gi");
    }

    /// The clean-up texts upstream's `Provision` reports (external-provisioner:
    /// pkg/controller/controller.go Provision), size checked before content.
    #[test]
    fn bad_volumes_must_be_cleaned_up_with_upstreams_texts() {
        let mut restore = plan(&[]);
        restore.data_source = DataSource::Snapshot("snap".into());
        let pv_name = format!("pvc-{UID}");
        let cleanup = Error::Csi {
            rpc: "DeleteVolume",
            status: tonic::Status::internal("disk busy"),
        };
        let cases = [
            (
                plan(&[]),
                "created volume capacity 1024 less than requested capacity 1073741824",
                format!(
                    "created volume capacity 1024 less than requested capacity 1073741824. Cleanup of volume {pv_name} failed, volume is orphaned: rpc error: code = Internal desc = disk busy"
                ),
            ),
            (
                // Too small and without content: the size is reported.
                restore.clone(),
                "created volume capacity 1024 less than requested capacity 1073741824",
                format!(
                    "created volume capacity 1024 less than requested capacity 1073741824. Cleanup of volume {pv_name} failed, volume is orphaned: rpc error: code = Internal desc = disk busy"
                ),
            ),
        ];
        for (p, want, orphaned) in cases {
            match check_response(&p, &claim(), DRIVER, "id", &response("v", 1024)).unwrap() {
                ResponseCheck::TooSmall { volume_id, error } => {
                    assert_eq!(volume_id, "v");
                    assert_eq!(error.to_string(), want);
                    assert_eq!(
                        cleanup_failed(error, &pv_name, &cleanup).to_string(),
                        orphaned
                    );
                }
                other => panic!("must not save: {other:?}"),
            }
        }
        match check_response(&restore, &claim(), DRIVER, "id", &response("v", 0)).unwrap() {
            ResponseCheck::TooSmall { volume_id, error } => {
                assert_eq!(volume_id, "v");
                assert_eq!(error.to_string(), "volume content source missing");
                assert_eq!(
                    cleanup_failed(error, &pv_name, &cleanup).to_string(),
                    format!(
                        "volume content source missing. cleanup of volume {pv_name} failed, volume is orphaned: rpc error: code = Internal desc = disk busy"
                    )
                );
            }
            other => panic!("must not save: {other:?}"),
        }
    }

    #[test]
    fn garbage_responses_are_errors() {
        let p = plan(&[]);
        assert!(
            check_response(
                &p,
                &claim(),
                DRIVER,
                "id",
                &CreateVolumeResponse { volume: None }
            )
            .is_err()
        );
        assert!(check_response(&p, &claim(), DRIVER, "id", &response("", 0)).is_err());
    }

    #[test]
    fn node_affinity_only_with_topology() {
        use csi_client::csi::v1::Topology;
        let mut resp = response("v", 0);
        resp.volume.as_mut().unwrap().accessible_topology = vec![Topology {
            segments: [("zone".to_string(), "a".to_string())].into(),
        }];
        let mut p = plan(&[]);
        assert!(
            saved(check_response(&p, &claim(), DRIVER, "id", &resp).unwrap())
                .spec
                .unwrap()
                .node_affinity
                .is_none()
        );
        p.topology = true;
        let affinity = saved(check_response(&p, &claim(), DRIVER, "id", &resp).unwrap())
            .spec
            .unwrap()
            .node_affinity
            .unwrap();
        let term = &affinity.required.unwrap().node_selector_terms[0];
        let req = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!((req.key.as_str(), req.operator.as_str()), ("zone", "In"));
        assert_eq!(req.values.as_deref(), Some(&["a".to_string()][..]));
    }

    #[test]
    fn volume_attributes_class_and_modify_secret_reach_the_pv() {
        let mut p = plan(&[
            ("csi.storage.k8s.io/controller-modify-secret-name", "mod"),
            (
                "csi.storage.k8s.io/controller-modify-secret-namespace",
                "kube-system",
            ),
        ]);
        p.volume_attributes_class = Some("gold".into());
        let pv = saved(check_response(&p, &claim(), DRIVER, "id", &response("v", 0)).unwrap());
        let ann = pv.metadata.annotations.unwrap();
        assert_eq!(ann[MODIFY_SECRET_NAME], "mod");
        assert_eq!(ann[MODIFY_SECRET_NAMESPACE], "kube-system");
        assert_eq!(
            pv.spec.unwrap().volume_attributes_class_name.as_deref(),
            Some("gold")
        );
        let plain =
            saved(check_response(&plan(&[]), &claim(), DRIVER, "id", &response("v", 0)).unwrap());
        assert!(
            !plain
                .metadata
                .annotations
                .unwrap()
                .contains_key(MODIFY_SECRET_NAME)
        );
    }
}
