//! The decisions, as pure functions from a VolumeSnapshotContent and the
//! cached class to a [`Plan`] or a request; [`crate::controller`] does the
//! I/O. Upstream: external-snapshotter pkg/sidecar-controller
//! snapshot_controller.go (`syncContent`, `shouldDelete`,
//! `createSnapshotWrapper`, `updateSnapshotContentStatus`,
//! `updateContentErrorStatusWithEvent`), snapshot_controller_base.go
//! (`isDriverMatch`) and pkg/utils/util.go (`ShouldEnqueueContentChange`,
//! `RemovePrefixedParameters`, `GetSecretReference`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Value, json};
use sidecar_runtime::gofmt::quote;
use snapshot_api::names as n;
use snapshot_api::snapshot::v1::{
    DeletionPolicy, VolumeSnapshotClass, VolumeSnapshotContent, VolumeSnapshotContentStatus,
    VolumeSnapshotError,
};

/// What one sync of a content does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Deleted, policy Delete, the snapshot exists on the driver:
    /// DeleteSnapshot `handle`, clear the status, remove the finalizer.
    DeleteSnapshot {
        /// `status.snapshotHandle`.
        handle: String,
    },
    /// Deleted and nothing (more) to delete on the driver (policy Retain,
    /// no handle, or a group member): remove the bound finalizer.
    RemoveFinalizer,
    /// Call CreateSnapshot: the first time, again after a crash or a
    /// non-final error (the same name, so the driver answers with the same
    /// snapshot), or to poll a snapshot that is not ready yet.
    Create,
    /// A pre-provisioned snapshot (or a group member with a handle) that is
    /// not ready: ListSnapshots `handle` and record its status.
    CheckStatus {
        /// The snapshot ID to list.
        handle: String,
        /// Whether this is a group member (secrets from the deletion
        /// annotations instead of the class's list secret).
        group_member: bool,
    },
    /// Ready, but the `volumesnapshot-being-created` annotation is still
    /// there (a crash between the status write and its removal).
    RemoveBeingCreated,
    /// Nothing to do until the content changes.
    Done,
}

/// Whether this sidecar handles `content` (upstream `isDriverMatch`): it
/// names a volume or snapshot handle, its driver is `driver`, and its
/// class, when cached, is `driver`'s too.
pub fn is_ours(
    content: &VolumeSnapshotContent,
    driver: &str,
    class: Option<&VolumeSnapshotClass>,
) -> bool {
    let src = &content.spec.source;
    if src.volume_handle.is_none() && src.snapshot_handle.is_none() {
        return false;
    }
    if content.spec.driver != driver {
        return false;
    }
    class.is_none_or(|c| c.spec.driver == driver)
}

fn has_annotation(content: &VolumeSnapshotContent, key: &str) -> bool {
    content.annotations().contains_key(key)
}

/// Whether `content` is a member of a VolumeGroupSnapshot (created by
/// snapshot-controller from a group snapshot's result): no CreateSnapshot
/// or DeleteSnapshot of its own.
pub fn is_group_member(content: &VolumeSnapshotContent) -> bool {
    has_annotation(content, n::ANN_VOLUME_GROUP_SNAPSHOT_HANDLE)
}

/// `status.readyToUse` is true.
pub fn is_ready(content: &VolumeSnapshotContent) -> bool {
    content
        .status
        .as_ref()
        .and_then(|s| s.ready_to_use)
        .unwrap_or(false)
}

/// Upstream `shouldDelete`: the content is being deleted and either it is
/// an unbound pre-provisioned one, or snapshot-controller marked it
/// `volumesnapshot-being-deleted` and no CreateSnapshot is outstanding.
/// While `volumesnapshot-being-created` is set the deletion waits: the
/// driver may have cut a snapshot nobody recorded yet, so CreateSnapshot
/// is repeated first (see [`plan`]).
pub fn should_delete(content: &VolumeSnapshotContent) -> bool {
    if content.metadata.deletion_timestamp.is_none() {
        return false;
    }
    if content.spec.source.snapshot_handle.is_some()
        && content
            .spec
            .volume_snapshot_ref
            .uid
            .as_deref()
            .is_none_or(str::is_empty)
    {
        return true;
    }
    if has_annotation(content, n::ANN_VOLUME_SNAPSHOT_BEING_CREATED) {
        return false;
    }
    has_annotation(content, n::ANN_VOLUME_SNAPSHOT_BEING_DELETED)
}

/// Upstream `syncContent`'s decision for one of our contents.
pub fn plan(content: &VolumeSnapshotContent) -> Plan {
    let status = content.status.as_ref();
    if should_delete(content) {
        if content.spec.deletion_policy == DeletionPolicy::Delete
            && status.is_some_and(|s| s.volume_group_snapshot_handle.is_none())
            && let Some(handle) = status.and_then(|s| s.snapshot_handle.clone())
        {
            return Plan::DeleteSnapshot { handle };
        }
        if sidecar_runtime::finalizers::has(content, n::VOLUME_SNAPSHOT_CONTENT_FINALIZER) {
            return Plan::RemoveFinalizer;
        }
        return Plan::Done;
    }
    let member = is_group_member(content);
    if content.spec.source.volume_handle.is_some() && status.is_none() && !member {
        return Plan::Create;
    }
    if is_ready(content) {
        if has_annotation(content, n::ANN_VOLUME_SNAPSHOT_BEING_CREATED) {
            return Plan::RemoveBeingCreated;
        }
        return Plan::Done;
    }
    // checkandUpdateContentStatusOperation
    let member_handle = status
        .filter(|s| s.volume_group_snapshot_handle.is_some())
        .and_then(|s| s.snapshot_handle.clone());
    if let Some(handle) = content.spec.source.snapshot_handle.clone() {
        return Plan::CheckStatus {
            handle,
            group_member: member_handle.is_some(),
        };
    }
    if let Some(handle) = member_handle {
        return Plan::CheckStatus {
            handle,
            group_member: true,
        };
    }
    if member {
        return Plan::Done;
    }
    Plan::Create
}

/// What a CreateSnapshot needs besides the secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateInput {
    /// `<prefix>-<VolumeSnapshot UID>` ([`crate::names::snapshot_name`]).
    pub name: String,
    /// `spec.source.volumeHandle`.
    pub source_volume_id: String,
    /// The class parameters without `csi.storage.k8s.io/` keys, plus the
    /// `--extra-create-metadata` ones.
    pub parameters: BTreeMap<String, String>,
}

/// How snapshot names are made (the `--snapshot-name-*` flags) and
/// whether to add `--extra-create-metadata`.
#[derive(Clone, Debug)]
pub struct NameRules {
    /// `--snapshot-name-prefix`.
    pub prefix: String,
    /// `--snapshot-name-uuid-length`.
    pub uuid_length: i64,
    /// `--extra-create-metadata`.
    pub extra_create_metadata: bool,
}

/// Builds the CreateSnapshot input for `content` with its class (`None`
/// when the content names no class; `Err` text when the named class is not
/// cached). Everything is checked before the being-created annotation is
/// written (upstream writes it before stripping parameters, so a bad
/// parameter leaves the annotation behind and blocks deletion).
///
/// Errors are upstream's texts, ready for "Failed to create snapshot: …".
pub fn create_input(
    content: &VolumeSnapshotContent,
    class: Result<Option<&VolumeSnapshotClass>, String>,
    rules: &NameRules,
) -> Result<CreateInput, String> {
    let name = content.name_any();
    let input_err = |e: &str| {
        format!(
            "failed to get input parameters to create snapshot for content {name}: {}",
            quote(e)
        )
    };
    let class = class.map_err(|e| input_err(&e))?;
    let Some(class) = class else {
        return Err(input_err(&format!(
            "failed to take snapshot {name} without a snapshot class"
        )));
    };
    deletion_secret_ref(content).map_err(|e| input_err(&e))?;
    let mut parameters = strip_prefixed_parameters(class.spec.parameters.as_ref())
        .map_err(|e| format!("failed to remove CSI Parameters of prefixed keys: {e}"))?;
    let snap_ref = &content.spec.volume_snapshot_ref;
    if rules.extra_create_metadata {
        parameters.insert(
            n::VOLUME_SNAPSHOT_NAME_KEY.into(),
            snap_ref.name.clone().unwrap_or_default(),
        );
        parameters.insert(
            n::VOLUME_SNAPSHOT_NAMESPACE_KEY.into(),
            snap_ref.namespace.clone().unwrap_or_default(),
        );
        parameters.insert(n::VOLUME_SNAPSHOT_CONTENT_NAME_KEY.into(), name.clone());
    }
    let uid = snap_ref.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return Err(format!(
            "cannot create snapshot. Snapshot content {name} not bound to a snapshot"
        ));
    }
    let Some(source_volume_id) = content.spec.source.volume_handle.clone() else {
        return Err(format!(
            "cannot create snapshot. Volume handle not found in snapshot content {name}"
        ));
    };
    let name = crate::names::snapshot_name(&rules.prefix, &uid, rules.uuid_length)?;
    Ok(CreateInput {
        name,
        source_volume_id,
        parameters,
    })
}

/// Upstream `RemovePrefixedParameters`: drops the known
/// `csi.storage.k8s.io/` secret keys and refuses any other key in that
/// namespace.
pub fn strip_prefixed_parameters(
    params: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, String> {
    const KNOWN: [&str; 8] = [
        n::SNAPSHOTTER_SECRET_NAME_KEY,
        n::SNAPSHOTTER_SECRET_NAMESPACE_KEY,
        n::SNAPSHOTTER_LIST_SECRET_NAME_KEY,
        n::SNAPSHOTTER_LIST_SECRET_NAMESPACE_KEY,
        n::GROUP_SNAPSHOTTER_GET_SECRET_NAME_KEY,
        n::GROUP_SNAPSHOTTER_GET_SECRET_NAMESPACE_KEY,
        n::GROUP_SNAPSHOTTER_SECRET_NAME_KEY,
        n::GROUP_SNAPSHOTTER_SECRET_NAMESPACE_KEY,
    ];
    let mut out = BTreeMap::new();
    for (k, v) in params.into_iter().flatten() {
        if k.starts_with(n::CSI_PARAMETER_PREFIX) {
            if !KNOWN.contains(&k.as_str()) {
                return Err(format!(
                    "found unknown parameter key \"{k}\" with reserved namespace {}",
                    n::CSI_PARAMETER_PREFIX
                ));
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// A Secret to read: `(namespace, name)`.
pub type SecretRef = (String, String);

/// The Secret for CreateSnapshot/DeleteSnapshot from the content's
/// `deletion-secret-name`/`-namespace` annotations (upstream
/// `GetCredentialsFromAnnotation`): none when either is missing.
///
/// Errors: an annotation present but empty (upstream's text).
pub fn deletion_secret_ref(content: &VolumeSnapshotContent) -> Result<Option<SecretRef>, String> {
    let a = content.annotations();
    match (
        a.get(n::ANN_DELETION_SECRET_NAME),
        a.get(n::ANN_DELETION_SECRET_NAMESPACE),
    ) {
        (Some(name), Some(ns)) => {
            if name.is_empty() || ns.is_empty() {
                return Err(format!(
                    "cannot retrieve secrets for snapshot content {}, err: secret name or namespace not specified",
                    quote(&content.name_any())
                ));
            }
            Ok(Some((ns.clone(), name.clone())))
        }
        _ => Ok(None),
    }
}

/// The ListSnapshots Secret from the class's
/// `csi.storage.k8s.io/snapshotter-list-secret-*` parameters (upstream
/// `GetSecretReference` with `SnapshotterListSecretParams`), the only
/// template being `${volumesnapshotcontent.name}`.
///
/// Errors: only one of the two given, an unknown template, or a result
/// that is not a valid name (upstream's texts).
pub fn list_secret_ref(
    class: &VolumeSnapshotClass,
    content_name: &str,
) -> Result<Option<SecretRef>, String> {
    let p = class.spec.parameters.clone().unwrap_or_default();
    let name = p.get(n::SNAPSHOTTER_LIST_SECRET_NAME_KEY);
    let ns = p.get(n::SNAPSHOTTER_LIST_SECRET_NAMESPACE_KEY);
    let (name_t, ns_t) = match (name, ns) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err("failed to get name and namespace template from params: either name and namespace for Snapshotter secrets specified, Both must be specified".to_string());
        }
    };
    let resolve = |t: &str| -> Result<String, String> {
        let out = t.replace("${volumesnapshotcontent.name}", content_name);
        if out.contains("${") {
            return Err(format!(
                "error resolving value {}: unknown template",
                quote(t)
            ));
        }
        Ok(out)
    };
    let (ns, name) = (resolve(ns_t)?, resolve(name_t)?);
    if !is_dns_label(&ns) {
        return Err(format!("{} is not a valid namespace name", quote(ns_t)));
    }
    if name.is_empty() || name.len() > 253 || !name.split('.').all(is_dns_label) {
        return Err(format!("{} is not a valid secret name", quote(name_t)));
    }
    Ok(Some((ns, name)))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What the driver said about a snapshot (CreateSnapshot or ListSnapshots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotResult {
    /// `snapshot_id`.
    pub handle: String,
    /// `ready_to_use`.
    pub ready: bool,
    /// `creation_time` in Unix nanoseconds; now when the driver gave none.
    pub created_ns: i64,
    /// `size_bytes`; recorded only when positive.
    pub size: i64,
    /// `group_snapshot_id` (ListSnapshots), empty for none.
    pub group_snapshot_id: String,
}

/// Upstream `updateSnapshotContentStatus`: the status to write after the
/// driver answered, merged into `current` (fields already set stay, except
/// `readyToUse`, and an error is dropped when the snapshot became ready).
/// `None` when nothing changes.
pub fn merged_status(
    current: Option<&VolumeSnapshotContentStatus>,
    r: &SnapshotResult,
) -> Option<VolumeSnapshotContentStatus> {
    let group = (!r.group_snapshot_id.is_empty()).then(|| r.group_snapshot_id.clone());
    let Some(cur) = current else {
        return Some(VolumeSnapshotContentStatus {
            snapshot_handle: Some(r.handle.clone()),
            ready_to_use: Some(r.ready),
            creation_time: Some(r.created_ns),
            restore_size: (r.size > 0).then_some(r.size),
            volume_group_snapshot_handle: group,
            error: None,
        });
    };
    let mut s = cur.clone();
    let mut updated = false;
    if s.snapshot_handle.is_none() {
        s.snapshot_handle = Some(r.handle.clone());
        updated = true;
    }
    if s.ready_to_use != Some(r.ready) {
        s.ready_to_use = Some(r.ready);
        updated = true;
        if r.ready {
            s.error = None;
        }
    }
    if s.creation_time.is_none() {
        s.creation_time = Some(r.created_ns);
        updated = true;
    }
    if s.restore_size.is_none() && r.size > 0 {
        s.restore_size = Some(r.size);
        updated = true;
    }
    if s.volume_group_snapshot_handle.is_none() && group.is_some() {
        s.volume_group_snapshot_handle = group;
        updated = true;
    }
    updated.then_some(s)
}

/// Upstream `updateContentErrorStatusWithEvent`'s JSON patch of the status
/// subresource: `/status` with `readyToUse: false` and the error when there
/// is no status, else `/status/error` and `/status/readyToUse` replaced.
/// `None` when the same message is already recorded (no write; upstream
/// then sends no event either).
pub fn error_status_patch(
    content: &VolumeSnapshotContent,
    message: &str,
    now: Time,
) -> Option<Value> {
    let error = VolumeSnapshotError {
        time: Some(now),
        message: Some(message.to_string()),
    };
    match &content.status {
        Some(s) if s.error.as_ref().and_then(|e| e.message.as_deref()) == Some(message) => None,
        None => Some(json!([{
            "op": "replace",
            "path": "/status",
            "value": {"readyToUse": false, "error": error},
        }])),
        Some(_) => Some(json!([
            {"op": "replace", "path": "/status/error", "value": error},
            {"op": "replace", "path": "/status/readyToUse", "value": false},
        ])),
    }
}

/// The JSON patch removing the being-created annotation (upstream
/// `removeAnnVolumeSnapshotBeingCreated`).
pub fn remove_being_created_patch() -> Value {
    let path = n::ANN_VOLUME_SNAPSHOT_BEING_CREATED.replace('/', "~1");
    json!([{"op": "remove", "path": format!("/metadata/annotations/{path}")}])
}

/// The JSON patch setting `volumesnapshot-being-created: yes` (upstream
/// `setAnnVolumeSnapshotBeingCreated`: the whole annotation map replaced).
pub fn set_being_created_patch(content: &VolumeSnapshotContent) -> Value {
    let mut annotations = content.annotations().clone();
    annotations.insert(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED.into(), "yes".into());
    json!([{"op": "replace", "path": "/metadata/annotations", "value": annotations}])
}

/// The JSON patch removing the bound finalizer (upstream
/// `removeContentFinalizer`: the finalizer list replaced), with a `test`
/// of the list first so a finalizer another controller just changed is
/// never overwritten (upstream's patch has no such guard).
pub fn remove_finalizer_patch(content: &VolumeSnapshotContent) -> Value {
    let current = content.finalizers().to_vec();
    let kept = sidecar_runtime::finalizers::without(&current, n::VOLUME_SNAPSHOT_CONTENT_FINALIZER);
    json!([
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ])
}

/// Upstream `ShouldEnqueueContentChange`: whether an update from `old` to
/// `new` is worth a sync. Resyncs (same resourceVersion) and a change to
/// ready are; otherwise only changes outside status, managedFields,
/// finalizers and the being-created annotation.
pub fn should_enqueue(old: &VolumeSnapshotContent, new: &VolumeSnapshotContent) -> bool {
    if old.metadata.resource_version == new.metadata.resource_version {
        return true;
    }
    if !is_ready(old) && is_ready(new) {
        return true;
    }
    let mut a = old.clone();
    let mut b = new.clone();
    for c in [&mut a, &mut b] {
        c.metadata.resource_version = None;
        c.metadata.managed_fields = None;
        c.metadata.finalizers = None;
        c.status = None;
        if let Some(ann) = c.metadata.annotations.as_mut() {
            ann.remove(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED);
            if ann.is_empty() {
                c.metadata.annotations = None;
            }
        }
    }
    a != b
}

#[cfg(test)]
mod tests;
