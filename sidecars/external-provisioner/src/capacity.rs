//! CSIStorageCapacity production (`--enable-capacity`, `external-provisioner: pkg/capacity/capacity.go`): the
//! pure parts.
//!
//! The controller (elsewhere) watches Nodes, CSINodes, StorageClasses and
//! the CSIStorageCapacity objects in `$NAMESPACE`, calls GetCapacity, and
//! writes what [`plan_capacity`] says. Everything here works on plain values:
//!
//! 1. [`segments`] (or [`node_mode_segment`] with `--node-deployment`): the
//!    distinct topology segments where the driver runs.
//! 2. [`work_items`]: segment × StorageClass of this driver.
//! 3. [`get_capacity_request`] per item; the answer goes into a
//!    [`DesiredEntry`].
//! 4. [`plan_capacity`]: creates, updates and deletes that bring the
//!    existing objects in line, plus the values of its three gauges.
//! 5. [`refresh_after_provision`], [`items_for_node_affinity`],
//!    [`items_for_class`]: which items to poll early after a Provision or
//!    Delete.
//!
//! Objects are recognised by two labels, [`DRIVER_NAME_LABEL`] and
//! [`MANAGED_BY_LABEL`] (value from [`managed_by`]); objects carrying other
//! values are never touched.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use csi_client::csi::v1::{GetCapacityRequest, GetCapacityResponse, Topology};
use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm, VolumeNodeAffinity};
use k8s_openapi::api::storage::v1::{CSINode, CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::quantity::{from_bytes, to_bytes};

/// Label naming the CSI driver on every CSIStorageCapacity we write.
pub const DRIVER_NAME_LABEL: &str = "csi.storage.k8s.io/drivername";
/// Label naming the writing instance (see [`managed_by`]).
pub const MANAGED_BY_LABEL: &str = "csi.storage.k8s.io/managed-by";
/// The [`MANAGED_BY_LABEL`] value of a central (non node-mode) provisioner.
pub const MANAGED_BY: &str = "external-provisioner";
/// `metadata.generateName` of created objects.
pub const GENERATE_NAME: &str = "csisc-";
/// Longest allowed label value (a DNS-1035 label), the limit [`managed_by`]
/// shortens to.
pub const MAX_LABEL_VALUE_LENGTH: usize = 63;

/// A topology segment: topology key → value, ordered by key. The empty map
/// is the segment of a driver without topology (one pool for all nodes).
pub type Segment = BTreeMap<String, String>;

/// One unit of capacity bookkeeping: a segment and a StorageClass name. Each
/// item corresponds to at most one CSIStorageCapacity object.
pub type WorkItem = (Segment, String);

/// The distinct segments of `driver` in the cluster (upstream's node
/// topology informer).
///
/// For each CSINode listing `driver` in `spec.drivers`: its `topologyKeys`
/// sorted, each paired with the value of that label on the Node of the same
/// name. A CSINode is skipped while its Node is absent or lacks one of the
/// labels (kubelet writes CSINode before the Node update arrives); CSINodes
/// that do not list the driver are ignored. A driver registered without keys
/// yields the empty segment. The result is de-duplicated and sorted.
///
/// `N` and `C` are anything that borrows as a [`Node`] / [`CSINode`] (plain
/// objects or the `Arc`s of a reflector store).
pub fn segments<N, C>(driver: &str, csi_nodes: &[C], nodes: &[N]) -> Vec<Segment>
where
    N: Borrow<Node>,
    C: Borrow<CSINode>,
{
    let labels_by_node: HashMap<&str, Option<&BTreeMap<String, String>>> = nodes
        .iter()
        .filter_map(|n| {
            let meta = &n.borrow().metadata;
            meta.name
                .as_deref()
                .map(|name| (name, meta.labels.as_ref()))
        })
        .collect();
    let mut found = BTreeSet::new();
    for csi_node in csi_nodes {
        let csi_node = csi_node.borrow();
        let Some(keys) = csi_node
            .spec
            .drivers
            .iter()
            .find(|d| d.name == driver)
            .map(|d| d.topology_keys.as_deref().unwrap_or_default())
        else {
            continue;
        };
        let Some(labels) = csi_node
            .metadata
            .name
            .as_deref()
            .and_then(|name| labels_by_node.get(name))
        else {
            continue;
        };
        let segment: Option<Segment> = keys
            .iter()
            .map(|key| {
                labels
                    .and_then(|l| l.get(key))
                    .map(|value| (key.clone(), value.clone()))
            })
            .collect();
        if let Some(segment) = segment {
            found.insert(segment);
        }
    }
    found.into_iter().collect()
}

/// The single segment of a `--node-deployment` instance: the
/// `accessible_topology` segments its driver reported in NodeGetInfo (upstream
/// turns them into the fake Node's labels and CSINode keys). No topology →
/// the empty segment.
pub fn node_mode_segment(accessible_topology: Option<&Topology>) -> Segment {
    accessible_topology
        .map(|t| {
            t.segments
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `class` gets capacity objects: its `provisioner` is `driver`, and
/// its `volumeBindingMode` is not `Immediate` unless
/// `for_immediate_binding` (`--capacity-for-immediate-binding`). An unset
/// binding mode counts as not `Immediate`, as upstream (which compares only
/// a set value).
pub fn wants_capacity(class: &StorageClass, driver: &str, for_immediate_binding: bool) -> bool {
    class.provisioner == driver
        && (for_immediate_binding || class.volume_binding_mode.as_deref() != Some("Immediate"))
}

/// Every `(segment, class name)` to maintain: the product of `segments` and
/// the classes for which [`wants_capacity`] holds.
pub fn work_items<S: Borrow<StorageClass>>(
    segments: &[Segment],
    classes: &[S],
    driver: &str,
    for_immediate_binding: bool,
) -> BTreeSet<WorkItem> {
    let mut items = BTreeSet::new();
    for class in classes {
        let class = class.borrow();
        if !wants_capacity(class, driver, for_immediate_binding) {
            continue;
        }
        let Some(name) = class.metadata.name.as_deref() else {
            continue;
        };
        for segment in segments {
            items.insert((segment.clone(), name.to_owned()));
        }
    }
    items
}

/// The GetCapacity request for one item (upstream `syncCapacity`).
///
/// `parameters` are the class's raw `parameters`: the reserved
/// `csi.storage.k8s.io/…` keys are *not* stripped. `volume_capabilities` is
/// empty. `accessible_topology` is always present and carries the segment;
/// for the empty segment it is a `Topology` without segments, which is what
/// upstream sends (its segment is non-nil, so it sets the field).
pub fn get_capacity_request(segment: &Segment, class: &StorageClass) -> GetCapacityRequest {
    GetCapacityRequest {
        volume_capabilities: Vec::new(),
        parameters: class
            .parameters
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        accessible_topology: Some(Topology {
            segments: segment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
    }
}

/// The `nodeTopology` of an item's object: `matchLabels` = the segment. The
/// empty segment gives an empty selector (matches all nodes), serialised as
/// `{}`.
pub fn node_topology(segment: &Segment) -> LabelSelector {
    LabelSelector {
        match_labels: (!segment.is_empty()).then(|| segment.clone()),
        match_expressions: None,
    }
}

/// A new CSIStorageCapacity for `(segment, class_name)` from a GetCapacity
/// answer.
///
/// `generateName` [`GENERATE_NAME`] (no namespace: the caller creates it in
/// `$NAMESPACE`); labels [`DRIVER_NAME_LABEL`]=`driver` and
/// [`MANAGED_BY_LABEL`]=`managed_by`; `storageClassName`; `nodeTopology` per
/// [`node_topology`]; `capacity` = `available_capacity` bytes (also when 0:
/// upstream creates the object anyway, whatever its README says);
/// `maximumVolumeSize` = `maximum_volume_size` when the driver sent one;
/// `ownerReferences` = `[owner]` with `controller: true` when an owner is
/// configured (`--capacity-ownerref-level` ≥ 0). Quantities are printed as
/// [`from_bytes`] does (binary SI).
pub fn desired_capacity(
    segment: &Segment,
    class_name: &str,
    response: &GetCapacityResponse,
    driver: &str,
    managed_by: &str,
    owner: Option<&OwnerReference>,
) -> CSIStorageCapacity {
    CSIStorageCapacity {
        metadata: ObjectMeta {
            generate_name: Some(GENERATE_NAME.to_owned()),
            labels: Some(BTreeMap::from([
                (DRIVER_NAME_LABEL.to_owned(), driver.to_owned()),
                (MANAGED_BY_LABEL.to_owned(), managed_by.to_owned()),
            ])),
            owner_references: owner.map(|o| vec![controller_ref(o)]),
            ..ObjectMeta::default()
        },
        storage_class_name: class_name.to_owned(),
        node_topology: Some(node_topology(segment)),
        capacity: Some(Quantity(from_bytes(response.available_capacity))),
        maximum_volume_size: response
            .maximum_volume_size
            .map(|b| Quantity(from_bytes(b))),
    }
}

fn controller_ref(owner: &OwnerReference) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        ..owner.clone()
    }
}

/// The [`MANAGED_BY_LABEL`] value: [`MANAGED_BY`] for a central provisioner,
/// or with `--node-deployment` `external-provisioner-<node>` made to fit
/// [`MAX_LABEL_VALUE_LENGTH`] by [`name_with_max_length`].
///
/// Examples (node name lengths): up to 42 characters the value is kept whole;
/// 43–52 → `external-p…`-prefix, `-53f40b57-`, full node name (exactly 63
/// characters); 53 and more → `external-provisioner-<8 hex>` (29 characters).
pub fn managed_by(node: Option<&str>) -> String {
    match node {
        None => MANAGED_BY.to_owned(),
        Some(node) => name_with_max_length(MANAGED_BY, node, MAX_LABEL_VALUE_LENGTH),
    }
}

/// `base-suffix` (or just `suffix` when `base` is empty), shortened to at
/// most `max_len` bytes as upstream's `getNameWithMaxLength` does. This is
/// *not* a plain "cut the tail and append a hash":
///
/// * Fits → returned unchanged.
/// * Otherwise let `keep = max_len − 10 − len(suffix)`. If `keep > 0` the
///   suffix survives whole: `base[..keep]-<fnv(base)>-suffix`, exactly
///   `max_len` long. Note the hash is of `base` only (for
///   `external-provisioner` always `53f40b57`); the suffix is intact, so the
///   result stays unique.
/// * If `keep ≤ 0` the suffix is dropped: `base[..max_len−9]-<fnv(base-suffix)>`
///   (or the bare hash when `base` is empty), cut to `max_len`. For
///   `external-provisioner` that is 29 characters, far below the limit.
///
/// `<fnv(x)>` is [`fnv1a_32`] of the bytes of `x` as 8 lowercase hex
/// digits. Cuts fall back to the previous character boundary, so non-ASCII
/// input cannot panic (Kubernetes names are ASCII anyway).
pub fn name_with_max_length(base: &str, suffix: &str, max_len: usize) -> String {
    let name = if base.is_empty() {
        suffix.to_owned()
    } else {
        format!("{base}-{suffix}")
    };
    if name.len() <= max_len {
        return name;
    }
    match max_len
        .checked_sub(10 + suffix.len())
        .filter(|&keep| keep > 0)
    {
        Some(keep) => format!(
            "{}-{:08x}-{suffix}",
            prefix_bytes(base, keep),
            fnv1a_32(base.as_bytes())
        ),
        None => {
            let hash = format!("{:08x}", fnv1a_32(name.as_bytes()));
            let prefix = prefix_bytes(base, max_len.saturating_sub(9));
            let short = if prefix.is_empty() {
                hash
            } else {
                format!("{prefix}-{hash}")
            };
            prefix_bytes(&short, max_len).to_owned()
        }
    }
}

/// The longest prefix of `s` of at most `n` bytes ending on a char boundary.
fn prefix_bytes(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// 32-bit FNV-1a (xor, then multiply), as Go's `fnv.New32a`.
pub fn fnv1a_32(data: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    data.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// What is known about one work item's capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredEntry {
    /// The latest GetCapacity answer; `None` until the driver answered once
    /// (then no object is created, but a matching one is kept as it is).
    pub capacity: Option<GetCapacityResponse>,
}

/// Values of the three capacity gauges (`pkg/capacity/capacity.go`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapacityGauges {
    /// `csistoragecapacities_desired_goal`: number of work items.
    pub desired_goal: i64,
    /// `csistoragecapacities_desired_current`: work items that have an
    /// object.
    pub desired_current: i64,
    /// `csistoragecapacities_obsolete`: our objects matching no work item.
    /// As upstream, surplus duplicates of a live item are deleted but not
    /// counted here.
    pub obsolete: i64,
}

/// Writes that reconcile existing CSIStorageCapacity objects with the work
/// items. Each list is deterministic (items in [`WorkItem`] order, names
/// sorted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityPlan {
    /// Objects to Create (with `generateName`) in `$NAMESPACE`.
    pub create: Vec<CSIStorageCapacity>,
    /// Existing objects, modified, to Update (they keep name, namespace and
    /// `resourceVersion`, so a concurrent change gives a Conflict).
    pub update: Vec<CSIStorageCapacity>,
    /// Names of objects to Delete (NotFound counts as done).
    pub delete: Vec<String>,
    /// Gauge values for this state.
    pub gauges: CapacityGauges,
}

/// Whether `obj` carries our labels: [`DRIVER_NAME_LABEL`] = `driver` and
/// [`MANAGED_BY_LABEL`] = `managed_by` (upstream `isManaged`).
pub fn is_managed(obj: &CSIStorageCapacity, driver: &str, managed_by: &str) -> bool {
    let label = |key: &str| {
        obj.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
    };
    label(DRIVER_NAME_LABEL) == Some(driver) && label(MANAGED_BY_LABEL) == Some(managed_by)
}

/// The work item an existing object stands for: its `storageClassName` and
/// its `nodeTopology.matchLabels` (absent `matchLabels` = the empty
/// segment). `None` when it can stand for no item: `nodeTopology` absent
/// (selects no node) or using `matchExpressions`.
///
/// Upstream compares the whole selector with `reflect.DeepEqual`; this
/// compares content, so `matchLabels: {}` and no `matchLabels` are the same.
pub fn object_item(obj: &CSIStorageCapacity) -> Option<WorkItem> {
    let topology = obj.node_topology.as_ref()?;
    if topology
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    Some((
        topology.match_labels.clone().unwrap_or_default(),
        obj.storage_class_name.clone(),
    ))
}

/// Whether `obj` lists `owner` (by UID) as its controlling owner, as
/// upstream `isOwnedByUs`.
fn owned_by(obj: &CSIStorageCapacity, owner: &OwnerReference) -> bool {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner.uid)
}

/// Same byte value; an unparsable existing quantity is compared as text.
fn same_size(existing: Option<&Quantity>, want: Option<i64>) -> bool {
    match (existing, want) {
        (None, None) => true,
        (Some(q), Some(bytes)) => {
            to_bytes(&q.0).map_or_else(|_| q.0 == from_bytes(bytes), |b| b == bytes)
        }
        _ => false,
    }
}

/// Plans the writes that make the objects in `existing` (all
/// CSIStorageCapacity objects of `$NAMESPACE`) match `desired` (mirrors
/// upstream's `onCAddOrUpdate` + `syncCapacity`):
///
/// * Objects without our labels ([`is_managed`]) are ignored, whatever they
///   describe; so are objects without a name or already being deleted.
/// * Our objects whose [`object_item`] is not in `desired` are deleted
///   (class or segment gone, selector unusable) and counted obsolete.
/// * Several objects for one item: the oldest (`creationTimestamp`, then
///   name) is kept, the others deleted.
/// * The kept object is updated when the item's capacity is known and its
///   `capacity` or `maximumVolumeSize` differ in bytes, or `owner` is given
///   and no controlling owner reference has its UID (the owner, with
///   `controller: true`, is then appended; other references stay). Unknown
///   capacity → kept untouched.
/// * Items without an object and with a known capacity are created with
///   [`desired_capacity`].
pub fn plan_capacity<C: Borrow<CSIStorageCapacity>>(
    desired: &BTreeMap<WorkItem, DesiredEntry>,
    existing: &[C],
    managed_by: &str,
    driver: &str,
    owner: Option<&OwnerReference>,
) -> CapacityPlan {
    let mut plan = CapacityPlan::default();
    let mut matched: BTreeMap<&WorkItem, Vec<&CSIStorageCapacity>> = BTreeMap::new();
    for obj in existing {
        let obj = obj.borrow();
        if !is_managed(obj, driver, managed_by)
            || obj.metadata.deletion_timestamp.is_some()
            || obj.metadata.name.is_none()
        {
            continue;
        }
        match object_item(obj).and_then(|item| desired.get_key_value(&item)) {
            Some((item, _)) => matched.entry(item).or_default().push(obj),
            None => {
                plan.gauges.obsolete += 1;
                plan.delete.extend(obj.metadata.name.clone());
            }
        }
    }
    for (item, entry) in desired {
        let (segment, class_name) = item;
        let Some(objects) = matched.get_mut(item) else {
            if let Some(response) = &entry.capacity {
                plan.create.push(desired_capacity(
                    segment, class_name, response, driver, managed_by, owner,
                ));
            }
            continue;
        };
        objects.sort_by_key(|o| {
            (
                o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                o.metadata.name.clone(),
            )
        });
        let (keep, surplus) = objects.split_at(1);
        plan.delete
            .extend(surplus.iter().filter_map(|o| o.metadata.name.clone()));
        plan.gauges.desired_current += 1;
        let (Some(keep), Some(response)) = (keep.first(), &entry.capacity) else {
            continue;
        };
        let owner_missing = owner.filter(|o| !owned_by(keep, o));
        if same_size(keep.capacity.as_ref(), Some(response.available_capacity))
            && same_size(
                keep.maximum_volume_size.as_ref(),
                response.maximum_volume_size,
            )
            && owner_missing.is_none()
        {
            continue;
        }
        let mut updated = (*keep).clone();
        updated.capacity = Some(Quantity(from_bytes(response.available_capacity)));
        updated.maximum_volume_size = response
            .maximum_volume_size
            .map(|b| Quantity(from_bytes(b)));
        if let Some(o) = owner_missing {
            updated
                .metadata
                .owner_references
                .get_or_insert_with(Vec::new)
                .push(controller_ref(o));
        }
        plan.update.push(updated);
    }
    plan.gauges.desired_goal = i64::try_from(desired.len()).unwrap_or(i64::MAX);
    plan.update
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    plan.delete.sort();
    plan
}

/// Why a PV node-affinity term names no segment (upstream `termToSegment`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    /// The term uses `matchFields`.
    #[error("matchFields not empty")]
    MatchFields,
    /// An expression's operator is not `In`.
    #[error("unexpected operator {0:?}")]
    Operator(String),
    /// An expression has other than exactly one value.
    #[error("need exactly one label value, got {0}")]
    Values(usize),
    /// Two expressions name the same key (upstream keeps both, so such a
    /// term matches no item either).
    #[error("key {0:?} repeated")]
    DuplicateKey(String),
}

/// The segment a PV `nodeAffinity` term describes: each expression must be
/// `<key> In [<value>]`; no `matchFields`. No expressions → the empty
/// segment.
///
/// # Errors
/// [`TermError`] for any other shape.
pub fn term_to_segment(term: &NodeSelectorTerm) -> Result<Segment, TermError> {
    if term.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(TermError::MatchFields);
    }
    let mut segment = Segment::new();
    for expr in term.match_expressions.iter().flatten() {
        if expr.operator != "In" {
            return Err(TermError::Operator(expr.operator.clone()));
        }
        let values = expr.values.as_deref().unwrap_or_default();
        let [value] = values else {
            return Err(TermError::Values(values.len()));
        };
        if segment.insert(expr.key.clone(), value.clone()).is_some() {
            return Err(TermError::DuplicateKey(expr.key.clone()));
        }
    }
    Ok(segment)
}

/// Items (of any class) whose segment equals the segment of one of the
/// `required` node-selector terms of a PV's `nodeAffinity` (upstream
/// `refreshTopology`). Terms [`term_to_segment`] rejects are skipped; no
/// `required` selector → nothing. Used after a successful Provision or
/// Delete of a PV with node affinity.
pub fn items_for_node_affinity<'a>(
    affinity: &VolumeNodeAffinity,
    items: impl IntoIterator<Item = &'a WorkItem>,
) -> Vec<WorkItem> {
    let wanted: BTreeSet<Segment> = affinity
        .required
        .iter()
        .flat_map(|r| &r.node_selector_terms)
        .filter_map(|t| term_to_segment(t).ok())
        .collect();
    items
        .into_iter()
        .filter(|(segment, _)| wanted.contains(segment))
        .cloned()
        .collect()
}

/// Items of StorageClass `class_name` (upstream `refreshSC`). Used after a
/// successful Provision of a PV without node affinity, and after a failed
/// Provision whose state is not "no change".
pub fn items_for_class<'a>(
    class_name: &str,
    items: impl IntoIterator<Item = &'a WorkItem>,
) -> Vec<WorkItem> {
    items
        .into_iter()
        .filter(|(_, class)| class == class_name)
        .cloned()
        .collect()
}

/// Items to refresh after a successful Provision: with the new PV's
/// `spec.nodeAffinity` those of [`items_for_node_affinity`] (no fallback to
/// the class even if none match), else those of the claim's StorageClass
/// ([`items_for_class`]), else none.
pub fn refresh_after_provision<'a>(
    pv_node_affinity: Option<&VolumeNodeAffinity>,
    class_name: Option<&str>,
    items: impl IntoIterator<Item = &'a WorkItem>,
) -> Vec<WorkItem> {
    match (pv_node_affinity, class_name) {
        (Some(affinity), _) => items_for_node_affinity(affinity, items),
        (None, Some(class)) => items_for_class(class, items),
        (None, None) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{csi_node, node};
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement};

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const DRIVER: &str = "hostpath.csi.k8s.io";

    fn seg(pairs: &[(&str, &str)]) -> Segment {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn segments_table() {
        let zr: &[&str] = &["zone", "region", "rack"];
        let z: &[&str] = &["zone"];
        struct Case {
            name: &'static str,
            csi_nodes: Vec<CSINode>,
            nodes: Vec<Node>,
            want: Vec<Segment>,
        }
        let cases = [
            Case {
                name: "shared storage: registered without keys",
                csi_nodes: vec![
                    csi_node("n1", &[(DRIVER, None)]),
                    csi_node("n2", &[(DRIVER, Some(&[]))]),
                ],
                nodes: vec![node("n1", &[("zone", "a")]), node("n2", &[])],
                want: vec![seg(&[])],
            },
            Case {
                name: "deep topology, keys sorted, duplicates merged",
                csi_nodes: vec![
                    csi_node("n1", &[(DRIVER, Some(zr))]),
                    csi_node("n2", &[(DRIVER, Some(zr))]),
                    csi_node("n3", &[(DRIVER, Some(zr))]),
                ],
                nodes: vec![
                    node(
                        "n1",
                        &[("zone", "z1"), ("region", "r"), ("rack", "k1"), ("x", "y")],
                    ),
                    node("n2", &[("zone", "z1"), ("region", "r"), ("rack", "k1")]),
                    node("n3", &[("zone", "z2"), ("region", "r"), ("rack", "k1")]),
                ],
                want: vec![
                    seg(&[("rack", "k1"), ("region", "r"), ("zone", "z1")]),
                    seg(&[("rack", "k1"), ("region", "r"), ("zone", "z2")]),
                ],
            },
            Case {
                name: "mixed topology: different key sets per node",
                csi_nodes: vec![
                    csi_node("n1", &[(DRIVER, Some(z))]),
                    csi_node("n2", &[(DRIVER, Some(zr))]),
                ],
                nodes: vec![
                    node("n1", &[("zone", "z1"), ("region", "r"), ("rack", "k")]),
                    node("n2", &[("zone", "z1"), ("region", "r"), ("rack", "k")]),
                ],
                want: vec![
                    seg(&[("rack", "k"), ("region", "r"), ("zone", "z1")]),
                    seg(&[("zone", "z1")]),
                ],
            },
            Case {
                name: "node missing a label or missing entirely is skipped",
                csi_nodes: vec![
                    csi_node("n1", &[(DRIVER, Some(zr))]),
                    csi_node("n2", &[(DRIVER, Some(z))]),
                    csi_node("gone", &[(DRIVER, None)]),
                ],
                nodes: vec![
                    node("n1", &[("zone", "z1"), ("region", "r")]),
                    node("n2", &[("zone", "z9")]),
                ],
                want: vec![seg(&[("zone", "z9")])],
            },
            Case {
                name: "CSINode without the driver is ignored",
                csi_nodes: vec![
                    csi_node("n1", &[("other.csi", Some(z))]),
                    csi_node("n2", &[]),
                ],
                nodes: vec![node("n1", &[("zone", "z1")]), node("n2", &[("zone", "z2")])],
                want: vec![],
            },
        ];
        for c in cases {
            assert_eq!(
                segments(DRIVER, &c.csi_nodes, &c.nodes),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn node_mode_segment_from_node_get_info() {
        let topo = Topology {
            segments: [("zone".to_string(), "z1".to_string())].into(),
        };
        assert_eq!(node_mode_segment(Some(&topo)), seg(&[("zone", "z1")]));
        assert_eq!(node_mode_segment(None), seg(&[]));
        assert_eq!(node_mode_segment(Some(&Topology::default())), seg(&[]));
    }

    fn class(name: &str, provisioner: &str, mode: Option<&str>) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            volume_binding_mode: mode.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn work_items_with_and_without_immediate() {
        let classes = [
            class("late", DRIVER, Some("WaitForFirstConsumer")),
            class("now", DRIVER, Some("Immediate")),
            class("unset", DRIVER, None),
            class("foreign", "other.csi", Some("WaitForFirstConsumer")),
        ];
        let segs = [seg(&[("zone", "a")]), seg(&[("zone", "b")])];
        let names = |immediate| -> BTreeSet<(String, String)> {
            work_items(&segs, &classes, DRIVER, immediate)
                .into_iter()
                .map(|(s, c)| (s["zone"].clone(), c))
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> BTreeSet<(String, String)> {
            list.iter()
                .map(|(z, c)| (z.to_string(), c.to_string()))
                .collect()
        };
        assert_eq!(
            names(false),
            pairs(&[("a", "late"), ("a", "unset"), ("b", "late"), ("b", "unset")])
        );
        assert_eq!(
            names(true),
            pairs(&[
                ("a", "late"),
                ("a", "now"),
                ("a", "unset"),
                ("b", "late"),
                ("b", "now"),
                ("b", "unset")
            ])
        );
        assert!(work_items(&[], &classes, DRIVER, true).is_empty());
    }

    #[test]
    fn request_keeps_reserved_parameters_and_sends_topology() {
        let mut sc = class("fast", DRIVER, None);
        sc.parameters = Some(seg(&[
            ("pool", "ssd"),
            ("csi.storage.k8s.io/provisioner-secret-name", "s"),
        ]));
        let req = get_capacity_request(&seg(&[("zone", "a")]), &sc);
        assert_eq!(req.parameters.len(), 2);
        assert_eq!(
            req.parameters["csi.storage.k8s.io/provisioner-secret-name"],
            "s"
        );
        assert!(req.volume_capabilities.is_empty());
        assert_eq!(
            req.accessible_topology.map(|t| t.segments),
            Some([("zone".to_string(), "a".to_string())].into())
        );
        let empty = get_capacity_request(&seg(&[]), &class("plain", DRIVER, None));
        assert!(empty.parameters.is_empty());
        assert_eq!(empty.accessible_topology, Some(Topology::default()));
    }

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "csi-provisioner-abc".into(),
            uid: uid.into(),
            ..Default::default()
        }
    }

    fn answer(bytes: i64, max: Option<i64>) -> GetCapacityResponse {
        GetCapacityResponse {
            available_capacity: bytes,
            maximum_volume_size: max,
            minimum_volume_size: None,
        }
    }

    #[test]
    fn desired_object_shape() {
        let obj = desired_capacity(
            &seg(&[("zone", "a")]),
            "fast",
            &answer(1 << 30, Some(1 << 20)),
            DRIVER,
            "external-provisioner",
            Some(&owner("u1")),
        );
        assert_eq!(obj.metadata.generate_name.as_deref(), Some("csisc-"));
        assert_eq!(obj.metadata.name, None);
        let labels = obj.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[DRIVER_NAME_LABEL], DRIVER);
        assert_eq!(labels[MANAGED_BY_LABEL], "external-provisioner");
        assert_eq!(obj.storage_class_name, "fast");
        assert_eq!(
            obj.node_topology
                .as_ref()
                .and_then(|t| t.match_labels.clone()),
            Some(seg(&[("zone", "a")]))
        );
        assert_eq!(obj.capacity, Some(Quantity("1Gi".into())));
        assert_eq!(obj.maximum_volume_size, Some(Quantity("1Mi".into())));
        let refs = obj.metadata.owner_references.unwrap_or_default();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "u1");
        assert_eq!(refs[0].controller, Some(true));

        let zero = desired_capacity(&seg(&[]), "fast", &answer(0, None), DRIVER, "m", None);
        assert_eq!(zero.capacity, Some(Quantity("0".into())));
        assert_eq!(zero.maximum_volume_size, None);
        assert_eq!(zero.metadata.owner_references, None);
        assert_eq!(zero.node_topology, Some(LabelSelector::default()));
    }

    #[test]
    fn fnv1a_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn managed_by_shortening() {
        let a = |n: usize| format!("node{}", "a".repeat(n));
        assert_eq!(managed_by(None), "external-provisioner");
        assert_eq!(managed_by(Some("node01")), "external-provisioner-node01");
        // 20 + 1 + 42 = 63: fits.
        assert_eq!(
            managed_by(Some(&a(38))),
            format!("external-provisioner-{}", a(38))
        );
        // One over: base cut to 63 - 10 - 43 = 10 characters, suffix intact.
        let one_over = managed_by(Some(&a(39)));
        assert_eq!(one_over, format!("external-p-53f40b57-{}", a(39)));
        assert_eq!(one_over.len(), 63);
        assert_eq!(
            format!("{:08x}", fnv1a_32(b"external-provisioner")),
            "53f40b57"
        );
        let n52 = managed_by(Some(&a(48)));
        assert_eq!(n52, format!("e-53f40b57-{}", a(48)));
        assert_eq!(n52.len(), 63);
        // 53 and longer: the node name is dropped, hash of the whole name.
        assert_eq!(managed_by(Some(&a(49))), "external-provisioner-a3607ff1");
        assert_eq!(managed_by(Some(&a(63))), "external-provisioner-df38e37f");
        assert_eq!(
            format!(
                "{:08x}",
                fnv1a_32(format!("external-provisioner-{}", a(63)).as_bytes())
            ),
            "df38e37f"
        );
        assert_eq!(name_with_max_length("", &a(63), 63), "fa65587e");
        assert_eq!(name_with_max_length("", "node01", 63), "node01");
        for len in 0..300 {
            assert!(managed_by(Some(&"n".repeat(len))).len() <= 63, "{len}");
        }
        assert_eq!(name_with_max_length("abcdef", &"x".repeat(20), 5).len(), 5);
        assert!(name_with_max_length("ééééé", &"x".repeat(80), 12).len() <= 12);
    }

    fn existing(
        name: &str,
        class: &str,
        segment: Option<Segment>,
        capacity: &str,
        labels: (&str, &str),
    ) -> CSIStorageCapacity {
        CSIStorageCapacity {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("kube-system".into()),
                resource_version: Some("7".into()),
                labels: Some(seg(&[
                    (DRIVER_NAME_LABEL, labels.0),
                    (MANAGED_BY_LABEL, labels.1),
                ])),
                owner_references: Some(vec![controller_ref(&owner("u1"))]),
                ..Default::default()
            },
            storage_class_name: class.into(),
            node_topology: segment.map(|s| LabelSelector {
                match_labels: Some(s),
                match_expressions: None,
            }),
            capacity: Some(Quantity(capacity.into())),
            maximum_volume_size: None,
        }
    }

    const OURS: (&str, &str) = (DRIVER, "external-provisioner");

    fn item(zone: &str, class: &str) -> WorkItem {
        (seg(&[("zone", zone)]), class.into())
    }

    fn known(bytes: i64, max: Option<i64>) -> DesiredEntry {
        DesiredEntry {
            capacity: Some(answer(bytes, max)),
        }
    }

    fn plan(desired: &[(WorkItem, DesiredEntry)], objs: &[CSIStorageCapacity]) -> CapacityPlan {
        let desired: BTreeMap<_, _> = desired.iter().cloned().collect();
        plan_capacity(
            &desired,
            objs,
            "external-provisioner",
            DRIVER,
            Some(&owner("u1")),
        )
    }

    fn names(objs: &[CSIStorageCapacity]) -> Vec<&str> {
        objs.iter()
            .filter_map(|o| o.metadata.name.as_deref())
            .collect()
    }

    #[test]
    fn plan_creates_only_answered_items() {
        let p = plan(
            &[
                (item("a", "fast"), known(0, None)),
                (item("b", "fast"), DesiredEntry::default()),
            ],
            &[],
        );
        assert_eq!(p.create.len(), 1);
        assert_eq!(
            p.create[0].node_topology,
            Some(node_topology(&seg(&[("zone", "a")])))
        );
        assert_eq!(p.create[0].capacity, Some(Quantity("0".into())));
        assert!(p.update.is_empty() && p.delete.is_empty());
        assert_eq!(
            p.gauges,
            CapacityGauges {
                desired_goal: 2,
                desired_current: 0,
                obsolete: 0
            }
        );
    }

    #[test]
    fn plan_keeps_equal_objects_in_any_notation() {
        let objs = [
            existing(
                "csisc-1",
                "fast",
                Some(seg(&[("zone", "a")])),
                "1073741824",
                OURS,
            ),
            existing("csisc-2", "fast", Some(seg(&[("zone", "b")])), "5Gi", OURS),
        ];
        let p = plan(
            &[
                (item("a", "fast"), known(1 << 30, None)),
                (item("b", "fast"), DesiredEntry::default()),
            ],
            &objs,
        );
        assert_eq!(
            p,
            CapacityPlan {
                gauges: CapacityGauges {
                    desired_goal: 2,
                    desired_current: 2,
                    obsolete: 0
                },
                ..Default::default()
            }
        );
    }

    #[test]
    fn plan_updates_capacity_max_size_and_owner() {
        let mut no_owner = existing("csisc-3", "fast", Some(seg(&[("zone", "c")])), "1Gi", OURS);
        no_owner.metadata.owner_references = Some(vec![owner("u1"), owner("other")]); // not controller
        let mut has_max = existing("csisc-4", "fast", Some(seg(&[("zone", "d")])), "1Gi", OURS);
        has_max.maximum_volume_size = Some(Quantity("1Mi".into()));
        let objs = [
            existing("csisc-1", "fast", Some(seg(&[("zone", "a")])), "1Gi", OURS),
            existing("csisc-2", "fast", Some(seg(&[("zone", "b")])), "1Gi", OURS),
            no_owner,
            has_max,
        ];
        let p = plan(
            &[
                (item("a", "fast"), known(2 << 30, None)),
                (item("b", "fast"), known(1 << 30, Some(1 << 20))),
                (item("c", "fast"), known(1 << 30, None)),
                (item("d", "fast"), known(1 << 30, None)),
            ],
            &objs,
        );
        assert_eq!(
            names(&p.update),
            ["csisc-1", "csisc-2", "csisc-3", "csisc-4"]
        );
        assert_eq!(p.update[0].capacity, Some(Quantity("2Gi".into())));
        assert_eq!(p.update[0].metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            p.update[1].maximum_volume_size,
            Some(Quantity("1Mi".into()))
        );
        let refs = p.update[2]
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        assert_eq!(refs.len(), 3);
        assert_eq!(
            (refs[2].uid.as_str(), refs[2].controller),
            ("u1", Some(true))
        );
        assert_eq!(p.update[3].maximum_volume_size, None);
        assert!(p.create.is_empty() && p.delete.is_empty());
        // Without a configured owner, a missing owner is no reason to update.
        let desired: BTreeMap<_, _> = [(item("c", "fast"), known(1 << 30, None))].into();
        let p = plan_capacity(&desired, &objs[2..3], "external-provisioner", DRIVER, None);
        assert!(p.update.is_empty());
    }

    #[test]
    fn plan_deletes_obsolete_and_duplicates_but_not_foreign() {
        let mut older = existing("csisc-z", "fast", Some(seg(&[("zone", "a")])), "1Gi", OURS);
        older.metadata.creation_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
        let mut newer = existing("csisc-a", "fast", Some(seg(&[("zone", "a")])), "1Gi", OURS);
        newer.metadata.creation_timestamp = Some(Time("2025-01-01T00:00:00Z".parse().unwrap()));
        let objs = [
            newer,
            older,
            existing(
                "csisc-old-class",
                "gone",
                Some(seg(&[("zone", "a")])),
                "1Gi",
                OURS,
            ),
            existing(
                "csisc-old-seg",
                "fast",
                Some(seg(&[("zone", "x")])),
                "1Gi",
                OURS,
            ),
            existing("csisc-no-topo", "fast", None, "1Gi", OURS),
            existing(
                "csisc-node",
                "fast",
                Some(seg(&[("zone", "x")])),
                "1Gi",
                (DRIVER, "external-provisioner-n1"),
            ),
            existing(
                "csisc-other",
                "fast",
                Some(seg(&[("zone", "x")])),
                "1Gi",
                ("other.csi", "external-provisioner"),
            ),
        ];
        let p = plan(&[(item("a", "fast"), known(1 << 30, None))], &objs);
        assert_eq!(
            p.delete,
            [
                "csisc-a",
                "csisc-no-topo",
                "csisc-old-class",
                "csisc-old-seg"
            ]
        );
        assert!(p.create.is_empty() && p.update.is_empty());
        assert_eq!(
            p.gauges,
            CapacityGauges {
                desired_goal: 1,
                desired_current: 1,
                obsolete: 3
            }
        );
    }

    #[test]
    fn plan_matches_empty_segment_with_or_without_match_labels() {
        let mut bare = existing("csisc-1", "fast", None, "1Gi", OURS);
        bare.node_topology = Some(LabelSelector::default());
        let mut with_exprs = existing("csisc-2", "fast", Some(seg(&[])), "1Gi", OURS);
        with_exprs.node_topology = Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![Default::default()]),
        });
        let objs = [
            bare,
            existing("csisc-3", "slow", Some(seg(&[])), "1Gi", OURS),
            with_exprs,
        ];
        let p = plan(
            &[
                ((seg(&[]), "fast".into()), known(1 << 30, None)),
                ((seg(&[]), "slow".into()), known(1 << 30, None)),
            ],
            &objs,
        );
        assert_eq!(p.delete, ["csisc-2"]);
        assert!(p.create.is_empty() && p.update.is_empty());
        assert_eq!(p.gauges.desired_current, 2);
    }

    fn term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(
                exprs
                    .iter()
                    .map(|(k, op, vals)| NodeSelectorRequirement {
                        key: k.to_string(),
                        operator: op.to_string(),
                        values: Some(vals.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect(),
            ),
            match_fields: None,
        }
    }

    #[test]
    fn term_to_segment_table() {
        let cases: [(NodeSelectorTerm, Result<Segment, TermError>); 6] = [
            (term(&[]), Ok(seg(&[]))),
            (
                term(&[("zone", "In", &["a"]), ("rack", "In", &["r"])]),
                Ok(seg(&[("rack", "r"), ("zone", "a")])),
            ),
            (
                term(&[("zone", "NotIn", &["a"])]),
                Err(TermError::Operator("NotIn".into())),
            ),
            (
                term(&[("zone", "In", &["a", "b"])]),
                Err(TermError::Values(2)),
            ),
            (
                term(&[("zone", "In", &["a"]), ("zone", "In", &["b"])]),
                Err(TermError::DuplicateKey("zone".into())),
            ),
            (
                NodeSelectorTerm {
                    match_fields: Some(vec![Default::default()]),
                    ..term(&[])
                },
                Err(TermError::MatchFields),
            ),
        ];
        for (t, want) in cases {
            assert_eq!(term_to_segment(&t), want, "{t:?}");
        }
    }

    #[test]
    fn refresh_selection() {
        let items: BTreeSet<WorkItem> =
            [item("a", "fast"), item("a", "slow"), item("b", "fast")].into();
        let affinity = |terms: Vec<NodeSelectorTerm>| VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: terms,
            }),
        };
        let zone_a = affinity(vec![
            term(&[("zone", "In", &["a"])]),
            term(&[("zone", "NotIn", &["b"])]),
        ]);
        assert_eq!(
            refresh_after_provision(Some(&zone_a), Some("fast"), &items),
            [item("a", "fast"), item("a", "slow")]
        );
        assert_eq!(
            refresh_after_provision(None, Some("fast"), &items),
            [item("a", "fast"), item("b", "fast")]
        );
        assert!(refresh_after_provision(None, None, &items).is_empty());
        // Affinity without `required`, or matching nothing: no class fallback.
        let empty = VolumeNodeAffinity { required: None };
        assert!(refresh_after_provision(Some(&empty), Some("fast"), &items).is_empty());
        let zone_q = affinity(vec![term(&[("zone", "In", &["q"])])]);
        assert!(refresh_after_provision(Some(&zone_q), Some("fast"), &items).is_empty());
        assert_eq!(
            items_for_node_affinity(&affinity(vec![term(&[("zone", "In", &["b"])])]), &items),
            [item("b", "fast")]
        );
    }
}
