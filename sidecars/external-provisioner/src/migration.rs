//! CSI migration: serving an in-tree plugin's claims and volumes with the CSI
//! driver that replaced it (`external-provisioner: pkg/controller/controller.go`,
//! the `translator` and `supportsMigrationFromInTreePluginName` paths).
//!
//! When the driver is a migration target (e.g. `cinder.csi.openstack.org`
//! for `kubernetes.io/cinder`, see [`csi_translation`]), the
//! provisioner answers to the in-tree name as well:
//!
//! * **Claims** ([`claim_is_ours`]): kube-controller-manager hands a claim of
//!   an in-tree StorageClass to the CSI driver by writing the driver's name
//!   into `volume.kubernetes.io/storage-provisioner`, or (older releases) the
//!   in-tree name there and the driver's into `pv.kubernetes.io/migrated-to`.
//! * **StorageClasses** ([`class_for_driver`]): a class whose `provisioner` is
//!   the in-tree name is translated to the CSI form before the CreateVolume
//!   request is built (`fstype` → `csi.storage.k8s.io/fstype`, zones →
//!   `allowedTopologies`, …).
//! * **PVs** ([`back_to_in_tree`]): the PV saved for such a class has the
//!   in-tree source (`spec.cinder`, `spec.awsElasticBlockStore`, …) and
//!   `pv.kubernetes.io/provisioned-by` = the in-tree name, as if the in-tree
//!   plugin had made it. If that translation fails, the new volume is deleted
//!   again and the attempt fails.
//! * **Deletion** ([`owns_volume`], [`csi_view`]): PVs provisioned by either
//!   name, or migrated to the driver, are ours; an in-tree PV is read through
//!   its CSI translation for the volume handle DeleteVolume needs.
//! * **Metrics**: CSI calls made for a translated class or PV carry
//!   `migrated="true"` in `csi_sidecar_operations_seconds`, every other call
//!   `migrated="false"` (the label exists only for migration drivers; see
//!   [`csi_client::metrics`]).
//!
//! One rule goes beyond upstream ([`handled_in_tree`]): a PV of the driver's
//! in-tree plugin that kube-controller-manager has processed without marking
//! it `migrated-to` our driver (migration of that plugin disabled or rolled
//! back) is left to the in-tree controller: our PV finalizer is removed, never
//! added, and the volume is not deleted through CSI. kube-controller-manager
//! removes our finalizer from such PVs itself (`modifyDeletionFinalizers`);
//! upstream's provisioner would add it back and both would delete the volume.
//!
//! Every function here is pure.

use std::borrow::Cow;

use csi_translation as translation;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::annotations::{MIGRATED_TO, PROVISIONED_BY};
use crate::error::Error;
use crate::provision::claim_provisioner;

/// The in-tree plugin `driver` replaces, which this provisioner then also
/// answers to (upstream's "additional provisioner name"); `None` for drivers
/// that are not migration targets.
pub fn in_tree_name(driver: &str) -> Option<&'static str> {
    translation::in_tree_name_for_driver(driver)
}

/// True when `name` is a provisioner name this provisioner answers to: the
/// driver's own, or its in-tree plugin's (upstream's `knownProvisioner`).
pub fn is_known_provisioner(name: &str, driver: &str) -> bool {
    name == driver || in_tree_name(driver) == Some(name)
}

fn annotation<'a>(
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    annotations?.get(key).map(String::as_str)
}

/// Whether `pvc` asks this provisioner for a volume, judged by its
/// annotations alone (both of upstream's checks):
///
/// 1. the storage-provisioner annotation (GA, else beta) names the driver, or
///    `pv.kubernetes.io/migrated-to` does;
/// 2. and the storage-provisioner annotation is present and names the driver
///    or, for a migration driver, its in-tree plugin.
///
/// So a claim annotated with the in-tree name is taken only when it is also
/// marked migrated to this driver.
pub fn claim_is_ours(pvc: &PersistentVolumeClaim, driver: &str) -> bool {
    let provisioner = claim_provisioner(pvc);
    let migrated_to = annotation(pvc.metadata.annotations.as_ref(), MIGRATED_TO);
    let asked = provisioner == Some(driver) || migrated_to == Some(driver);
    asked && provisioner.is_some_and(|p| is_known_provisioner(p, driver))
}

/// The StorageClass as the CSI driver must see it, and whether it was
/// translated: a class whose `provisioner` is the driver's in-tree plugin is
/// rewritten by [`translation::translate_in_tree_storage_class_to_csi`];
/// any other class is used as it is.
///
/// Errors: [`Error::Migration`] (final) when the class cannot be translated,
/// with upstream's text `failed to translate storage class: …`.
pub fn class_for_driver<'a>(
    class: &'a StorageClass,
    driver: &str,
) -> Result<(Cow<'a, StorageClass>, bool), Error> {
    match in_tree_name(driver) {
        Some(in_tree) if class.provisioner == in_tree => {
            let translated = translation::translate_in_tree_storage_class_to_csi(in_tree, class)
                .map_err(|e| Error::Migration(format!("failed to translate storage class: {e}")))?;
            Ok((Cow::Owned(translated), true))
        }
        _ => Ok((Cow::Borrowed(class), false)),
    }
}

/// The PV to save for a volume provisioned from a translated class: `pv`
/// (built with `spec.csi`) with the in-tree source instead, everything else
/// kept. Untranslated classes keep `pv` as it is.
///
/// Errors: [`Error::Migration`] (final) when the CSI volume cannot be
/// expressed in-tree; the caller must then delete the volume it just made.
pub fn back_to_in_tree(pv: PersistentVolume, migrated: bool) -> Result<PersistentVolume, Error> {
    if !migrated {
        return Ok(pv);
    }
    translation::translate_csi_pv_to_in_tree(&pv).map_err(|e| Error::Migration(e.to_string()))
}

/// True when this provisioner owns `pv` for deletion and finalizer upkeep
/// (upstream's `isProvisionerForVolume`): with a provisioned-by annotation,
/// that or `pv.kubernetes.io/migrated-to` names the driver or its in-tree
/// plugin; without one, `spec.csi.driver` names it, or, for a non-CSI PV,
/// `migrated-to` does.
pub fn owns_volume(pv: &PersistentVolume, driver: &str) -> bool {
    let annotations = pv.metadata.annotations.as_ref();
    let known = |key| annotation(annotations, key).is_some_and(|n| is_known_provisioner(n, driver));
    if annotation(annotations, PROVISIONED_BY).is_some() {
        return known(PROVISIONED_BY) || known(MIGRATED_TO);
    }
    match pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
        Some(csi) => is_known_provisioner(&csi.driver, driver),
        None => known(MIGRATED_TO),
    }
}

/// True for a PV of the driver's own in-tree plugin that
/// kube-controller-manager has already processed (phase past `Pending`) and
/// not marked `pv.kubernetes.io/migrated-to` our driver: the in-tree
/// controller is in charge of it (migration of the plugin disabled or rolled
/// back). See the module docs for what the provisioner then does.
///
/// A PV this provisioner has just created is still `Pending`: the annotation
/// comes with kube-controller-manager's first look, before any phase.
pub fn handled_in_tree(pv: &PersistentVolume, driver: &str) -> bool {
    let Some(in_tree) = in_tree_name(driver) else {
        return false;
    };
    if translation::plugin_name_for_pv(pv) != Some(in_tree) {
        return false;
    }
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let processed = phase.is_some_and(|p| !p.is_empty() && p != "Pending");
    processed && annotation(pv.metadata.annotations.as_ref(), MIGRATED_TO) != Some(driver)
}

/// `pv` as CSI sees it, and whether it was translated: an in-tree PV that
/// CSI migration can translate becomes its CSI form (for the volume handle
/// DeleteVolume needs); any other PV is used as it is.
///
/// Errors: [`Error::Migration`] when the in-tree source cannot be translated.
pub fn csi_view(pv: &PersistentVolume) -> Result<(Cow<'_, PersistentVolume>, bool), Error> {
    if !translation::is_pv_migratable(pv) {
        return Ok((Cow::Borrowed(pv), false));
    }
    let translated = translation::translate_in_tree_pv_to_csi(pv)
        .map_err(|e| Error::Migration(e.to_string()))?;
    Ok((Cow::Owned(translated), true))
}

/// The StorageClass whose secret templates apply when deleting a volume:
/// for a translated PV whose class names the in-tree plugin, the class's
/// CSI translation (its parameters are what provisioning used); otherwise
/// the class as it is.
///
/// Errors: as [`class_for_driver`].
pub fn deletion_class<'a>(
    class: &'a StorageClass,
    migrated: bool,
    driver: &str,
) -> Result<Cow<'a, StorageClass>, Error> {
    if migrated {
        Ok(class_for_driver(class, driver)?.0)
    } else {
        Ok(Cow::Borrowed(class))
    }
}

/// Conformance cases after upstream's TestProvisionWithMigration,
/// TestDeleteMigration and the library's ownership and finalizer tests, with
/// the real translations instead of upstream's fake translator.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use csi_client::csi::v1::{CreateVolumeResponse, Volume};
    use k8s_openapi::api::core::v1::{
        AWSElasticBlockStoreVolumeSource, AzureDiskVolumeSource, CSIPersistentVolumeSource,
        CinderPersistentVolumeSource, ObjectReference, PersistentVolumeSpec,
        PersistentVolumeStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::annotations::{
        BETA_STORAGE_PROVISIONER, DELETION_SECRET_NAME, DELETION_SECRET_NAMESPACE, PV_FINALIZER,
        STORAGE_PROVISIONER,
    };
    use crate::delete::{VolumeAction, decide_volume};
    use crate::provision::tests::{UID, cfg, claim, class};
    use crate::provision::{ClaimDecision, ProvisionConfig, ProvisionPlan, Skip, decide_claim};
    use crate::pv::{ResponseCheck, check_response};
    use crate::secrets::SecretRef;

    /// Annotations of a test object, as `(key, value)` pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    const CINDER: &str = "cinder.csi.openstack.org";
    const CINDER_IN_TREE: &str = "kubernetes.io/cinder";
    const HOSTPATH: &str = "hostpath.csi.k8s.io";

    fn cfg_for(driver: &str) -> ProvisionConfig {
        ProvisionConfig {
            driver_name: driver.into(),
            ..cfg()
        }
    }

    fn class_of(provisioner: &str, params: &[(&str, &str)]) -> StorageClass {
        StorageClass {
            provisioner: provisioner.into(),
            ..class(params)
        }
    }

    fn claim_with(annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        let mut pvc = claim();
        pvc.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        pvc
    }

    fn decide(
        pvc: &PersistentVolumeClaim,
        sc: &StorageClass,
        driver: &str,
    ) -> Result<ClaimDecision, Error> {
        decide_claim(pvc, Some(sc), |_| false, false, &cfg_for(driver))
    }

    fn planned(decision: ClaimDecision) -> Option<ProvisionPlan> {
        match decision {
            ClaimDecision::Provision { plan, .. } => Some(*plan),
            ClaimDecision::Skip(_) => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn provisioner_names_known_per_driver() {
        assert_eq!(in_tree_name(CINDER), Some(CINDER_IN_TREE));
        assert_eq!(in_tree_name(HOSTPATH), None);
        assert!(is_known_provisioner(CINDER, CINDER));
        assert!(is_known_provisioner(CINDER_IN_TREE, CINDER));
        assert!(!is_known_provisioner("kubernetes.io/aws-ebs", CINDER));
        assert!(!is_known_provisioner(CINDER_IN_TREE, HOSTPATH));
    }

    /// Upstream's TestProvisionWithMigration table: which claim annotations
    /// and class provisioners are provisioned, and whether the class is
    /// translated on the way. A class `fstype` parameter shows which: the
    /// translation renames it to `csi.storage.k8s.io/fstype`, which is
    /// consumed and not sent; untranslated, the deprecated key is sent as is.
    #[test]
    fn provision_with_migration_table() {
        const B: &str = BETA_STORAGE_PROVISIONER;
        const GA: &str = STORAGE_PROVISIONER;
        const TO: &str = MIGRATED_TO;
        // (case, class provisioner, claim annotations, Some(translated) or None = skipped)
        let cases: [(&str, &str, Pairs, Option<bool>); 11] = [
            (
                "in-tree class, beta annotation names the driver",
                CINDER_IN_TREE,
                &[(B, CINDER)],
                Some(true),
            ),
            (
                "in-tree class, GA annotation names the driver",
                CINDER_IN_TREE,
                &[(GA, CINDER)],
                Some(true),
            ),
            (
                "CSI class, beta annotation",
                CINDER,
                &[(B, CINDER)],
                Some(false),
            ),
            (
                "CSI class, GA annotation",
                CINDER,
                &[(GA, CINDER)],
                Some(false),
            ),
            (
                "annotated in-tree but migrated-to the driver",
                CINDER_IN_TREE,
                &[(B, CINDER_IN_TREE), (TO, CINDER)],
                Some(true),
            ),
            (
                "migrated-to another driver",
                CINDER_IN_TREE,
                &[(B, CINDER_IN_TREE), (TO, "foo")],
                None,
            ),
            (
                "another provisioner, migrated-to another driver",
                CINDER_IN_TREE,
                &[(B, "foo"), (TO, "foo")],
                None,
            ),
            (
                "driver and migrated-to both name the driver",
                CINDER_IN_TREE,
                &[(B, CINDER), (TO, CINDER)],
                Some(true),
            ),
            (
                "in-tree claim not migrated",
                CINDER_IN_TREE,
                &[(B, CINDER_IN_TREE)],
                None,
            ),
            (
                "migrated-to the driver without storage-provisioner",
                CINDER_IN_TREE,
                &[(TO, CINDER)],
                None,
            ),
            (
                "another plugin's in-tree class",
                "kubernetes.io/aws-ebs",
                &[(GA, CINDER)],
                None,
            ),
        ];
        for (case, provisioner, annotations, want) in cases {
            let sc = class_of(provisioner, &[("fstype", "ext3"), ("type", "ssd")]);
            let decision = decide(&claim_with(annotations), &sc, CINDER).expect(case);
            let plan = planned(decision);
            assert_eq!(plan.as_ref().map(|p| p.migrated), want, "{case}");
            let Some(plan) = plan else { continue };
            let params = &plan.request.parameters;
            assert_eq!(
                params.get("type").map(String::as_str),
                Some("ssd"),
                "{case}"
            );
            assert_eq!(
                params.contains_key("fstype"),
                !plan.migrated,
                "{case}: {params:?}"
            );
            assert_eq!(plan.fs_type, "ext3", "{case}");
            let want_by = if plan.migrated {
                CINDER_IN_TREE
            } else {
                CINDER
            };
            assert_eq!(plan.provisioned_by, want_by, "{case}");
        }
    }

    #[test]
    fn in_tree_names_mean_nothing_to_other_drivers() {
        let pvc = claim_with(&[
            (BETA_STORAGE_PROVISIONER, CINDER_IN_TREE),
            (MIGRATED_TO, HOSTPATH),
        ]);
        let sc = class_of(CINDER_IN_TREE, &[]);
        assert!(matches!(
            decide(&pvc, &sc, HOSTPATH).unwrap(),
            ClaimDecision::Skip(Skip::NotOurs)
        ));
        let ours = claim_with(&[(STORAGE_PROVISIONER, HOSTPATH)]);
        assert!(matches!(
            decide(&ours, &sc, HOSTPATH).unwrap(),
            ClaimDecision::Skip(Skip::OtherProvisioner)
        ));
    }

    #[test]
    fn translated_class_shapes_the_request() {
        const EBS: &str = "ebs.csi.aws.com";
        let pvc = claim_with(&[(STORAGE_PROVISIONER, EBS)]);
        let sc = class_of(
            "kubernetes.io/aws-ebs",
            &[("zone", "us-east-1a"), ("type", "gp3")],
        );
        let plan = planned(decide(&pvc, &sc, EBS).unwrap()).expect("provisioned");
        assert!(plan.migrated);
        assert_eq!(plan.provisioned_by, "kubernetes.io/aws-ebs");
        // The zone parameter became allowedTopologies under the CSI key.
        assert!(!plan.request.parameters.contains_key("zone"));
        let term = &plan.allowed_topologies[0]
            .match_label_expressions
            .as_ref()
            .unwrap()[0];
        assert_eq!(term.key, "topology.ebs.csi.aws.com/zone");
        assert_eq!(term.values, vec!["us-east-1a".to_string()]);
        // Sources of clones and restores must belong to the class's
        // provisioner, which stays the in-tree name (upstream compares it).
        assert_eq!(plan.class_provisioner, "kubernetes.io/aws-ebs");
    }

    #[test]
    fn untranslatable_class_is_a_final_error() {
        const EBS: &str = "ebs.csi.aws.com";
        let pvc = claim_with(&[(STORAGE_PROVISIONER, EBS)]);
        let mut sc = class_of("kubernetes.io/aws-ebs", &[("zone", "us-east-1a")]);
        sc.allowed_topologies = Some(vec![Default::default()]);
        let err = decide(&pvc, &sc, EBS).unwrap_err();
        assert!(matches!(err, Error::Migration(_)), "{err:?}");
        assert!(err.is_final());
        // external-provisioner: pkg/controller/controller.go prepareProvision,
        // csi-translation-lib: plugins/aws_ebs.go TranslateInTreeStorageClassToCSI.
        assert_eq!(
            err.to_string(),
            "failed to translate storage class: cannot simultaneously set allowed topologies and zone/zones parameters"
        );
    }

    #[test]
    fn recorded_intent_is_finished_with_the_translated_class() {
        let mut pvc = claim_with(&[(STORAGE_PROVISIONER, CINDER)]);
        pvc.metadata.finalizers = Some(vec![crate::annotations::CREATE_INTENT_FINALIZER.into()]);
        let sc = class_of(CINDER_IN_TREE, &[("fstype", "xfs")]);
        match decide(&pvc, &sc, CINDER).unwrap() {
            ClaimDecision::Provision {
                plan,
                record_intent,
            } => {
                assert!(!record_intent);
                assert!(plan.migrated);
                assert!(!plan.request.parameters.contains_key("fstype"));
            }
            other => panic!("{other:?}"),
        }
    }

    fn response(volume_id: &str) -> CreateVolumeResponse {
        CreateVolumeResponse {
            volume: Some(Volume {
                volume_id: volume_id.into(),
                capacity_bytes: 1 << 30,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn migrated_pv_is_saved_in_tree_with_the_in_tree_provisioner() {
        let pvc = claim_with(&[(STORAGE_PROVISIONER, CINDER)]);
        let sc = class_of(
            CINDER_IN_TREE,
            &[
                ("fstype", "ext4"),
                ("csi.storage.k8s.io/provisioner-secret-name", "creds"),
                (
                    "csi.storage.k8s.io/provisioner-secret-namespace",
                    "kube-system",
                ),
            ],
        );
        let plan = planned(decide(&pvc, &sc, CINDER).unwrap()).unwrap();
        let check = check_response(&plan, &pvc, CINDER, "id", &response("4a2e-vol")).unwrap();
        let ResponseCheck::Save(pv) = check else {
            panic!("{check:?}")
        };
        let ann = pv.metadata.annotations.clone().unwrap();
        assert_eq!(ann[PROVISIONED_BY], CINDER_IN_TREE);
        assert_eq!(ann[DELETION_SECRET_NAME], "creds");
        assert_eq!(ann[DELETION_SECRET_NAMESPACE], "kube-system");
        assert_eq!(pv.metadata.name, Some(format!("pvc-{UID}")));
        assert_eq!(pv.metadata.finalizers, Some(vec![PV_FINALIZER.to_string()]));
        let spec = pv.spec.unwrap();
        assert!(spec.csi.is_none(), "the CSI source is replaced");
        assert_eq!(
            spec.cinder,
            Some(CinderPersistentVolumeSource {
                volume_id: "4a2e-vol".into(),
                fs_type: Some("ext4".into()),
                ..Default::default()
            })
        );
        assert_eq!(spec.claim_ref.and_then(|c| c.uid).as_deref(), Some(UID));
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );

        // A class naming the driver itself keeps the CSI PV.
        let native = planned(decide(&pvc, &class_of(CINDER, &[]), CINDER).unwrap()).unwrap();
        let ResponseCheck::Save(pv) =
            check_response(&native, &pvc, CINDER, "id", &response("4a2e-vol")).unwrap()
        else {
            panic!("not saved")
        };
        assert_eq!(pv.metadata.annotations.unwrap()[PROVISIONED_BY], CINDER);
        assert_eq!(pv.spec.unwrap().csi.unwrap().volume_handle, "4a2e-vol");
    }

    #[test]
    fn back_translation_failure_deletes_the_new_volume() {
        const PD: &str = "pd.csi.storage.gke.io";
        let pvc = claim_with(&[(STORAGE_PROVISIONER, PD)]);
        let plan =
            planned(decide(&pvc, &class_of("kubernetes.io/gce-pd", &[]), PD).unwrap()).unwrap();
        assert!(plan.migrated);
        // Not a projects/…/disks/… handle: no in-tree GCE PD can name it.
        match check_response(&plan, &pvc, PD, "id", &response("not-a-gce-handle")).unwrap() {
            ResponseCheck::Untranslatable { volume_id, error } => {
                assert_eq!(volume_id, "not-a-gce-handle");
                assert!(matches!(error, Error::Migration(_)), "{error:?}");
                assert!(error.is_final());
            }
            other => panic!("must not save: {other:?}"),
        }
        // A well-formed handle goes through.
        let handle = "projects/p/zones/europe-west1-b/disks/pvc-1";
        assert!(matches!(
            check_response(&plan, &pvc, PD, "id", &response(handle)).unwrap(),
            ResponseCheck::Save(_)
        ));
    }

    fn pv(
        annotations: &[(&str, &str)],
        phase: &str,
        source: Source,
        finalizer: bool,
    ) -> PersistentVolume {
        let mut spec = PersistentVolumeSpec {
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some("fast".into()),
            claim_ref: Some(ObjectReference {
                name: Some("data".into()),
                namespace: Some("team-a".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match source {
            Source::Csi(driver) => {
                spec.csi = Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "csi-handle".into(),
                    ..Default::default()
                })
            }
            Source::Cinder => {
                spec.cinder = Some(CinderPersistentVolumeSource {
                    volume_id: "cinder-vol".into(),
                    ..Default::default()
                })
            }
            Source::Ebs => {
                spec.aws_elastic_block_store = Some(AWSElasticBlockStoreVolumeSource {
                    volume_id: "aws://us-east-1a/vol-0abc".into(),
                    ..Default::default()
                })
            }
            Source::SharedAzureDisk => {
                spec.azure_disk = Some(AzureDiskVolumeSource {
                    disk_name: "d".into(),
                    disk_uri: "https://example/d.vhd".into(),
                    kind: Some("Shared".into()),
                    ..Default::default()
                })
            }
        }
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-1".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                finalizers: finalizer.then(|| vec![PV_FINALIZER.to_string()]),
                ..Default::default()
            },
            spec: Some(spec),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[derive(Clone, Copy)]
    enum Source {
        Csi(&'static str),
        Cinder,
        SharedAzureDisk,
        Ebs,
    }

    /// The library's isProvisionerForVolume cases, with a migration driver.
    #[test]
    fn volume_ownership_table() {
        const BY: &str = PROVISIONED_BY;
        const TO: &str = MIGRATED_TO;
        let cases: [(&str, Pairs, Source, bool); 9] = [
            (
                "provisioned by the driver",
                &[(BY, CINDER)],
                Source::Csi(CINDER),
                true,
            ),
            (
                "provisioned by the in-tree name",
                &[(BY, CINDER_IN_TREE)],
                Source::Cinder,
                true,
            ),
            (
                "provisioned in-tree, migrated to the driver",
                &[(BY, "kubernetes.io/other"), (TO, CINDER)],
                Source::Cinder,
                true,
            ),
            (
                "provisioned by someone else",
                &[(BY, "other.csi")],
                Source::Csi(CINDER),
                false,
            ),
            (
                "someone else's, migrated elsewhere",
                &[(BY, "other"), (TO, "other.csi")],
                Source::Cinder,
                false,
            ),
            (
                "static CSI PV of the driver",
                &[],
                Source::Csi(CINDER),
                true,
            ),
            (
                "static CSI PV of another driver",
                &[(TO, CINDER)],
                Source::Csi("other.csi"),
                false,
            ),
            (
                "static in-tree PV migrated to the driver",
                &[(TO, CINDER)],
                Source::Cinder,
                true,
            ),
            (
                "static in-tree PV, not migrated",
                &[],
                Source::Cinder,
                false,
            ),
        ];
        for (case, annotations, source, want) in cases {
            assert_eq!(
                owns_volume(&pv(annotations, "Bound", source, false), CINDER),
                want,
                "{case}"
            );
        }
        assert!(
            !owns_volume(
                &pv(&[(BY, CINDER_IN_TREE)], "Bound", Source::Cinder, false),
                HOSTPATH
            ),
            "the in-tree name is known only to its migration driver"
        );
    }

    /// Upstream's TestDeleteMigration: in-tree PVs are deleted through their
    /// CSI translation, marked migrated; CSI PVs as they are.
    #[test]
    fn delete_migration_table() {
        let migrated_pv = pv(
            &[(PROVISIONED_BY, CINDER_IN_TREE), (MIGRATED_TO, CINDER)],
            "Released",
            Source::Cinder,
            true,
        );
        let csi_pv = pv(
            &[(PROVISIONED_BY, CINDER)],
            "Released",
            Source::Csi(CINDER),
            true,
        );
        let cases = [
            ("normal migration", &migrated_pv, "cinder-vol", true),
            ("no migration", &csi_pv, "csi-handle", false),
        ];
        for (case, pv, want_id, want_migrated) in cases {
            match decide_volume(pv, None, CINDER, None).expect(case) {
                VolumeAction::Delete {
                    volume_id,
                    migrated,
                    secret,
                } => {
                    assert_eq!(volume_id, want_id, "{case}");
                    assert_eq!(migrated, want_migrated, "{case}");
                    assert_eq!(secret, None, "{case}");
                }
                other => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn deletion_secret_of_a_migrated_pv_comes_from_its_class() {
        // A PV without the deletion-secret annotations (made before they
        // existed): the in-tree class, translated, gives the secret.
        let pv = pv(
            &[(PROVISIONED_BY, CINDER_IN_TREE), (MIGRATED_TO, CINDER)],
            "Released",
            Source::Cinder,
            true,
        );
        let sc = class_of(
            CINDER_IN_TREE,
            &[
                ("fstype", "ext4"),
                (
                    "csi.storage.k8s.io/provisioner-secret-name",
                    "${pvc.name}-creds",
                ),
                (
                    "csi.storage.k8s.io/provisioner-secret-namespace",
                    "${pvc.namespace}",
                ),
            ],
        );
        match decide_volume(&pv, Some(&sc), CINDER, None).unwrap() {
            VolumeAction::Delete {
                secret, migrated, ..
            } => {
                assert!(migrated);
                assert_eq!(
                    secret,
                    Some(SecretRef {
                        name: "data-creds".into(),
                        namespace: "team-a".into()
                    })
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deletion_secret_annotations_win_over_the_class() {
        const EBS: &str = "ebs.csi.aws.com";
        let pv = pv(
            &[
                (PROVISIONED_BY, "kubernetes.io/aws-ebs"),
                (MIGRATED_TO, EBS),
                (DELETION_SECRET_NAME, ""),
                (DELETION_SECRET_NAMESPACE, ""),
            ],
            "Released",
            Source::Ebs,
            true,
        );
        // A class the translation rejects (zone parameter and
        // allowedTopologies): not consulted while the PV says which secret.
        let mut sc = class_of("kubernetes.io/aws-ebs", &[("zone", "us-east-1a")]);
        sc.allowed_topologies = Some(vec![Default::default()]);
        match decide_volume(&pv, Some(&sc), EBS, None).unwrap() {
            VolumeAction::Delete {
                volume_id,
                secret,
                migrated,
            } => {
                assert_eq!(volume_id, "vol-0abc");
                assert_eq!(secret, None);
                assert!(migrated);
            }
            other => panic!("{other:?}"),
        }
        // Without the annotations the class is needed, and its translation
        // error stops the deletion (retried), as upstream.
        let mut legacy = pv.clone();
        let ann = legacy.metadata.annotations.as_mut().unwrap();
        ann.remove(DELETION_SECRET_NAME);
        ann.remove(DELETION_SECRET_NAMESPACE);
        let err = decide_volume(&legacy, Some(&sc), EBS, None).unwrap_err();
        assert!(matches!(err, Error::Migration(_)), "{err:?}");
    }

    #[test]
    fn untranslatable_in_tree_pv_is_a_delete_error() {
        const AZURE: &str = "disk.csi.azure.com";
        let pv = pv(
            &[
                (PROVISIONED_BY, "kubernetes.io/azure-disk"),
                (MIGRATED_TO, AZURE),
            ],
            "Released",
            Source::SharedAzureDisk,
            true,
        );
        let err = decide_volume(&pv, None, AZURE, None).unwrap_err();
        assert!(matches!(err, Error::Migration(_)), "{err:?}");
        // The same PV still Bound only needs its finalizer: no translation.
        let mut bound = pv.clone();
        bound.status.as_mut().unwrap().phase = Some("Bound".into());
        assert_eq!(
            decide_volume(&bound, None, AZURE, None).unwrap(),
            VolumeAction::Nothing
        );
    }

    /// Case, PV annotations, phase, source, our finalizer present, expected
    /// action (`None`: DeleteVolume of the translated volume).
    type FinalizerCase<'a> = (
        &'a str,
        Pairs<'a>,
        &'a str,
        Source,
        bool,
        Option<VolumeAction>,
    );

    /// The PV finalizer on migrated in-tree PVs: kept and added while the PV
    /// is migrated to the driver; removed, never added, and no deletion once
    /// kube-controller-manager handles the PV in-tree (rollback).
    #[test]
    fn finalizer_rules_for_migrated_pvs() {
        use VolumeAction::*;
        const BY: &str = PROVISIONED_BY;
        const TO: &str = MIGRATED_TO;
        let migrated: Pairs = &[(BY, CINDER_IN_TREE), (TO, CINDER)];
        let rolled_back: Pairs = &[(BY, CINDER_IN_TREE)];
        let cases: [FinalizerCase; 11] = [
            (
                "migrated, bound, no finalizer yet",
                migrated,
                "Bound",
                Source::Cinder,
                false,
                Some(AddFinalizer),
            ),
            (
                "migrated, bound, finalizer kept",
                migrated,
                "Bound",
                Source::Cinder,
                true,
                Some(Nothing),
            ),
            (
                "rolled back, bound, finalizer removed",
                rolled_back,
                "Bound",
                Source::Cinder,
                true,
                Some(RemoveFinalizer),
            ),
            (
                "rolled back, bound, never added",
                rolled_back,
                "Bound",
                Source::Cinder,
                false,
                Some(Nothing),
            ),
            (
                "rolled back, released, not deleted",
                rolled_back,
                "Released",
                Source::Cinder,
                true,
                Some(RemoveFinalizer),
            ),
            (
                "migrated elsewhere, finalizer removed",
                &[(BY, CINDER_IN_TREE), (TO, "other.csi")],
                "Bound",
                Source::Cinder,
                true,
                Some(RemoveFinalizer),
            ),
            (
                "just created, not yet seen by the PV controller",
                rolled_back,
                "Pending",
                Source::Cinder,
                true,
                Some(Nothing),
            ),
            (
                "static in-tree PV no longer migrated",
                &[],
                "Bound",
                Source::Cinder,
                true,
                Some(RemoveFinalizer),
            ),
            (
                "CSI PV of the driver is never in-tree",
                &[(BY, CINDER)],
                "Bound",
                Source::Csi(CINDER),
                false,
                Some(AddFinalizer),
            ),
            (
                "another plugin's in-tree PV is not ours",
                &[(BY, "kubernetes.io/aws-ebs")],
                "Bound",
                Source::SharedAzureDisk,
                true,
                Some(Nothing),
            ),
            (
                "migrated, released: deleted through CSI",
                migrated,
                "Released",
                Source::Cinder,
                true,
                None,
            ),
        ];
        for (case, annotations, phase, source, finalizer, want) in cases {
            let got = decide_volume(
                &pv(annotations, phase, source, finalizer),
                None,
                CINDER,
                None,
            )
            .expect(case);
            match want {
                Some(want) => assert_eq!(got, want, "{case}"),
                None => assert!(
                    matches!(got, Delete { migrated: true, .. }),
                    "{case}: {got:?}"
                ),
            }
        }
        // Reclaim policy Retain still removes the finalizer of a migrated PV.
        let mut retained = pv(migrated, "Bound", Source::Cinder, true);
        retained
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some("Retain".into());
        assert_eq!(
            decide_volume(&retained, None, CINDER, None).unwrap(),
            RemoveFinalizer
        );
        // Without migration support the rollback rule never applies.
        assert_eq!(
            decide_volume(
                &pv(&[(BY, HOSTPATH)], "Bound", Source::Csi(HOSTPATH), false),
                None,
                HOSTPATH,
                None
            )
            .unwrap(),
            AddFinalizer
        );
    }

    #[test]
    fn csi_view_translates_only_in_tree_pvs() {
        let in_tree = pv(&[], "Bound", Source::Cinder, false);
        let (view, migrated) = csi_view(&in_tree).unwrap();
        assert!(migrated);
        let csi = view.spec.as_ref().unwrap().csi.as_ref().unwrap();
        assert_eq!(
            (csi.driver.as_str(), csi.volume_handle.as_str()),
            (CINDER, "cinder-vol")
        );
        let native = pv(&[], "Bound", Source::Csi(CINDER), false);
        let (view, migrated) = csi_view(&native).unwrap();
        assert!(!migrated);
        assert!(matches!(view, Cow::Borrowed(_)));
    }
}
