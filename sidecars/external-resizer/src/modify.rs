//! The VolumeAttributesClass rules as pure functions: which claim updates
//! matter, what a claim needs (modify to which class, cancel, wait, or
//! nothing), and the status each step writes, with upstream's texts.
//!
//! Source: kubernetes-csi/external-resizer v2.2.0, pkg/modifycontroller
//! (controller.go `updatePVC`/`syncPVC`, modify_volume.go `modify`,
//! `delayModificationIfRecentlyInfeasible`, `controllerModifyVolumeWithTarget`,
//! `callModifyVolumeOnPlugin`; modify_status.go `markControllerModifyVolumeStatus`,
//! `markControllerModifyVolumeCompleted`, `markRolledBack`) and
//! pkg/util/util.go `MergePVCConditions`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ModifyVolumeStatus, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sidecar_runtime::gofmt::quote;
use tonic::Code;

use crate::names::{condition, modify_status};

/// `ControllerModifyVolume` parameters added with `--extra-modify-metadata`.
pub const PVC_NAME_KEY: &str = "csi.storage.k8s.io/pvc/name";
/// See [`PVC_NAME_KEY`].
pub const PVC_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pvc/namespace";
/// See [`PVC_NAME_KEY`].
pub const PV_NAME_KEY: &str = "csi.storage.k8s.io/pv/name";

fn spec_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref())
        .unwrap_or("")
}

fn current_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.current_volume_attributes_class_name.as_deref())
        .unwrap_or("")
}

fn modify_state(pvc: &PersistentVolumeClaim) -> Option<&ModifyVolumeStatus> {
    pvc.status
        .as_ref()
        .and_then(|s| s.modify_volume_status.as_ref())
}

fn phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's `updatePVC` filter of the modify controller: the class
/// changed or no modify status is recorded, on a Bound claim (the PV
/// check is the caller's).
pub fn update_matters(old: &PersistentVolumeClaim, new: &PersistentVolumeClaim) -> bool {
    (spec_class(old) != spec_class(new) || modify_state(new).is_none()) && phase(new) == "Bound"
}

/// Whether the claim is this driver's: Bound and its PV a CSI volume of
/// `driver` (`syncPVC`).
pub fn is_mine(pvc: &PersistentVolumeClaim, pv: &PersistentVolume, driver: &str) -> bool {
    phase(pvc) == "Bound"
        && pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .is_some_and(|c| c.driver == driver)
}

/// What to do with a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Spec class equals current class and nothing is in progress.
    Nothing,
    /// The same target failed as infeasible within `--retry-interval-max`.
    Delay {
        /// Upstream's log text.
        message: String,
        /// Time left.
        after: Duration,
    },
    /// Spec class cleared while not in progress: drop `ModifyingVolume`
    /// and send `VolumeModifyCanceled` when that condition is there.
    RolledBack {
        /// The condition is present (else nothing is written).
        had_condition: bool,
    },
    /// Keep working toward the recorded target without touching the
    /// status first (an uncertain in-progress call, or the spec class was
    /// cleared while in progress).
    Resume {
        /// `status.modifyVolumeStatus.targetVolumeAttributesClassName`.
        target: String,
    },
    /// Look up the spec class: missing → `Pending`; else mark `InProgress`
    /// and call ControllerModifyVolume.
    Start {
        /// `spec.volumeAttributesClassName`.
        class: String,
    },
}

/// `modify`'s decision. `slow_remaining` is the time left in the slow-set
/// window when the key is in it; `uncertain` when the last call for the
/// key ended with a non-final error.
pub fn plan(
    pvc: &PersistentVolumeClaim,
    key: &str,
    slow_remaining: Option<Duration>,
    uncertain: bool,
) -> Plan {
    let state = modify_state(pvc);
    let spec = spec_class(pvc);
    let same_target = state.is_some_and(|s| {
        pvc.spec
            .as_ref()
            .and_then(|p| p.volume_attributes_class_name.as_deref())
            .is_some_and(|c| {
                s.target_volume_attributes_class_name
                    .as_deref()
                    .unwrap_or("")
                    == c
            })
    });
    if same_target && let Some(after) = slow_remaining {
        return Plan::Delay {
            message: format!(
                "skipping volume modification for pvc {key}, because modification previously failed with infeasible error"
            ),
            after,
        };
    }
    if state.is_none() && spec == current_class(pvc) {
        return Plan::Nothing;
    }
    let in_progress = state.is_some_and(|s| s.status == modify_status::IN_PROGRESS);
    if spec.is_empty() && !in_progress {
        return Plan::RolledBack {
            had_condition: has_condition(pvc, condition::MODIFYING_VOLUME),
        };
    }
    if (in_progress && uncertain) || spec.is_empty() {
        return Plan::Resume {
            target: state
                .and_then(|s| s.target_volume_attributes_class_name.clone())
                .unwrap_or_default(),
        };
    }
    Plan::Start {
        class: spec.to_string(),
    }
}

/// Whether the slow set should (re)start its window for this claim: its
/// modify status says `Infeasible` (`markForSlowRetry`).
pub fn is_infeasible(pvc: &PersistentVolumeClaim) -> bool {
    modify_state(pvc).is_some_and(|s| s.status == modify_status::INFEASIBLE)
}

/// Whether the slow set entry no longer applies: no status, no spec class,
/// or a target other than the spec class.
pub fn slow_entry_obsolete(pvc: &PersistentVolumeClaim) -> bool {
    let Some(s) = modify_state(pvc) else {
        return true;
    };
    match pvc
        .spec
        .as_ref()
        .and_then(|p| p.volume_attributes_class_name.as_deref())
    {
        None => true,
        Some(c) => {
            s.target_volume_attributes_class_name
                .as_deref()
                .unwrap_or("")
                != c
        }
    }
}

fn has_condition(pvc: &PersistentVolumeClaim, type_: &str) -> bool {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_))
}

/// A failed ControllerModifyVolume, as the status records it.
#[derive(Clone, Debug)]
pub struct ModifyFailure {
    /// The gRPC code.
    pub code: Code,
    /// The gRPC message.
    pub message: String,
}

/// `MergePVCConditions`: same-type conditions replaced (their transition
/// time kept unless reason or status changed, else the probe time), new
/// ones appended with their probe time as transition time.
pub fn merge_conditions(
    old: &[PersistentVolumeClaimCondition],
    new: Vec<PersistentVolumeClaimCondition>,
) -> Vec<PersistentVolumeClaimCondition> {
    let mut pending: Vec<Option<PersistentVolumeClaimCondition>> =
        new.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for o in old {
        match pending
            .iter_mut()
            .find(|n| n.as_ref().is_some_and(|n| n.type_ == o.type_))
        {
            Some(slot) => {
                let mut n = slot.take().unwrap_or_default();
                n.last_transition_time = if n.reason != o.reason || n.status != o.status {
                    n.last_probe_time.clone()
                } else {
                    o.last_transition_time.clone()
                };
                out.push(n);
            }
            None => out.push(o.clone()),
        }
    }
    for mut n in pending.into_iter().flatten() {
        n.last_transition_time = n.last_probe_time.clone();
        out.push(n);
    }
    out
}

/// `markControllerModifyVolumeStatus`: sets `modifyVolumeStatus.status`;
/// except for `Pending`, the `ModifyingVolume` condition (and on failure
/// `ModifyVolumeError` with the gRPC code name as reason and its message);
/// without a failure the target becomes the spec class. Written with a
/// resourceVersion precondition.
pub fn mark_status(
    pvc: &PersistentVolumeClaim,
    state: &str,
    failure: Option<&ModifyFailure>,
    now: &Time,
) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let spec = spec_class(pvc).to_string();
    let status = new.status.get_or_insert_default();
    let mvs = status.modify_volume_status.get_or_insert_default();
    mvs.status = state.into();
    if state == modify_status::PENDING {
        return new;
    }
    let mut modifying = PersistentVolumeClaimCondition {
        type_: condition::MODIFYING_VOLUME.into(),
        status: "True".into(),
        last_probe_time: Some(now.clone()),
        ..Default::default()
    };
    let mut conditions = Vec::new();
    match failure {
        None => {
            mvs.target_volume_attributes_class_name = Some(spec.clone());
            modifying.message = Some(format!(
                "Modifying volume to {} is in progress.",
                quote(&spec)
            ));
            conditions.push(modifying);
        }
        Some(f) => {
            let target = mvs
                .target_volume_attributes_class_name
                .clone()
                .unwrap_or_default();
            modifying.message = Some(if csi_client::is_final_code(f.code) {
                format!(
                    "Modifying volume to {} failed. Waiting for retry.",
                    quote(&target)
                )
            } else {
                format!(
                    "Modifying volume to {} is still in progress.",
                    quote(&target)
                )
            });
            conditions.push(modifying);
            conditions.push(PersistentVolumeClaimCondition {
                type_: condition::MODIFY_VOLUME_ERROR.into(),
                status: "True".into(),
                reason: Some(csi_client::metrics::code_name(f.code).into()),
                message: Some(f.message.clone()),
                last_probe_time: Some(now.clone()),
                ..Default::default()
            });
        }
    }
    let old = status.conditions.take().unwrap_or_default();
    status.conditions = Some(merge_conditions(&old, conditions));
    new
}

/// `markControllerModifyVolumeCompleted` (claim part): no modify status,
/// current class = the target, modify conditions removed. Written without
/// a resourceVersion precondition, after the PV's
/// `spec.volumeAttributesClassName` was patched.
pub fn mark_completed(pvc: &PersistentVolumeClaim) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    let status = new.status.get_or_insert_default();
    let target = status
        .modify_volume_status
        .take()
        .and_then(|s| s.target_volume_attributes_class_name)
        .unwrap_or_default();
    status.current_volume_attributes_class_name = Some(target);
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| {
            c.type_ != condition::MODIFYING_VOLUME && c.type_ != condition::MODIFY_VOLUME_ERROR
        });
    }
    new
}

/// `markRolledBack`: only `ModifyingVolume` removed.
pub fn mark_rolled_back(pvc: &PersistentVolumeClaim) -> PersistentVolumeClaim {
    let mut new = pvc.clone();
    if let Some(cs) = new.status.get_or_insert_default().conditions.as_mut() {
        cs.retain(|c| c.type_ != condition::MODIFYING_VOLUME);
    }
    new
}

/// The ControllerModifyVolume parameters: the class's, plus with
/// `--extra-modify-metadata` the claim and PV names.
pub fn parameters(
    class_params: Option<&BTreeMap<String, String>>,
    extra: bool,
    pvc: &PersistentVolumeClaim,
    pv_name: &str,
) -> BTreeMap<String, String> {
    let mut p = class_params.cloned().unwrap_or_default();
    if extra {
        p.insert(
            PVC_NAME_KEY.into(),
            pvc.metadata.name.clone().unwrap_or_default(),
        );
        p.insert(
            PVC_NAMESPACE_KEY.into(),
            pvc.metadata.namespace.clone().unwrap_or_default(),
        );
        p.insert(PV_NAME_KEY.into(), pv_name.into());
    }
    p
}

/// Event texts.
pub mod text {
    use sidecar_runtime::gofmt::quote;

    /// Warning `VolumeModifyFailed` when the class is missing.
    pub fn class_missing(class: &str) -> String {
        format!("VAC {} does not exist.", quote(class))
    }
    /// Normal `VolumeModify`.
    pub fn modifying(pvc: &str, class: &str) -> String {
        format!("external resizer is modifying volume {pvc} with vac {class}")
    }
    /// Normal `VolumeModifySuccessful`.
    pub fn modified(pvc: &str, class: &str) -> String {
        format!("external resizer modified volume {pvc} with vac {class} successfully")
    }
    /// Warning `VolumeModifyFailed` after a non-final error.
    pub fn still_modifying(error: &str, class: &str) -> String {
        format!("{error}. Still modifying to VAC {class}")
    }
    /// Normal `VolumeModifyCanceled`.
    pub const CANCELED: &str = "Cancelled modify.";
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeClaimStatus};

    fn claim(
        spec: Option<&str>,
        current: Option<&str>,
        state: Option<(&str, &str)>,
    ) -> PersistentVolumeClaim {
        let mut pvc = PersistentVolumeClaim::default();
        pvc.metadata.name = Some("c".into());
        pvc.metadata.namespace = Some("ns".into());
        pvc.spec = Some(PersistentVolumeClaimSpec {
            volume_attributes_class_name: spec.map(Into::into),
            volume_name: Some("pv".into()),
            ..Default::default()
        });
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            current_volume_attributes_class_name: current.map(Into::into),
            modify_volume_status: state.map(|(s, t)| ModifyVolumeStatus {
                status: s.into(),
                target_volume_attributes_class_name: Some(t.into()),
            }),
            ..Default::default()
        });
        pvc
    }

    #[test]
    fn plans() {
        assert_eq!(
            plan(&claim(Some("a"), Some("a"), None), "k", None, false),
            Plan::Nothing
        );
        assert_eq!(
            plan(&claim(None, None, None), "k", None, false),
            Plan::Nothing
        );
        assert_eq!(
            plan(&claim(Some("b"), Some("a"), None), "k", None, false),
            Plan::Start { class: "b".into() }
        );
        assert_eq!(
            plan(
                &claim(None, Some("a"), Some(("Infeasible", "b"))),
                "k",
                None,
                false
            ),
            Plan::RolledBack {
                had_condition: false
            }
        );
        assert_eq!(
            plan(
                &claim(None, Some("a"), Some(("InProgress", "b"))),
                "k",
                None,
                false
            ),
            Plan::Resume { target: "b".into() }
        );
        assert_eq!(
            plan(
                &claim(Some("b"), Some("a"), Some(("InProgress", "b"))),
                "k",
                None,
                true
            ),
            Plan::Resume { target: "b".into() }
        );
        assert_eq!(
            plan(
                &claim(Some("b"), Some("a"), Some(("InProgress", "b"))),
                "k",
                None,
                false
            ),
            Plan::Start { class: "b".into() }
        );
        assert!(matches!(
            plan(&claim(Some("b"), Some("a"), Some(("Infeasible", "b"))), "ns/c", Some(Duration::from_secs(9)), false),
            Plan::Delay { after, .. } if after == Duration::from_secs(9)
        ));
        // Another target than the one that failed is not delayed.
        assert_eq!(
            plan(
                &claim(Some("c"), Some("a"), Some(("Infeasible", "b"))),
                "k",
                Some(Duration::from_secs(9)),
                false
            ),
            Plan::Start { class: "c".into() }
        );
    }

    #[test]
    fn enqueue_filter() {
        let old = claim(Some("a"), Some("a"), None);
        assert!(update_matters(&old, &claim(Some("b"), Some("a"), None)));
        assert!(update_matters(&old, &old.clone()), "no modify status");
        let with_status = claim(Some("a"), Some("a"), Some(("InProgress", "a")));
        assert!(!update_matters(&with_status, &with_status.clone()));
    }

    #[test]
    fn status_texts() {
        let now = Time(jiff::Timestamp::UNIX_EPOCH);
        let pvc = claim(Some("gold"), Some("silver"), None);
        let ip = mark_status(&pvc, "InProgress", None, &now);
        let s = ip.status.clone().unwrap();
        assert_eq!(
            s.modify_volume_status
                .as_ref()
                .unwrap()
                .target_volume_attributes_class_name
                .as_deref(),
            Some("gold")
        );
        let c = &s.conditions.unwrap()[0];
        assert_eq!(
            c.message.as_deref(),
            Some("Modifying volume to \"gold\" is in progress.")
        );
        assert_eq!(c.last_transition_time, Some(now.clone()));
        let f = ModifyFailure {
            code: Code::InvalidArgument,
            message: "bad iops".into(),
        };
        let inf = mark_status(&ip, "Infeasible", Some(&f), &now);
        let cs = inf.status.clone().unwrap().conditions.unwrap();
        assert_eq!(
            cs[0].message.as_deref(),
            Some("Modifying volume to \"gold\" failed. Waiting for retry.")
        );
        assert_eq!(cs[1].reason.as_deref(), Some("InvalidArgument"));
        assert_eq!(cs[1].message.as_deref(), Some("bad iops"));
        let u = ModifyFailure {
            code: Code::DeadlineExceeded,
            message: "slow".into(),
        };
        let unc = mark_status(&ip, "InProgress", Some(&u), &now);
        assert_eq!(
            unc.status.unwrap().conditions.unwrap()[0]
                .message
                .as_deref(),
            Some("Modifying volume to \"gold\" is still in progress.")
        );
        let pending = mark_status(&pvc, "Pending", None, &now);
        assert!(pending.status.as_ref().unwrap().conditions.is_none());
        let done = mark_completed(&inf);
        let s = done.status.unwrap();
        assert!(s.modify_volume_status.is_none());
        assert_eq!(
            s.current_volume_attributes_class_name.as_deref(),
            Some("gold")
        );
        assert!(s.conditions.unwrap().is_empty());
        assert_eq!(text::class_missing("x"), "VAC \"x\" does not exist.");
    }

    #[test]
    fn extra_metadata() {
        let pvc = claim(Some("a"), None, None);
        let base: BTreeMap<String, String> = [("iops".to_string(), "3000".to_string())].into();
        assert_eq!(parameters(Some(&base), false, &pvc, "pv"), base);
        let p = parameters(Some(&base), true, &pvc, "pv");
        assert_eq!(p[PVC_NAME_KEY], "c");
        assert_eq!(p[PVC_NAMESPACE_KEY], "ns");
        assert_eq!(p[PV_NAME_KEY], "pv");
    }
}
