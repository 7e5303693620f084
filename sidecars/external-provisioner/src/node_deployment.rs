//! `--node-deployment`: one provisioner per node, each creating volumes only
//! on its own node (`external-provisioner: pkg/controller/controller.go`
//! `internalNodeDeployment`, `ShouldProvision`).
//!
//! Rules here are pure; the claim and volume controllers apply them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::annotations::{ALPHA_SELECTED_NODE, SELECTED_NODE};

/// This instance's node, from `NODE_NAME` and NodeGetInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// `NODE_NAME`.
    pub name: String,
    /// NodeGetInfo `node_id`.
    pub node_id: String,
    /// NodeGetInfo `accessible_topology.segments` (empty without topology).
    pub segment: BTreeMap<String, String>,
}

impl NodeInfo {
    /// The Node and CSINode a kubelet would show for this node, built from
    /// NodeGetInfo (upstream replaces its Node/CSINode informers with these
    /// in node mode), so the topology rules run unchanged.
    pub fn fake_objects(&self, driver: &str) -> (Node, CSINode) {
        let meta = ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(self.segment.clone()),
            ..Default::default()
        };
        let node = Node {
            metadata: meta.clone(),
            ..Default::default()
        };
        let csinode = CSINode {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: CSINodeSpec {
                drivers: vec![CSINodeDriver {
                    name: driver.to_string(),
                    node_id: self.node_id.clone(),
                    topology_keys: Some(self.segment.keys().cloned().collect()),
                    ..Default::default()
                }],
            },
        };
        (node, csinode)
    }
}

/// What this node's instance does with a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeCheck {
    /// The claim is for this node: provision it.
    Provision,
    /// Another node's, or not claimable: leave it.
    Ignore,
    /// An Immediate claim no node has taken yet: try to become its owner by
    /// setting `volume.kubernetes.io/selected-node` to this node.
    Claim,
}

/// The selected node named on a claim (GA key, else the alpha key).
pub fn selected_node(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let a = pvc.metadata.annotations.as_ref()?;
    a.get(SELECTED_NODE)
        .or_else(|| a.get(ALPHA_SELECTED_NODE))
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

/// Upstream's `checkNode`: a selected node decides; without one, only
/// Immediate classes are claimable (with `--node-deployment-immediate-binding`)
/// and only when the class's allowedTopologies, if any, admit this node.
pub fn check_node(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &NodeInfo,
    immediate_binding: bool,
) -> NodeCheck {
    match selected_node(pvc) {
        Some(n) if n == node.name => NodeCheck::Provision,
        Some(_) => NodeCheck::Ignore,
        None => {
            let immediate = class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer");
            if immediate && immediate_binding && allowed_here(class, &node.segment) {
                NodeCheck::Claim
            } else {
                NodeCheck::Ignore
            }
        }
    }
}

/// True when `class.allowedTopologies` is empty or one of its terms matches
/// `segment` (each expression's key present with one of its values).
fn allowed_here(class: &StorageClass, segment: &BTreeMap<String, String>) -> bool {
    let terms = class.allowed_topologies.as_deref().unwrap_or_default();
    terms.is_empty()
        || terms.iter().any(|t| {
            t.match_label_expressions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .all(|e| {
                    segment
                        .get(&e.key)
                        .is_some_and(|v| e.values.iter().any(|x| x == v))
                })
        })
}

/// The wait before the `attempt`-th try (0-based) to claim a claim:
/// `base·2^attempt` capped at `max`, minus up to `base` of jitter
/// (`jitter` in [0, 1)), so instances on many nodes do not all write at once.
pub fn claim_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    capped.saturating_sub(base.mul_f64(jitter.clamp(0.0, 1.0)))
}

/// True when `pv` can be deleted by this node's instance: its nodeAffinity
/// admits `segment`. A PV without nodeAffinity is admitted, as upstream's
/// node-affinity match treats a missing selector.
pub fn volume_is_local(pv: &PersistentVolume, segment: &BTreeMap<String, String>) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        term.match_expressions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|e| match e.operator.as_str() {
                "In" => segment
                    .get(&e.key)
                    .is_some_and(|v| e.values.as_deref().unwrap_or_default().contains(v)),
                "NotIn" => segment
                    .get(&e.key)
                    .is_none_or(|v| !e.values.as_deref().unwrap_or_default().contains(v)),
                "Exists" => segment.contains_key(&e.key),
                "DoesNotExist" => !segment.contains_key(&e.key),
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
        TopologySelectorLabelRequirement, TopologySelectorTerm, VolumeNodeAffinity,
    };

    const KEY: &str = "topology.hostpath.csi/node";

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            node_id: name.into(),
            segment: [(KEY.to_string(), name.to_string())].into(),
        }
    }

    fn pvc(selected: Option<&str>) -> PersistentVolumeClaim {
        let mut p = PersistentVolumeClaim::default();
        if let Some(n) = selected {
            p.metadata.annotations = Some([(SELECTED_NODE.to_string(), n.to_string())].into());
        }
        p
    }

    fn class(mode: &str, allowed: &[&str]) -> StorageClass {
        StorageClass {
            volume_binding_mode: Some(mode.into()),
            allowed_topologies: (!allowed.is_empty()).then(|| {
                vec![TopologySelectorTerm {
                    match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
                        key: KEY.into(),
                        values: allowed.iter().map(|s| s.to_string()).collect(),
                    }]),
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn check_node_table() {
        let me = node("a");
        let cases = [
            (
                Some("a"),
                "WaitForFirstConsumer",
                &[][..],
                true,
                NodeCheck::Provision,
            ),
            (Some("a"), "Immediate", &[][..], false, NodeCheck::Provision),
            (Some("b"), "Immediate", &[][..], true, NodeCheck::Ignore),
            (None, "Immediate", &[][..], true, NodeCheck::Claim),
            (None, "Immediate", &[][..], false, NodeCheck::Ignore),
            (
                None,
                "WaitForFirstConsumer",
                &[][..],
                true,
                NodeCheck::Ignore,
            ),
            (None, "Immediate", &["a", "c"][..], true, NodeCheck::Claim),
            (None, "Immediate", &["b"][..], true, NodeCheck::Ignore),
        ];
        for (selected, mode, allowed, immediate, want) in cases {
            assert_eq!(
                check_node(&pvc(selected), &class(mode, allowed), &me, immediate),
                want,
                "{selected:?} {mode} {allowed:?} {immediate}"
            );
        }
    }

    #[test]
    fn claim_delay_grows_caps_and_jitters() {
        let (base, max) = (Duration::from_secs(20), Duration::from_secs(60));
        assert_eq!(claim_delay(0, base, max, 0.0), Duration::from_secs(20));
        assert_eq!(claim_delay(1, base, max, 0.0), Duration::from_secs(40));
        assert_eq!(claim_delay(5, base, max, 0.0), Duration::from_secs(60));
        assert_eq!(claim_delay(0, base, max, 0.5), Duration::from_secs(10));
        assert_eq!(
            claim_delay(40, base, max, 0.999_999),
            max - base.mul_f64(0.999_999)
        );
    }

    #[test]
    fn local_volumes_by_node_affinity() {
        let pv_on = |v: &str| PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: KEY.into(),
                                operator: "In".into(),
                                values: Some(vec![v.into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(volume_is_local(&pv_on("a"), &node("a").segment));
        assert!(!volume_is_local(&pv_on("b"), &node("a").segment));
        assert!(volume_is_local(
            &PersistentVolume::default(),
            &node("a").segment
        ));
    }

    #[test]
    fn fake_objects_mirror_node_get_info() {
        let (n, c) = node("a").fake_objects("drv");
        assert_eq!(n.metadata.labels.unwrap()[KEY], "a");
        let d = &c.spec.drivers[0];
        assert_eq!((d.name.as_str(), d.node_id.as_str()), ("drv", "a"));
        assert_eq!(d.topology_keys.as_deref(), Some(&[KEY.to_string()][..]));
    }
}
