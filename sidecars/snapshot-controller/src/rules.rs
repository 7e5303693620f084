//! The decisions of upstream's common snapshot controller as pure functions
//! of an object and what the caches hold
//! (kubernetes-csi/external-snapshotter: pkg/common-controller
//! snapshot_controller.go and pkg/utils/util.go). [`crate::controller`]
//! reads the caches, calls these, and does the writes they ask for.
//!
//! Messages are upstream's, word for word: they end up in
//! `status.error.message` and in Events, where users and tools match them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use sidecar_runtime::finalizers;
use sidecar_runtime::gofmt::quote;
use snapshot_api::names::{
    ANN_DELETION_SECRET_NAME, ANN_DELETION_SECRET_NAMESPACE, ANN_VOLUME_SNAPSHOT_BEING_DELETED,
    IS_DEFAULT_SNAPSHOT_CLASS, MANAGED_BY_LABEL, PVC_AS_SOURCE_FINALIZER,
    SNAPSHOTTER_SECRET_NAME_KEY, SNAPSHOTTER_SECRET_NAMESPACE_KEY,
    VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER, VOLUME_SNAPSHOT_BOUND_FINALIZER,
    VOLUME_SNAPSHOT_CONTENT_FINALIZER,
};
use snapshot_api::snapshot::v1::{
    DeletionPolicy, VolumeSnapshotContentSource, VolumeSnapshotContentSpec, VolumeSnapshotError,
    VolumeSnapshotStatus,
};
use snapshot_api::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};

/// `namespace/name`, the snapshot queue's key and the form upstream's
/// messages name a snapshot in (`utils.SnapshotKey`).
pub fn snapshot_key(vs: &VolumeSnapshot) -> String {
    format!("{}/{}", vs.namespace().unwrap_or_default(), vs.name_any())
}

/// `namespace/name` of the snapshot a content points to.
pub fn ref_key(r: &ObjectReference) -> String {
    format!(
        "{}/{}",
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default()
    )
}

/// `status.readyToUse == true`.
pub fn is_ready(vs: &VolumeSnapshot) -> bool {
    vs.status
        .as_ref()
        .and_then(|s| s.ready_to_use)
        .unwrap_or(false)
}

/// `status.creationTime` is set: the driver has cut the snapshot.
pub fn is_created(vs: &VolumeSnapshot) -> bool {
    vs.status
        .as_ref()
        .is_some_and(|s| s.creation_time.is_some())
}

/// `status.boundVolumeSnapshotContentName`, when set.
pub fn bound_content_name(vs: &VolumeSnapshot) -> Option<&str> {
    vs.status
        .as_ref()
        .and_then(|s| s.bound_volume_snapshot_content_name.as_deref())
}

/// `snapcontent-<snapshot UID>`: the content a dynamic snapshot gets.
pub fn dynamic_content_name(vs: &VolumeSnapshot) -> String {
    format!("snapcontent-{}", vs.uid().unwrap_or_default())
}

/// The VolumeGroupSnapshot owning `vs` (an owner reference of kind
/// `VolumeGroupSnapshot`, `groupsnapshot.storage.k8s.io/v1`), if any.
pub fn group_parent(vs: &VolumeSnapshot) -> Option<&str> {
    vs.metadata.owner_references.as_ref().and_then(|refs| {
        refs.iter()
            .find(|o| {
                o.kind == "VolumeGroupSnapshot"
                    && o.api_version == "groupsnapshot.storage.k8s.io/v1"
            })
            .map(|o| o.name.as_str())
    })
}

/// The content points back at `vs`: name, namespace and UID all match
/// (`utils.IsVolumeSnapshotRefSet`).
pub fn ref_matches(vs: &VolumeSnapshot, content: &VolumeSnapshotContent) -> bool {
    let r = &content.spec.volume_snapshot_ref;
    r.name.as_deref().unwrap_or_default() == vs.name_any()
        && r.namespace.as_deref().unwrap_or_default() == vs.namespace().unwrap_or_default()
        && r.uid.as_deref().unwrap_or_default() == vs.uid().unwrap_or_default()
}

/// A snapshot with a deletion timestamp that still holds one of the
/// controller's finalizers (`utils.IsSnapshotDeletionCandidate`).
pub fn is_deletion_candidate(vs: &VolumeSnapshot) -> bool {
    vs.metadata.deletion_timestamp.is_some()
        && (finalizers::has(vs, VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER)
            || finalizers::has(vs, VOLUME_SNAPSHOT_BOUND_FINALIZER))
}

/// A problem with a snapshot that upstream reports as a status error plus a
/// Warning event, and a reconcile error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The event reason.
    pub reason: &'static str,
    /// `status.error.message` and the event message.
    pub message: String,
    /// Whether `status.readyToUse` is set to false with the error.
    pub set_ready_false: bool,
    /// The reconcile error (logged, retried).
    pub error: String,
}

/// What looking up a snapshot's content found.
#[derive(Clone, Debug, PartialEq)]
pub enum ContentLookup<'a> {
    /// No content of that name in the cache.
    Missing,
    /// The content, pointing back at the snapshot.
    Found(&'a VolumeSnapshotContent),
    /// A content of the wrong kind or bound elsewhere.
    Wrong(Problem),
}

/// The content a pre-provisioned snapshot names, checked
/// (`getPreprovisionedContentFromStore`): it must have
/// `spec.source.snapshotHandle` and point back at `vs` (name, namespace, and
/// UID when set).
pub fn preprovisioned_content<'a>(
    vs: &VolumeSnapshot,
    content: Option<&'a VolumeSnapshotContent>,
) -> Result<ContentLookup<'a>, String> {
    let name = vs
        .spec
        .source
        .volume_snapshot_content_name
        .as_deref()
        .unwrap_or_default();
    if name.is_empty() {
        return Err(format!(
            "empty VolumeSnapshotContentName for snapshot {}",
            snapshot_key(vs)
        ));
    }
    let Some(content) = content else {
        return Ok(ContentLookup::Missing);
    };
    if content.spec.source.snapshot_handle.is_none() {
        return Ok(ContentLookup::Wrong(Problem {
            reason: reason::SNAPSHOT_CONTENT_MISMATCH,
            message: "VolumeSnapshotContent is dynamically provisioned while expecting a pre-provisioned one".into(),
            set_ready_false: true,
            error: format!(
                "snapshot {} expects a pre-provisioned VolumeSnapshotContent {name} but gets a dynamically provisioned one",
                snapshot_key(vs)
            ),
        }));
    }
    let r = &content.spec.volume_snapshot_ref;
    let uid = r.uid.as_deref().unwrap_or_default();
    if r.name.as_deref().unwrap_or_default() != vs.name_any()
        || r.namespace.as_deref().unwrap_or_default() != vs.namespace().unwrap_or_default()
        || (!uid.is_empty() && uid != vs.uid().unwrap_or_default())
    {
        let msg = format!("VolumeSnapshotContent [{name}] is bound to a different snapshot");
        return Ok(ContentLookup::Wrong(Problem {
            reason: reason::SNAPSHOT_CONTENT_MISBOUND,
            message: msg.clone(),
            set_ready_false: true,
            error: msg,
        }));
    }
    Ok(ContentLookup::Found(content))
}

/// The content a dynamic snapshot got (`snapcontent-<uid>`), checked
/// (`getDynamicallyProvisionedContentFromStore`): it must have
/// `spec.source.volumeHandle` and point back at `vs` including the UID.
pub fn dynamic_content<'a>(
    vs: &VolumeSnapshot,
    content: Option<&'a VolumeSnapshotContent>,
) -> ContentLookup<'a> {
    let name = dynamic_content_name(vs);
    let Some(content) = content else {
        return ContentLookup::Missing;
    };
    if content.spec.source.volume_handle.is_none() {
        return ContentLookup::Wrong(Problem {
            reason: reason::SNAPSHOT_CONTENT_MISMATCH,
            message: format!(
                "VolumeSnapshotContent {name} is pre-provisioned while expecting a dynamically provisioned one"
            ),
            set_ready_false: true,
            error: format!(
                "snapshot {} expects a dynamically provisioned VolumeSnapshotContent {name} but gets a pre-provisioned one",
                snapshot_key(vs)
            ),
        });
    }
    if !ref_matches(vs, content) {
        let msg = format!("VolumeSnapshotContent [{name}] is bound to a different snapshot");
        return ContentLookup::Wrong(Problem {
            reason: reason::SNAPSHOT_CONTENT_MISBOUND,
            message: msg.clone(),
            set_ready_false: true,
            error: msg,
        });
    }
    ContentLookup::Found(content)
}

/// Which snapshot finalizers to add (`checkandAddSnapshotFinalizers`): the
/// as-source one on every live snapshot, the bound one once the snapshot is
/// bound to a (checked) content whose deletion policy is Delete.
pub fn finalizers_to_add(
    vs: &VolumeSnapshot,
    content: Option<&VolumeSnapshotContent>,
) -> (bool, bool) {
    let live = vs.metadata.deletion_timestamp.is_none();
    let source = live && !finalizers::has(vs, VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER);
    let bound = content.is_some_and(|c| {
        live && !finalizers::has(vs, VOLUME_SNAPSHOT_BOUND_FINALIZER)
            && bound_content_name(vs).is_some()
            && c.spec.deletion_policy == DeletionPolicy::Delete
    });
    (source, bound)
}

/// Whether some snapshot in `snapshots` (the claim's namespace), other than
/// `current` when `skip_current`, is still being taken from the claim
/// `claim`: it names the claim and is not ready (`isPVCBeingUsed`).
pub fn claim_in_use<'a>(
    claim: &str,
    current: &VolumeSnapshot,
    snapshots: impl IntoIterator<Item = &'a VolumeSnapshot>,
    skip_current: bool,
) -> bool {
    snapshots.into_iter().any(|s| {
        if skip_current && s.name_any() == current.name_any() {
            return false;
        }
        s.spec.source.persistent_volume_claim_name.as_deref() == Some(claim) && !is_ready(s)
    })
}

/// Whether the source claim needs `pvc-as-source-protection` added before
/// its content is created (`ensurePVCFinalizer`): false when it has it, an
/// error (upstream's text) when the claim is being deleted.
pub fn claim_needs_finalizer(claim: &PersistentVolumeClaim) -> Result<bool, String> {
    if finalizers::has(claim, PVC_AS_SOURCE_FINALIZER) {
        return Ok(false);
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "snapshot controller failed to update {} on API server: cannot add finalizer on claim because it is being deleted",
            claim.name_any()
        ));
    }
    Ok(true)
}

/// Whether a Pending claim in `claims` (the snapshot's namespace) is being
/// restored from `vs` (`isVolumeBeingCreatedFromSnapshot`).
pub fn restoring_from<'a>(
    vs: &VolumeSnapshot,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> bool {
    let name = vs.name_any();
    claims.into_iter().any(|c| {
        let from_vs = c
            .spec
            .as_ref()
            .and_then(|s| s.data_source.as_ref())
            .is_some_and(|d| {
                d.name == name
                    && d.kind == "VolumeSnapshot"
                    && d.api_group.as_deref() == Some("snapshot.storage.k8s.io")
            });
        from_vs && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
    })
}

/// What deleting a snapshot takes, decided once its deletion timestamp is
/// set (`processSnapshotWithDeletionTimestamp` and
/// `checkandRemoveSnapshotFinalizersAndCheckandDeleteContent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Not a deletion candidate: none of our finalizers left.
    Nothing,
    /// Must wait: event `SnapshotDeletePending` with `message`, reconcile
    /// error `error`.
    Pending {
        /// The Warning's message.
        message: String,
        /// The reconcile error.
        error: String,
    },
    /// Go ahead.
    Proceed {
        /// The content to annotate `volumesnapshot-being-deleted` (when it
        /// lacks it): the one bound both ways.
        mark_content: Option<String>,
        /// Delete that content object (its policy is Delete).
        delete_content: Option<String>,
        /// Remove the bound finalizer now (no content to wait for, or it
        /// is kept).
        remove_bound: bool,
        /// Remove the in-group finalizer (its group is gone).
        remove_group: bool,
    },
}

/// The content a snapshot being deleted is bound to: the status' name, or
/// for a dynamic snapshot whose status was never written, `snapcontent-<uid>`.
pub fn content_name_for_deletion(vs: &VolumeSnapshot) -> Option<String> {
    match bound_content_name(vs) {
        Some(n) if !n.is_empty() => Some(n.to_string()),
        _ if vs.spec.source.persistent_volume_claim_name.is_some() => {
            Some(dynamic_content_name(vs))
        }
        _ => None,
    }
}

/// Decides a deletion: `content` is the cached content of
/// [`content_name_for_deletion`], `restoring` what [`restoring_from`] says,
/// `group_exists` whether the group named in `status.volumeGroupSnapshotName`
/// still exists (None when the snapshot names none).
pub fn deletion(
    vs: &VolumeSnapshot,
    content: Option<&VolumeSnapshotContent>,
    restoring: bool,
    group_exists: Option<bool>,
) -> Deletion {
    if !is_deletion_candidate(vs) {
        return Deletion::Nothing;
    }
    // Only a content bound both ways is touched.
    let content = content.filter(|c| ref_matches(vs, c));
    let key = snapshot_key(vs);
    if content.is_some() && restoring {
        return Deletion::Pending {
            message: "Snapshot is being used to restore a PVC".into(),
            error: format!(
                "snapshot {key} is in use (being used to restore a PVC), will retry deletion"
            ),
        };
    }
    let mut remove_group = false;
    if let Some(exists) = group_exists {
        let group = vs
            .status
            .as_ref()
            .and_then(|s| s.volume_group_snapshot_name.as_deref())
            .unwrap_or_default();
        if exists {
            let msg = format!(
                "deletion of the individual volume snapshot {key} is not allowed as it belongs to group snapshot {}/{group}. Deleting the group snapshot will trigger the deletion of all the individual volume snapshots that are part of the group.",
                vs.namespace().unwrap_or_default()
            );
            return Deletion::Pending {
                message: msg.clone(),
                error: msg,
            };
        }
        remove_group = true;
    }
    let delete = content.is_some_and(|c| c.spec.deletion_policy == DeletionPolicy::Delete);
    Deletion::Proceed {
        mark_content: content
            .filter(|c| {
                !c.annotations()
                    .contains_key(ANN_VOLUME_SNAPSHOT_BEING_DELETED)
            })
            .map(|c| c.name_any()),
        delete_content: content.filter(|_| delete).map(|c| c.name_any()),
        remove_bound: !delete,
        remove_group,
    }
}

/// The default class for `driver` among `classes`
/// (`SetDefaultSnapshotClass`): exactly one class of that driver annotated
/// `snapshot.storage.kubernetes.io/is-default-class: "true"`.
pub fn default_class<'a>(
    classes: impl IntoIterator<Item = &'a VolumeSnapshotClass>,
    driver: &str,
) -> Result<&'a VolumeSnapshotClass, String> {
    let defaults: Vec<&VolumeSnapshotClass> = classes
        .into_iter()
        .filter(|c| {
            c.annotations()
                .get(IS_DEFAULT_SNAPSHOT_CLASS)
                .map(String::as_str)
                == Some("true")
                && c.spec.driver == driver
        })
        .collect();
    match defaults.as_slice() {
        [] => Err("cannot find default snapshot class".into()),
        [one] => Ok(one),
        many => Err(format!(
            "{} default snapshot classes were found",
            many.len()
        )),
    }
}

/// The source claim a dynamic snapshot names, from the cache
/// (`getClaimFromVolumeSnapshot`). `found` is the cache lookup by
/// `namespace/name`.
pub fn source_claim<'a>(
    vs: &VolumeSnapshot,
    found: Option<&'a PersistentVolumeClaim>,
) -> Result<&'a PersistentVolumeClaim, String> {
    let Some(name) = vs.spec.source.persistent_volume_claim_name.as_deref() else {
        return Err("the snapshot source PVC name is not specified".into());
    };
    if name.is_empty() {
        return Err(format!(
            "the PVC name is not specified in snapshot {}",
            snapshot_key(vs)
        ));
    }
    found.ok_or_else(|| {
        format!(
            "failed to retrieve PVC {name} from the lister: {}",
            quote(&format!("persistentvolumeclaim {} not found", quote(name)))
        )
    })
}

/// The PV a claim is bound to (`getVolumeFromVolumeSnapshot`, first half):
/// the claim must be Bound.
pub fn bound_volume_name(claim: &PersistentVolumeClaim) -> Result<String, String> {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        return Err(format!(
            "the PVC {} is not yet bound to a PV, will not attempt to take a snapshot",
            claim.name_any()
        ));
    }
    Ok(claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default())
}

/// The PV must point back at the claim (name, namespace, UID when set)
/// (`isVolumeBoundToClaim`); returns its CSI driver, or upstream's errors for
/// a broken binding and a non-CSI volume (`pvDriverFromSnapshot`).
pub fn volume_driver(
    vs: &VolumeSnapshot,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<String, String> {
    let bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            let uid = r.uid.as_deref().unwrap_or_default();
            r.name.as_deref() == Some(&claim.name_any())
                && r.namespace.as_deref().unwrap_or_default()
                    == claim.namespace().unwrap_or_default()
                && (uid.is_empty() || Some(uid) == claim.uid().as_deref())
        });
    if !bound {
        return Err("claim in dataSource not bound or invalid".into());
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.driver.clone())
        .ok_or_else(|| {
            format!(
                "snapshotting non-CSI volumes is not supported, snapshot:{}/{}",
                vs.namespace().unwrap_or_default(),
                vs.name_any()
            )
        })
}

/// Replaces `${key}` tokens in `template` from `params`; unknown tokens are
/// an error naming them, as upstream's `resolveTemplate` (`os.Expand`).
fn resolve_template(template: &str, params: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                let key = &rest[i + 2..i + 2 + j];
                match params.get(key) {
                    Some(v) => out.push_str(v),
                    None => missing.push(key.to_string()),
                }
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(format!(
            "invalid tokens: {}",
            sidecar_runtime::gofmt::quote_list(&missing)
        ));
    }
    Ok(out)
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// The snapshotter Secret named by a class's
/// `csi.storage.k8s.io/snapshotter-secret-name`/`-namespace` parameters,
/// templates resolved (`utils.GetSecretReference` with
/// `SnapshotterSecretParams`): `(name, namespace)`, or None when the class
/// names none.
pub fn snapshotter_secret(
    params: &BTreeMap<String, String>,
    content_name: &str,
    vs: &VolumeSnapshot,
) -> Result<Option<(String, String)>, String> {
    let name_t = params.get(SNAPSHOTTER_SECRET_NAME_KEY);
    let ns_t = params.get(SNAPSHOTTER_SECRET_NAMESPACE_KEY);
    let wrap = |e: String| format!("failed to get name and namespace template from params: {e}");
    let (name_t, ns_t) = match (name_t, ns_t) {
        (None, None) => return Ok(None),
        (Some(n), Some(ns)) if !n.is_empty() && !ns.is_empty() => (n, ns),
        (Some(_), Some(_)) => {
            return Err(wrap(
                "Snapshotter secrets specified in parameters but value of either namespace or name is empty".into(),
            ));
        }
        _ => {
            return Err(wrap(
                "either name and namespace for Snapshotter secrets specified, Both must be specified".into(),
            ));
        }
    };
    let ns_vs = vs.namespace().unwrap_or_default();
    let ns_params = BTreeMap::from([
        ("volumesnapshotcontent.name", content_name.to_string()),
        ("volumesnapshot.namespace", ns_vs.clone()),
    ]);
    let namespace = resolve_template(ns_t, &ns_params)
        .map_err(|e| format!("error resolving value {}: {e}", quote(ns_t)))?;
    if !is_dns1123_label(&namespace) {
        return Err(if &namespace != ns_t {
            format!(
                "{} resolved to {} which is not a valid namespace name",
                quote(ns_t),
                quote(&namespace)
            )
        } else {
            format!("{} is not a valid namespace name", quote(ns_t))
        });
    }
    let name_params = BTreeMap::from([
        ("volumesnapshotcontent.name", content_name.to_string()),
        ("volumesnapshot.namespace", ns_vs),
        ("volumesnapshot.name", vs.name_any()),
    ]);
    let name = resolve_template(name_t, &name_params)
        .map_err(|e| format!("error resolving value {}: {e}", quote(name_t)))?;
    if !is_dns1123_subdomain(&name) {
        return Err(if &name != name_t {
            format!(
                "{} resolved to {} which is not a valid secret name",
                quote(name_t),
                quote(&name)
            )
        } else {
            format!("{} is not a valid secret name", quote(name_t))
        });
    }
    Ok(Some((name, namespace)))
}

/// The content object a dynamic snapshot gets (`createSnapshotContent`):
/// named `snapcontent-<uid>`, pointing at `vs` (kind, apiVersion, name,
/// namespace, UID, resourceVersion, as `ref.GetReference`), the PV's volume
/// handle as source, the class's name, driver and deletion policy, the PV's
/// volume mode when `copy_volume_mode` (`--prevent-volume-mode-conversion`),
/// the deletion-secret annotations and the managed-by label.
pub fn new_dynamic_content(
    vs: &VolumeSnapshot,
    class: &VolumeSnapshotClass,
    volume_handle: &str,
    volume_mode: Option<&str>,
    secret: Option<&(String, String)>,
    managed_by: Option<&str>,
) -> VolumeSnapshotContent {
    let mut meta = ObjectMeta {
        name: Some(dynamic_content_name(vs)),
        ..Default::default()
    };
    if let Some((name, ns)) = secret {
        meta.annotations = Some(BTreeMap::from([
            (ANN_DELETION_SECRET_NAME.to_string(), name.clone()),
            (ANN_DELETION_SECRET_NAMESPACE.to_string(), ns.clone()),
        ]));
    }
    if let Some(node) = managed_by {
        meta.labels = Some(BTreeMap::from([(
            MANAGED_BY_LABEL.to_string(),
            node.to_string(),
        )]));
    }
    VolumeSnapshotContent {
        metadata: meta,
        spec: VolumeSnapshotContentSpec {
            volume_snapshot_ref: ObjectReference {
                api_version: Some(snapshot_api::snapshot::v1::API_VERSION.into()),
                kind: Some("VolumeSnapshot".into()),
                name: vs.metadata.name.clone(),
                namespace: vs.metadata.namespace.clone(),
                uid: vs.metadata.uid.clone(),
                resource_version: vs.metadata.resource_version.clone(),
                field_path: None,
            },
            deletion_policy: class.spec.deletion_policy,
            driver: class.spec.driver.clone(),
            volume_snapshot_class_name: Some(class.name_any()),
            source: VolumeSnapshotContentSource {
                volume_handle: Some(volume_handle.to_string()),
                snapshot_handle: None,
            },
            source_volume_mode: volume_mode.map(str::to_string),
        },
        status: None,
    }
}

/// Whether `node` satisfies one node selector term: every expression on
/// its labels and every field expression (`metadata.name` only) holds; a
/// term with neither matches nothing (`corev1helpers.MatchNodeSelectorTerms`).
fn term_matches(node: &Node, term: &NodeSelectorTerm) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.labels();
    let name = node.name_any();
    exprs
        .iter()
        .all(|r| requirement_matches(labels.get(&r.key).map(String::as_str), r))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(Some(name.as_str()), r))
}

fn requirement_matches(value: Option<&str>, r: &NodeSelectorRequirement) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(b) = number(bound) else {
                return false;
            };
            if r.operator == "Gt" { v > b } else { v < b }
        }
        _ => false,
    }
}

/// The node a PV's required node affinity selects, for the
/// `snapshot.storage.kubernetes.io/managed-by` label
/// (`--enable-distributed-snapshotting`, upstream `getManagedByNode`): the
/// first node matching any of the terms; None without node affinity or
/// without a match.
pub fn managed_by_node<'a>(
    pv: &PersistentVolume,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Option<String> {
    let terms = pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms
        .clone();
    nodes
        .into_iter()
        .find(|n| terms.iter().any(|t| term_matches(n, t)))
        .map(|n| n.name_any())
}

/// The JSON patch that binds a pre-provisioned content to `vs`
/// (`checkandBindSnapshotContent`): the ref's UID, and the snapshot's class
/// when it names one. `Ok(None)` when already bound with a class; an error
/// when the ref names another snapshot.
pub fn bind_patch(
    vs: &VolumeSnapshot,
    content: &VolumeSnapshotContent,
) -> Result<Option<serde_json::Value>, String> {
    let r = &content.spec.volume_snapshot_ref;
    let uid = r.uid.as_deref().unwrap_or_default();
    if r.name.as_deref().unwrap_or_default() != vs.name_any()
        || (!uid.is_empty() && uid != vs.uid().unwrap_or_default())
    {
        return Err(format!(
            "Could not bind snapshot {} and content {}, the VolumeSnapshotRef does not match",
            vs.name_any(),
            content.name_any()
        ));
    }
    if !uid.is_empty() && content.spec.volume_snapshot_class_name.is_some() {
        return Ok(None);
    }
    let mut ops = vec![serde_json::json!({
        "op": "replace", "path": "/spec/volumeSnapshotRef/uid", "value": vs.uid().unwrap_or_default()
    })];
    if let Some(class) = &vs.spec.volume_snapshot_class_name {
        ops.push(serde_json::json!({
            "op": "replace", "path": "/spec/volumeSnapshotClassName", "value": class
        }));
    }
    Ok(Some(serde_json::Value::Array(ops)))
}

/// Whether the snapshot's status lags its content's
/// (`needsUpdateSnapshotStatus`), so the content's sync queues the snapshot.
pub fn needs_status_update(vs: &VolumeSnapshot, content: &VolumeSnapshotContent) -> bool {
    let Some(cs) = &content.status else {
        return false;
    };
    let Some(s) = &vs.status else {
        return true;
    };
    if s.bound_volume_snapshot_content_name.is_none() {
        return true;
    }
    if s.creation_time.is_none() && cs.creation_time.is_some() {
        return true;
    }
    match (s.ready_to_use, cs.ready_to_use) {
        (None, Some(_)) => return true,
        (Some(a), Some(b)) if a != b => return true,
        _ => {}
    }
    match (&s.restore_size, cs.restore_size) {
        (None, Some(_)) => true,
        (Some(q), Some(n)) => is_zero(q) && n > 0,
        _ => false,
    }
}

fn is_zero(q: &Quantity) -> bool {
    sidecar_runtime::quantity::to_bytes(&q.0).is_ok_and(|b| b == 0)
}

fn time_from_nanos(ns: i64) -> Option<Time> {
    Timestamp::from_nanosecond(i128::from(ns)).ok().map(Time)
}

/// The snapshot status with its content's copied in (`updateSnapshotStatus`):
/// bound name, creation time and restore size when missing (a zero size is
/// replaced by a positive one), `readyToUse` always (clearing the error when
/// it turns true), the content's error. `None` when nothing changes.
pub fn merged_status(
    current: Option<&VolumeSnapshotStatus>,
    content: &VolumeSnapshotContent,
) -> Option<VolumeSnapshotStatus> {
    let cs = content.status.clone().unwrap_or_default();
    let created = cs.creation_time.and_then(time_from_nanos);
    let size = cs.restore_size;
    let ready = cs.ready_to_use.unwrap_or(false);
    let content_err = cs.error.clone();
    let mut next = match current {
        None => VolumeSnapshotStatus {
            bound_volume_snapshot_content_name: Some(content.name_any()),
            ready_to_use: Some(ready),
            creation_time: created,
            restore_size: size.map(|n| Quantity(sidecar_runtime::quantity::from_bytes(n))),
            error: content_err,
            volume_group_snapshot_name: None,
        },
        Some(s) => {
            let mut n = s.clone();
            if n.bound_volume_snapshot_content_name.is_none() {
                n.bound_volume_snapshot_content_name = Some(content.name_any());
            }
            if n.creation_time.is_none() && created.is_some() {
                n.creation_time = created;
            }
            if n.ready_to_use != Some(ready) {
                n.ready_to_use = Some(ready);
                if ready {
                    n.error = None;
                }
            }
            let replace_size = match (&n.restore_size, size) {
                (None, Some(_)) => true,
                (Some(q), Some(b)) => is_zero(q) && b > 0,
                _ => false,
            };
            if replace_size {
                n.restore_size = size.map(|b| Quantity(sidecar_runtime::quantity::from_bytes(b)));
            }
            // Upstream replaces the error whenever the content has one
            // (its time comparison is of pointers, always unequal) and
            // clears it when the content has none.
            match (&n.error, &content_err) {
                (None, Some(_)) => n.error = content_err.clone(),
                (Some(e), Some(c)) if e.time.is_some() && c.time.is_some() => {
                    n.error = content_err.clone()
                }
                (Some(_), None) => n.error = None,
                _ => {}
            }
            n
        }
    };
    if next.bound_volume_snapshot_content_name.is_none() {
        next.bound_volume_snapshot_content_name = Some(content.name_any());
    }
    (current != Some(&next)).then_some(next)
}

/// The status with an error recorded (`updateSnapshotErrorStatusWithEvent`):
/// `None` when the same message is already there (no write, no event).
pub fn error_status(
    current: Option<&VolumeSnapshotStatus>,
    message: &str,
    set_ready_false: bool,
    now: Time,
) -> Option<VolumeSnapshotStatus> {
    if current
        .and_then(|s| s.error.as_ref())
        .and_then(|e| e.message.as_deref())
        == Some(message)
    {
        return None;
    }
    let mut s = current.cloned().unwrap_or_default();
    s.error = Some(VolumeSnapshotError {
        message: Some(message.to_string()),
        time: Some(now),
    });
    if set_ready_false {
        s.ready_to_use = Some(false);
    }
    Some(s)
}

/// What a content's sync does (`syncContent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentStep {
    /// Neither or both sources: Warning `ContentValidationError`.
    Invalid(String),
    /// Pre-bound, waiting for its snapshot to bind it: nothing.
    WaitForBinding,
    /// Add the `volumesnapshotcontent-bound-protection` finalizer.
    AddFinalizer,
    /// Annotate `volumesnapshot-being-deleted` (its snapshot is being deleted).
    MarkBeingDeleted,
    /// Nothing to do.
    Nothing,
}

/// Decides a content's sync; `snapshot` is the cached snapshot its ref names.
/// The flag says whether that snapshot's status lags the content's (queue it).
pub fn content_step(
    content: &VolumeSnapshotContent,
    snapshot: Option<&VolumeSnapshot>,
) -> (ContentStep, bool) {
    let src = &content.spec.source;
    if src.volume_handle.is_some() == src.snapshot_handle.is_some() {
        return (
            ContentStep::Invalid(
                "Exactly one of VolumeHandle and SnapshotHandle should be specified".into(),
            ),
            false,
        );
    }
    if content
        .spec
        .volume_snapshot_ref
        .uid
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return (ContentStep::WaitForBinding, false);
    }
    if content.metadata.deletion_timestamp.is_none()
        && !finalizers::has(content, VOLUME_SNAPSHOT_CONTENT_FINALIZER)
    {
        return (ContentStep::AddFinalizer, false);
    }
    let snapshot = snapshot.filter(|s| s.uid() == content.spec.volume_snapshot_ref.uid);
    let enqueue = snapshot.is_some_and(|s| needs_status_update(s, content));
    if snapshot.is_some_and(is_deletion_candidate)
        && !content
            .annotations()
            .contains_key(ANN_VOLUME_SNAPSHOT_BEING_DELETED)
    {
        return (ContentStep::MarkBeingDeleted, enqueue);
    }
    (ContentStep::Nothing, enqueue)
}

/// Upstream's event reasons (Warning unless noted).
pub mod reason {
    /// Normal: the content was created, the sidecar takes over.
    pub const CREATING_SNAPSHOT: &str = "CreatingSnapshot";
    /// Normal: `status.creationTime` appeared.
    pub const SNAPSHOT_CREATED: &str = "SnapshotCreated";
    /// Normal: `status.readyToUse` turned true.
    pub const SNAPSHOT_READY: &str = "SnapshotReady";
    /// The named class does not exist.
    pub const GET_SNAPSHOT_CLASS_FAILED: &str = "GetSnapshotClassFailed";
    /// No single default class for the driver.
    pub const SET_DEFAULT_SNAPSHOT_CLASS_FAILED: &str = "SetDefaultSnapshotClassFailed";
    /// Neither or both sources.
    pub const SNAPSHOT_VALIDATION_ERROR: &str = "SnapshotValidationError";
    /// Adding the snapshot finalizers failed.
    pub const SNAPSHOT_FINALIZER_ERROR: &str = "SnapshotFinalizerError";
    /// Removing the claim finalizer failed.
    pub const ERROR_PVC_FINALIZER: &str = "ErrorPVCFinalizer";
    /// The bound content is gone.
    pub const SNAPSHOT_CONTENT_MISSING: &str = "SnapshotContentMissing";
    /// The content is of the other kind (dynamic vs pre-provisioned).
    pub const SNAPSHOT_CONTENT_MISMATCH: &str = "SnapshotContentMismatch";
    /// The content points to another snapshot.
    pub const SNAPSHOT_CONTENT_MISBOUND: &str = "SnapshotContentMisbound";
    /// A ready snapshot's content no longer points back.
    pub const SNAPSHOT_MISBOUND: &str = "SnapshotMisbound";
    /// Binding a pre-provisioned content failed.
    pub const SNAPSHOT_BIND_FAILED: &str = "SnapshotBindFailed";
    /// Writing the status failed.
    pub const SNAPSHOT_STATUS_UPDATE_FAILED: &str = "SnapshotStatusUpdateFailed";
    /// A dynamic snapshot's content has a snapshot handle.
    pub const SNAPSHOT_HANDLE_SET: &str = "SnapshotHandleSet";
    /// A dynamic snapshot without a claim.
    pub const SNAPSHOT_PVC_SOURCE_MISSING: &str = "SnapshotPVCSourceMissing";
    /// Creating the content failed (status error).
    pub const SNAPSHOT_CONTENT_CREATION_FAILED: &str = "SnapshotContentCreationFailed";
    /// The API server refused the content.
    pub const CREATE_SNAPSHOT_CONTENT_FAILED: &str = "CreateSnapshotContentFailed";
    /// The snapshot may not go yet.
    pub const SNAPSHOT_DELETE_PENDING: &str = "SnapshotDeletePending";
    /// Deleting the content object failed.
    pub const SNAPSHOT_CONTENT_OBJECT_DELETE_ERROR: &str = "SnapshotContentObjectDeleteError";
    /// A content with neither or both sources.
    pub const CONTENT_VALIDATION_ERROR: &str = "ContentValidationError";
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
