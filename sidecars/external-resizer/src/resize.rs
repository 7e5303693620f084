//! The expansion rules as pure functions: which claim updates matter, what
//! a claim/PV pair needs (expand to which size, or nothing), and the status
//! each step writes, with upstream's texts. [`crate::controller`] does the
//! I/O around them.
//!
//! Source: kubernetes-csi/external-resizer v2.2.0, pkg/controller
//! (controller.go `updatePVC`/`syncPVC`/`pvcNeedResize`,
//! expand_and_recover.go `expandAndRecover`/`pvCanBeExpanded`,
//! resize_status.go `mark*`) and pkg/util/util.go
//! (`MergeResizeConditionsOfPVC`, `IsFinalError`, `IsInfeasibleError`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimCondition,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};
use tonic::Code;

use crate::names::{FS_RESIZE_PENDING_MESSAGE, condition, resize_status};
use crate::names::{NODE_EXPANSION_NOT_REQUIRED, PRE_RESIZE_CAPACITY, RESIZER_ANNOTATION};

/// The `storage` entry of a resource map.
pub fn storage(map: Option<&BTreeMap<String, Quantity>>) -> Option<&Quantity> {
    map.and_then(|m| m.get("storage"))
}

/// A quantity in bytes (`Quantity.Value()`); text that is not a quantity
/// counts as 0, as a zero `resource.Quantity` does upstream.
pub fn bytes(q: Option<&Quantity>) -> i64 {
    q.and_then(|q| sidecar_runtime::quantity::to_bytes(&q.0).ok())
        .unwrap_or(0)
}

fn request(pvc: &PersistentVolumeClaim) -> Option<&Quantity> {
    storage(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

fn capacity(pvc: &PersistentVolumeClaim) -> Option<&Quantity> {
    storage(pvc.status.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn pv_capacity(pv: &PersistentVolume) -> Option<&Quantity> {
    storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn allocated(pvc: &PersistentVolumeClaim) -> Option<&Quantity> {
    storage(
        pvc.status
            .as_ref()
            .and_then(|s| s.allocated_resources.as_ref()),
    )
}

/// `status.allocatedResourceStatuses["storage"]`, "" when unset.
pub fn resize_state(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .and_then(|m| m.get("storage"))
        .map(String::as_str)
        .unwrap_or("")
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Upstream's `updatePVC` filter: whether a claim update is worth a sync.
/// `recover` is the RecoverVolumeExpansionFailure gate, under which any
/// request change (a decrease too) and any change of the resize status
/// counts.
pub fn update_matters(
    old: &PersistentVolumeClaim,
    new: &PersistentVolumeClaim,
    recover: bool,
) -> bool {
    let (old_req, new_req) = (bytes(request(old)), bytes(request(new)));
    let request_changed = if recover {
        new_req != old_req
    } else {
        new_req > old_req
    };
    if request_changed
        || annotation(&old.metadata, RESIZER_ANNOTATION)
            != annotation(&new.metadata, RESIZER_ANNOTATION)
    {
        return true;
    }
    new.metadata.resource_version == old.metadata.resource_version
        || bytes(capacity(new)) > bytes(capacity(old))
        || (recover && resize_state(new) != resize_state(old))
}

/// What this resizer knows about its driver.
#[derive(Clone, Debug)]
pub struct DriverInfo {
    /// GetPluginInfo's name.
    pub name: String,
    /// The driver replaces an in-tree plugin (CSI migration).
    pub migrated: bool,
    /// CONTROLLER_SERVICE + EXPAND_VOLUME; false for the "trivial"
    /// resizer of node-only expansion.
    pub controller_expand: bool,
}

/// `CanSupport` and the claimRef check of `pvCanBeExpanded`: the PV is
/// this driver's (or a migrated claim names this driver as resizer) and
/// bound to this very claim.
pub fn pv_can_be_expanded(
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
    driver: &DriverInfo,
) -> bool {
    let supported = (driver.migrated
        && annotation(&pvc.metadata, RESIZER_ANNOTATION) == Some(driver.name.as_str()))
        || pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .is_some_and(|c| c.driver == driver.name);
    let bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.namespace == pvc.metadata.namespace && r.uid == pvc.metadata.uid);
    supported && bound
}

/// `pvcNeedResize`: Bound, with a volume, and asking for more than its
/// status capacity.
pub fn claim_needs_resize(pvc: &PersistentVolumeClaim) -> bool {
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let has_volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    bound && has_volume && bytes(request(pvc)) > bytes(capacity(pvc))
}

/// Whether the PV's pre-resize annotation can go: the claim's status
/// capacity has caught up with the PV (`syncPVC`, gate AnnotateFsResize).
pub fn pre_resize_annotation_done(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    annotation(&pv.metadata, PRE_RESIZE_CAPACITY).is_some()
        && bytes(capacity(pvc)) >= bytes(pv_capacity(pv))
}

/// What to do with a claim that asks for more than it has.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Nothing: node expansion is under way, or the PV already has the
    /// size.
    Nothing,
    /// The same size failed as infeasible within `--retry-interval-max`:
    /// look again after this long without calling the driver.
    Delay {
        /// Upstream's log text.
        message: String,
        /// Time left in the slow-set window.
        after: Duration,
    },
    /// Mark `Resizing` and call ControllerExpandVolume for `size`.
    Expand {
        /// The target size.
        size: Quantity,
        /// Write `allocatedResourceStatuses` and drop old resize
        /// conditions (false when retrying the size already recorded).
        update_status: bool,
    },
}

/// The in-memory state upstream keeps per claim key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// The last ControllerExpandVolume ended with a final error.
    pub final_error: bool,
    /// Time left in the slow-set window of an infeasible size, if any.
    pub slow_remaining: Option<Duration>,
}

/// `expandAndRecover`'s choice of the size to expand to
/// (RecoverVolumeExpansionFailure), for a claim that passed
/// [`pv_can_be_expanded`] and [`claim_needs_resize`].
pub fn plan_expansion(
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    controller_expand: bool,
    mem: Memory,
    key: &str,
) -> Plan {
    let spec = request(pvc).cloned().unwrap_or_default();
    let spec_bytes = bytes(Some(&spec));
    let pv_bytes = bytes(pv_capacity(pv));
    let alloc = allocated(pvc).cloned();
    let alloc_or_spec = || alloc.clone().unwrap_or_else(|| spec.clone());
    let state = resize_state(pvc);
    use resize_status::*;
    let size = if pv_bytes < spec_bytes {
        match state {
            NODE_INFEASIBLE => alloc_or_spec(),
            NODE_PENDING | NODE_IN_PROGRESS => {
                let size = alloc_or_spec();
                if pv_bytes >= bytes(Some(&size)) {
                    return Plan::Nothing;
                }
                size
            }
            CONTROLLER_IN_PROGRESS if mem.final_error => spec.clone(),
            CONTROLLER_IN_PROGRESS => alloc_or_spec(),
            _ => spec.clone(),
        }
    } else {
        match state {
            NODE_IN_PROGRESS | NODE_PENDING => return Plan::Nothing,
            NODE_INFEASIBLE if controller_expand && alloc.is_some() => alloc_or_spec(),
            NODE_INFEASIBLE => spec.clone(),
            CONTROLLER_IN_PROGRESS | CONTROLLER_INFEASIBLE => alloc_or_spec(),
            "" if alloc.is_some() => alloc_or_spec(),
            _ => {
                if has_condition(pvc, condition::FS_RESIZE_PENDING) {
                    return Plan::Nothing;
                }
                spec.clone()
            }
        }
    };
    let mut update_status = true;
    if alloc
        .as_ref()
        .is_some_and(|a| bytes(Some(a)) == bytes(Some(&size)))
    {
        if let Some(after) = mem.slow_remaining {
            return Plan::Delay {
                message: format!(
                    "skipping volume expansion for pvc {key}, because expansion previously failed with infeasible error"
                ),
                after,
            };
        }
        update_status = false;
    }
    Plan::Expand {
        size,
        update_status,
    }
}

fn has_condition(pvc: &PersistentVolumeClaim, type_: &str) -> bool {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// How a ControllerExpandVolume failure is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The driver is certainly not working on it any more.
    pub final_: bool,
    /// InvalidArgument, OutOfRange or NotFound: `ControllerResizeInfeasible`.
    pub infeasible: bool,
    /// FailedPrecondition: the volume may be in use (offline-only driver).
    pub in_use: bool,
}

/// `IsFinalError`/`IsInfeasibleError`/`inUseError` of a failed call;
/// `None` (no gRPC status) is neither final nor infeasible.
pub fn classify(code: Option<Code>) -> Failure {
    let Some(code) = code else {
        return Failure {
            final_: false,
            infeasible: false,
            in_use: false,
        };
    };
    Failure {
        final_: csi_client::is_final_code(code),
        infeasible: matches!(
            code,
            Code::InvalidArgument | Code::OutOfRange | Code::NotFound
        ),
        in_use: code == Code::FailedPrecondition,
    }
}

/// `MergeResizeConditionsOfPVC`: non-resize conditions stay; resize
/// conditions named in `new` are replaced in place; other resize
/// conditions are kept only with `keep_old`; the rest of `new` is appended.
pub fn merge_resize_conditions(
    old: &[PersistentVolumeClaimCondition],
    new: Vec<PersistentVolumeClaimCondition>,
    keep_old: bool,
) -> Vec<PersistentVolumeClaimCondition> {
    let mut pending = new;
    let mut out = Vec::new();
    for c in old {
        if !condition::RESIZE.contains(&c.type_.as_str()) {
            out.push(c.clone());
        } else if let Some(i) = pending.iter().position(|n| n.type_ == c.type_) {
            out.push(pending.remove(i));
        } else if keep_old {
            out.push(c.clone());
        }
    }
    out.extend(pending);
    out
}

fn cond(type_: &str, message: Option<String>, now: &Time) -> PersistentVolumeClaimCondition {
    PersistentVolumeClaimCondition {
        type_: type_.into(),
        status: "True".into(),
        last_transition_time: Some(now.clone()),
        message,
        ..Default::default()
    }
}

fn conditions(pvc: &PersistentVolumeClaim) -> &[PersistentVolumeClaimCondition] {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn set_annotation(pvc: &mut PersistentVolumeClaim, key: &str, value: Option<&str>) {
    let annotations = pvc.metadata.annotations.get_or_insert_default();
    match value {
        Some(v) => {
            annotations.insert(key.into(), v.into());
        }
        None => {
            annotations.remove(key);
        }
    }
}

fn set_state(pvc: &mut PersistentVolumeClaim, state: &str) {
    let status = pvc.status.get_or_insert_default();
    status
        .allocated_resource_statuses
        .get_or_insert_default()
        .insert("storage".into(), state.into());
}

/// `markControllerResizeInProgress`: `Resizing=True` (other resize
/// conditions dropped when `update_status`, else kept), no
/// node-expansion-not-required annotation, `allocatedResources.storage =
/// size`, and with `update_status` `ControllerResizeInProgress`. Written
/// with a resourceVersion precondition.
pub fn mark_in_progress(
    pvc: &PersistentVolumeClaim,
    size: &Quantity,
    update_status: bool,
    now: &Time,
) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(
        conditions(pvc),
        vec![cond(condition::RESIZING, None, now)],
        !update_status,
    );
    set_annotation(&mut new, NODE_EXPANSION_NOT_REQUIRED, None);
    if update_status {
        set_state(&mut new, resize_status::CONTROLLER_IN_PROGRESS);
    }
    let status = new.status.get_or_insert_default();
    status.conditions = Some(merged);
    status
        .allocated_resources
        .get_or_insert_default()
        .insert("storage".into(), size.clone());
    new
}

/// `markForPendingNodeExpansion`: `FileSystemResizePending=True` with its
/// message (other resize conditions kept), no node-expansion-not-required
/// annotation, `NodeResizePending`. Written with a resourceVersion
/// precondition.
pub fn mark_node_pending(pvc: &PersistentVolumeClaim, now: &Time) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(
        conditions(pvc),
        vec![cond(
            condition::FS_RESIZE_PENDING,
            Some(FS_RESIZE_PENDING_MESSAGE.into()),
            now,
        )],
        true,
    );
    set_annotation(&mut new, NODE_EXPANSION_NOT_REQUIRED, None);
    set_state(&mut new, resize_status::NODE_PENDING);
    new.status.get_or_insert_default().conditions = Some(merged);
    new
}

/// `markControllerExpansionInfeasible` / `markControllerExpansionFailedCondition`:
/// `ControllerResizeError=True` with `failed to expand pvc with <error>`
/// (other resize conditions kept) and, when `infeasible`,
/// `ControllerResizeInfeasible`. Upstream writes it without a
/// resourceVersion precondition.
pub fn mark_failed(
    pvc: &PersistentVolumeClaim,
    error: &str,
    infeasible: bool,
    now: &Time,
) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(
        conditions(pvc),
        vec![cond(
            condition::CONTROLLER_RESIZE_ERROR,
            Some(format!("failed to expand pvc with {error}")),
            now,
        )],
        true,
    );
    if infeasible {
        set_state(&mut new, resize_status::CONTROLLER_INFEASIBLE);
    }
    new.status.get_or_insert_default().conditions = Some(merged);
    new
}

/// `markOverallExpansionAsFinished`: `status.capacity.storage = size`, all
/// resize conditions dropped, the `storage` resize status deleted (the map
/// too when empty), node-expansion-not-required `"true"`. Written with a
/// resourceVersion precondition.
pub fn mark_finished(pvc: &PersistentVolumeClaim, size: &Quantity) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(conditions(pvc), Vec::new(), false);
    set_annotation(&mut new, NODE_EXPANSION_NOT_REQUIRED, Some("true"));
    let status = new.status.get_or_insert_default();
    status
        .capacity
        .get_or_insert_default()
        .insert("storage".into(), size.clone());
    status.conditions = Some(merged);
    if let Some(m) = status.allocated_resource_statuses.as_mut() {
        m.remove("storage");
        if m.is_empty() {
            status.allocated_resource_statuses = None;
        }
    }
    new
}

/// Legacy path (RecoverVolumeExpansionFailure off), `pvNeedResize` past
/// the support checks: a PV already as large as the request is resized
/// again only while no `FileSystemResizePending` is recorded.
pub fn legacy_needs_resize(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    bytes(pv_capacity(pv)) < bytes(request(pvc))
        || !has_condition(pvc, condition::FS_RESIZE_PENDING)
}

/// Legacy `markPVCResizeInProgress`: `Resizing=True`, other resize
/// conditions dropped; nothing else. Written with a resourceVersion
/// precondition.
pub fn legacy_mark_in_progress(pvc: &PersistentVolumeClaim, now: &Time) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(
        conditions(pvc),
        vec![cond(condition::RESIZING, None, now)],
        false,
    );
    new.status.get_or_insert_default().conditions = Some(merged);
    new
}

/// Legacy `markPVCAsFSResizeRequired`: `FileSystemResizePending=True`,
/// other resize conditions dropped.
pub fn legacy_mark_node_pending(pvc: &PersistentVolumeClaim, now: &Time) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(
        conditions(pvc),
        vec![cond(
            condition::FS_RESIZE_PENDING,
            Some(FS_RESIZE_PENDING_MESSAGE.into()),
            now,
        )],
        false,
    );
    new.status.get_or_insert_default().conditions = Some(merged);
    new
}

/// Legacy `markPVCResizeFinished`: `status.capacity.storage = size`, resize
/// conditions dropped.
pub fn legacy_mark_finished(pvc: &PersistentVolumeClaim, size: &Quantity) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let merged = merge_resize_conditions(conditions(pvc), Vec::new(), false);
    let status = new.status.get_or_insert_default();
    status
        .capacity
        .get_or_insert_default()
        .insert("storage".into(), size.clone());
    status.conditions = Some(merged);
    new
}

/// The JSON merge patch of the claim's `status` subresource that turns
/// `old` into `new`: the status fields the resizer writes (whole
/// condition list, capacity, allocatedResources, allocatedResourceStatuses,
/// modifyVolumeStatus, currentVolumeAttributesClassName) and annotation
/// changes, with `metadata.resourceVersion` as precondition when
/// `check_version`. Upstream sends the equivalent strategic-merge patch;
/// RBAC grants `patch` on `persistentvolumeclaims/status` only.
pub fn claim_status_patch(
    old: &PersistentVolumeClaim,
    new: &PersistentVolumeClaim,
    check_version: bool,
) -> Value {
    let mut meta = Map::new();
    if check_version && let Some(rv) = &old.metadata.resource_version {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    let (oa, na) = (
        old.metadata.annotations.clone().unwrap_or_default(),
        new.metadata.annotations.clone().unwrap_or_default(),
    );
    let mut ann = Map::new();
    for (k, v) in &na {
        if oa.get(k) != Some(v) {
            ann.insert(k.clone(), json!(v));
        }
    }
    for k in oa.keys().filter(|k| !na.contains_key(*k)) {
        ann.insert(k.clone(), Value::Null);
    }
    if !ann.is_empty() {
        meta.insert("annotations".into(), Value::Object(ann));
    }
    let os = serde_json::to_value(old.status.clone().unwrap_or_default()).unwrap_or_default();
    let ns = serde_json::to_value(new.status.clone().unwrap_or_default()).unwrap_or_default();
    let mut status = Map::new();
    for field in [
        "conditions",
        "capacity",
        "allocatedResources",
        "allocatedResourceStatuses",
        "modifyVolumeStatus",
        "currentVolumeAttributesClassName",
    ] {
        let (o, n) = (os.get(field), ns.get(field));
        if o != n {
            status.insert(field.into(), n.cloned().unwrap_or(Value::Null));
        }
    }
    let mut patch = Map::new();
    if !meta.is_empty() {
        patch.insert("metadata".into(), Value::Object(meta));
    }
    patch.insert("status".into(), Value::Object(status));
    Value::Object(patch)
}

/// `updatePVCapacity`: the PV patch after a successful expansion,
/// `spec.capacity.storage = new_size`, and with AnnotateFsResize and node
/// expansion required the pre-resize annotation (`old_size`, the claim's
/// status capacity) unless the PV already has one.
pub fn pv_capacity_patch(
    pv: &PersistentVolume,
    new_size: &Quantity,
    old_size: &Quantity,
    fs_resize_required: bool,
    annotate: bool,
) -> Value {
    let mut patch = json!({"spec": {"capacity": {"storage": new_size}}});
    if annotate && fs_resize_required && annotation(&pv.metadata, PRE_RESIZE_CAPACITY).is_none() {
        patch["metadata"] = json!({"annotations": {PRE_RESIZE_CAPACITY: old_size.0}});
    }
    patch
}

/// Orders two quantities by value.
pub fn cmp(a: &Quantity, b: &Quantity) -> Ordering {
    bytes(Some(a)).cmp(&bytes(Some(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, ObjectReference, PersistentVolumeClaimSpec,
        PersistentVolumeClaimStatus, PersistentVolumeSpec, VolumeResourceRequirements,
    };

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn claim(
        spec: &str,
        cap: &str,
        state: Option<&str>,
        alloc: Option<&str>,
    ) -> PersistentVolumeClaim {
        let mut pvc = PersistentVolumeClaim::default();
        pvc.metadata.name = Some("c".into());
        pvc.metadata.namespace = Some("ns".into());
        pvc.metadata.uid = Some("u1".into());
        pvc.metadata.resource_version = Some("7".into());
        pvc.spec = Some(PersistentVolumeClaimSpec {
            volume_name: Some("pv1".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), q(spec))].into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            capacity: Some([("storage".to_string(), q(cap))].into()),
            allocated_resource_statuses: state
                .map(|s| [("storage".to_string(), s.to_string())].into()),
            allocated_resources: alloc.map(|a| [("storage".to_string(), q(a))].into()),
            ..Default::default()
        });
        pvc
    }

    fn volume(cap: &str, driver: &str) -> PersistentVolume {
        let mut pv = PersistentVolume::default();
        pv.metadata.name = Some("pv1".into());
        pv.spec = Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), q(cap))].into()),
            csi: Some(CSIPersistentVolumeSource {
                driver: driver.into(),
                volume_handle: "h".into(),
                ..Default::default()
            }),
            claim_ref: Some(ObjectReference {
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        pv
    }

    fn driver() -> DriverInfo {
        DriverInfo {
            name: "d".into(),
            migrated: false,
            controller_expand: true,
        }
    }

    fn expand(size: &str, update_status: bool) -> Plan {
        Plan::Expand {
            size: q(size),
            update_status,
        }
    }

    #[test]
    fn support_needs_driver_and_claim_ref() {
        let pvc = claim("2Gi", "1Gi", None, None);
        assert!(pv_can_be_expanded(&volume("1Gi", "d"), &pvc, &driver()));
        assert!(!pv_can_be_expanded(
            &volume("1Gi", "other"),
            &pvc,
            &driver()
        ));
        let mut pv = volume("1Gi", "d");
        pv.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("u2".into());
        assert!(!pv_can_be_expanded(&pv, &pvc, &driver()));
        // A migrated driver serves claims annotated with its name.
        let mut intree = volume("1Gi", "d");
        intree.spec.as_mut().unwrap().csi = None;
        let mut annotated = pvc.clone();
        annotated.metadata.annotations =
            Some([(RESIZER_ANNOTATION.to_string(), "d".to_string())].into());
        let migrated = DriverInfo {
            migrated: true,
            ..driver()
        };
        assert!(pv_can_be_expanded(&intree, &annotated, &migrated));
        assert!(!pv_can_be_expanded(&intree, &annotated, &driver()));
    }

    #[test]
    fn needs_resize_only_when_bound_and_larger() {
        assert!(claim_needs_resize(&claim("2Gi", "1Gi", None, None)));
        assert!(!claim_needs_resize(&claim("1Gi", "1Gi", None, None)));
        let mut pending = claim("2Gi", "1Gi", None, None);
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(!claim_needs_resize(&pending));
    }

    /// The table of kubernetes-csi/external-resizer's expand_and_recover_test.go,
    /// as plain values.
    #[test]
    fn expansion_size_table() {
        let pv1 = volume("1Gi", "d");
        let pv2 = volume("2Gi", "d");
        let m = Memory::default();
        let fin = Memory {
            final_error: true,
            ..m
        };
        use resize_status::*;
        let cases: Vec<(&str, PersistentVolumeClaim, &PersistentVolume, Memory, Plan)> = vec![
            (
                "fresh",
                claim("2Gi", "1Gi", None, None),
                &pv1,
                m,
                expand("2Gi", true),
            ),
            (
                "retry same size",
                claim("2Gi", "1Gi", Some(CONTROLLER_IN_PROGRESS), Some("2Gi")),
                &pv1,
                m,
                expand("2Gi", false),
            ),
            (
                "lowered after final error",
                claim("1500Mi", "1Gi", Some(CONTROLLER_IN_PROGRESS), Some("3Gi")),
                &pv1,
                fin,
                expand("1500Mi", true),
            ),
            (
                "lowered, maybe in flight",
                claim("1500Mi", "1Gi", Some(CONTROLLER_IN_PROGRESS), Some("3Gi")),
                &pv1,
                m,
                expand("3Gi", false),
            ),
            (
                "lowered after infeasible",
                claim("1500Mi", "1Gi", Some(CONTROLLER_INFEASIBLE), Some("3Gi")),
                &pv1,
                m,
                expand("1500Mi", true),
            ),
            (
                "node pending",
                claim("2Gi", "1Gi", Some(NODE_PENDING), Some("2Gi")),
                &pv2,
                m,
                Plan::Nothing,
            ),
            (
                "node in progress",
                claim("2Gi", "1Gi", Some(NODE_IN_PROGRESS), Some("2Gi")),
                &pv2,
                m,
                Plan::Nothing,
            ),
            (
                "node pending, bigger again",
                claim("3Gi", "1Gi", Some(NODE_PENDING), Some("3Gi")),
                &pv2,
                m,
                expand("3Gi", false),
            ),
            (
                "node infeasible, pv done",
                claim("2Gi", "1Gi", Some(NODE_INFEASIBLE), Some("2Gi")),
                &pv2,
                m,
                expand("2Gi", false),
            ),
            (
                "pv done, state lost",
                claim("2Gi", "1Gi", None, Some("2Gi")),
                &pv2,
                m,
                expand("2Gi", false),
            ),
            (
                "pv done, old api-server",
                claim("2Gi", "1Gi", None, None),
                &pv2,
                m,
                expand("2Gi", true),
            ),
        ];
        for (name, pvc, pv, mem, want) in cases {
            assert_eq!(plan_expansion(&pvc, pv, true, mem, "ns/c"), want, "{name}");
        }
        let trivial = claim("2Gi", "1Gi", Some(NODE_INFEASIBLE), Some("3Gi"));
        assert_eq!(
            plan_expansion(&trivial, &pv2, false, m, "k"),
            expand("2Gi", true)
        );
        let mut fs_pending = claim("2Gi", "1Gi", None, None);
        fs_pending.status.as_mut().unwrap().conditions = Some(vec![cond(
            condition::FS_RESIZE_PENDING,
            None,
            &Time(jiff::Timestamp::UNIX_EPOCH),
        )]);
        assert_eq!(
            plan_expansion(&fs_pending, &pv2, true, m, "k"),
            Plan::Nothing
        );
    }

    #[test]
    fn infeasible_same_size_waits_for_the_slow_window() {
        let pvc = claim(
            "3Gi",
            "1Gi",
            Some(resize_status::CONTROLLER_INFEASIBLE),
            Some("3Gi"),
        );
        let mem = Memory {
            final_error: true,
            slow_remaining: Some(Duration::from_secs(42)),
        };
        assert_eq!(
            plan_expansion(&pvc, &volume("1Gi", "d"), true, mem, "ns/c"),
            Plan::Delay {
                message: "skipping volume expansion for pvc ns/c, because expansion previously failed with infeasible error".into(),
                after: Duration::from_secs(42)
            }
        );
    }

    #[test]
    fn update_filter() {
        let old = claim("1Gi", "1Gi", None, None);
        let mut bigger = claim("2Gi", "1Gi", None, None);
        bigger.metadata.resource_version = Some("8".into());
        assert!(update_matters(&old, &bigger, true));
        let mut smaller = claim("500Mi", "1Gi", None, None);
        smaller.metadata.resource_version = Some("8".into());
        assert!(update_matters(&old, &smaller, true));
        assert!(!update_matters(&old, &smaller, false));
        let mut label_only = old.clone();
        label_only.metadata.resource_version = Some("8".into());
        label_only.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(!update_matters(&old, &label_only, true));
        assert!(update_matters(&old, &old.clone(), true), "resync");
        let mut state = label_only.clone();
        state.status.as_mut().unwrap().allocated_resource_statuses =
            Some([("storage".to_string(), "NodeResizeInfeasible".to_string())].into());
        assert!(update_matters(&old, &state, true));
    }

    #[test]
    fn classification() {
        let inv = classify(Some(Code::InvalidArgument));
        assert!(inv.final_ && inv.infeasible && !inv.in_use);
        let fp = classify(Some(Code::FailedPrecondition));
        assert!(fp.final_ && !fp.infeasible && fp.in_use);
        assert!(!classify(Some(Code::DeadlineExceeded)).final_);
        assert!(!classify(Some(Code::Aborted)).final_);
        assert!(classify(Some(Code::Internal)).final_);
        assert!(!classify(None).final_);
    }

    #[test]
    fn status_writers_and_their_patches() {
        let now = Time(jiff::Timestamp::UNIX_EPOCH);
        let mut pvc = claim("2Gi", "1Gi", None, None);
        pvc.metadata.annotations =
            Some([(NODE_EXPANSION_NOT_REQUIRED.to_string(), "true".to_string())].into());
        pvc.status.as_mut().unwrap().conditions = Some(vec![
            cond("Other", None, &now),
            cond(condition::CONTROLLER_RESIZE_ERROR, Some("x".into()), &now),
        ]);
        let ip = mark_in_progress(&pvc, &q("2Gi"), true, &now);
        let patch = claim_status_patch(&pvc, &ip, true);
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(
            patch["metadata"]["annotations"][NODE_EXPANSION_NOT_REQUIRED],
            Value::Null
        );
        assert_eq!(patch["status"]["allocatedResources"]["storage"], "2Gi");
        assert_eq!(
            patch["status"]["allocatedResourceStatuses"]["storage"],
            "ControllerResizeInProgress"
        );
        let types: Vec<_> = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Other", "Resizing"]);
        // Retrying the recorded size keeps the old resize conditions.
        let retry = mark_in_progress(&pvc, &q("2Gi"), false, &now);
        assert_eq!(retry.status.unwrap().conditions.unwrap().len(), 3);

        let failed = mark_failed(
            &ip,
            "rpc error: code = OutOfRange desc = too big",
            true,
            &now,
        );
        let patch = claim_status_patch(&ip, &failed, false);
        assert!(patch.get("metadata").is_none());
        assert_eq!(
            patch["status"]["allocatedResourceStatuses"]["storage"],
            "ControllerResizeInfeasible"
        );
        let last = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["type"], "ControllerResizeError");
        assert_eq!(
            last["message"],
            "failed to expand pvc with rpc error: code = OutOfRange desc = too big"
        );

        let pending = mark_node_pending(&ip, &now);
        let c = pending.status.as_ref().unwrap().conditions.clone().unwrap();
        assert!(c.iter().any(|c| c.type_ == "FileSystemResizePending"
            && c.message.as_deref() == Some(FS_RESIZE_PENDING_MESSAGE)));
        assert_eq!(resize_state(&pending), "NodeResizePending");

        let done = mark_finished(&ip, &q("2Gi"));
        let patch = claim_status_patch(&ip, &done, true);
        assert_eq!(patch["status"]["capacity"]["storage"], "2Gi");
        assert_eq!(patch["status"]["allocatedResourceStatuses"], Value::Null);
        assert_eq!(
            patch["metadata"]["annotations"][NODE_EXPANSION_NOT_REQUIRED],
            "true"
        );
        let types: Vec<_> = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Other"]);
    }

    #[test]
    fn legacy_path() {
        let now = Time(jiff::Timestamp::UNIX_EPOCH);
        let mut pvc = claim("2Gi", "1Gi", None, None);
        assert!(legacy_needs_resize(&pvc, &volume("1Gi", "d")));
        assert!(
            legacy_needs_resize(&pvc, &volume("2Gi", "d")),
            "status not recorded yet"
        );
        pvc.status.as_mut().unwrap().conditions = Some(vec![
            cond("Other", None, &now),
            cond(condition::FS_RESIZE_PENDING, None, &now),
        ]);
        assert!(!legacy_needs_resize(&pvc, &volume("2Gi", "d")));
        let ip = legacy_mark_in_progress(&pvc, &now);
        let types: Vec<_> = ip
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.clone())
            .collect();
        assert_eq!(types, ["Other", "Resizing"]);
        assert!(ip.status.as_ref().unwrap().allocated_resources.is_none());
        let pending = legacy_mark_node_pending(&ip, &now);
        let types: Vec<_> = pending
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.clone())
            .collect();
        assert_eq!(types, ["Other", "FileSystemResizePending"]);
        let done = legacy_mark_finished(&ip, &q("2Gi"));
        let patch = claim_status_patch(&ip, &done, true);
        assert_eq!(patch["status"]["capacity"]["storage"], "2Gi");
        assert!(patch["metadata"].get("annotations").is_none());
    }

    #[test]
    fn pv_patch_and_annotation() {
        let pv = volume("1Gi", "d");
        let p = pv_capacity_patch(&pv, &q("2Gi"), &q("1Gi"), true, true);
        assert_eq!(p["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(p["metadata"]["annotations"][PRE_RESIZE_CAPACITY], "1Gi");
        assert!(
            pv_capacity_patch(&pv, &q("2Gi"), &q("1Gi"), true, false)
                .get("metadata")
                .is_none()
        );
        let pvc = claim("2Gi", "2Gi", None, None);
        let mut annotated = volume("2Gi", "d");
        annotated.metadata.annotations =
            Some([(PRE_RESIZE_CAPACITY.to_string(), "1Gi".to_string())].into());
        assert!(pre_resize_annotation_done(&pvc, &annotated));
        assert!(!pre_resize_annotation_done(&pvc, &pv));
    }
}
