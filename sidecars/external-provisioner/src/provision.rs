//! Decide whether a PersistentVolumeClaim is ours to provision and, if so,
//! the exact CreateVolume request and the PV to save afterwards.
//!
//! Pure: inputs are the claim, its StorageClass and whether the PV exists;
//! the controller does every call. Mirrors sig-storage-lib-external-provisioner
//! `shouldProvision` and external-provisioner `prepareProvision`
//! (`pkg/controller/controller.go`).

use std::collections::BTreeMap;

use csi_client::csi::v1::{CapacityRange, CreateVolumeRequest};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, TopologySelectorTerm};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::annotations::{
    BETA_STORAGE_PROVISIONER, CREATE_INTENT_FINALIZER, SELECTED_NODE, STORAGE_PROVISIONER,
};
use crate::capabilities::volume_capabilities;
use crate::datasource::{DataSource, check_data_source_namespace, data_source};
use crate::error::Error;
use crate::migration::{claim_is_ours, class_for_driver, is_known_provisioner};
use crate::names::volume_name;
use crate::parameters::{add_extra_metadata, fs_type, strip_reserved};
use crate::quantity;
use crate::secrets::{SecretKind, SecretRef, TemplateContext, secret_reference};

/// Settings and driver facts the decisions depend on.
#[derive(Clone, Debug)]
pub struct ProvisionConfig {
    /// The driver name (GetPluginInfo), also the provisioner name.
    pub driver_name: String,
    /// `--volume-name-prefix`.
    pub volume_name_prefix: String,
    /// `--volume-name-uuid-length`.
    pub volume_name_uuid_length: i64,
    /// `--default-fstype`.
    pub default_fstype: String,
    /// `--extra-create-metadata`.
    pub extra_create_metadata: bool,
    /// `--controller-publish-readonly`.
    pub controller_publish_readonly: bool,
    /// Plugin CONTROLLER_SERVICE.
    pub controller_service: bool,
    /// Plugin CONTROLLER_SERVICE and controller CREATE_DELETE_VOLUME.
    pub can_create_delete: bool,
    /// Controller SINGLE_NODE_MULTI_WRITER.
    pub single_node_multi_writer: bool,
    /// Controller CLONE_VOLUME.
    pub can_clone: bool,
    /// Controller MODIFY_VOLUME.
    pub can_modify: bool,
    /// Controller CREATE_DELETE_SNAPSHOT (restores need it).
    pub can_snapshot: bool,
    /// `--prevent-volume-mode-conversion`.
    pub prevent_volume_mode_conversion: bool,
    /// The VolumeAttributesClass feature gate.
    pub volume_attributes_class: bool,
    /// The Topology gate is on and the driver has
    /// VOLUME_ACCESSIBILITY_CONSTRAINTS: requests carry accessibility
    /// requirements and PVs get nodeAffinity.
    pub topology: bool,
    /// `--strict-topology`.
    pub strict_topology: bool,
    /// `--immediate-topology`.
    pub immediate_topology: bool,
}

/// Why a claim is left alone (logged at debug, no event), as upstream's
/// `shouldProvision` returning false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `spec.volumeName` is set.
    AlreadyBound,
    /// The storage-provisioner annotation names another provisioner (or none).
    NotOurs,
    /// The StorageClass names another provisioner.
    OtherProvisioner,
    /// WaitForFirstConsumer without a selected node yet.
    WaitingForFirstConsumer,
    /// The PV this claim would get already exists.
    VolumeExists,
    /// The claim is being deleted.
    Deleting,
    /// The data source is of a kind an external volume populator fills
    /// (upstream records a Normal `Provisioning` event and stops).
    ExternalPopulator,
}

/// What to do with a claim.
#[derive(Debug)]
pub enum ClaimDecision {
    /// Leave it.
    Skip(Skip),
    /// Call CreateVolume with this plan and save the PV. When
    /// `record_intent` is true the creation intent must be recorded first
    /// ([`crate::intents`]), so a crash after CreateVolume cannot leak.
    Provision {
        /// The request and PV inputs.
        plan: Box<ProvisionPlan>,
        /// No intent is recorded for the claim yet.
        record_intent: bool,
    },
    /// The PV exists: drop the intent (the log entry, and the older claim
    /// finalizer [`CREATE_INTENT_FINALIZER`] if the claim carries it).
    ReleaseIntent,
    /// The claim is being deleted while CreateVolume may have run and no PV
    /// records the volume: repeat CreateVolume (idempotent by name) to learn
    /// the volume ID, DeleteVolume it, then drop the intent.
    Undo(Box<ProvisionPlan>),
}

/// True when the claim carries our creation-intent finalizer.
pub fn has_create_intent(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == CREATE_INTENT_FINALIZER))
}

/// Everything CreateVolume and the PV need, decided before any call.
#[derive(Clone, Debug)]
pub struct ProvisionPlan {
    /// PV name = CreateVolume name.
    pub pv_name: String,
    /// The request, without secrets: the controller adds those after reading
    /// the Secret so this plan can be logged and compared freely.
    pub request: CreateVolumeRequest,
    /// Where the CreateVolume/DeleteVolume secret lives.
    pub provisioner_secret: Option<SecretRef>,
    /// References written into the PV for later sidecars and kubelet.
    pub pv_secrets: PvSecrets,
    /// Requested bytes (also the PV size when the driver reports 0).
    pub requested_bytes: i64,
    /// fsType for `spec.csi.fsType` (empty = unset; never set for block).
    pub fs_type: String,
    /// `volumeMode: Block`.
    pub block: bool,
    /// The StorageClass name for the PV.
    pub storage_class: String,
    /// PV reclaim policy (StorageClass reclaimPolicy, default Delete).
    pub reclaim_policy: String,
    /// StorageClass mount options.
    pub mount_options: Vec<String>,
    /// `spec.csi.readOnly` (`--controller-publish-readonly` with ROX only).
    pub read_only: bool,
    /// Whether topology is in use (see [`ProvisionConfig::topology`]).
    pub topology: bool,
    /// The claim's VolumeAttributesClass (gate on): the controller reads it
    /// and sends its parameters as `mutable_parameters`; the PV records it.
    pub volume_attributes_class: Option<String>,
    /// The claim's data source; for a clone the controller adds the content
    /// source after checking the source claim (see
    /// [`crate::datasource::clone_source`]).
    pub data_source: DataSource,
    /// The StorageClass names the driver's in-tree plugin and was translated
    /// to CSI ([`crate::migration`]): the PV is saved in the in-tree form, and
    /// the CSI calls for this claim count as `migrated` in the metrics.
    pub migrated: bool,
    /// `pv.kubernetes.io/provisioned-by` of the PV: the class's provisioner,
    /// i.e. the driver, or the in-tree name for a translated class.
    pub provisioned_by: String,
    /// The (translated) class's `provisioner`, which a clone's or restore's
    /// source volume must belong to, as upstream compares them.
    pub class_provisioner: String,
    /// The (translated) class's `allowedTopologies`, for the accessibility
    /// requirements.
    pub allowed_topologies: Vec<TopologySelectorTerm>,
}

/// Secret references that go into the PV's `spec.csi`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PvSecrets {
    /// `controllerPublishSecretRef`.
    pub controller_publish: Option<SecretRef>,
    /// `nodeStageSecretRef`.
    pub node_stage: Option<SecretRef>,
    /// `nodePublishSecretRef`.
    pub node_publish: Option<SecretRef>,
    /// `controllerExpandSecretRef`.
    pub controller_expand: Option<SecretRef>,
    /// `nodeExpandSecretRef`.
    pub node_expand: Option<SecretRef>,
    /// Controller-modify secret, written as PV annotations for
    /// external-resizer.
    pub controller_modify: Option<SecretRef>,
}

/// The provisioner named on the claim (GA annotation, else beta).
pub fn claim_provisioner(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let annotations = pvc.metadata.annotations.as_ref()?;
    annotations
        .get(STORAGE_PROVISIONER)
        .or_else(|| annotations.get(BETA_STORAGE_PROVISIONER))
        .map(String::as_str)
}

/// Decides what to do with `pvc`.
///
/// `class` is the claim's StorageClass from the cache (`None` = not found);
/// `pv_exists` says whether a PV with the planned name is in the cache;
/// `logged` whether the creation-intent record holds an entry for the claim
/// ([`crate::intent_log::IntentLog::is_recorded`]).
///
/// For a migration driver the claim and class may name the in-tree plugin
/// instead of the driver ([`crate::migration`]); such a class is translated
/// to CSI before the request is planned.
///
/// Errors: [`Error::Missing`] (retried) when the class is not in the cache;
/// final errors for claims or classes that can never be provisioned (the
/// caller turns them into `ProvisioningFailed` events).
pub fn decide_claim(
    pvc: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    pv_exists: impl Fn(&str) -> bool,
    logged: bool,
    cfg: &ProvisionConfig,
) -> Result<ClaimDecision, Error> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
    let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    let pv_name = volume_name(&cfg.volume_name_prefix, uid, cfg.volume_name_uuid_length)?;
    let deleting = pvc.metadata.deletion_timestamp.is_some();

    // A recorded intent comes first: whatever else changed, it must end in
    // a PV or a deleted volume.
    let finalizer = has_create_intent(pvc);
    if finalizer || logged {
        let recorded = bound || pv_exists(&pv_name);
        let phase_bound = pvc.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Bound");
        // A log entry goes as soon as the PV exists. The older claim
        // finalizer is released once the binder is done with the claim
        // (phase Bound), so our Update does not race its two writes; or at
        // once for a claim being deleted whose PV exists.
        if phase_bound || (recorded && (deleting || !finalizer)) {
            return Ok(ClaimDecision::ReleaseIntent);
        }
        if recorded {
            return Ok(ClaimDecision::Skip(Skip::VolumeExists));
        }
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let class = class.ok_or_else(|| {
            Error::Missing(format!(
                "storageclass.storage.k8s.io {class_name:?} not found; it is needed to finish or undo the volume creation recorded on this claim"
            ))
        })?;
        check_data_source_namespace(pvc)?;
        let (class, migrated) = class_for_driver(class, &cfg.driver_name)?;
        let plan = Box::new(plan(pvc, &class, migrated, pv_name, cfg)?);
        return Ok(if deleting {
            ClaimDecision::Undo(plan)
        } else {
            ClaimDecision::Provision {
                plan,
                record_intent: false,
            }
        });
    }

    if bound {
        return Ok(ClaimDecision::Skip(Skip::AlreadyBound));
    }
    if deleting {
        return Ok(ClaimDecision::Skip(Skip::Deleting));
    }
    if !claim_is_ours(pvc, &cfg.driver_name) {
        return Ok(ClaimDecision::Skip(Skip::NotOurs));
    }
    let class_name = spec.storage_class_name.clone().unwrap_or_default();
    let class = class.ok_or_else(|| {
        Error::Missing(format!(
            "storageclass.storage.k8s.io {class_name:?} not found"
        ))
    })?;
    if !is_known_provisioner(&class.provisioner, &cfg.driver_name) {
        return Ok(ClaimDecision::Skip(Skip::OtherProvisioner));
    }
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
        && annotations.get(SELECTED_NODE).is_none_or(|n| n.is_empty())
    {
        return Ok(ClaimDecision::Skip(Skip::WaitingForFirstConsumer));
    }
    if pv_exists(&pv_name) {
        return Ok(ClaimDecision::Skip(Skip::VolumeExists));
    }
    // Upstream checks the data source's namespace, translates the class,
    // then looks at the data source kind.
    check_data_source_namespace(pvc)?;
    let (class, migrated) = class_for_driver(class, &cfg.driver_name)?;
    if matches!(data_source(pvc)?, DataSource::Populator { .. }) {
        return Ok(ClaimDecision::Skip(Skip::ExternalPopulator));
    }
    Ok(ClaimDecision::Provision {
        plan: Box::new(plan(pvc, &class, migrated, pv_name, cfg)?),
        record_intent: true,
    })
}

/// Whether the driver can create and delete volumes at all, as the first
/// two checks of upstream's `checkDriverCapabilities` (made before every
/// provision and every deletion).
///
/// Errors: [`Error::Unsupported`] with upstream's text, naming the plugin
/// CONTROLLER_SERVICE or the controller CREATE_DELETE_VOLUME capability.
pub fn create_delete_capability(cfg: &ProvisionConfig) -> Result<(), Error> {
    let missing = if !cfg.controller_service {
        "plugin CONTROLLER_SERVICE"
    } else if !cfg.can_create_delete {
        "controller CREATE_DELETE_VOLUME"
    } else {
        return Ok(());
    };
    Err(Error::Unsupported(format!(
        "CSI driver does not support dynamic provisioning: {missing} capability is not reported"
    )))
}

/// Plans CreateVolume and the PV from `class` as the driver sees it (already
/// translated when `migrated`).
fn plan(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    migrated: bool,
    pv_name: String,
    cfg: &ProvisionConfig,
) -> Result<ProvisionPlan, Error> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let data_source = data_source(pvc)?;
    let volume_attributes_class = spec
        .volume_attributes_class_name
        .clone()
        .filter(|n| cfg.volume_attributes_class && !n.is_empty());
    // Upstream's checkDriverCapabilities, in its order.
    create_delete_capability(cfg)?;
    let missing = match &data_source {
        DataSource::Snapshot(_) if !cfg.can_snapshot => Some(
            "CSI driver does not support snapshot restore: controller CREATE_DELETE_SNAPSHOT capability is not reported",
        ),
        DataSource::Claim(_) if !cfg.can_clone => Some(
            "CSI driver does not support clone operations: controller CLONE_VOLUME capability is not reported",
        ),
        _ if volume_attributes_class.is_some() && !cfg.can_modify => Some(
            "CSI driver does not support VolumeAttributesClass: controller MODIFY_VOLUME capability is not reported",
        ),
        _ => None,
    };
    if let Some(why) = missing {
        return Err(Error::Unsupported(why.into()));
    }
    if spec.selector.is_some() {
        return Err(Error::InvalidClaim(
            "claim Selector is not supported".into(),
        ));
    }
    let params = class.parameters.clone().unwrap_or_default();
    let fs_type = fs_type(&params, &cfg.default_fstype)?;
    // As Go's `Quantity.Value()` of a missing request (the API server
    // refuses such claims anyway).
    let requested_bytes = quantity::claim_request_bytes(pvc).unwrap_or(0);
    let block = spec.volume_mode.as_deref() == Some("Block");
    let access_modes = spec.access_modes.clone().unwrap_or_default();
    let mount_options = class.mount_options.clone().unwrap_or_default();
    let volume_capabilities = volume_capabilities(
        &access_modes,
        block,
        &fs_type,
        &mount_options,
        cfg.single_node_multi_writer,
    )?;

    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    let ctx = TemplateContext {
        pv_name: &pv_name,
        pvc_name: pvc.metadata.name.as_deref(),
        pvc_namespace: pvc.metadata.namespace.as_deref(),
        pvc_annotations: Some(&annotations),
    };
    let provisioner_secret = secret_reference(SecretKind::Provisioner, &params, &ctx)?;
    let pv_secrets = PvSecrets {
        controller_publish: secret_reference(SecretKind::ControllerPublish, &params, &ctx)?,
        node_stage: secret_reference(SecretKind::NodeStage, &params, &ctx)?,
        node_publish: secret_reference(SecretKind::NodePublish, &params, &ctx)?,
        controller_expand: secret_reference(SecretKind::ControllerExpand, &params, &ctx)?,
        node_expand: secret_reference(SecretKind::NodeExpand, &params, &ctx)?,
        controller_modify: secret_reference(SecretKind::ControllerModify, &params, &ctx)?,
    };

    let mut parameters: BTreeMap<String, String> = strip_reserved(&params)?;
    if cfg.extra_create_metadata {
        add_extra_metadata(
            &mut parameters,
            pvc.metadata.name.as_deref().unwrap_or_default(),
            pvc.metadata.namespace.as_deref().unwrap_or_default(),
            &pv_name,
        );
    }
    let request = CreateVolumeRequest {
        name: pv_name.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: requested_bytes,
            limit_bytes: 0,
        }),
        volume_capabilities,
        parameters: parameters.into_iter().collect(),
        ..Default::default()
    };
    let read_only = cfg.controller_publish_readonly
        && access_modes.len() == 1
        && access_modes[0] == "ReadOnlyMany";
    Ok(ProvisionPlan {
        pv_name,
        request,
        provisioner_secret,
        pv_secrets,
        requested_bytes,
        fs_type: if block { String::new() } else { fs_type },
        block,
        storage_class: class.metadata.name.clone().unwrap_or_default(),
        reclaim_policy: class
            .reclaim_policy
            .clone()
            .unwrap_or_else(|| "Delete".into()),
        mount_options,
        read_only,
        data_source,
        topology: cfg.topology,
        volume_attributes_class,
        migrated,
        provisioned_by: match crate::migration::in_tree_name(&cfg.driver_name) {
            Some(in_tree) if migrated => in_tree.to_owned(),
            _ => cfg.driver_name.clone(),
        },
        class_provisioner: if migrated {
            class.provisioner.clone()
        } else {
            cfg.driver_name.clone()
        },
        allowed_topologies: class.allowed_topologies.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) const DRIVER: &str = "hostpath.csi.k8s.io";
    pub(crate) const UID: &str = "0d7a7ad9-1c44-4b3f-9a6f-3d7c7b1f2e11";

    pub(crate) fn cfg() -> ProvisionConfig {
        ProvisionConfig {
            driver_name: DRIVER.into(),
            volume_name_prefix: "pvc".into(),
            volume_name_uuid_length: -1,
            default_fstype: String::new(),
            extra_create_metadata: false,
            controller_publish_readonly: false,
            controller_service: true,
            can_create_delete: true,
            single_node_multi_writer: false,
            can_clone: true,
            can_modify: true,
            can_snapshot: true,
            prevent_volume_mode_conversion: true,
            volume_attributes_class: true,
            topology: false,
            strict_topology: false,
            immediate_topology: true,
        }
    }

    pub(crate) fn class(params: &[(&str, &str)]) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some("fast".into()),
                ..Default::default()
            },
            provisioner: DRIVER.into(),
            parameters: Some(
                params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            reclaim_policy: Some("Delete".into()),
            mount_options: Some(vec!["noatime".into()]),
            ..Default::default()
        }
    }

    pub(crate) fn claim() -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("team-a".into()),
                uid: Some(UID.into()),
                resource_version: Some("7".into()),
                annotations: Some([(STORAGE_PROVISIONER.to_string(), DRIVER.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some("fast".into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn provision(
        pvc: &PersistentVolumeClaim,
        sc: &StorageClass,
        c: &ProvisionConfig,
    ) -> Result<ProvisionPlan, Error> {
        match decide_claim(pvc, Some(sc), |_| false, false, c)? {
            ClaimDecision::Provision {
                plan,
                record_intent,
            } => {
                assert!(record_intent, "a fresh claim needs its intent recorded");
                Ok(*plan)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn plans_create_volume_from_claim_and_class() {
        let sc = class(&[
            ("type", "fast"),
            ("csi.storage.k8s.io/fstype", "xfs"),
            ("csi.storage.k8s.io/provisioner-secret-name", "creds"),
            (
                "csi.storage.k8s.io/provisioner-secret-namespace",
                "${pvc.namespace}",
            ),
            ("csi.storage.k8s.io/node-stage-secret-name", "stage"),
            (
                "csi.storage.k8s.io/node-stage-secret-namespace",
                "kube-system",
            ),
        ]);
        let plan = provision(&claim(), &sc, &cfg()).unwrap();
        assert_eq!(plan.pv_name, format!("pvc-{UID}"));
        assert_eq!(plan.request.name, plan.pv_name);
        assert_eq!(plan.request.capacity_range.unwrap().required_bytes, 1 << 30);
        assert_eq!(plan.request.parameters.len(), 1);
        assert_eq!(plan.request.parameters["type"], "fast");
        assert!(
            plan.request.secrets.is_empty(),
            "secrets are added only after the Secret is read"
        );
        assert_eq!(plan.fs_type, "xfs");
        assert_eq!(
            plan.provisioner_secret,
            Some(SecretRef {
                name: "creds".into(),
                namespace: "team-a".into()
            })
        );
        assert_eq!(
            plan.pv_secrets.node_stage,
            Some(SecretRef {
                name: "stage".into(),
                namespace: "kube-system".into()
            })
        );
        assert_eq!(plan.pv_secrets.controller_publish, None);
        assert_eq!(plan.reclaim_policy, "Delete");
        assert_eq!(plan.mount_options, vec!["noatime".to_string()]);
    }

    #[test]
    fn extra_metadata_and_uuid_length() {
        let mut c = cfg();
        c.extra_create_metadata = true;
        c.volume_name_prefix = "vol".into();
        c.volume_name_uuid_length = 6;
        let plan = provision(&claim(), &class(&[]), &c).unwrap();
        assert_eq!(plan.pv_name, "vol-0d7a7a");
        assert_eq!(
            plan.request.parameters["csi.storage.k8s.io/pv/name"],
            "vol-0d7a7a"
        );
        assert_eq!(
            plan.request.parameters["csi.storage.k8s.io/pvc/name"],
            "data"
        );
        assert_eq!(
            plan.request.parameters["csi.storage.k8s.io/pvc/namespace"],
            "team-a"
        );
    }

    #[test]
    fn skips_follow_upstream() {
        let c = cfg();
        let sc = class(&[]);
        let mut bound = claim();
        bound.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
        let mut other = claim();
        other.metadata.annotations =
            Some([(STORAGE_PROVISIONER.to_string(), "other.csi".to_string())].into());
        let mut beta = claim();
        beta.metadata.annotations =
            Some([(BETA_STORAGE_PROVISIONER.to_string(), DRIVER.to_string())].into());
        let mut other_class = class(&[]);
        other_class.provisioner = "other.csi".into();
        let mut wffc = class(&[]);
        wffc.volume_binding_mode = Some("WaitForFirstConsumer".into());
        let skip =
            |pvc: &PersistentVolumeClaim, sc: &StorageClass, exists: bool| match decide_claim(
                pvc,
                Some(sc),
                |_| exists,
                false,
                &c,
            )
            .unwrap()
            {
                ClaimDecision::Skip(s) => Some(s),
                _ => None,
            };
        assert_eq!(skip(&bound, &sc, false), Some(Skip::AlreadyBound));
        assert_eq!(skip(&other, &sc, false), Some(Skip::NotOurs));
        assert_eq!(skip(&beta, &sc, false), None, "beta annotation is honoured");
        assert_eq!(
            skip(&claim(), &other_class, false),
            Some(Skip::OtherProvisioner)
        );
        assert_eq!(
            skip(&claim(), &wffc, false),
            Some(Skip::WaitingForFirstConsumer)
        );
        assert_eq!(skip(&claim(), &sc, true), Some(Skip::VolumeExists));
        let mut selected = claim();
        selected
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(SELECTED_NODE.into(), "node-1".into());
        assert_eq!(skip(&selected, &wffc, false), None);
    }

    #[test]
    fn missing_class_is_retried_not_final() {
        let err = decide_claim(&claim(), None, |_| false, false, &cfg()).unwrap_err();
        assert!(matches!(err, Error::Missing(_)));
        assert!(!err.is_final());
    }

    #[test]
    fn final_errors() {
        let mut sel = claim();
        sel.spec.as_mut().unwrap().selector = Some(Default::default());
        assert_eq!(
            provision(&sel, &class(&[]), &cfg())
                .unwrap_err()
                .to_string(),
            "claim Selector is not supported"
        );
        let bad = provision(
            &claim(),
            &class(&[("csi.storage.k8s.io/nope", "1")]),
            &cfg(),
        )
        .unwrap_err();
        assert!(bad.is_final());
        let mut no_caps = cfg();
        no_caps.can_create_delete = false;
        assert!(
            provision(&claim(), &class(&[]), &no_caps)
                .unwrap_err()
                .to_string()
                .contains("does not support dynamic provisioning")
        );
    }

    /// The ProvisioningFailed texts of the checks made before any call, as
    /// upstream words them (external-provisioner: pkg/controller/controller.go
    /// prepareProvision and checkDriverCapabilities).
    #[test]
    fn final_error_texts_match_upstream() {
        use k8s_openapi::api::core::v1::{TypedLocalObjectReference, TypedObjectReference};
        let with_source = |kind: &str, group: Option<&str>| {
            let mut c = claim();
            c.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
                api_group: group.map(str::to_string),
                kind: kind.into(),
                name: "src".into(),
            });
            c
        };
        let snapshot = with_source("VolumeSnapshot", Some("snapshot.storage.k8s.io"));
        let clone = with_source("PersistentVolumeClaim", None);
        let mut vac = claim();
        vac.spec.as_mut().unwrap().volume_attributes_class_name = Some("gold".into());
        let mut selector = claim();
        selector.spec.as_mut().unwrap().selector = Some(Default::default());
        let mut cross = claim();
        cross.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: "src".into(),
            namespace: Some("other".into()),
        });
        let mut bad_mode = claim();
        bad_mode.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteSometimes".into()]);
        let no_plugin = ProvisionConfig {
            controller_service: false,
            can_create_delete: false,
            ..cfg()
        };
        let no_create = ProvisionConfig {
            can_create_delete: false,
            ..cfg()
        };
        let no_snapshot = ProvisionConfig {
            can_snapshot: false,
            ..cfg()
        };
        let no_clone = ProvisionConfig {
            can_clone: false,
            ..cfg()
        };
        let no_modify = ProvisionConfig {
            can_modify: false,
            ..cfg()
        };
        let plain = class(&[]);
        let two_fstypes = class(&[("fstype", "ext4"), ("csi.storage.k8s.io/fstype", "xfs")]);
        let bogus = class(&[("csi.storage.k8s.io/bogus", "1")]);
        type Case<'a> = (
            &'a str,
            PersistentVolumeClaim,
            &'a StorageClass,
            ProvisionConfig,
            &'a str,
        );
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("no CONTROLLER_SERVICE", claim(), &plain, no_plugin.clone(), "CSI driver does not support dynamic provisioning: plugin CONTROLLER_SERVICE capability is not reported"),
            ("no CONTROLLER_SERVICE beats no snapshot", snapshot.clone(), &plain, ProvisionConfig { can_snapshot: false, ..no_plugin }, "CSI driver does not support dynamic provisioning: plugin CONTROLLER_SERVICE capability is not reported"),
            ("no CREATE_DELETE_VOLUME", claim(), &plain, no_create, "CSI driver does not support dynamic provisioning: controller CREATE_DELETE_VOLUME capability is not reported"),
            ("no CREATE_DELETE_SNAPSHOT", snapshot, &plain, no_snapshot, "CSI driver does not support snapshot restore: controller CREATE_DELETE_SNAPSHOT capability is not reported"),
            ("no CLONE_VOLUME", clone, &plain, no_clone, "CSI driver does not support clone operations: controller CLONE_VOLUME capability is not reported"),
            ("no MODIFY_VOLUME", vac, &plain, no_modify, "CSI driver does not support VolumeAttributesClass: controller MODIFY_VOLUME capability is not reported"),
            ("selector", selector, &plain, cfg(), "claim Selector is not supported"),
            ("cross-namespace source", cross, &plain, cfg(), "dataSourceRef namespace specified but the CrossNamespaceVolumeDataSource feature is disabled"),
            ("two fsType keys", claim(), &two_fstypes, cfg(), "fstype specified in parameters with both \"fstype\" and \"csi.storage.k8s.io/fstype\" keys"),
            ("unknown access mode", bad_mode, &plain, cfg(), "unsupported AccessMode combination: [ReadWriteSometimes]"),
            ("unknown reserved key", claim(), &bogus, cfg(), "failed to strip CSI Parameters of prefixed keys: found unknown parameter key \"csi.storage.k8s.io/bogus\" with reserved namespace csi.storage.k8s.io/"),
        ];
        for (what, pvc, sc, c, want) in cases {
            let err = decide_claim(&pvc, Some(sc), |_| false, false, &c).unwrap_err();
            assert_eq!(err.to_string(), want, "{what}");
        }
    }

    #[test]
    fn create_delete_capability_passes_a_capable_driver() {
        assert!(create_delete_capability(&cfg()).is_ok());
    }

    #[test]
    fn block_claims_have_no_fs_type_and_rox_readonly_is_opt_in() {
        let mut blk = claim();
        blk.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let plan = provision(
            &blk,
            &class(&[("csi.storage.k8s.io/fstype", "ext4")]),
            &cfg(),
        )
        .unwrap();
        assert!(plan.block);
        assert_eq!(plan.fs_type, "");
        let mut rox = claim();
        rox.spec.as_mut().unwrap().access_modes = Some(vec!["ReadOnlyMany".into()]);
        assert!(!provision(&rox, &class(&[]), &cfg()).unwrap().read_only);
        let mut c = cfg();
        c.controller_publish_readonly = true;
        assert!(provision(&rox, &class(&[]), &c).unwrap().read_only);
    }

    #[test]
    fn default_fstype_applies_when_class_has_none() {
        let mut c = cfg();
        c.default_fstype = "ext4".into();
        assert_eq!(
            provision(&claim(), &class(&[]), &c).unwrap().fs_type,
            "ext4"
        );
    }

    fn with_intent(mut pvc: PersistentVolumeClaim) -> PersistentVolumeClaim {
        pvc.metadata.finalizers = Some(vec![
            "kubernetes.io/pvc-protection".into(),
            CREATE_INTENT_FINALIZER.into(),
        ]);
        pvc
    }

    fn deleting(mut pvc: PersistentVolumeClaim) -> PersistentVolumeClaim {
        pvc.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        pvc
    }

    #[test]
    fn recorded_intent_is_finished_released_or_undone() {
        let c = cfg();
        let sc = class(&[]);
        // Intent recorded, no PV yet, claim alive: provision without writing the intent again.
        match decide_claim(&with_intent(claim()), Some(&sc), |_| false, false, &c).unwrap() {
            ClaimDecision::Provision { record_intent, .. } => assert!(!record_intent),
            other => panic!("{other:?}"),
        }
        // The PV exists but the binder is not done: wait, no write that would race it.
        assert!(matches!(
            decide_claim(&with_intent(claim()), Some(&sc), |_| true, false, &c).unwrap(),
            ClaimDecision::Skip(Skip::VolumeExists)
        ));
        // Bound (also after a crash between PV create and release): release.
        let mut bound = with_intent(claim());
        bound.spec.as_mut().unwrap().volume_name = Some("pv".into());
        bound.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        assert!(matches!(
            decide_claim(&bound, Some(&sc), |_| false, false, &c).unwrap(),
            ClaimDecision::ReleaseIntent
        ));
        // Deleted mid-provisioning, no PV: undo with the same request.
        match decide_claim(
            &deleting(with_intent(claim())),
            Some(&sc),
            |_| false,
            false,
            &c,
        )
        .unwrap()
        {
            ClaimDecision::Undo(plan) => assert_eq!(plan.request.name, format!("pvc-{UID}")),
            other => panic!("{other:?}"),
        }
        // Deleted after the PV was saved: just release; the PV's own lifecycle deletes the volume.
        assert!(matches!(
            decide_claim(
                &deleting(with_intent(claim())),
                Some(&sc),
                |_| true,
                false,
                &c
            )
            .unwrap(),
            ClaimDecision::ReleaseIntent
        ));
        // Without our intent a deleting claim is left alone, as upstream.
        assert!(matches!(
            decide_claim(&deleting(claim()), Some(&sc), |_| false, false, &c).unwrap(),
            ClaimDecision::Skip(Skip::Deleting)
        ));
    }

    #[test]
    fn logged_intent_is_released_as_soon_as_the_pv_exists() {
        let c = cfg();
        let sc = class(&[]);
        // Logged, no PV, claim alive (a restart mid-CreateVolume): repeat it
        // without recording again.
        match decide_claim(&claim(), Some(&sc), |_| false, true, &c).unwrap() {
            ClaimDecision::Provision { record_intent, .. } => assert!(!record_intent),
            other => panic!("{other:?}"),
        }
        // The PV exists: the entry goes at once; no claim write races the binder.
        assert!(matches!(
            decide_claim(&claim(), Some(&sc), |_| true, true, &c).unwrap(),
            ClaimDecision::ReleaseIntent
        ));
        // Deleted (or gone: the sweep decides on the recorded claim marked
        // deleted) with no PV: undo.
        match decide_claim(&deleting(claim()), Some(&sc), |_| false, true, &c).unwrap() {
            ClaimDecision::Undo(plan) => assert_eq!(plan.request.name, format!("pvc-{UID}")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide_claim(&deleting(claim()), Some(&sc), |_| true, true, &c).unwrap(),
            ClaimDecision::ReleaseIntent
        ));
        // Neither record: a fresh claim records its intent first.
        match decide_claim(&claim(), Some(&sc), |_| false, false, &c).unwrap() {
            ClaimDecision::Provision { record_intent, .. } => assert!(record_intent),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undo_without_the_class_is_retried_with_a_clear_reason() {
        let err = decide_claim(
            &deleting(with_intent(claim())),
            None,
            |_| false,
            false,
            &cfg(),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Missing(ref m) if m.contains("finish or undo")),
            "{err}"
        );
    }

    #[test]
    fn data_sources_in_the_plan() {
        use k8s_openapi::api::core::v1::{TypedLocalObjectReference, TypedObjectReference};
        let mut clone = claim();
        clone.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: "src".into(),
        });
        assert_eq!(
            provision(&clone, &class(&[]), &cfg()).unwrap().data_source,
            DataSource::Claim("src".into())
        );
        let mut no_clone = cfg();
        no_clone.can_clone = false;
        assert!(
            provision(&clone, &class(&[]), &no_clone)
                .unwrap_err()
                .is_final()
        );
        let mut populated = claim();
        populated.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: Some("hello.example.com".into()),
            kind: "Hello".into(),
            name: "h".into(),
            namespace: None,
        });
        assert!(matches!(
            decide_claim(&populated, Some(&class(&[])), |_| false, false, &cfg()).unwrap(),
            ClaimDecision::Skip(Skip::ExternalPopulator)
        ));
    }

    #[test]
    fn volume_attributes_class_needs_modify_volume() {
        let mut vac = claim();
        vac.spec.as_mut().unwrap().volume_attributes_class_name = Some("gold".into());
        assert_eq!(
            provision(&vac, &class(&[]), &cfg())
                .unwrap()
                .volume_attributes_class
                .as_deref(),
            Some("gold")
        );
        let mut no_modify = cfg();
        no_modify.can_modify = false;
        let err = provision(&vac, &class(&[]), &no_modify).unwrap_err();
        assert!(
            err.is_final() && err.to_string().contains("VolumeAttributesClass"),
            "{err}"
        );
        let mut gate_off = no_modify.clone();
        gate_off.volume_attributes_class = false;
        assert_eq!(
            provision(&vac, &class(&[]), &gate_off)
                .unwrap()
                .volume_attributes_class,
            None
        );
    }
}
