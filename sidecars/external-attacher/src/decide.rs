//! The attacher's rules as pure functions (decide, then act): what to send
//! to the driver, which patches to write, which VolumeAttachments the
//! ListVolumes reconciliation must redo. [`crate::controller`] does the I/O.
//!
//! Each function cites the upstream v4.12.0 code it reproduces
//! (`kubernetes-csi/external-attacher`, file and function).

use std::collections::{BTreeMap, HashMap};

use csi_client::csi::v1::VolumeCapability;
use csi_client::csi::v1::volume_capability::access_mode::Mode;
use csi_client::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use serde_json::{Value, json};

use crate::error::Error;
use crate::names::{MIGRATED_TO_ANNOTATION, NODE_ID_ANNOTATION};

/// What the driver's capabilities make of the attacher (`cmd/csi-attacher/main.go`,
/// `supportsControllerCapabilities` and the handler choice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Plugin CONTROLLER_SERVICE and controller PUBLISH_UNPUBLISH_VOLUME:
    /// the CSI handler; otherwise the trivial one (mark attached, nothing else).
    pub publish_unpublish: bool,
    /// PUBLISH_READONLY: pass `spec.csi.readOnly`, else always false.
    pub publish_readonly: bool,
    /// LIST_VOLUMES and LIST_VOLUMES_PUBLISHED_NODES: the reconcile loop.
    pub list_published_nodes: bool,
    /// SINGLE_NODE_MULTI_WRITER: the finer access modes.
    pub single_node_multi_writer: bool,
}

impl Capabilities {
    /// From the raw capability bits, as upstream's `main.go` combines them.
    pub fn from_driver(
        controller_service: bool,
        publish_unpublish: bool,
        publish_readonly: bool,
        list_volumes: bool,
        list_published_nodes: bool,
        single_node_multi_writer: bool,
    ) -> Self {
        if !controller_service {
            return Capabilities::default();
        }
        Capabilities {
            publish_unpublish,
            publish_readonly,
            list_published_nodes: list_volumes && list_published_nodes,
            single_node_multi_writer,
        }
    }
}

/// Where a VolumeAttachment's volume comes from (`csi_handler.go`, `csiAttach`).
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `spec.source.persistentVolumeName`.
    Pv(String),
    /// `spec.source.inlineVolumeSpec` (a migrated in-line volume), with its CSI part.
    Inline(Box<PersistentVolumeSpec>),
}

/// Exactly one of the two sources, with upstream's errors otherwise.
pub fn source(va: &VolumeAttachment) -> Result<Source, Error> {
    let s = &va.spec.source;
    match (&s.persistent_volume_name, &s.inline_volume_spec) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "both InlineCSIVolumeSource and PersistentVolumeName specified in VA source",
        )),
        (Some(pv), None) => Ok(Source::Pv(pv.clone())),
        (None, Some(spec)) if spec.csi.is_none() => {
            Err(Error::invalid("inline volume spec contains nil CSI source"))
        }
        (None, Some(spec)) => Ok(Source::Inline(Box::new(spec.clone()))),
        (None, None) => Err(Error::invalid(
            "neither InlineCSIVolumeSource nor PersistentVolumeName specified in VA source",
        )),
    }
}

/// The lister's text for a PV missing from the cache (client-go's NotFound).
pub fn pv_not_found(name: &str) -> Error {
    Error::invalid(format!("persistentvolume \"{name}\" not found"))
}

/// Attach refuses PVs being deleted (`csiAttach`).
pub fn check_pv_not_deleting(pv: &PersistentVolume) -> Result<(), Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Err(Error::invalid(format!(
            "PersistentVolume \"{}\" is marked for deletion",
            pv.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// The PV spec to publish: translated through csi-translation when the PV
/// is an in-tree one a migration driver serves; `migrated` tells the metric.
pub fn processed_spec(pv: &PersistentVolume) -> Result<(PersistentVolumeSpec, bool), Error> {
    if csi_translation::is_pv_migratable(pv) {
        let translated = csi_translation::translate_in_tree_pv_to_csi(pv)
            .map_err(|e| Error::invalid(format!("failed to translate in tree pv to CSI: {e}")))?;
        return Ok((translated.spec.unwrap_or_default(), true));
    }
    Ok((pv.spec.clone().unwrap_or_default(), false))
}

/// The spec's CSI source (`getCSISource`).
pub fn csi_source(spec: &PersistentVolumeSpec) -> Result<&CSIPersistentVolumeSource, Error> {
    spec.csi
        .as_ref()
        .ok_or_else(|| Error::invalid("pv spec contained non-csi source that was not migrated"))
}

/// The CSI access mode for all of the PV's access modes combined
/// (`kubernetes-csi/csi-lib-utils:accessmodes/access_modes.go`, `ToCSIAccessMode`).
pub fn access_mode(modes: &[String], single_node_multi_writer: bool) -> Result<Mode, Error> {
    csi_client::access_modes::to_csi_access_mode(modes, single_node_multi_writer)
        .map_err(|e| Error::invalid(e.to_string()))
}

/// The one volume capability of ControllerPublish: block for
/// `volumeMode: Block`, else mount with `fsType` (or `--default-fstype`)
/// and the PV's mount options (`util.go`, `GetVolumeCapabilities`).
pub fn volume_capability(
    spec: &PersistentVolumeSpec,
    single_node_multi_writer: bool,
    default_fstype: &str,
) -> Result<VolumeCapability, Error> {
    let csi = spec
        .csi
        .as_ref()
        .ok_or_else(|| Error::invalid("CSI volume source was nil"))?;
    let access_type = if spec.volume_mode.as_deref() == Some("Block") {
        AccessType::Block(BlockVolume {})
    } else {
        let fs_type = csi
            .fs_type
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| default_fstype.to_string());
        AccessType::Mount(MountVolume {
            fs_type,
            mount_flags: spec.mount_options.clone().unwrap_or_default(),
            ..Default::default()
        })
    };
    let mode = access_mode(
        spec.access_modes.as_deref().unwrap_or_default(),
        single_node_multi_writer,
    )?;
    Ok(VolumeCapability {
        access_type: Some(access_type),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    })
}

/// `readonly` of ControllerPublish: the PV's, only if the driver has
/// PUBLISH_READONLY ("CO MUST set this field to false" otherwise).
pub fn readonly(csi: &CSIPersistentVolumeSource, caps: &Capabilities) -> bool {
    caps.publish_readonly && csi.read_only.unwrap_or(false)
}

/// `controllerPublishSecretRef` as (namespace, name), when set.
pub fn publish_secret(csi: &CSIPersistentVolumeSource) -> Option<(String, String)> {
    csi.controller_publish_secret_ref.as_ref().map(|r| {
        (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        )
    })
}

/// The node ID: the CSINode's entry for `driver`; on detach (`va` given)
/// the VolumeAttachment's annotation when the CSINode or its entry is gone
/// (`csi_handler.go`, `getNodeID`).
pub fn node_id(
    csinode: Option<&CSINode>,
    node_name: &str,
    driver: &str,
    va: Option<&VolumeAttachment>,
) -> Result<String, Error> {
    let err = match csinode {
        Some(n) => match n.spec.drivers.iter().find(|d| d.name == driver) {
            Some(d) => return Ok(d.node_id.clone()),
            None => format!("CSINode {node_name} does not contain driver {driver}"),
        },
        None => format!("csinode.storage.k8s.io \"{node_name}\" not found"),
    };
    va.and_then(|va| va.metadata.annotations.as_ref())
        .and_then(|a| a.get(NODE_ID_ANNOTATION))
        .cloned()
        .ok_or(Error::Invalid(err))
}

/// The merge patch adding our finalizer and the node-ID annotation before
/// ControllerPublish, or `None` when both are in place
/// (`prepareVAFinalizer`, `prepareVANodeID`).
pub fn va_metadata_patch(va: &VolumeAttachment, finalizer: &str, node_id: &str) -> Option<Value> {
    let mut metadata = serde_json::Map::new();
    let finalizers = va.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        let mut all = finalizers;
        all.push(finalizer.to_string());
        metadata.insert("finalizers".into(), json!(all));
    }
    let current = va
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ID_ANNOTATION));
    if current.map(String::as_str) != Some(node_id) {
        metadata.insert("annotations".into(), json!({ NODE_ID_ANNOTATION: node_id }));
    }
    (!metadata.is_empty()).then(|| json!({ "metadata": metadata }))
}

/// The status patch after a successful publish: attached, the publish
/// context as `attachmentMetadata` (keys no longer returned are nulled, as
/// a merge patch computed from the two objects does), no `attachError`
/// (`util.go`, `markAsAttached`).
pub fn attached_status_patch(va: &VolumeAttachment, metadata: &BTreeMap<String, String>) -> Value {
    let old = va
        .status
        .as_ref()
        .and_then(|s| s.attachment_metadata.clone())
        .unwrap_or_default();
    let mut status = serde_json::Map::new();
    status.insert("attached".into(), json!(true));
    status.insert("attachError".into(), Value::Null);
    if old != *metadata {
        if metadata.is_empty() {
            status.insert("attachmentMetadata".into(), Value::Null);
        } else {
            let mut m = serde_json::Map::new();
            for k in old.keys().filter(|k| !metadata.contains_key(*k)) {
                m.insert(k.clone(), Value::Null);
            }
            for (k, v) in metadata {
                m.insert(k.clone(), json!(v));
            }
            status.insert("attachmentMetadata".into(), Value::Object(m));
        }
    }
    json!({ "status": status })
}

/// `status.attachError` (`saveAttachError`): the message, the time, and the
/// gRPC code when the MutableCSINodeAllocatableCount gate is on.
pub fn attach_error_patch(err: &Error, now: &str, with_code: bool) -> Value {
    let mut e = json!({ "message": err.to_string(), "time": now });
    if with_code && let Some(code) = err.error_code() {
        e["errorCode"] = json!(code);
    }
    json!({ "status": { "attachError": e } })
}

/// `status.detachError` (`saveDetachError`): message and time, no code.
pub fn detach_error_patch(err: &Error, now: &str) -> Value {
    json!({ "status": { "detachError": { "message": err.to_string(), "time": now } } })
}

/// After ControllerUnpublish succeeded: first the finalizer goes (this
/// merge patch, `None` when it is not there), then the status
/// ([`detached_status_patch`]); upstream orders it so since v4.9
/// (`util.go`, `markAsDetached`).
pub fn remove_va_finalizer_patch(va: &VolumeAttachment, finalizer: &str) -> Option<Value> {
    let list = va.metadata.finalizers.as_deref().unwrap_or_default();
    if !list.iter().any(|f| f == finalizer) {
        return None;
    }
    let rest = sidecar_runtime::finalizers::without(list, finalizer);
    Some(if rest.is_empty() {
        json!({ "metadata": { "finalizers": null } })
    } else {
        json!({ "metadata": { "finalizers": rest } })
    })
}

/// Whether the detach needs its status patch: skipped when the finalizer
/// was not there and the VA does not say attached ("already fully detached").
pub fn needs_detached_status(va: &VolumeAttachment, finalizer: &str) -> bool {
    let has = va
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer));
    has || va.status.as_ref().is_some_and(|s| s.attached)
}

/// The status after a detach: not attached, no detach error, no metadata.
pub fn detached_status_patch() -> Value {
    json!({ "status": { "attached": false, "detachError": null, "attachmentMetadata": null } })
}

/// RFC 6902 patch adding our finalizer to a PV: `test`+`add` when the list
/// is absent, `test`+`replace` when empty, else append
/// (`util.go`, `addFinalizerPatch`). `None` when already present.
pub fn add_pv_finalizer_patch(finalizers: Option<&[String]>, finalizer: &str) -> Option<Value> {
    match finalizers {
        Some(f) if f.iter().any(|x| x == finalizer) => None,
        None => Some(json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [finalizer] },
        ])),
        Some([]) => Some(json!([
            { "op": "test", "path": "/metadata/finalizers", "value": [] },
            { "op": "replace", "path": "/metadata/finalizers", "value": [finalizer] },
        ])),
        Some(_) => Some(json!([
            { "op": "add", "path": "/metadata/finalizers/-", "value": finalizer },
        ])),
    }
}

/// RFC 6902 patch removing our finalizer at its index, guarded by a `test`
/// of that index so a concurrent change of the list fails the patch instead
/// of removing someone else's entry (`removeFinalizerPatch`).
pub fn remove_pv_finalizer_patch(finalizers: &[String], finalizer: &str) -> Option<Value> {
    let i = finalizers.iter().position(|f| f == finalizer)?;
    let path = format!("/metadata/finalizers/{i}");
    Some(json!([
        { "op": "test", "path": path, "value": finalizer },
        { "op": "remove", "path": path },
    ]))
}

/// What the PV lane does with a PV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PvAction {
    /// Not deleting (and no migration rollback), or no finalizer of ours.
    Ignore,
    /// A VolumeAttachment still names the PV.
    Keep,
    /// Remove our finalizer.
    Remove,
}

/// The PV finalizer rule (`csi_handler.go`, `SyncNewOrUpdatedPersistentVolume`):
/// act on deleting PVs, and on in-tree PVs whose `migrated-to` annotation
/// no longer names `driver` (migration rolled back); keep the finalizer
/// while any VolumeAttachment (of any driver) names the PV.
pub fn pv_action(
    pv: &PersistentVolume,
    driver: &str,
    finalizer: &str,
    referenced: bool,
) -> PvAction {
    if pv.metadata.deletion_timestamp.is_none() {
        let rollback = csi_translation::is_pv_migratable(pv)
            && pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIGRATED_TO_ANNOTATION))
                .map(String::as_str)
                != Some(driver);
        if !rollback {
            return PvAction::Ignore;
        }
    }
    let ours = pv
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer));
    if !ours {
        return PvAction::Ignore;
    }
    if referenced {
        PvAction::Keep
    } else {
        PvAction::Remove
    }
}

/// Whether a VolumeAttachment update needs work: not when only
/// `attachError`/`detachError` (and resourceVersion, managedFields)
/// changed, which is our own error report coming back
/// (`controller.go`, `shouldEnqueueVAChange`). A resync (same version) does.
pub fn should_enqueue_va_change(old: &VolumeAttachment, new: &VolumeAttachment) -> bool {
    if old.metadata.resource_version == new.metadata.resource_version {
        return true;
    }
    let errors = |v: &VolumeAttachment| {
        v.status
            .as_ref()
            .is_some_and(|s| s.attach_error.is_some() || s.detach_error.is_some())
    };
    if !errors(old) && !errors(new) {
        return true;
    }
    // Go's status is a value, not a pointer: no status equals an empty one.
    let mut old = old.clone();
    old.status.get_or_insert_with(Default::default);
    let mut sanitized = new.clone();
    sanitized.metadata.resource_version = old.metadata.resource_version.clone();
    sanitized.metadata.managed_fields = old.metadata.managed_fields.clone();
    let s = sanitized.status.get_or_insert_with(Default::default);
    if let Some(o) = &old.status {
        s.attach_error = o.attach_error.clone();
        s.detach_error = o.detach_error.clone();
    }
    sanitized != old
}

/// One VolumeAttachment as the ListVolumes reconciliation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// VA name.
    pub name: String,
    /// `status.attached`.
    pub attached: bool,
    /// Volume handle (repaired for migrated volumes).
    pub handle: String,
    /// The node ID the volume is published to.
    pub node_id: String,
}

/// The VolumeAttachments whose `status.attached` disagrees with the
/// driver's published nodes: each is processed again with force-sync
/// (`csi_handler.go`, `ReconcileVA`). Never a detach Kubernetes did not
/// ask for: a VA that is published but says not attached is attached.
pub fn reconcile_diff(
    observed: &[Observed],
    published: &HashMap<String, Vec<String>>,
) -> Vec<String> {
    observed
        .iter()
        .filter(|o| {
            let found = published
                .get(&o.handle)
                .is_some_and(|nodes| nodes.contains(&o.node_id));
            found != o.attached
        })
        .map(|o| o.name.clone())
        .collect()
}

/// Whether a force-sync decided by the ListVolumes reconciliation still
/// holds when its reconcile runs: only if `status.attached` is still what
/// the reconciliation saw (`observed`). A VolumeAttachment that was being
/// attached when the reconciliation looked (not attached yet, but already
/// published on the driver) is attached by the time the forced run comes;
/// its disagreement is gone and publishing it again would only repeat
/// ControllerPublish and the status patch. Upstream forces it regardless.
pub fn force_still_needed(observed: bool, current: bool) -> bool {
    observed == current
}

/// Which lane a VolumeAttachment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// No deletionTimestamp: attach.
    Attach,
    /// deletionTimestamp set: detach.
    Detach,
}

impl Lane {
    /// The lane of `va`.
    pub fn of(va: &VolumeAttachment) -> Lane {
        if va.metadata.deletion_timestamp.is_some() {
            Lane::Detach
        } else {
            Lane::Attach
        }
    }
}

#[cfg(test)]
mod tests;
