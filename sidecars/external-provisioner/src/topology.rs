//! Topology: the `accessibility_requirements` of CreateVolume and the PV's
//! `nodeAffinity` (`external-provisioner: pkg/controller/topology.go`).
//!
//! Everything here is a pure function over values the controller already
//! holds (StorageClass `allowedTopologies`, the claim's selected node, and
//! the Node / CSINode caches), plus [`TopologyCache`], which freezes the
//! computed requirement per claim so retries send the same request.
//!
//! Internally a topology *term* is a list of `(key, value)` pairs sorted by
//! key then value, all of which must hold (AND); a list of terms is an OR.
//! Term lists are ordered by number of pairs, then pair by pair, which is the
//! order upstream sorts requisite terms in.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use csi_client::csi::v1::{Topology, TopologyRequirement};
use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, TopologySelectorTerm,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::CSINode;
use sidecar_runtime::gofmt::quote;

/// One AND'ed topology term: `(key, value)` pairs sorted by key, then value.
type Term = Vec<(String, String)>;

/// Why no accessibility requirement could be computed.
///
/// Upstream never treats these as final: everything is retried with
/// backoff (`ProvisioningNoChange`), except a selected node without a
/// CSINode object, which gives the claim back to the scheduler
/// (`ProvisioningReschedule`).
///
/// `Display` is the event text upstream's `prepareProvision` produces: the
/// raw text for a reschedule, the text behind `error generating
/// accessibility requirements: ` for a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The selected node has no CSINode object: the caller should remove the
    /// claim's `volume.kubernetes.io/selected-node` annotation so the
    /// scheduler picks again, and forget the claim's [`TopologyCache`]
    /// entry. (A missing Node object is a [`TopologyError::Retry`], as in
    /// upstream v6.3.0, which reads it as a node without labels.)
    #[error("{0}")]
    Reschedule(String),
    /// Topology information is missing or inconsistent right now (driver not
    /// registered yet, labels missing, selected node outside the allowed
    /// topologies, …): retry with backoff, keeping the claim as it is.
    #[error("error generating accessibility requirements: {0}")]
    Retry(String),
}

impl TopologyError {
    /// `true` for [`TopologyError::Reschedule`].
    pub fn is_reschedule(&self) -> bool {
        matches!(self, TopologyError::Reschedule(_))
    }
}

/// Maps to [`crate::Error::Missing`] (retried, not final) with the same
/// text. Check [`TopologyError::is_reschedule`] first when the caller can
/// reschedule.
impl From<TopologyError> for crate::Error {
    fn from(err: TopologyError) -> Self {
        crate::Error::Missing(err.to_string())
    }
}

/// Everything [`accessibility_requirements`] looks at.
///
/// `N` and `C` are anything that borrows as a [`Node`] / [`CSINode`]
/// (plain objects, or the `Arc`s a reflector store hands out).
///
/// There is no separate "late binding" flag: as upstream, behaviour is keyed
/// on the selected node. For `WaitForFirstConsumer` classes the claim is only
/// provisioned once the scheduler set `volume.kubernetes.io/selected-node`,
/// so "late binding" and "a selected node is set" coincide; an Immediate claim
/// that carries the annotation anyway is treated like a late-binding one, as
/// upstream does.
#[derive(Debug, Clone, Copy)]
pub struct TopologyInputs<'a, N = Node, C = CSINode> {
    /// The CSI driver name, matched against CSINode `spec.drivers[].name`.
    pub driver: &'a str,
    /// The claim's name, for StatefulSet spreading (immediate binding).
    pub pvc_name: &'a str,
    /// The StorageClass's `allowedTopologies` (empty when unset).
    pub allowed_topologies: &'a [TopologySelectorTerm],
    /// The claim's `volume.kubernetes.io/selected-node`; `Some("")` counts as
    /// unset.
    pub selected_node: Option<&'a str>,
    /// `--strict-topology`.
    pub strict_topology: bool,
    /// `--immediate-topology`.
    pub immediate_topology: bool,
    /// Every CSINode in the cluster (informer cache).
    pub csi_nodes: &'a [C],
    /// Every Node in the cluster (informer cache).
    pub nodes: &'a [N],
}

/// Computes CreateVolume's `accessibility_requirements`
/// (`pkg/controller/topology.go` `GenerateAccessibilityRequirements`).
///
/// * Selected node + `strict_topology`: requisite = preferred = the selected
///   node's segment; with `allowedTopologies`, some flattened term must be a
///   subset of that segment, else [`TopologyError::Retry`].
/// * Selected node, not strict: requisite = flattened `allowedTopologies`, or
///   without them every Node's values for the selected node's CSINode keys;
///   preferred = requisite rotated so the first term contained in the
///   selected node's segment leads (none → `Retry`).
/// * No selected node: requisite = flattened `allowedTopologies`; without
///   them, `Ok(None)` unless `immediate_topology`, in which case the cluster
///   topology for the keys of the first CSINode (by name) that registers this
///   driver with keys (upstream picks a random one). Preferred = requisite
///   rotated by [`statefulset_offset`].
///
/// Requisite is sorted and de-duplicated. `allowedTopologies` that flatten to
/// nothing (terms without expressions) give `Ok(None)`, like upstream.
///
/// # Errors
/// Selected node without a CSINode → `Reschedule`. `Retry` for: selected
/// node's CSINode lacks keys for the driver (`no topology key found for node
/// X`), its Node is missing or its labels lack a key, it is outside
/// `allowedTopologies`; no CSINode registers keys (`no available topology
/// found`); no Node carries all keys. The texts are upstream's
/// (`GenerateAccessibilityRequirements`), Go values printed as Go does.
pub fn accessibility_requirements<N, C>(
    inputs: &TopologyInputs<'_, N, C>,
) -> Result<Option<TopologyRequirement>, TopologyError>
where
    N: Borrow<Node>,
    C: Borrow<CSINode>,
{
    let selected = match inputs.selected_node.filter(|name| !name.is_empty()) {
        Some(name) => Some(resolve_selected_node(inputs, name)?),
        None => None,
    };

    let requisite = match &selected {
        Some(sel) if inputs.strict_topology => {
            ensure_allowed(sel, inputs.allowed_topologies)?;
            vec![sel.term.clone()]
        }
        _ if !inputs.allowed_topologies.is_empty() => flatten(inputs.allowed_topologies),
        Some(sel) => aggregate(&sel.keys, inputs.nodes)?,
        None if !inputs.immediate_topology => return Ok(None),
        None => {
            let keys = first_registered_keys(inputs.driver, inputs.csi_nodes)
                .ok_or_else(|| TopologyError::Retry("no available topology found".into()))?;
            aggregate(&keys, inputs.nodes)?
        }
    };
    let requisite = sort_and_dedup(requisite);
    if requisite.is_empty() {
        return Ok(None);
    }

    let preferred = match &selected {
        None => rotate(
            &requisite,
            statefulset_offset(inputs.pvc_name, requisite.len()),
        ),
        Some(_) if inputs.strict_topology => requisite.clone(),
        Some(sel) => rotate_to_selected(&requisite, sel)?,
    };
    Ok(Some(TopologyRequirement {
        requisite: requisite.iter().map(to_topology).collect(),
        preferred: preferred.iter().map(to_topology).collect(),
    }))
}

/// The selected node's topology segment: its CSINode's topology keys for
/// `driver`, each with the Node's label value.
///
/// # Errors
/// Same as the selected-node errors of [`accessibility_requirements`].
pub fn selected_node_segment<N, C>(
    node_name: &str,
    driver: &str,
    csi_nodes: &[C],
    nodes: &[N],
) -> Result<Topology, TopologyError>
where
    N: Borrow<Node>,
    C: Borrow<CSINode>,
{
    let inputs = TopologyInputs {
        driver,
        pvc_name: "",
        allowed_topologies: &[],
        selected_node: Some(node_name),
        strict_topology: false,
        immediate_topology: false,
        csi_nodes,
        nodes,
    };
    resolve_selected_node(&inputs, node_name).map(|sel| to_topology(&sel.term))
}

/// The topology keys `csi_node` registers for `driver`; `None` when the
/// driver is not listed (an empty slice when listed without keys).
pub fn driver_topology_keys<'c>(csi_node: &'c CSINode, driver: &str) -> Option<&'c [String]> {
    csi_node
        .spec
        .drivers
        .iter()
        .find(|d| d.name == driver)
        .map(|d| d.topology_keys.as_deref().unwrap_or_default())
}

/// `allowedTopologies` as CSI topologies: per selector term, the cartesian
/// product of its expressions' values; the terms' results OR'd together,
/// sorted (segment count, then keys, then values) and de-duplicated.
pub fn flatten_allowed_topologies(allowed: &[TopologySelectorTerm]) -> Vec<Topology> {
    sort_and_dedup(flatten(allowed))
        .iter()
        .map(to_topology)
        .collect()
}

/// The PV's `spec.nodeAffinity` from CreateVolume's `accessible_topology`
/// (`pkg/controller/topology.go` `GenerateVolumeNodeAffinity`): one `NodeSelectorTerm` per topology, each segment an `In`
/// requirement with its single value, keys sorted.
///
/// `None` when there is no topology. Topologies without segments are
/// skipped; if none remains this also returns `None` (upstream would emit a
/// selector with no terms, which the API server rejects).
pub fn node_affinity(accessible: &[Topology]) -> Option<VolumeNodeAffinity> {
    let terms: Vec<NodeSelectorTerm> = accessible
        .iter()
        .filter(|t| !t.segments.is_empty())
        .map(|t| {
            let sorted: BTreeMap<&String, &String> = t.segments.iter().collect();
            NodeSelectorTerm {
                match_expressions: Some(
                    sorted
                        .into_iter()
                        .map(|(key, value)| NodeSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![value.clone()]),
                        })
                        .collect(),
                ),
                match_fields: None,
            }
        })
        .collect();
    if terms.is_empty() {
        return None;
    }
    Some(VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: terms,
        }),
    })
}

/// How far to rotate `len` requisite terms for claim `pvc_name`:
/// `(hash + index) mod len` with 32-bit wrapping addition, from
/// [`pvc_name_hash_and_index`]. `0` when `len` is 0.
pub fn statefulset_offset(pvc_name: &str, len: usize) -> usize {
    let Ok(len32) = u32::try_from(len) else {
        return 0;
    };
    if len32 == 0 {
        return 0;
    }
    let (hash, index) = pvc_name_hash_and_index(pvc_name);
    // Lossless: the remainder is below `len`.
    (hash.wrapping_add(index) % len32) as usize
}

/// The StatefulSet spreading key of a claim name, as Kubernetes' in-tree
/// `getPVCNameHashAndIndexOffset`: returns `(FNV-1 hash, index)`.
///
/// A name ending in `-<decimal uint32>` yields that number as index, and the
/// hashed part is the rest with everything up to its last dash dropped
/// (`claim-web-3` → hash of `web`, 3), so all claims of one StatefulSet
/// member land together and members round-robin. Any other name: hash of the
/// whole name, index 0. An empty name gives `(0, 0)` (upstream: a random
/// hash; the name is never empty in practice).
pub fn pvc_name_hash_and_index(pvc_name: &str) -> (u32, u32) {
    if pvc_name.is_empty() {
        return (0, 0);
    }
    let Some((prefix, suffix)) = pvc_name.rsplit_once('-') else {
        return (fnv1_32(pvc_name.as_bytes()), 0);
    };
    match parse_decimal_u32(suffix) {
        Some(index) => {
            let hashed = prefix.rsplit_once('-').map_or(prefix, |(_, last)| last);
            (fnv1_32(hashed.as_bytes()), index)
        }
        None => (fnv1_32(pvc_name.as_bytes()), 0),
    }
}

/// 32-bit FNV-1 (multiply, then xor; not FNV-1a), as Go's `fnv.New32`.
pub fn fnv1_32(data: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    data.iter().fold(OFFSET_BASIS, |hash, &byte| {
        hash.wrapping_mul(PRIME) ^ u32::from(byte)
    })
}

/// Go's `strconv.ParseUint(s, 10, 32)`: ASCII digits only (no sign), in
/// `u32` range.
fn parse_decimal_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Per-claim snapshot of the computed requirement, so every
/// CreateVolume retry for a claim sends identical `accessibility_requirements`
/// even when Nodes or CSINodes change or disappear meanwhile.
///
/// Entries are keyed by claim UID and remember the selected node they were
/// computed for; a different selected node (after a reschedule) recomputes,
/// which avoids provisioning in the previous node's zone (upstream #1465).
///
/// The caller should [`forget`](TopologyCache::forget) a claim after the PV
/// is saved (CreateVolume succeeded), after a CreateVolume error classified
/// final or reschedule (so the next attempt sees the current cluster), and
/// when the claim is gone for good.
#[derive(Debug, Default)]
pub struct TopologyCache {
    entries: Mutex<HashMap<String, Snapshot>>,
}

#[derive(Debug, Clone)]
struct Snapshot {
    selected_node: Option<String>,
    requirement: Option<TopologyRequirement>,
}

impl TopologyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The requirement stored for claim `uid` when it was computed for the
    /// same `selected_node` (`Some("")` counts as `None`); otherwise runs
    /// `compute`, stores a successful result (including `Ok(None)`) and
    /// returns it. Errors are returned and not stored.
    pub fn get_or_compute<E>(
        &self,
        uid: &str,
        selected_node: Option<&str>,
        compute: impl FnOnce() -> Result<Option<TopologyRequirement>, E>,
    ) -> Result<Option<TopologyRequirement>, E> {
        let selected_node = selected_node.filter(|n| !n.is_empty());
        if let Some(found) = self.lookup(uid, selected_node) {
            return Ok(found);
        }
        let computed = compute()?;
        let mut entries = self.lock();
        // Another worker may have stored one meanwhile: the first one wins.
        if let Some(stored) = entries.get(uid)
            && stored.selected_node.as_deref() == selected_node
        {
            return Ok(stored.requirement.clone());
        }
        entries.insert(
            uid.to_owned(),
            Snapshot {
                selected_node: selected_node.map(str::to_owned),
                requirement: computed.clone(),
            },
        );
        Ok(computed)
    }

    /// Drops the snapshot of claim `uid`, if any.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Number of claims with a snapshot.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// `true` when no claim has a snapshot.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lookup(
        &self,
        uid: &str,
        selected_node: Option<&str>,
    ) -> Option<Option<TopologyRequirement>> {
        self.lock()
            .get(uid)
            .filter(|s| s.selected_node.as_deref() == selected_node)
            .map(|s| s.requirement.clone())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Snapshot>> {
        // The map stays consistent even if a holder panicked.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The selected node's topology keys (from its CSINode) and segment.
struct SelectedNode<'a> {
    name: &'a str,
    keys: Vec<String>,
    term: Term,
}

fn resolve_selected_node<'a, N, C>(
    inputs: &TopologyInputs<'_, N, C>,
    name: &'a str,
) -> Result<SelectedNode<'a>, TopologyError>
where
    N: Borrow<Node>,
    C: Borrow<CSINode>,
{
    // Upstream: topologyKeysLookup wrapping the CSINode lister's NotFound.
    let csi_node = inputs
        .csi_nodes
        .iter()
        .map(Borrow::borrow)
        .find(|c: &&CSINode| c.metadata.name.as_deref() == Some(name))
        .ok_or_else(|| {
            TopologyError::Reschedule(format!(
                "failed to get selected CSINode {name}: csinode.storage.k8s.io {} not found",
                quote(name)
            ))
        })?;
    let keys = driver_topology_keys(csi_node, inputs.driver).unwrap_or_default();
    if keys.is_empty() {
        return Err(TopologyError::Retry(format!(
            "no topology key found for node {name}"
        )));
    }
    // Upstream's getTopologyFromNodeName reads a missing Node as a node
    // without labels.
    let labels = inputs
        .nodes
        .iter()
        .map(Borrow::borrow)
        .find(|n: &&Node| n.metadata.name.as_deref() == Some(name))
        .and_then(|node| node.metadata.labels.as_ref());
    let term = term_from_labels(labels, keys).ok_or_else(|| {
        TopologyError::Retry(format!(
            "topology labels from selected node {} does not match topology keys from CSINode {}",
            fmt_labels(labels),
            fmt_list(keys)
        ))
    })?;
    Ok(SelectedNode {
        name,
        keys: keys.to_vec(),
        term,
    })
}

/// Strict topology: some flattened allowed term must be contained in the
/// selected node's segment (no allowed topologies: anything goes).
fn ensure_allowed(
    sel: &SelectedNode<'_>,
    allowed: &[TopologySelectorTerm],
) -> Result<(), TopologyError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let flat = flatten(allowed);
    if flat.iter().any(|t| is_subset(t, &sel.term)) {
        return Ok(());
    }
    // Upstream's format is `selected node '%q' topology '%v' …`.
    Err(TopologyError::Retry(format!(
        "selected node '{}' topology '{}' is not in allowed topologies: {}",
        quote(sel.name),
        fmt_term(&sel.term),
        fmt_terms(&flat)
    )))
}

/// Keys of the first CSINode, by name, that registers `driver` with keys.
fn first_registered_keys<C: Borrow<CSINode>>(driver: &str, csi_nodes: &[C]) -> Option<Vec<String>> {
    let mut candidates: Vec<(&str, &[String])> = csi_nodes
        .iter()
        .map(Borrow::borrow)
        .filter_map(|c: &CSINode| {
            let keys = driver_topology_keys(c, driver)?;
            (!keys.is_empty()).then(|| (c.metadata.name.as_deref().unwrap_or_default(), keys))
        })
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(b.0));
    candidates.first().map(|(_, keys)| keys.to_vec())
}

/// One term per Node that carries every key as a label.
fn aggregate<N: Borrow<Node>>(keys: &[String], nodes: &[N]) -> Result<Vec<Term>, TopologyError> {
    let terms: Vec<Term> = nodes
        .iter()
        .filter_map(|n| term_from_labels(n.borrow().metadata.labels.as_ref(), keys))
        .collect();
    if terms.is_empty() {
        return Err(TopologyError::Retry(format!(
            "topologyKeys {} were not found on any nodes",
            fmt_list(keys)
        )));
    }
    Ok(terms)
}

/// The node's value for every key, or `None` when a key is missing.
fn term_from_labels(labels: Option<&BTreeMap<String, String>>, keys: &[String]) -> Option<Term> {
    let labels = labels?;
    let term = keys
        .iter()
        .map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
        .collect::<Option<Term>>()?;
    Some(sorted_term(term))
}

/// Distributes each selector term's value lists (OR) over its expressions
/// (AND). As upstream, an expression without values contributes nothing and
/// the next expression starts afresh (the API server rejects empty values).
fn flatten(allowed: &[TopologySelectorTerm]) -> Vec<Term> {
    let mut out = Vec::new();
    for selector in allowed {
        let mut partial: Vec<Term> = Vec::new();
        for expr in selector.match_label_expressions.iter().flatten() {
            let mut next = Vec::new();
            for value in &expr.values {
                let pair = (expr.key.clone(), value.clone());
                if partial.is_empty() {
                    next.push(vec![pair]);
                } else {
                    next.extend(partial.iter().map(|t| {
                        let mut t = t.clone();
                        t.push(pair.clone());
                        t
                    }));
                }
            }
            partial = next;
        }
        out.extend(partial.into_iter().map(sorted_term));
    }
    out
}

fn sorted_term(mut term: Term) -> Term {
    term.sort();
    term
}

/// Term order: fewer pairs first, then pair by pair (key, then value).
fn compare_terms(a: &Term, b: &Term) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn sort_and_dedup(mut terms: Vec<Term>) -> Vec<Term> {
    terms.sort_by(compare_terms);
    terms.dedup();
    terms
}

/// Every pair of `term` is also in `of`.
fn is_subset(term: &Term, of: &Term) -> bool {
    term.iter().all(|pair| of.contains(pair))
}

fn rotate(terms: &[Term], offset: usize) -> Vec<Term> {
    let offset = offset.min(terms.len());
    terms[offset..]
        .iter()
        .chain(&terms[..offset])
        .cloned()
        .collect()
}

fn rotate_to_selected(
    requisite: &[Term],
    sel: &SelectedNode<'_>,
) -> Result<Vec<Term>, TopologyError> {
    let first = requisite
        .iter()
        .position(|t| is_subset(t, &sel.term))
        .ok_or_else(|| {
            TopologyError::Retry(format!(
                "topology {} from selected node {} is not in requisite: {}",
                fmt_term(&sel.term),
                quote(sel.name),
                fmt_terms(requisite)
            ))
        })?;
    Ok(rotate(requisite, first))
}

fn to_topology(term: &Term) -> Topology {
    Topology {
        segments: term.iter().cloned().collect(),
    }
}

// Messages render lists, maps and terms the way upstream's Go `%v` does.

fn fmt_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

fn fmt_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    let pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    format!("map[{}]", pairs.join(" "))
}

fn fmt_term(term: &Term) -> String {
    let pairs: Vec<String> = term.iter().map(|(k, v)| format!("{{{k} {v}}}")).collect();
    format!("[{}]", pairs.join(" "))
}

fn fmt_terms(terms: &[Term]) -> String {
    let rendered: Vec<String> = terms.iter().map(fmt_term).collect();
    format!("[{}]", rendered.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{csi_node, node};
    use std::cell::Cell;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::TopologySelectorLabelRequirement;

    const DRIVER: &str = "csi.example.com";
    /// FNV-1 32 of "web", computed independently.
    const H_WEB: u32 = 0x4666_1985;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    /// `allowedTopologies`: terms of (key, values) expressions.
    fn allowed(terms: &[&[(&str, &[&str])]]) -> Vec<TopologySelectorTerm> {
        terms
            .iter()
            .map(|exprs| TopologySelectorTerm {
                match_label_expressions: Some(
                    exprs
                        .iter()
                        .map(|(k, vs)| TopologySelectorLabelRequirement {
                            key: k.to_string(),
                            values: vs.iter().map(|v| v.to_string()).collect(),
                        })
                        .collect(),
                ),
            })
            .collect()
    }

    fn topo(pairs: Pairs<'_>) -> Topology {
        Topology {
            segments: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn zones(names: &[&str]) -> Vec<Topology> {
        names.iter().map(|z| topo(&[("zone", z)])).collect()
    }

    struct Cluster {
        csi_nodes: Vec<CSINode>,
        nodes: Vec<Node>,
    }

    /// n1..n3 in zones a..c, the driver registered with key `zone` on each.
    fn zoned() -> Cluster {
        let zone: &[&str] = &["zone"];
        Cluster {
            csi_nodes: ["n1", "n2", "n3"]
                .iter()
                .map(|n| csi_node(n, &[(DRIVER, Some(zone))]))
                .collect(),
            nodes: vec![
                node("n1", &[("zone", "a")]),
                node("n2", &[("zone", "b")]),
                node("n3", &[("zone", "c")]),
            ],
        }
    }

    /// n1 (zone a, rack r1) and n2 (zone b, rack r2) with keys zone+rack.
    fn racked() -> Cluster {
        let keys: &[&str] = &["zone", "rack"];
        Cluster {
            csi_nodes: vec![
                csi_node("n1", &[(DRIVER, Some(keys))]),
                csi_node("n2", &[(DRIVER, Some(keys))]),
            ],
            nodes: vec![
                node("n1", &[("zone", "a"), ("rack", "r1")]),
                node("n2", &[("zone", "b"), ("rack", "r2")]),
            ],
        }
    }

    #[derive(Clone, Copy)]
    struct Flags<'a> {
        selected: Option<&'a str>,
        strict: bool,
        immediate: bool,
        pvc: &'a str,
    }

    const LATE: Flags<'static> = Flags {
        selected: Some("n2"),
        strict: false,
        immediate: true,
        pvc: "web-0",
    };
    const IMMEDIATE: Flags<'static> = Flags {
        selected: None,
        strict: false,
        immediate: true,
        pvc: "web-0",
    };

    fn compute(
        c: &Cluster,
        allowed: &[TopologySelectorTerm],
        f: Flags<'_>,
    ) -> Result<Option<TopologyRequirement>, TopologyError> {
        accessibility_requirements(&TopologyInputs {
            driver: DRIVER,
            pvc_name: f.pvc,
            allowed_topologies: allowed,
            selected_node: f.selected,
            strict_topology: f.strict,
            immediate_topology: f.immediate,
            csi_nodes: &c.csi_nodes,
            nodes: &c.nodes,
        })
    }

    /// `(requisite, preferred)` of a successful, non-empty computation.
    fn expect_req(
        c: &Cluster,
        allowed: &[TopologySelectorTerm],
        f: Flags<'_>,
    ) -> (Vec<Topology>, Vec<Topology>) {
        match compute(c, allowed, f) {
            Ok(Some(r)) => (r.requisite, r.preferred),
            other => panic!("expected a requirement, got {other:?}"),
        }
    }

    #[test]
    fn fnv1_matches_known_vectors() {
        for (input, want) in [
            ("", 0x811c_9dc5),
            ("a", 0x050c_5d7e),
            ("foobar", 0x31f0_b262),
            ("web", H_WEB),
        ] {
            assert_eq!(fnv1_32(input.as_bytes()), want, "{input:?}");
        }
        // FNV-1a of "a" would be 0xe40c292c.
        assert_ne!(fnv1_32(b"a"), 0xe40c_292c);
    }

    #[test]
    fn pvc_name_hash_and_index_follows_statefulset_naming() {
        let whole = |s: &str| (fnv1_32(s.as_bytes()), 0);
        let cases: &[(&str, (u32, u32))] = &[
            ("web-0", (H_WEB, 0)),
            ("web-1", (H_WEB, 1)),
            ("claim-web-3", (H_WEB, 3)),
            ("data-my-web-01", (H_WEB, 1)),
            ("web-4294967295", (H_WEB, u32::MAX)),
            ("my-pvc", (0xe7cc_5001, 0)),
            ("db", (0x6d77_28c3, 0)),
            ("web-+1", whole("web-+1")),
            // Suffix "1"; the prefix "web-" reduces to "" after its last dash.
            ("web--1", (0x811c_9dc5, 1)),
            ("web-4294967296", whole("web-4294967296")),
            ("web-", whole("web-")),
            ("-5", (0x811c_9dc5, 5)),
            ("", (0, 0)),
        ];
        for (name, want) in cases {
            assert_eq!(pvc_name_hash_and_index(name), *want, "{name:?}");
        }
    }

    #[test]
    fn statefulset_spreading_rotates_preferred_by_hash_and_index() {
        let three = allowed(&[&[("zone", &["c", "a", "b"])]]);
        let four = allowed(&[&[("zone", &["a", "b", "c", "d"])]]);
        // H_WEB % 3 == 0 and H_WEB % 4 == 1.
        let cases: &[(&[TopologySelectorTerm], &str, &[&str])] = &[
            (&three, "web-0", &["a", "b", "c"]),
            (&three, "web-1", &["b", "c", "a"]),
            (&three, "web-2", &["c", "a", "b"]),
            (&three, "claim-web-3", &["a", "b", "c"]),
            (&three, "data-web-1", &["b", "c", "a"]),
            (&three, "logs-web-1", &["b", "c", "a"]),
            (&three, "db", &["b", "c", "a"]),
            (&three, "my-pvc", &["a", "b", "c"]),
            // (H_WEB + u32::MAX) wraps to H_WEB - 1: offset 2, not 0.
            (&three, "web-4294967295", &["c", "a", "b"]),
            (&four, "web-0", &["b", "c", "d", "a"]),
            (&four, "claim-web-3", &["a", "b", "c", "d"]),
            (&three, "", &["a", "b", "c"]),
        ];
        let c = zoned();
        for (allowed, pvc, want) in cases {
            let f = Flags { pvc, ..IMMEDIATE };
            let (requisite, preferred) = expect_req(&c, allowed, f);
            let mut sorted = want.to_vec();
            sorted.sort_unstable();
            assert_eq!(requisite, zones(&sorted), "{pvc}");
            assert_eq!(preferred, zones(want), "{pvc}");
        }
    }

    #[test]
    fn statefulset_spreading_applies_to_aggregated_topology() {
        let f = Flags {
            pvc: "web-1",
            ..IMMEDIATE
        };
        let (requisite, preferred) = expect_req(&zoned(), &[], f);
        assert_eq!(requisite, zones(&["a", "b", "c"]));
        assert_eq!(preferred, zones(&["b", "c", "a"]));
    }

    #[test]
    fn allowed_topologies_are_flattened_sorted_and_deduplicated() {
        type Want<'a> = &'a [&'a [(&'a str, &'a str)]];
        let cases: &[(&str, Vec<TopologySelectorTerm>, Want<'_>)] = &[
            (
                "values sorted",
                allowed(&[&[("zone", &["z2", "z1"])]]),
                &[&[("zone", "z1")], &[("zone", "z2")]],
            ),
            (
                "cartesian product, keys sorted in each term",
                allowed(&[&[("zone", &["z2", "z1"]), ("rack", &["r1", "r2"])]]),
                &[
                    &[("rack", "r1"), ("zone", "z1")],
                    &[("rack", "r1"), ("zone", "z2")],
                    &[("rack", "r2"), ("zone", "z1")],
                    &[("rack", "r2"), ("zone", "z2")],
                ],
            ),
            (
                "terms OR'd, duplicates dropped",
                allowed(&[&[("zone", &["a", "b"])], &[("zone", &["b", "c"])]]),
                &[&[("zone", "a")], &[("zone", "b")], &[("zone", "c")]],
            ),
            (
                "shorter terms first",
                allowed(&[&[("zone", &["b"]), ("rack", &["r"])], &[("zone", &["c"])]]),
                &[&[("zone", "c")], &[("rack", "r"), ("zone", "b")]],
            ),
            ("term without expressions", allowed(&[&[]]), &[]),
            (
                "expression without values is skipped (upstream quirk)",
                allowed(&[&[("zone", &[]), ("rack", &["r1"])]]),
                &[&[("rack", "r1")]],
            ),
        ];
        for (name, input, want) in cases {
            let want: Vec<Topology> = want.iter().map(|p| topo(p)).collect();
            assert_eq!(flatten_allowed_topologies(input), want, "{name}");
        }
    }

    #[test]
    fn allowed_topologies_flattening_to_nothing_gives_no_requirement() {
        for f in [IMMEDIATE, LATE] {
            assert_eq!(compute(&zoned(), &allowed(&[&[]]), f), Ok(None));
        }
    }

    #[test]
    fn immediate_aggregation_takes_keys_from_first_csinode_by_name() {
        let zone: &[&str] = &["zone"];
        let zone_rack: &[&str] = &["zone", "rack"];
        let empty: &[&str] = &[];
        let nodes = vec![
            node("n1", &[("zone", "a"), ("rack", "r1")]),
            node("n2", &[("zone", "b")]),
            node("n3", &[("zone", "a"), ("rack", "r1")]),
        ];
        let cases: &[(&str, Vec<CSINode>, Vec<Topology>)] = &[
            (
                "b-node first with keys; a-node lists the driver without keys",
                vec![
                    csi_node("c-node", &[(DRIVER, Some(zone_rack))]),
                    csi_node(
                        "a-node",
                        &[(DRIVER, Some(empty)), ("other", Some(zone_rack))],
                    ),
                    csi_node("b-node", &[(DRIVER, Some(zone))]),
                ],
                zones(&["a", "b"]),
            ),
            (
                "zone+rack keys: n2 lacks rack and is left out, n1/n3 merge",
                vec![
                    csi_node("b-node", &[(DRIVER, Some(zone))]),
                    csi_node("a-node", &[(DRIVER, Some(zone_rack))]),
                ],
                vec![topo(&[("rack", "r1"), ("zone", "a")])],
            ),
        ];
        for (name, csi_nodes, want) in cases {
            let c = Cluster {
                csi_nodes: csi_nodes.clone(),
                nodes: nodes.clone(),
            };
            let (requisite, _) = expect_req(&c, &[], IMMEDIATE);
            assert_eq!(&requisite, want, "{name}");
        }
    }

    #[test]
    fn immediate_aggregation_errors() {
        let zone_rack: &[&str] = &["zone", "rack"];
        let empty: &[&str] = &[];
        let cases: &[(&str, Vec<CSINode>, &str)] = &[
            ("no CSINodes", vec![], "no available topology found"),
            (
                "driver absent or without keys",
                vec![
                    csi_node("n1", &[("other", Some(zone_rack))]),
                    csi_node("n2", &[(DRIVER, Some(empty))]),
                    csi_node("n3", &[(DRIVER, None)]),
                ],
                "no available topology found",
            ),
            (
                "keys on no node",
                vec![csi_node("n1", &[(DRIVER, Some(&["zone", "rack"]))])],
                "topologyKeys [zone rack] were not found on any nodes",
            ),
        ];
        for (name, csi_nodes, want) in cases {
            let c = Cluster {
                csi_nodes: csi_nodes.clone(),
                nodes: vec![node("n1", &[("zone", "a")]), node("n2", &[])],
            };
            assert_eq!(
                compute(&c, &[], IMMEDIATE),
                Err(TopologyError::Retry(want.to_string())),
                "{name}"
            );
        }
    }

    #[test]
    fn immediate_topology_false_without_allowed_topologies_sends_nothing() {
        let off = Flags {
            immediate: false,
            ..IMMEDIATE
        };
        assert_eq!(compute(&zoned(), &[], off), Ok(None));
        // Even when nothing could be aggregated.
        let bare = Cluster {
            csi_nodes: vec![],
            nodes: vec![],
        };
        assert_eq!(compute(&bare, &[], off), Ok(None));
        // allowedTopologies still apply.
        let (requisite, _) = expect_req(&zoned(), &allowed(&[&[("zone", &["x"])]]), off);
        assert_eq!(requisite, zones(&["x"]));
    }

    #[test]
    fn late_binding_rotates_preferred_to_selected_node() {
        let abc = allowed(&[&[("zone", &["a", "b", "c"])]]);
        let zone_ab = allowed(&[&[("zone", &["b", "a"])]]);
        type Case<'a> = (
            &'a str,
            Cluster,
            Vec<TopologySelectorTerm>,
            &'a str,
            Vec<Topology>,
            Vec<Topology>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "aggregated",
                zoned(),
                vec![],
                "n2",
                zones(&["a", "b", "c"]),
                zones(&["b", "c", "a"]),
            ),
            (
                "aggregated, pvc hash ignored",
                zoned(),
                vec![],
                "n1",
                zones(&["a", "b", "c"]),
                zones(&["a", "b", "c"]),
            ),
            (
                "allowed topologies",
                zoned(),
                abc,
                "n3",
                zones(&["a", "b", "c"]),
                zones(&["c", "a", "b"]),
            ),
            (
                "allowed terms with fewer keys match by subset",
                racked(),
                zone_ab,
                "n2",
                zones(&["a", "b"]),
                zones(&["b", "a"]),
            ),
        ];
        for (name, c, allowed, selected, want_req, want_pref) in cases {
            let f = Flags {
                selected: Some(selected),
                pvc: "web-1",
                ..LATE
            };
            let (requisite, preferred) = expect_req(&c, &allowed, f);
            assert_eq!(requisite, want_req, "{name}");
            assert_eq!(preferred, want_pref, "{name}");
        }
    }

    #[test]
    fn late_binding_selected_node_outside_allowed_topologies_is_retried() {
        let err = compute(&zoned(), &allowed(&[&[("zone", &["a", "c"])]]), LATE);
        match err {
            Err(TopologyError::Retry(msg)) => {
                assert!(
                    msg.contains("from selected node \"n2\" is not in requisite"),
                    "{msg}"
                );
                assert!(msg.contains("[{zone b}]"), "{msg}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn selected_node_problems() {
        let zone_rack: &[&str] = &["zone", "rack"];
        let empty: &[&str] = &[];
        let retry = |s: &str| TopologyError::Retry(s.to_string());
        let resched = |s: &str| TopologyError::Reschedule(s.to_string());
        let cases: Vec<(&str, Vec<CSINode>, Vec<Node>, TopologyError)> = vec![
            (
                "CSINode missing",
                vec![csi_node("other", &[(DRIVER, Some(zone_rack))])],
                vec![node("n1", &[("zone", "a"), ("rack", "r")])],
                resched(
                    "failed to get selected CSINode n1: csinode.storage.k8s.io \"n1\" not found",
                ),
            ),
            (
                // v6.3.0 getTopologyFromNodeName: a missing Node has no labels.
                "Node missing",
                vec![csi_node("n1", &[(DRIVER, Some(zone_rack))])],
                vec![node("other", &[("zone", "a"), ("rack", "r")])],
                retry(
                    "topology labels from selected node map[] does not match \
                     topology keys from CSINode [zone rack]",
                ),
            ),
            (
                "driver absent from CSINode",
                vec![csi_node("n1", &[("other", Some(zone_rack))])],
                vec![node("n1", &[("zone", "a"), ("rack", "r")])],
                retry("no topology key found for node n1"),
            ),
            (
                "driver without keys",
                vec![csi_node("n1", &[(DRIVER, Some(empty))])],
                vec![node("n1", &[("zone", "a"), ("rack", "r")])],
                retry("no topology key found for node n1"),
            ),
            (
                "label missing",
                vec![csi_node("n1", &[(DRIVER, Some(zone_rack))])],
                vec![node("n1", &[("zone", "a"), ("x", "y")])],
                retry(
                    "topology labels from selected node map[x:y zone:a] does not match \
                     topology keys from CSINode [zone rack]",
                ),
            ),
            (
                "no labels at all",
                vec![csi_node("n1", &[(DRIVER, Some(zone_rack))])],
                vec![node("n1", &[])],
                retry(
                    "topology labels from selected node map[] does not match \
                     topology keys from CSINode [zone rack]",
                ),
            ),
        ];
        for (name, csi_nodes, nodes, want) in cases {
            let c = Cluster { csi_nodes, nodes };
            for strict in [false, true] {
                let f = Flags {
                    selected: Some("n1"),
                    strict,
                    ..LATE
                };
                assert_eq!(
                    compute(&c, &[], f),
                    Err(want.clone()),
                    "{name} strict={strict}"
                );
            }
            let seg = selected_node_segment("n1", DRIVER, &c.csi_nodes, &c.nodes);
            assert_eq!(seg, Err(want.clone()), "{name}");
        }
    }

    /// The event texts, exactly as upstream's `prepareProvision` produces
    /// them (external-provisioner: pkg/controller/controller.go
    /// prepareProvision around pkg/controller/topology.go
    /// GenerateAccessibilityRequirements): a reschedule carries the raw
    /// error, a retry gets `error generating accessibility requirements: `.
    #[test]
    fn event_texts_match_upstream() {
        let zone: &[&str] = &["zone"];
        let strict = Flags {
            strict: true,
            ..LATE
        };
        let no_csinode = Cluster {
            csi_nodes: vec![],
            nodes: zoned().nodes,
        };
        let no_node = Cluster {
            csi_nodes: zoned().csi_nodes,
            nodes: vec![],
        };
        let unregistered = Cluster {
            csi_nodes: vec![csi_node("n1", &[("other.csi", Some(zone))])],
            nodes: zoned().nodes,
        };
        let n1 = Flags {
            selected: Some("n1"),
            ..LATE
        };
        type Case<'a> = (
            &'a str,
            Cluster,
            Vec<TopologySelectorTerm>,
            Flags<'a>,
            &'a str,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "selected node without CSINode",
                no_csinode,
                vec![],
                n1,
                "failed to get selected CSINode n1: csinode.storage.k8s.io \"n1\" not found",
            ),
            (
                "selected node without Node",
                no_node,
                vec![],
                n1,
                "error generating accessibility requirements: topology labels from selected node map[] does not match topology keys from CSINode [zone]",
            ),
            (
                "driver not registered on the selected node",
                unregistered,
                vec![],
                n1,
                "error generating accessibility requirements: no topology key found for node n1",
            ),
            (
                "strict topology outside allowed topologies",
                racked(),
                allowed(&[&[("zone", &["a", "c"])]]),
                Flags {
                    selected: Some("n2"),
                    ..strict
                },
                "error generating accessibility requirements: selected node '\"n2\"' topology '[{rack r2} {zone b}]' is not in allowed topologies: [[{zone a}] [{zone c}]]",
            ),
            (
                "selected node outside allowed topologies",
                zoned(),
                allowed(&[&[("zone", &["a", "c"])]]),
                Flags {
                    selected: Some("n2"),
                    ..LATE
                },
                "error generating accessibility requirements: topology [{zone b}] from selected node \"n2\" is not in requisite: [[{zone a}] [{zone c}]]",
            ),
            (
                "immediate binding, driver registered nowhere",
                Cluster {
                    csi_nodes: vec![],
                    nodes: vec![],
                },
                vec![],
                Flags {
                    selected: None,
                    immediate: true,
                    ..LATE
                },
                "error generating accessibility requirements: no available topology found",
            ),
            (
                "immediate binding, no node has the keys",
                unlabelled_keys(),
                vec![],
                Flags {
                    selected: None,
                    immediate: true,
                    ..LATE
                },
                "error generating accessibility requirements: topologyKeys [zone rack] were not found on any nodes",
            ),
        ];
        for (name, cluster, allowed, flags, want) in cases {
            let got = compute(&cluster, &allowed, flags).unwrap_err();
            assert_eq!(got.to_string(), want, "{name}");
            let rescheduled = want.starts_with("failed to get selected CSINode");
            assert_eq!(got.is_reschedule(), rescheduled, "{name}");
        }
    }

    /// n1 registers keys zone+rack, but no Node carries both labels.
    fn unlabelled_keys() -> Cluster {
        let keys: &[&str] = &["zone", "rack"];
        Cluster {
            csi_nodes: vec![csi_node("n1", &[(DRIVER, Some(keys))])],
            nodes: vec![node("n1", &[("zone", "a")])],
        }
    }

    #[test]
    fn strict_topology_sends_only_the_selected_segment() {
        let strict = Flags {
            strict: true,
            ..LATE
        };
        let zone_ab = allowed(&[&[("zone", &["a", "b"])]]);
        let rack_r2 = allowed(&[&[("rack", &["r2"])]]);
        type Case<'a> = (&'a str, Cluster, Vec<TopologySelectorTerm>, Vec<Topology>);
        let cases: Vec<Case<'_>> = vec![
            ("no allowed topologies", zoned(), vec![], zones(&["b"])),
            (
                "inside allowed topologies",
                zoned(),
                zone_ab.clone(),
                zones(&["b"]),
            ),
            (
                "allowed term with fewer keys: full node segment",
                racked(),
                zone_ab,
                vec![topo(&[("zone", "b"), ("rack", "r2")])],
            ),
            (
                "matched on another key",
                racked(),
                rack_r2,
                vec![topo(&[("zone", "b"), ("rack", "r2")])],
            ),
        ];
        for (name, c, allowed, want) in cases {
            let (requisite, preferred) = expect_req(&c, &allowed, strict);
            assert_eq!(requisite, want, "{name}");
            assert_eq!(preferred, want, "{name}");
        }
    }

    #[test]
    fn strict_topology_selected_node_outside_allowed_topologies_is_retried() {
        let strict = Flags {
            strict: true,
            ..LATE
        };
        for terms in [
            allowed(&[&[("zone", &["a", "c"])]]),
            allowed(&[&[("zone", &["b"]), ("rack", &["r9"])]]),
            allowed(&[&[]]),
        ] {
            match compute(&racked(), &terms, strict) {
                Err(TopologyError::Retry(msg)) => {
                    assert!(
                        msg.starts_with("selected node '\"n2\"' topology '[{rack r2} {zone b}]'"),
                        "{msg}"
                    );
                    assert!(msg.contains("is not in allowed topologies"), "{msg}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn strict_topology_without_selected_node_acts_as_immediate() {
        let abc = allowed(&[&[("zone", &["a", "b", "c"])]]);
        for selected in [None, Some("")] {
            let f = Flags {
                selected,
                strict: true,
                pvc: "web-1",
                immediate: true,
            };
            let (requisite, preferred) = expect_req(&zoned(), &abc, f);
            assert_eq!(requisite, zones(&["a", "b", "c"]));
            assert_eq!(preferred, zones(&["b", "c", "a"]));
            let off = Flags {
                immediate: false,
                ..f
            };
            assert_eq!(compute(&zoned(), &[], off), Ok(None));
        }
    }

    #[test]
    fn inputs_may_hold_arcs_from_a_reflector_store() {
        let c = zoned();
        let nodes: Vec<Arc<Node>> = c.nodes.into_iter().map(Arc::new).collect();
        let csi_nodes: Vec<Arc<CSINode>> = c.csi_nodes.into_iter().map(Arc::new).collect();
        let got = accessibility_requirements(&TopologyInputs {
            driver: DRIVER,
            pvc_name: "x",
            allowed_topologies: &[],
            selected_node: Some("n3"),
            strict_topology: false,
            immediate_topology: false,
            csi_nodes: &csi_nodes,
            nodes: &nodes,
        });
        let preferred = got.ok().flatten().map(|r| r.preferred);
        assert_eq!(preferred, Some(zones(&["c", "a", "b"])));
        assert_eq!(
            selected_node_segment("n1", DRIVER, &csi_nodes, &nodes),
            Ok(topo(&[("zone", "a")]))
        );
    }

    #[test]
    fn driver_topology_keys_distinguishes_absent_and_keyless() {
        let zone: &[&str] = &["zone"];
        let c = csi_node("n", &[("keyless", None), (DRIVER, Some(zone))]);
        assert_eq!(
            driver_topology_keys(&c, DRIVER),
            Some(&["zone".to_string()][..])
        );
        assert_eq!(driver_topology_keys(&c, "keyless"), Some(&[][..]));
        assert_eq!(driver_topology_keys(&c, "absent"), None);
    }

    #[test]
    fn node_affinity_has_one_term_per_topology() {
        fn req(key: &str, value: &str) -> NodeSelectorRequirement {
            NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(vec![value.into()]),
            }
        }
        fn terms(list: Vec<Vec<NodeSelectorRequirement>>) -> Option<VolumeNodeAffinity> {
            Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: list
                        .into_iter()
                        .map(|e| NodeSelectorTerm {
                            match_expressions: Some(e),
                            match_fields: None,
                        })
                        .collect(),
                }),
            })
        }
        let cases: Vec<(&str, Vec<Topology>, Option<VolumeNodeAffinity>)> = vec![
            ("none", vec![], None),
            ("only empty segments", vec![topo(&[])], None),
            (
                "one topology, keys sorted",
                vec![topo(&[("zone", "a"), ("rack", "r"), ("host", "h")])],
                terms(vec![vec![
                    req("host", "h"),
                    req("rack", "r"),
                    req("zone", "a"),
                ]]),
            ),
            (
                "several topologies keep their order, empty skipped",
                vec![topo(&[("zone", "b")]), topo(&[]), topo(&[("zone", "a")])],
                terms(vec![vec![req("zone", "b")], vec![req("zone", "a")]]),
            ),
        ];
        for (name, accessible, want) in cases {
            assert_eq!(node_affinity(&accessible), want, "{name}");
        }
    }

    #[test]
    fn terms_compare_by_length_then_pairs_and_subset() {
        let t = |p: Pairs<'_>| -> Term {
            sorted_term(
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let mut list = vec![
            t(&[("zone", "b"), ("rack", "r")]),
            t(&[("zone", "b")]),
            t(&[("rack", "r"), ("zone", "a")]),
            t(&[("host", "z")]),
        ];
        list.sort_by(compare_terms);
        assert_eq!(
            list,
            vec![
                t(&[("host", "z")]),
                t(&[("zone", "b")]),
                t(&[("rack", "r"), ("zone", "a")]),
                t(&[("rack", "r"), ("zone", "b")]),
            ]
        );
        let node = t(&[("zone", "a"), ("rack", "r")]);
        let cases: &[(Pairs<'_>, bool)] = &[
            (&[], true),
            (&[("zone", "a")], true),
            (&[("rack", "r"), ("zone", "a")], true),
            (&[("zone", "b")], false),
            (&[("host", "h")], false),
            (&[("zone", "a"), ("rack", "r"), ("host", "h")], false),
        ];
        for (pairs, want) in cases {
            assert_eq!(is_subset(&t(pairs), &node), *want, "{pairs:?}");
        }
    }

    fn requirement(zone: &str) -> Option<TopologyRequirement> {
        Some(TopologyRequirement {
            requisite: zones(&[zone]),
            preferred: zones(&[zone]),
        })
    }

    #[test]
    fn cache_freezes_the_first_result_per_claim_and_node() {
        let cache = TopologyCache::new();
        let calls = Cell::new(0);
        let get = |uid: &str, node: Option<&str>, zone: &str| {
            cache.get_or_compute(uid, node, || {
                calls.set(calls.get() + 1);
                Ok::<_, TopologyError>(requirement(zone))
            })
        };
        assert!(cache.is_empty());
        assert_eq!(get("uid-1", Some("n1"), "a"), Ok(requirement("a")));
        // Retries keep the snapshot although the cluster now says "b".
        assert_eq!(get("uid-1", Some("n1"), "b"), Ok(requirement("a")));
        assert_eq!(calls.get(), 1);
        // Another claim is independent.
        assert_eq!(get("uid-2", None, "c"), Ok(requirement("c")));
        assert_eq!(cache.len(), 2);
        // Rescheduled to another node: recomputed, not the old zone.
        assert_eq!(get("uid-1", Some("n2"), "b"), Ok(requirement("b")));
        assert_eq!(calls.get(), 3);
        // Forgotten: recomputed.
        cache.forget("uid-1");
        assert_eq!(cache.len(), 1);
        assert_eq!(get("uid-1", Some("n2"), "d"), Ok(requirement("d")));
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn cache_stores_none_but_not_errors() {
        let cache = TopologyCache::new();
        let none = cache.get_or_compute("u", Some(""), || Ok::<_, TopologyError>(None));
        assert_eq!(none, Ok(None));
        let again = cache.get_or_compute("u", None, || Ok::<_, TopologyError>(requirement("a")));
        assert_eq!(again, Ok(None), "Some(\"\") and None are the same node");

        let err = cache.get_or_compute("e", None, || Err(TopologyError::Retry("x".into())));
        assert_eq!(err, Err(TopologyError::Retry("x".into())));
        let ok = cache.get_or_compute("e", None, || Ok::<_, TopologyError>(requirement("b")));
        assert_eq!(ok, Ok(requirement("b")));
    }

    #[test]
    fn errors_map_to_retried_crate_errors() {
        let resched = TopologyError::Reschedule("CSINode n1 not found".into());
        let retry = TopologyError::Retry("no available topology found".into());
        assert!(resched.is_reschedule());
        assert!(!retry.is_reschedule());
        for err in [resched, retry] {
            let msg = err.to_string();
            let mapped = crate::Error::from(err);
            assert!(!mapped.is_final());
            assert!(
                matches!(&mapped, crate::Error::Missing(m) if *m == msg),
                "{mapped:?}"
            );
        }
    }
}
