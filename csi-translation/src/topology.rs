//! Zone and region bookkeeping shared by the plugin translators.
//!
//! In-tree volumes carry their placement as Kubernetes zone/region keys, either
//! the GA `topology.kubernetes.io/*` or the older `failure-domain.beta.kubernetes.io/*`
//! ones, in the PV's node affinity and/or its labels (several zones of one PV are
//! joined with `__` in a label value). CSI PVs carry the same information under
//! a driver-specific key in the node affinity only. The helpers here move values
//! between those keys; the per-plugin files decide which helper applies.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, TopologySelectorLabelRequirement,
    TopologySelectorTerm, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;

use super::{Result, TranslationError};

/// GA zone key (`v1.LabelTopologyZone`).
pub(crate) const ZONE_GA: &str = "topology.kubernetes.io/zone";
/// GA region key (`v1.LabelTopologyRegion`).
pub(crate) const REGION_GA: &str = "topology.kubernetes.io/region";
/// Deprecated beta zone key (`v1.LabelFailureDomainBetaZone`).
pub(crate) const ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
/// Deprecated beta region key (`v1.LabelFailureDomainBetaRegion`).
pub(crate) const REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
/// Separator of several zones inside one zone label value.
pub(crate) const MULTI_ZONE_SEPARATOR: &str = "__";
/// StorageClass parameter naming one zone.
pub(crate) const ZONE_PARAM: &str = "zone";
/// StorageClass parameter naming a comma-separated list of zones.
pub(crate) const ZONES_PARAM: &str = "zones";

const OPERATOR_IN: &str = "In";

/// Derives the one region that a set of zones belongs to, or fails.
pub(crate) type RegionFromZones = fn(&[String]) -> Result<String>;

fn terms(pv: &PersistentVolume) -> &[NodeSelectorTerm] {
    pv.spec
        .as_ref()
        .and_then(|spec| spec.node_affinity.as_ref())
        .and_then(|affinity| affinity.required.as_ref())
        .map(|required| required.node_selector_terms.as_slice())
        .unwrap_or(&[])
}

fn terms_mut(pv: &mut PersistentVolume) -> Option<&mut Vec<NodeSelectorTerm>> {
    pv.spec
        .as_mut()?
        .node_affinity
        .as_mut()?
        .required
        .as_mut()
        .map(|required| &mut required.node_selector_terms)
}

fn requirement(key: &str, values: Vec<String>) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator: OPERATOR_IN.to_owned(),
        values: Some(values),
    }
}

fn labels_mut(pv: &mut PersistentVolume) -> &mut BTreeMap<String, String> {
    pv.metadata.labels.get_or_insert_default()
}

fn label<'a>(pv: &'a PersistentVolume, key: &str) -> Option<&'a str> {
    pv.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether any term of `affinity` has an expression on `key`
/// (csi-translation-lib's `TopologyKeyExist`).
pub(crate) fn affinity_has_key(affinity: Option<&VolumeNodeAffinity>, key: &str) -> bool {
    affinity
        .and_then(|a| a.required.as_ref())
        .is_some_and(|required| {
            required
                .node_selector_terms
                .iter()
                .flat_map(|term| term.match_expressions.iter().flatten())
                .any(|expr| expr.key == key)
        })
}

/// Renames every node-affinity expression on `from` to `to`, in every term.
/// Values are left alone, so a term that already had `to` ends up with two
/// expressions on it (they are ANDed, as before).
pub(crate) fn rename_key(pv: &mut PersistentVolume, from: &str, to: &str) {
    let Some(terms) = terms_mut(pv) else { return };
    for expr in terms
        .iter_mut()
        .flat_map(|term| term.match_expressions.iter_mut().flatten())
    {
        if expr.key == from {
            to.clone_into(&mut expr.key);
        }
    }
}

/// All values of node-affinity expressions on `key`, from every term, sorted
/// and without duplicates. Zones of different terms are ORed, so collapsing
/// them into one list keeps their meaning.
pub(crate) fn values_of(pv: &PersistentVolume, key: &str) -> Vec<String> {
    terms(pv)
        .iter()
        .flat_map(|term| term.match_expressions.iter().flatten())
        .filter(|expr| expr.key == key)
        .flat_map(|expr| expr.values.iter().flatten().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Appends `key In zones` to every node-affinity term, creating the affinity
/// (with one term) when the PV has none. Zones are trimmed, blank ones dropped,
/// and the rest sorted and de-duplicated; nothing left is an error.
pub(crate) fn add_requirement(
    pv: &mut PersistentVolume,
    key: &str,
    zones: &[String],
) -> Result<()> {
    let zones: Vec<String> = zones
        .iter()
        .map(|zone| zone.trim())
        .filter(|zone| !zone.is_empty())
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if zones.is_empty() {
        return Err(TranslationError::InvalidZones {
            zones: Vec::new(),
            reason: "no non-blank zone to add to the node affinity".to_owned(),
        });
    }
    let required = pv
        .spec
        .get_or_insert_default()
        .node_affinity
        .get_or_insert_default()
        .required
        .get_or_insert_default();
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_default()
            .push(requirement(key, zones.clone()));
    }
    Ok(())
}

/// The Kubernetes zone and region keys this PV uses: GA when its node affinity
/// has the GA zone key, beta when the affinity has the beta zone key, otherwise
/// the same test on its labels, and GA when nothing says.
pub(crate) fn labels_in_use(pv: &PersistentVolume) -> (&'static str, &'static str) {
    let affinity = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref());
    if affinity_has_key(affinity, ZONE_GA) {
        return (ZONE_GA, REGION_GA);
    }
    if affinity_has_key(affinity, ZONE_BETA) {
        return (ZONE_BETA, REGION_BETA);
    }
    if label(pv, ZONE_GA).is_some() {
        return (ZONE_GA, REGION_GA);
    }
    if label(pv, ZONE_BETA).is_some() {
        return (ZONE_BETA, REGION_BETA);
    }
    (ZONE_GA, REGION_GA)
}

/// In-tree → CSI for plugins with one zonal CSI key: the Kubernetes zone key
/// of the node affinity becomes `csi_key`; without one, the zone label (split
/// on `__`) becomes a `csi_key In …` expression. A beta region expression is
/// upgraded to the GA key so the PV still schedules on nodes that only carry GA
/// labels. Labels themselves are kept. Mirrors `translateTopologyFromInTreeToCSI`.
pub(crate) fn in_tree_to_csi(pv: &mut PersistentVolume, csi_key: &str) {
    let (zone_key, region_key) = labels_in_use(pv);
    if !values_of(pv, zone_key).is_empty() {
        rename_key(pv, zone_key, csi_key);
    } else if let Some(value) = label(pv, zone_key) {
        let zones: Vec<String> = value
            .split(MULTI_ZONE_SEPARATOR)
            .map(str::to_owned)
            .collect();
        // A blank label adds nothing; that is not worth failing the PV for.
        let _ = add_requirement(pv, csi_key, &zones);
    }
    if region_key == REGION_BETA && !values_of(pv, REGION_BETA).is_empty() {
        rename_key(pv, REGION_BETA, REGION_GA);
    }
}

/// CSI → in-tree for plugins with one zonal CSI key (kept so that a rollback to
/// the in-tree plugin still schedules): `csi_key` expressions become the
/// Kubernetes zone key in use, each term without a region expression gets one
/// derived by `region` (when given), and the zone label (`__`-joined) and the
/// region label (only when all terms agree on one region) are added unless the
/// PV already has them. Mirrors `translateTopologyFromCSIToInTree`.
///
/// Fails when `region` cannot derive a region for some term, including a term
/// that has no zone expression at all.
pub(crate) fn csi_to_in_tree(
    pv: &mut PersistentVolume,
    csi_key: &str,
    region: Option<RegionFromZones>,
) -> Result<()> {
    let (zone_key, _) = labels_in_use(pv);
    rename_key(pv, csi_key, zone_key);
    if let Some(region) = region {
        add_region_requirements(pv, region)?;
    }
    let zones = values_of(pv, zone_key);
    if !zones.is_empty() {
        labels_mut(pv)
            .entry(zone_key.to_owned())
            .or_insert_with(|| zones.join(MULTI_ZONE_SEPARATOR));
    }
    Ok(())
}

fn add_region_requirements(pv: &mut PersistentVolume, region: RegionFromZones) -> Result<()> {
    let (zone_key, region_key) = labels_in_use(pv);
    let Some(terms) = terms_mut(pv) else {
        return Ok(());
    };
    for term in terms.iter_mut() {
        let mut zones = Vec::new();
        let mut has_region = false;
        for expr in term.match_expressions.iter().flatten() {
            if expr.key == region_key {
                has_region = true;
                break;
            }
            if expr.key == zone_key {
                zones.extend(expr.values.iter().flatten().cloned());
            }
        }
        if has_region {
            continue;
        }
        let value = region(&zones)?;
        term.match_expressions
            .get_or_insert_default()
            .push(requirement(region_key, vec![value]));
    }
    let regions = values_of(pv, region_key);
    if let [only] = regions.as_slice() {
        labels_mut(pv)
            .entry(region_key.to_owned())
            .or_insert_with(|| only.clone());
    }
    Ok(())
}

/// StorageClass `allowedTopologies` with every GA or beta zone key replaced by
/// `csi_key`; other keys and all values pass through unchanged.
/// Mirrors `translateAllowedTopologies`.
pub(crate) fn allowed_topologies_to_csi(
    terms: &[TopologySelectorTerm],
    csi_key: &str,
) -> Vec<TopologySelectorTerm> {
    terms
        .iter()
        .map(|term| TopologySelectorTerm {
            match_label_expressions: term.match_label_expressions.as_ref().map(|exprs| {
                exprs
                    .iter()
                    .map(|expr| TopologySelectorLabelRequirement {
                        key: if expr.key == ZONE_GA || expr.key == ZONE_BETA {
                            csi_key.to_owned()
                        } else {
                            expr.key.clone()
                        },
                        values: expr.values.clone(),
                    })
                    .collect()
            }),
        })
        .collect()
}

/// One topology term with the single expression `key In values`.
pub(crate) fn single_term(key: &str, values: Vec<String>) -> Vec<TopologySelectorTerm> {
    vec![TopologySelectorTerm {
        match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
            key: key.to_owned(),
            values,
        }]),
    }]
}

/// The `zone` / `zones` parameter of an in-tree StorageClass, collected while
/// its parameters are walked, then turned into `allowedTopologies`.
#[derive(Debug, Default)]
pub(crate) struct ZoneParameter {
    found: Option<(String, Vec<String>)>,
}

impl ZoneParameter {
    /// Records parameter `key` (whose lower-case form is `zone` or `zones`).
    /// A second zone parameter is an error: the in-tree provisioners refused
    /// such classes, and which one csi-translation-lib keeps depends on Go's
    /// random map order.
    pub(crate) fn record(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some((previous, _)) = &self.found {
            return Err(TranslationError::InvalidStorageClass(format!(
                "invalid storage class: parameters {previous:?} and {key:?} both select zones"
            )));
        }
        let zones = if key.eq_ignore_ascii_case(ZONES_PARAM) {
            value.split(',').map(str::to_owned).collect()
        } else {
            vec![value.to_owned()]
        };
        self.found = Some((key.to_owned(), zones));
        Ok(())
    }

    /// Sets `sc.allowedTopologies`: from the recorded zones under `csi_key`, or
    /// else the class's own terms with zone keys renamed to `csi_key`. Having
    /// both is an error.
    pub(crate) fn apply(self, sc: &mut StorageClass, csi_key: &str) -> Result<()> {
        let has_allowed = sc
            .allowed_topologies
            .as_ref()
            .is_some_and(|t| !t.is_empty());
        match self.found {
            // csi-translation-lib's text (TranslateInTreeStorageClassToCSI).
            Some(_) if has_allowed => Err(TranslationError::InvalidStorageClass(
                "cannot simultaneously set allowed topologies and zone/zones parameters".into(),
            )),
            Some((_, zones)) => {
                sc.allowed_topologies = Some(single_term(csi_key, zones));
                Ok(())
            }
            None => {
                if let Some(terms) = sc.allowed_topologies.as_mut().filter(|t| !t.is_empty()) {
                    *terms = allowed_topologies_to_csi(terms, csi_key);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    const CSI_KEY: &str = "topology.example.csi/zone";

    fn gce_like_region(zones: &[String]) -> Result<String> {
        crate::gce_pd::region_from_zones(zones)
    }

    #[test]
    fn rename_key_rewrites_only_the_old_key_in_every_term() {
        struct Case {
            name: &'static str,
            before: Vec<Term>,
            after: Vec<Term>,
        }
        let cases = [
            Case {
                name: "single term",
                before: vec![vec![(CSI_KEY, &["us-east1-a"])]],
                after: vec![vec![(ZONE_GA, &["us-east1-a"])]],
            },
            Case {
                name: "key absent: nothing changes",
                before: vec![vec![(ZONE_GA, &["us-east1-a"])]],
                after: vec![vec![(ZONE_GA, &["us-east1-a"])]],
            },
            Case {
                name: "every term is rewritten",
                before: vec![
                    vec![(CSI_KEY, &["us-east1-a"])],
                    vec![(CSI_KEY, &["us-east1-c"])],
                ],
                after: vec![
                    vec![(ZONE_GA, &["us-east1-a"])],
                    vec![(ZONE_GA, &["us-east1-c"])],
                ],
            },
            Case {
                name: "an existing new-key expression is not merged",
                before: vec![vec![(CSI_KEY, &["us-east1-a"]), (ZONE_GA, &["us-east1-c"])]],
                after: vec![vec![(ZONE_GA, &["us-east1-a"]), (ZONE_GA, &["us-east1-c"])]],
            },
        ];
        for case in cases {
            let mut pv = pv_with_affinity(&case.before);
            rename_key(&mut pv, CSI_KEY, ZONE_GA);
            assert_eq!(
                pv.spec.unwrap().node_affinity,
                affinity(&case.after),
                "{}",
                case.name
            );
        }
        // A PV without affinity stays without one.
        let mut bare = PersistentVolume::default();
        rename_key(&mut bare, CSI_KEY, ZONE_GA);
        assert_eq!(bare, PersistentVolume::default());
    }

    #[test]
    fn add_requirement_cleans_zones_and_fills_every_term() {
        struct Case {
            name: &'static str,
            start: Vec<Term>,
            zones: &'static [&'static str],
            want: Option<Vec<Term>>,
        }
        let cases = [
            Case {
                name: "no zones",
                start: vec![],
                zones: &[],
                want: None,
            },
            Case {
                name: "only blank zones",
                start: vec![],
                zones: &[" ", "\n", "\t", "  "],
                want: None,
            },
            Case {
                name: "blank zones dropped, the rest trimmed",
                start: vec![],
                zones: &[" ", " us-central1-a "],
                want: Some(vec![vec![(CSI_KEY, &["us-central1-a"])]]),
            },
            Case {
                name: "sorted and de-duplicated",
                start: vec![],
                zones: &[
                    "us-central1-f",
                    "us-central1-a",
                    "us-central1-c",
                    "us-central1-a",
                ],
                want: Some(vec![vec![(
                    CSI_KEY,
                    &["us-central1-a", "us-central1-c", "us-central1-f"],
                )]]),
            },
            Case {
                name: "appended to each existing term",
                start: vec![vec![("other", &["x"])], vec![("other", &["y"])]],
                zones: &["z1"],
                want: Some(vec![
                    vec![("other", &["x"]), (CSI_KEY, &["z1"])],
                    vec![("other", &["y"]), (CSI_KEY, &["z1"])],
                ]),
            },
        ];
        for case in cases {
            let mut pv = pv_with_affinity(&case.start);
            let zones: Vec<String> = case.zones.iter().map(|z| z.to_string()).collect();
            let got = add_requirement(&mut pv, CSI_KEY, &zones);
            match case.want {
                None => assert!(
                    matches!(got, Err(TranslationError::InvalidZones { .. })),
                    "{}: {got:?}",
                    case.name
                ),
                Some(want) => {
                    got.unwrap();
                    assert_eq!(
                        pv.spec.unwrap().node_affinity,
                        affinity(&want),
                        "{}",
                        case.name
                    );
                }
            }
        }
    }

    #[test]
    fn labels_in_use_prefers_affinity_then_labels_then_ga() {
        let cases: [(&str, Terms, Pairs, &str); 6] = [
            (
                "GA key in affinity",
                vec![vec![(ZONE_GA, &["a"])]],
                vec![(ZONE_BETA, "a")],
                ZONE_GA,
            ),
            (
                "beta key in affinity",
                vec![vec![(ZONE_BETA, &["a"])]],
                vec![(ZONE_GA, "a")],
                ZONE_BETA,
            ),
            ("GA label only", vec![], vec![(ZONE_GA, "a")], ZONE_GA),
            ("beta label only", vec![], vec![(ZONE_BETA, "a")], ZONE_BETA),
            (
                "both labels: GA wins",
                vec![],
                vec![(ZONE_BETA, "a"), (ZONE_GA, "a")],
                ZONE_GA,
            ),
            (
                "nothing: GA",
                vec![vec![(CSI_KEY, &["a"])]],
                vec![],
                ZONE_GA,
            ),
        ];
        for (name, terms, labels, want_zone) in cases {
            let mut pv = pv_with_affinity(&terms);
            pv.metadata.labels = map(&labels);
            let (zone, region) = labels_in_use(&pv);
            assert_eq!(zone, want_zone, "{name}");
            let want_region = if want_zone == ZONE_GA {
                REGION_GA
            } else {
                REGION_BETA
            };
            assert_eq!(region, want_region, "{name}");
        }
    }

    #[test]
    fn csi_to_in_tree_restores_kubernetes_keys_and_labels() {
        struct Case {
            name: &'static str,
            labels: Vec<(&'static str, &'static str)>,
            terms: Vec<Term>,
            region: Option<RegionFromZones>,
            want_terms: Vec<Term>,
            want_labels: Vec<(&'static str, &'static str)>,
        }
        let cases = [
            Case {
                name: "existing GA region expression and labels are kept",
                labels: vec![(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")],
                terms: vec![vec![(REGION_GA, &["us-east1"]), (CSI_KEY, &["us-east1-a"])]],
                region: Some(gce_like_region),
                want_terms: vec![vec![(REGION_GA, &["us-east1"]), (ZONE_GA, &["us-east1-a"])]],
                want_labels: vec![(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")],
            },
            Case {
                name: "beta labels select the beta keys",
                labels: vec![(ZONE_BETA, "us-west2-b"), (REGION_BETA, "us-west2")],
                terms: vec![vec![
                    (REGION_BETA, &["us-west2"]),
                    (CSI_KEY, &["us-west2-b"]),
                ]],
                region: Some(gce_like_region),
                want_terms: vec![vec![
                    (REGION_BETA, &["us-west2"]),
                    (ZONE_BETA, &["us-west2-b"]),
                ]],
                want_labels: vec![(ZONE_BETA, "us-west2-b"), (REGION_BETA, "us-west2")],
            },
            Case {
                name: "affinity drives the expressions, existing labels are not overwritten",
                labels: vec![(ZONE_GA, "existingZone"), (REGION_GA, "existingRegion")],
                terms: vec![vec![(CSI_KEY, &["us-east1-a"])]],
                region: Some(gce_like_region),
                want_terms: vec![vec![(ZONE_GA, &["us-east1-a"]), (REGION_GA, &["us-east1"])]],
                want_labels: vec![(ZONE_GA, "existingZone"), (REGION_GA, "existingRegion")],
            },
            Case {
                name: "labels generated from the CSI key alone",
                labels: vec![],
                terms: vec![vec![(CSI_KEY, &["us-east1-a"])]],
                region: Some(gce_like_region),
                want_terms: vec![vec![(ZONE_GA, &["us-east1-a"]), (REGION_GA, &["us-east1"])]],
                want_labels: vec![(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")],
            },
            Case {
                name: "beta zone expression gets a beta region",
                labels: vec![],
                terms: vec![vec![(ZONE_BETA, &["us-west2-b"])]],
                region: Some(gce_like_region),
                want_terms: vec![vec![
                    (ZONE_BETA, &["us-west2-b"]),
                    (REGION_BETA, &["us-west2"]),
                ]],
                want_labels: vec![(ZONE_BETA, "us-west2-b"), (REGION_BETA, "us-west2")],
            },
            Case {
                name: "no region parser: zone only",
                labels: vec![],
                terms: vec![vec![(CSI_KEY, &["nova"])]],
                region: None,
                want_terms: vec![vec![(ZONE_GA, &["nova"])]],
                want_labels: vec![(ZONE_GA, "nova")],
            },
            Case {
                name: "several terms: each gets its region, zones joined in the label",
                labels: vec![],
                terms: vec![
                    vec![(CSI_KEY, &["us-east1-a"])],
                    vec![(CSI_KEY, &["us-east1-c"])],
                ],
                region: Some(gce_like_region),
                want_terms: vec![
                    vec![(ZONE_GA, &["us-east1-a"]), (REGION_GA, &["us-east1"])],
                    vec![(ZONE_GA, &["us-east1-c"]), (REGION_GA, &["us-east1"])],
                ],
                want_labels: vec![(ZONE_GA, "us-east1-a__us-east1-c"), (REGION_GA, "us-east1")],
            },
            Case {
                name: "terms in different regions: no region label",
                labels: vec![],
                terms: vec![
                    vec![(CSI_KEY, &["us-east1-a"])],
                    vec![(CSI_KEY, &["eu-west1-b"])],
                ],
                region: Some(gce_like_region),
                want_terms: vec![
                    vec![(ZONE_GA, &["us-east1-a"]), (REGION_GA, &["us-east1"])],
                    vec![(ZONE_GA, &["eu-west1-b"]), (REGION_GA, &["eu-west1"])],
                ],
                want_labels: vec![(ZONE_GA, "eu-west1-b__us-east1-a")],
            },
        ];
        for case in cases {
            let mut pv = pv_with_affinity(&case.terms);
            pv.metadata.labels = map(&case.labels);
            csi_to_in_tree(&mut pv, CSI_KEY, case.region).unwrap();
            assert_eq!(pv.metadata.labels, map(&case.want_labels), "{}", case.name);
            assert_eq!(
                pv.spec.unwrap().node_affinity,
                affinity(&case.want_terms),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn csi_to_in_tree_without_terms_changes_nothing() {
        let mut pv = PersistentVolume {
            spec: Some(k8s_openapi::api::core::v1::PersistentVolumeSpec {
                node_affinity: affinity(&[]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pv.metadata.labels = map(&[(ZONE_GA, "z")]);
        let before = pv.clone();
        csi_to_in_tree(&mut pv, CSI_KEY, Some(gce_like_region)).unwrap();
        assert_eq!(pv, before);
    }

    #[test]
    fn csi_to_in_tree_fails_when_a_term_has_no_usable_zone() {
        for terms in [
            vec![vec![("kubernetes.io/hostname", &["node-1"][..])]],
            vec![vec![(CSI_KEY, &["not-a-gce-zone-at-all"][..])]],
        ] {
            let mut pv = pv_with_affinity(&terms);
            let err = csi_to_in_tree(&mut pv, CSI_KEY, Some(gce_like_region)).unwrap_err();
            assert!(
                matches!(err, TranslationError::InvalidZones { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn in_tree_to_csi_moves_zone_to_the_csi_key() {
        struct Case {
            name: &'static str,
            labels: Vec<(&'static str, &'static str)>,
            terms: Vec<Term>,
            want: Option<Vec<Term>>,
        }
        let cases = [
            Case {
                name: "GA zone expression renamed, GA region kept",
                labels: vec![(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")],
                terms: vec![vec![(ZONE_GA, &["us-east1-a"]), (REGION_GA, &["us-east1"])]],
                want: Some(vec![vec![
                    (CSI_KEY, &["us-east1-a"]),
                    (REGION_GA, &["us-east1"]),
                ]]),
            },
            Case {
                name: "beta zone renamed, beta region upgraded to GA",
                labels: vec![(ZONE_GA, "us-east1-a")],
                terms: vec![vec![
                    (ZONE_BETA, &["us-west2-b"]),
                    (REGION_BETA, &["us-west2"]),
                ]],
                want: Some(vec![vec![
                    (CSI_KEY, &["us-west2-b"]),
                    (REGION_GA, &["us-west2"]),
                ]]),
            },
            Case {
                name: "affinity wins over labels",
                labels: vec![(ZONE_BETA, "us-east-1a")],
                terms: vec![vec![(ZONE_BETA, &["us-east-2a"])]],
                want: Some(vec![vec![(CSI_KEY, &["us-east-2a"])]]),
            },
            Case {
                name: "zone label becomes an expression",
                labels: vec![(ZONE_BETA, "us-east-1a"), (REGION_BETA, "us-east-1")],
                terms: vec![],
                want: Some(vec![vec![(CSI_KEY, &["us-east-1a"])]]),
            },
            Case {
                name: "multi-zone label is split and sorted",
                labels: vec![(ZONE_GA, "europe-west1-c__europe-west1-b")],
                terms: vec![],
                want: Some(vec![vec![(CSI_KEY, &["europe-west1-b", "europe-west1-c"])]]),
            },
            Case {
                name: "blank zone label adds nothing",
                labels: vec![(ZONE_GA, "")],
                terms: vec![],
                want: None,
            },
            Case {
                name: "no zone anywhere",
                labels: vec![],
                terms: vec![],
                want: None,
            },
        ];
        for case in cases {
            let mut pv = pv_with_affinity(&case.terms);
            pv.metadata.labels = map(&case.labels);
            in_tree_to_csi(&mut pv, CSI_KEY);
            let got = pv.spec.unwrap_or_default().node_affinity;
            match case.want {
                Some(terms) => assert_eq!(got, affinity(&terms), "{}", case.name),
                None => assert_eq!(got, None, "{}", case.name),
            }
            // Labels are never touched on the way to CSI.
            assert_eq!(pv.metadata.labels, map(&case.labels), "{}", case.name);
        }
    }

    #[test]
    fn allowed_topologies_rename_zone_keys_only() {
        let cases: [(&str, Terms, Terms); 5] = [
            (
                "already CSI",
                vec![vec![(CSI_KEY, &["foo", "bar"])]],
                vec![vec![(CSI_KEY, &["foo", "bar"])]],
            ),
            (
                "beta zone",
                vec![vec![(ZONE_BETA, &["foo", "bar"])]],
                vec![vec![(CSI_KEY, &["foo", "bar"])]],
            ),
            (
                "GA zone",
                vec![vec![(ZONE_GA, &["foo"])]],
                vec![vec![(CSI_KEY, &["foo"])]],
            ),
            (
                "mixed expressions keep their order",
                vec![vec![
                    (ZONE_BETA, &["foo", "bar"]),
                    (CSI_KEY, &["boo", "baz"]),
                ]],
                vec![vec![(CSI_KEY, &["foo", "bar"]), (CSI_KEY, &["boo", "baz"])]],
            ),
            (
                "other keys, including regions, pass through",
                vec![vec![("test", &["foo"]), (REGION_GA, &["r"])]],
                vec![vec![("test", &["foo"]), (REGION_GA, &["r"])]],
            ),
        ];
        for (name, input, want) in cases {
            let got = allowed_topologies_to_csi(&topology_terms(&input), CSI_KEY);
            assert_eq!(got, topology_terms(&want), "{name}");
        }
    }

    #[test]
    fn zone_parameters_become_allowed_topologies() {
        struct Case {
            name: &'static str,
            params: Vec<(&'static str, &'static str)>,
            allowed: Option<Terms>,
            want: std::result::Result<Option<Terms>, ()>,
        }
        let cases = [
            Case {
                name: "zone",
                params: vec![("zone", "foo")],
                allowed: None,
                want: Ok(Some(vec![vec![(CSI_KEY, &["foo"])]])),
            },
            Case {
                name: "Zones, any case, split on commas in order",
                params: vec![("Zones", "foo,bar,baz")],
                allowed: None,
                want: Ok(Some(vec![vec![(CSI_KEY, &["foo", "bar", "baz"])]])),
            },
            Case {
                name: "no zone: allowed topologies translated",
                params: vec![],
                allowed: Some(vec![vec![(ZONE_BETA, &["foo"])]]),
                want: Ok(Some(vec![vec![(CSI_KEY, &["foo"])]])),
            },
            Case {
                name: "nothing at all",
                params: vec![],
                allowed: None,
                want: Ok(None),
            },
            Case {
                name: "zone and allowed topologies",
                params: vec![("zone", "foo")],
                allowed: Some(vec![vec![(CSI_KEY, &["foo"])]]),
                want: Err(()),
            },
            Case {
                name: "zone and zones",
                params: vec![("zone", "foo"), ("zones", "foo,bar")],
                allowed: None,
                want: Err(()),
            },
        ];
        for case in cases {
            let mut sc = storage_class(&[], case.allowed.as_deref());
            let mut zone = ZoneParameter::default();
            let result = case
                .params
                .iter()
                .try_for_each(|(k, v)| zone.record(k, v))
                .and_then(|()| zone.apply(&mut sc, CSI_KEY));
            match case.want {
                Ok(want) => {
                    result.unwrap();
                    assert_eq!(
                        sc.allowed_topologies,
                        want.map(|w| topology_terms(&w)),
                        "{}",
                        case.name
                    );
                }
                Err(()) => assert!(
                    matches!(result, Err(TranslationError::InvalidStorageClass(_))),
                    "{}: {result:?}",
                    case.name
                ),
            }
        }
    }
}
