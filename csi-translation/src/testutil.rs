//! Builders shared by the migration unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
    PersistentVolumeSpec, TopologySelectorLabelRequirement, TopologySelectorTerm,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;

/// One node-selector term as `(key, values)` expressions, all with operator `In`.
pub(crate) type Term = Vec<(&'static str, &'static [&'static str])>;
/// Several terms.
pub(crate) type Terms = Vec<Term>;
/// Key/value pairs (labels, parameters, attributes).
pub(crate) type Pairs = Vec<(&'static str, &'static str)>;
/// Key/value pairs as a static slice.
pub(crate) type PairSlice = &'static [(&'static str, &'static str)];

/// A string map, `None` when `pairs` is empty (as an absent field decodes).
pub(crate) fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| strings(pairs))
}

/// A string map, always present.
pub(crate) fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A required node affinity with these terms (possibly none).
pub(crate) fn affinity(terms: &[Term]) -> Option<VolumeNodeAffinity> {
    Some(VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: terms
                .iter()
                .map(|term| NodeSelectorTerm {
                    match_expressions: Some(
                        term.iter()
                            .map(|(key, values)| NodeSelectorRequirement {
                                key: key.to_string(),
                                operator: "In".to_owned(),
                                values: Some(values.iter().map(|v| v.to_string()).collect()),
                            })
                            .collect(),
                    ),
                    match_fields: None,
                })
                .collect(),
        }),
    })
}

/// A PV with a spec whose node affinity has `terms`; no affinity when empty.
pub(crate) fn pv_with_affinity(terms: &[Term]) -> PersistentVolume {
    PersistentVolume {
        spec: Some(PersistentVolumeSpec {
            node_affinity: if terms.is_empty() {
                None
            } else {
                affinity(terms)
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// StorageClass topology terms from `(key, values)` expressions.
pub(crate) fn topology_terms(terms: &[Term]) -> Vec<TopologySelectorTerm> {
    terms
        .iter()
        .map(|term| TopologySelectorTerm {
            match_label_expressions: Some(
                term.iter()
                    .map(|(key, values)| TopologySelectorLabelRequirement {
                        key: key.to_string(),
                        values: values.iter().map(|v| v.to_string()).collect(),
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// A StorageClass with these parameters (always present, possibly empty) and
/// allowed topologies.
pub(crate) fn storage_class(params: &[(&str, &str)], allowed: Option<&[Term]>) -> StorageClass {
    StorageClass {
        parameters: Some(strings(params)),
        allowed_topologies: allowed.map(topology_terms),
        ..Default::default()
    }
}

/// `Some(s.to_owned())`.
pub(crate) fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}
