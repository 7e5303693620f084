//! Restoring from VolumeSnapshots: the snapshot.storage.k8s.io/v1 objects the
//! provisioner reads, the checks a snapshot must pass before it becomes a
//! CreateVolume content source, and the source-protection finalizer.
//!
//! Mirrors external-provisioner's `getSnapshotSource` and its orphaned
//! snapshot-finalizer sweep (`external-provisioner: pkg/controller/controller.go`
//! `getSnapshotSource`, `setSnapshotFinalizer`;
//! `pkg/controller/snapshot_finalizer_controller.go`).
//! Everything here is pure: the controller GETs the objects and lists the
//! caches, then asks these functions what to do.
//!
//! The types model only the fields the provisioner reads or writes. All
//! fields are optional, so missing or unknown fields never fail
//! deserialization. Serialization always writes `apiVersion` and `kind`
//! and skips absent fields; the `spec` fields this crate does not model are
//! kept in `extra` maps, so a full Update (upstream's RBAC grants `update`,
//! not `patch`, on volumesnapshots) sends the spec back unchanged.

use std::collections::{BTreeMap, HashSet};

use csi_client::csi::v1::VolumeContentSource;
use csi_client::csi::v1::volume_content_source::{SnapshotSource, Type as SourceType};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::serde::{Deserialize, Serialize, Serializer};
use kube::runtime::reflector::ObjectRef;

use crate::error::Error;
use crate::quantity;

/// API group of VolumeSnapshot and VolumeSnapshotContent.
pub const GROUP: &str = "snapshot.storage.k8s.io";

/// API version served for both kinds.
pub const VERSION: &str = "v1";

/// Finalizer the provisioner puts on a VolumeSnapshot before a restore's
/// first CreateVolume and takes off afterwards (or the orphan sweep does).
/// Not to be confused with the snapshot controller's own
/// `snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection`.
pub const SNAPSHOT_SOURCE_FINALIZER: &str =
    "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection";

/// VolumeSnapshotContent annotation that permits restoring into a volume of
/// another volume mode when `--prevent-volume-mode-conversion` is on. The
/// value is read as a Go `strconv.ParseBool` boolean.
///
/// The key is the one upstream v6.3.0's code and e2e test use
/// (`snapshot.storage.kubernetes.io/…`), which differs from the
/// `snapshot.storage.k8s.io/…` spelling of some documentation.
pub const ALLOW_VOLUME_MODE_CHANGE_ANNOTATION: &str =
    "snapshot.storage.kubernetes.io/allow-volume-mode-change";

/// Fields of an object this crate does not model, kept for round trips.
pub type Extra = BTreeMap<String, serde_json::Value>;

/// A `snapshot.storage.k8s.io/v1` VolumeSnapshot (namespaced, plural
/// `volumesnapshots`), usable with `kube::Api<VolumeSnapshot>`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshot {
    /// Standard object metadata (finalizers, deletionTimestamp, uid, …).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to snapshot, or which existing content to bind.
    pub spec: Option<VolumeSnapshotSpec>,
    /// Written by the snapshot controller.
    pub status: Option<VolumeSnapshotStatus>,
}

/// `VolumeSnapshot.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// `spec.source`: exactly one of its fields is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSnapshotSource>,
    /// `spec.volumeSnapshotClassName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// Any other `spec` field, sent back unchanged on Update.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `VolumeSnapshot.spec.source`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// Dynamic snapshot of this PVC (same namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    /// Pre-provisioned snapshot: this VolumeSnapshotContent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
    /// Any other `spec.source` field, sent back unchanged on Update.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `VolumeSnapshot.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// Name of the VolumeSnapshotContent this snapshot is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    /// `true` once the snapshot can be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Minimum size of a volume restored from it, as a quantity (`"1Gi"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<Quantity>,
    /// When the storage system cut the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Last error of snapshot creation, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// `status.error` of both kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotError {
    /// When the error happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// What happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A `snapshot.storage.k8s.io/v1` VolumeSnapshotContent (cluster-scoped,
/// plural `volumesnapshotcontents`), usable with
/// `kube::Api<VolumeSnapshotContent>`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotContent {
    /// Standard object metadata; the annotations carry
    /// [`ALLOW_VOLUME_MODE_CHANGE_ANNOTATION`].
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Driver, handles and the VolumeSnapshot it belongs to.
    pub spec: Option<VolumeSnapshotContentSpec>,
    /// Written by the CSI snapshotter.
    pub status: Option<VolumeSnapshotContentStatus>,
}

/// `VolumeSnapshotContent.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    /// CSI driver that owns the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// `Delete` or `Retain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    /// Where the snapshot comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSnapshotContentSource>,
    /// The VolumeSnapshot this content is bound to (name, namespace, uid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_ref: Option<ObjectReference>,
    /// Volume mode of the snapshotted volume (`Filesystem` or `Block`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_volume_mode: Option<String>,
    /// `spec.volumeSnapshotClassName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// Any other `spec` field, sent back unchanged on Update.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `VolumeSnapshotContent.spec.source`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    /// Dynamic snapshot of this CSI volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// Pre-provisioned snapshot with this CSI snapshot ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

/// `VolumeSnapshotContent.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    /// CSI snapshot ID: the `snapshot_id` of a restore's CreateVolume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// `true` once the snapshot can be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Minimum size of a restored volume, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<i64>,
    /// Creation time, nanoseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    /// Last error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// Serializes `apiVersion`, `kind`, `metadata` and the present parts.
fn serialize_object<S: Serializer, Spec: Serialize, Status: Serialize>(
    s: S,
    kind: &'static str,
    metadata: &ObjectMeta,
    spec: &Option<Spec>,
    status: &Option<Status>,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(crate = "k8s_openapi::serde", rename_all = "camelCase")]
    struct Wire<'a, Spec, Status> {
        api_version: &'static str,
        kind: &'static str,
        metadata: &'a ObjectMeta,
        #[serde(skip_serializing_if = "Option::is_none")]
        spec: &'a Option<Spec>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: &'a Option<Status>,
    }
    Wire {
        api_version: "snapshot.storage.k8s.io/v1",
        kind,
        metadata,
        spec,
        status,
    }
    .serialize(s)
}

impl Serialize for VolumeSnapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_object(
            s,
            "VolumeSnapshot",
            &self.metadata,
            &self.spec,
            &self.status,
        )
    }
}

impl Serialize for VolumeSnapshotContent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_object(
            s,
            "VolumeSnapshotContent",
            &self.metadata,
            &self.spec,
            &self.status,
        )
    }
}

impl k8s_openapi::Resource for VolumeSnapshot {
    const API_VERSION: &'static str = "snapshot.storage.k8s.io/v1";
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = "VolumeSnapshot";
    const VERSION: &'static str = VERSION;
    const URL_PATH_SEGMENT: &'static str = "volumesnapshots";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for VolumeSnapshot {
    const LIST_KIND: &'static str = "VolumeSnapshotList";
}

impl k8s_openapi::Metadata for VolumeSnapshot {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl k8s_openapi::Resource for VolumeSnapshotContent {
    const API_VERSION: &'static str = "snapshot.storage.k8s.io/v1";
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = "VolumeSnapshotContent";
    const VERSION: &'static str = VERSION;
    const URL_PATH_SEGMENT: &'static str = "volumesnapshotcontents";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::ListableResource for VolumeSnapshotContent {
    const LIST_KIND: &'static str = "VolumeSnapshotContentList";
}

impl k8s_openapi::Metadata for VolumeSnapshotContent {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// True when `snapshot` carries [`SNAPSHOT_SOURCE_FINALIZER`].
pub fn has_source_finalizer(snapshot: &VolumeSnapshot) -> bool {
    snapshot
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == SNAPSHOT_SOURCE_FINALIZER))
}

/// Appends [`SNAPSHOT_SOURCE_FINALIZER`] unless present; `true` when
/// `snapshot` changed and needs an Update.
pub fn add_source_finalizer(snapshot: &mut VolumeSnapshot) -> bool {
    if has_source_finalizer(snapshot) {
        return false;
    }
    snapshot
        .metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(SNAPSHOT_SOURCE_FINALIZER.to_string());
    true
}

/// Removes every [`SNAPSHOT_SOURCE_FINALIZER`] entry, keeping the other
/// finalizers in order; `true` when `snapshot` changed and needs an Update.
pub fn remove_source_finalizer(snapshot: &mut VolumeSnapshot) -> bool {
    let Some(list) = snapshot.metadata.finalizers.as_mut() else {
        return false;
    };
    let before = list.len();
    list.retain(|f| f != SNAPSHOT_SOURCE_FINALIZER);
    before != list.len()
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The prefix upstream's `prepareProvision` puts before every restore
/// source error.
fn handle_error(name: &str, why: impl std::fmt::Display) -> Error {
    Error::DataSource(format!(
        "error getting handle for DataSource Type VolumeSnapshot by Name {name}: {why}"
    ))
}

/// The error for a VolumeSnapshot GET that failed, `err` being the API
/// error: upstream's `error getting snapshot <name> from api server: <API
/// error>` behind the data-source prefix, e.g. for a missing snapshot
/// `…: error getting snapshot snap from api server:
/// volumesnapshots.snapshot.storage.k8s.io "snap" not found`.
pub fn snapshot_get_error(name: &str, err: &kube::Error) -> Error {
    handle_error(
        name,
        format!(
            "error getting snapshot {name} from api server: {}",
            sidecar_runtime::gofmt::api_error(err)
        ),
    )
}

/// The same for a GET that found nothing (`get_opt` answering `None`): the
/// API server's NotFound text for the snapshot.
pub fn snapshot_not_found(name: &str) -> Error {
    handle_error(
        name,
        format!(
            "error getting snapshot {name} from api server: volumesnapshots.snapshot.storage.k8s.io {} not found",
            sidecar_runtime::gofmt::quote(name)
        ),
    )
}

/// Checks that `snapshot` (GET by the claim's data source) can be restored
/// into `pvc` now, and returns the CSI content source
/// `{snapshot: {snapshot_id: <content status.snapshotHandle>}}`.
///
/// `content` is the VolumeSnapshotContent named by the snapshot's
/// `status.boundVolumeSnapshotContentName` (`None` when its GET failed or
/// found nothing); `provisioner` is the claim's StorageClass provisioner.
///
/// Checks, in upstream's order (`getSnapshotSource`), each failing with
/// [`Error::DataSource`] (retried, upstream's NoChange) and upstream's text
/// behind `error getting handle for DataSource Type VolumeSnapshot by Name
/// <snapshot>: `:
/// 1. a snapshot being deleted is refused unless it carries
///    [`SNAPSHOT_SOURCE_FINALIZER`] (then a restore already began and must
///    finish, so no volume leaks);
/// 2. `status.boundVolumeSnapshotContentName` is set and `content` is that
///    object;
/// 3. the content's `spec.volumeSnapshotRef` names this snapshot by UID,
///    namespace and name;
/// 4. the content's `spec.driver` is `provisioner`;
/// 5. the snapshot's `status.readyToUse` is true;
/// 6. the content has a `status.snapshotHandle`;
/// 7. the claim requests at least the restore size: the snapshot's
///    `status.restoreSize`, or when that is absent the content's
///    `status.restoreSize` (upstream reads only the former; the snapshot
///    controller copies one into the other, so both agree in practice);
/// 8. with `prevent_volume_mode_conversion`, a content `spec.sourceVolumeMode`
///    different from the claim's `volumeMode` needs
///    [`ALLOW_VOLUME_MODE_CHANGE_ANNOTATION`] on the content with a true
///    value; absent, unparsable or false is refused. A content without
///    `sourceVolumeMode`, or a claim without `volumeMode`, is never refused.
pub fn snapshot_source(
    pvc: &PersistentVolumeClaim,
    snapshot: &VolumeSnapshot,
    content: Option<&VolumeSnapshotContent>,
    provisioner: &str,
    prevent_volume_mode_conversion: bool,
) -> Result<VolumeContentSource, Error> {
    let snap_name = snapshot.metadata.name.as_deref().unwrap_or_default();
    let not_ready = |why: String| handle_error(snap_name, why);
    if snapshot.metadata.deletion_timestamp.is_some() && !has_source_finalizer(snapshot) {
        return Err(not_ready(format!("snapshot {snap_name} is being deleted")));
    }
    let status = snapshot.status.clone().unwrap_or_default();
    let Some(content_name) = status.bound_volume_snapshot_content_name.as_deref() else {
        return Err(not_ready(format!("snapshot {snap_name} not bound")));
    };
    let content = content
        .filter(|c| c.metadata.name.as_deref() == Some(content_name))
        .ok_or_else(|| {
            not_ready(format!(
                "error getting snapshotcontent {content_name} for snapshot {snap_name}"
            ))
        })?;
    let spec = content.spec.clone().unwrap_or_default();
    let snap_ref = spec.volume_snapshot_ref.clone().unwrap_or_default();
    if snap_ref.uid != snapshot.metadata.uid
        || snap_ref.namespace != snapshot.metadata.namespace
        || snap_ref.name != snapshot.metadata.name
    {
        return Err(not_ready(format!(
            "snapshotcontent {content_name} for snapshot {snap_name} is bound to a different snapshot"
        )));
    }
    if spec.driver.as_deref().unwrap_or_default() != provisioner {
        return Err(not_ready(format!(
            "snapshotcontent {content_name} for snapshot {snap_name} is not handled by CSI driver of StorageClass {}",
            claim_class(pvc)
        )));
    }
    if status.ready_to_use != Some(true) {
        return Err(not_ready(format!("snapshot {snap_name} is not Ready")));
    }
    let content_status = content.status.clone().unwrap_or_default();
    let Some(handle) = content_status.snapshot_handle else {
        return Err(not_ready(format!(
            "snapshot handle {snap_name} is not available"
        )));
    };
    let restore_size = match (&status.restore_size, content_status.restore_size) {
        // As Go's `Quantity.Value()`, an unreadable size counts as 0.
        (Some(q), _) => Some(quantity::to_bytes(&q.0).unwrap_or(0)),
        (None, bytes) => bytes,
    };
    if let Some(min) = restore_size {
        let Ok(want) = quantity::claim_request_bytes(pvc) else {
            return Err(not_ready(format!(
                "error getting capacity for PVC {} when creating snapshot {snap_name}",
                pvc.metadata.name.as_deref().unwrap_or_default()
            )));
        };
        if want < min {
            return Err(not_ready(format!(
                "requested volume size {want} is less than the size {min} for the source snapshot {snap_name}"
            )));
        }
    }
    let claim_mode = pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    if prevent_volume_mode_conversion
        && let (Some(source_mode), Some(claim_mode)) =
            (spec.source_volume_mode.as_deref(), claim_mode)
        && source_mode != claim_mode
    {
        let allowed = content
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALLOW_VOLUME_MODE_CHANGE_ANNOTATION));
        let why = match allowed.map(|v| (v, parse_go_bool(v))) {
            Some((_, Some(true))) => None,
            Some((_, Some(false))) => Some(format!(
                "{ALLOW_VOLUME_MODE_CHANGE_ANNOTATION} is set to false on snapshotcontent {content_name}"
            )),
            Some((v, None)) => Some(format!(
                "failed to convert {ALLOW_VOLUME_MODE_CHANGE_ANNOTATION} annotation value to boolean with error: strconv.ParseBool: parsing {}: invalid syntax",
                sidecar_runtime::gofmt::quote(v)
            )),
            None => Some(format!(
                "{ALLOW_VOLUME_MODE_CHANGE_ANNOTATION} annotation is not present on snapshotcontent {content_name}"
            )),
        };
        if let Some(why) = why {
            return Err(not_ready(format!(
                "requested volume {}/{} modifies the mode of the source volume but does not have permission to do so. {why}",
                pvc.metadata.namespace.as_deref().unwrap_or_default(),
                pvc.metadata.name.as_deref().unwrap_or_default()
            )));
        }
    }
    Ok(VolumeContentSource {
        r#type: Some(SourceType::Snapshot(SnapshotSource {
            snapshot_id: handle,
        })),
    })
}

/// The claim's StorageClass name as the library looks it up
/// (`GetPersistentVolumeClaimClass`): the beta annotation first, then
/// `spec.storageClassName`.
fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_ref())
        .map_or("", String::as_str)
}

/// The VolumeSnapshot a claim restores from, as `(namespace, name)`, by
/// upstream's sweep rules: `spec.dataSource` of kind VolumeSnapshot with
/// apiGroup unset or `snapshot.storage.k8s.io` (namespace = the claim's),
/// else `spec.dataSourceRef` of that kind (namespace = its `namespace` when
/// non-empty, else the claim's). `None` for any other claim.
pub fn claim_snapshot_ref(pvc: &PersistentVolumeClaim) -> Option<(String, String)> {
    let spec = pvc.spec.as_ref()?;
    let is_snapshot = |group: Option<&str>, kind: &str| {
        kind == "VolumeSnapshot" && group.is_none_or(|g| g == GROUP)
    };
    let claim_ns = pvc.metadata.namespace.clone().unwrap_or_default();
    if let Some(ds) = &spec.data_source
        && is_snapshot(ds.api_group.as_deref(), &ds.kind)
    {
        return Some((claim_ns, ds.name.clone()));
    }
    if let Some(r) = &spec.data_source_ref
        && is_snapshot(r.api_group.as_deref(), &r.kind)
    {
        let ns = r
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or(claim_ns);
        return Some((ns, r.name.clone()));
    }
    None
}

/// True for a claim still waiting for its volume: phase Pending or unset.
fn is_pending(pvc: &PersistentVolumeClaim) -> bool {
    matches!(
        pvc.status.as_ref().and_then(|s| s.phase.as_deref()),
        None | Some("") | Some("Pending")
    )
}

/// True when some claim in `claims` is Pending (or has no phase yet) and
/// restores from `snapshot` via `dataSource` or `dataSourceRef` (see
/// [`claim_snapshot_ref`]; a cross-namespace `dataSourceRef` naming this
/// snapshot's namespace counts). While this holds the snapshot keeps
/// [`SNAPSHOT_SOURCE_FINALIZER`].
pub fn snapshot_in_use<'a>(
    snapshot: &VolumeSnapshot,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> bool {
    let ns = snapshot.metadata.namespace.as_deref().unwrap_or_default();
    let name = snapshot.metadata.name.as_deref().unwrap_or_default();
    claims.into_iter().any(|c| {
        is_pending(c)
            && claim_snapshot_ref(c).is_some_and(|(n_ns, n_name)| n_ns == ns && n_name == name)
    })
}

/// One pass of the orphan sweep (`--snapshot-orphan-sweep-interval`): the
/// snapshots in `snapshots` that carry [`SNAPSHOT_SOURCE_FINALIZER`] while
/// no Pending claim in `claims` restores from them ([`snapshot_in_use`]).
/// The caller removes the finalizer from each with an Update. References
/// are in `snapshots` order; a reflector `Store` looks them up directly.
pub fn orphans_to_release<'a>(
    snapshots: impl IntoIterator<Item = &'a VolumeSnapshot>,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> Vec<ObjectRef<VolumeSnapshot>> {
    let pending: HashSet<(String, String)> = claims
        .into_iter()
        .filter(|c| is_pending(c))
        .filter_map(claim_snapshot_ref)
        .collect();
    snapshots
        .into_iter()
        .filter(|s| has_source_finalizer(s))
        .filter_map(|s| {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let name = s.metadata.name.clone()?;
            (!pending.contains(&(ns.clone(), name.clone())))
                .then(|| ObjectRef::new(&name).within(&ns))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, TypedLocalObjectReference,
        TypedObjectReference, VolumeResourceRequirements,
    };

    const DRIVER: &str = "hostpath.csi.k8s.io";

    fn claim(name: &str, size: &str, phase: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    ..Default::default()
                }),
                storage_class_name: Some("fast".into()),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: phase.map(|p| PersistentVolumeClaimStatus {
                phase: Some(p.into()),
                ..Default::default()
            }),
        }
    }

    fn restoring(name: &str, snap: &str, phase: Option<&str>) -> PersistentVolumeClaim {
        let mut c = claim(name, "1Gi", phase);
        c.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            api_group: Some(GROUP.into()),
            kind: "VolumeSnapshot".into(),
            name: snap.into(),
        });
        c
    }

    fn snapshot(name: &str) -> VolumeSnapshot {
        VolumeSnapshot {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: None,
            status: Some(VolumeSnapshotStatus {
                bound_volume_snapshot_content_name: Some(format!("content-{name}")),
                ready_to_use: Some(true),
                restore_size: Some(Quantity("1Gi".into())),
                ..Default::default()
            }),
        }
    }

    fn content_for(snap: &VolumeSnapshot) -> VolumeSnapshotContent {
        VolumeSnapshotContent {
            metadata: ObjectMeta {
                name: snap
                    .status
                    .as_ref()
                    .unwrap()
                    .bound_volume_snapshot_content_name
                    .clone(),
                ..Default::default()
            },
            spec: Some(VolumeSnapshotContentSpec {
                driver: Some(DRIVER.into()),
                deletion_policy: Some("Delete".into()),
                volume_snapshot_ref: Some(ObjectReference {
                    name: snap.metadata.name.clone(),
                    namespace: snap.metadata.namespace.clone(),
                    uid: snap.metadata.uid.clone(),
                    ..Default::default()
                }),
                source_volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: Some(VolumeSnapshotContentStatus {
                snapshot_handle: Some("snap-handle-1".into()),
                ready_to_use: Some(true),
                restore_size: Some(1 << 30),
                ..Default::default()
            }),
        }
    }

    fn deleting(mut s: VolumeSnapshot, finalizer: bool) -> VolumeSnapshot {
        s.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        s.metadata.finalizers = Some(vec![
            "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection".into(),
        ]);
        if finalizer {
            add_source_finalizer(&mut s);
        }
        s
    }

    fn annotate(mut c: VolumeSnapshotContent, value: &str) -> VolumeSnapshotContent {
        c.metadata.annotations = Some(
            [(
                ALLOW_VOLUME_MODE_CHANGE_ANNOTATION.to_string(),
                value.to_string(),
            )]
            .into(),
        );
        c
    }

    fn handle_of(r: Result<VolumeContentSource, Error>) -> Result<String, String> {
        match r {
            Ok(VolumeContentSource {
                r#type: Some(SourceType::Snapshot(s)),
            }) => Ok(s.snapshot_id),
            Ok(other) => Err(format!("unexpected source {other:?}")),
            Err(e) => Err(format!(
                "{}{}",
                if e.is_final() { "final: " } else { "" },
                e
            )),
        }
    }

    #[test]
    fn snapshot_source_table() {
        let snap = snapshot("s1");
        let content = content_for(&snap);
        let fs_claim = restoring("new", "s1", Some("Pending"));
        let mut block_claim = fs_claim.clone();
        block_claim.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let mut no_mode_claim = fs_claim.clone();
        no_mode_claim.spec.as_mut().unwrap().volume_mode = None;
        let small_claim = {
            let mut c = fs_claim.clone();
            c.spec.as_mut().unwrap().resources = claim("x", "512Mi", None).spec.unwrap().resources;
            c
        };

        let mut not_ready = snap.clone();
        not_ready.status.as_mut().unwrap().ready_to_use = Some(false);
        let mut ready_unset = snap.clone();
        ready_unset.status.as_mut().unwrap().ready_to_use = None;
        let mut unbound = snap.clone();
        unbound
            .status
            .as_mut()
            .unwrap()
            .bound_volume_snapshot_content_name = None;
        let mut no_status = snap.clone();
        no_status.status = None;
        let mut wrong_uid = content.clone();
        wrong_uid
            .spec
            .as_mut()
            .unwrap()
            .volume_snapshot_ref
            .as_mut()
            .unwrap()
            .uid = Some("uid-old".into());
        let mut wrong_ns = content.clone();
        wrong_ns
            .spec
            .as_mut()
            .unwrap()
            .volume_snapshot_ref
            .as_mut()
            .unwrap()
            .namespace = Some("other".into());
        let mut wrong_driver = content.clone();
        wrong_driver.spec.as_mut().unwrap().driver = Some("other.csi.example.com".into());
        let mut no_handle = content.clone();
        no_handle.status.as_mut().unwrap().snapshot_handle = None;
        let mut empty_handle = content.clone();
        empty_handle.status.as_mut().unwrap().snapshot_handle = Some(String::new());
        let mut other_content = content.clone();
        other_content.metadata.name = Some("content-other".into());
        // Restore size only on the content (2Gi): the fallback applies.
        let mut size_on_content = snap.clone();
        size_on_content.status.as_mut().unwrap().restore_size = None;
        let mut big_content = content.clone();
        big_content.status.as_mut().unwrap().restore_size = Some(2 << 30);
        let mut no_size_anywhere = content.clone();
        no_size_anywhere.status.as_mut().unwrap().restore_size = None;
        let mut block_content = content.clone();
        block_content.spec.as_mut().unwrap().source_volume_mode = Some("Block".into());
        let mut mode_unknown = content.clone();
        mode_unknown.spec.as_mut().unwrap().source_volume_mode = None;
        let mut bad_size = snap.clone();
        bad_size.status.as_mut().unwrap().restore_size = Some(Quantity("lots".into()));

        type Case<'a> = (
            &'a str,
            &'a PersistentVolumeClaim,
            &'a VolumeSnapshot,
            Option<&'a VolumeSnapshotContent>,
            bool,
            Result<&'a str, &'a str>,
        );
        let ok = Ok("snap-handle-1");
        let deleting_plain = deleting(snap.clone(), false);
        let deleting_ours = deleting(snap.clone(), true);
        let allow_true = annotate(content.clone(), "true");
        let allow_false = annotate(content.clone(), "false");
        let allow_junk = annotate(content.clone(), "yes");
        let allow_t = annotate(content.clone(), "T");
        // Upstream's texts after the prefix (external-provisioner:
        // pkg/controller/controller.go getSnapshotSource).
        let no_permission = "requested volume ns/new modifies the mode of the source volume but does not have permission to do so. ";
        let absent = format!(
            "{no_permission}snapshot.storage.kubernetes.io/allow-volume-mode-change annotation is not present on snapshotcontent content-s1"
        );
        let is_false = format!(
            "{no_permission}snapshot.storage.kubernetes.io/allow-volume-mode-change is set to false on snapshotcontent content-s1"
        );
        let junk = format!(
            "{no_permission}failed to convert snapshot.storage.kubernetes.io/allow-volume-mode-change annotation value to boolean with error: strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("ready", &fs_claim, &snap, Some(&content), true, ok),
            ("claim without volumeMode is never refused", &no_mode_claim, &snap, Some(&block_content), true, ok),
            ("not ready", &fs_claim, &not_ready, Some(&content), true, Err("snapshot s1 is not Ready")),
            ("readyToUse unset", &fs_claim, &ready_unset, Some(&content), true, Err("snapshot s1 is not Ready")),
            ("unbound", &fs_claim, &unbound, Some(&content), true, Err("snapshot s1 not bound")),
            ("no status", &fs_claim, &no_status, Some(&content), true, Err("snapshot s1 not bound")),
            ("content missing", &fs_claim, &snap, None, true, Err("error getting snapshotcontent content-s1 for snapshot s1")),
            ("content of another name", &fs_claim, &snap, Some(&other_content), true, Err("error getting snapshotcontent content-s1 for snapshot s1")),
            ("ref uid differs", &fs_claim, &snap, Some(&wrong_uid), true, Err("snapshotcontent content-s1 for snapshot s1 is bound to a different snapshot")),
            ("ref namespace differs", &fs_claim, &snap, Some(&wrong_ns), true, Err("snapshotcontent content-s1 for snapshot s1 is bound to a different snapshot")),
            ("wrong driver", &fs_claim, &snap, Some(&wrong_driver), true, Err("snapshotcontent content-s1 for snapshot s1 is not handled by CSI driver of StorageClass fast")),
            ("no handle", &fs_claim, &snap, Some(&no_handle), true, Err("snapshot handle s1 is not available")),
            ("empty handle is passed on, as upstream", &fs_claim, &snap, Some(&empty_handle), true, Ok("")),
            ("claim smaller than snapshot", &small_claim, &snap, Some(&content), true, Err("requested volume size 536870912 is less than the size 1073741824 for the source snapshot s1")),
            ("claim smaller than content size", &fs_claim, &size_on_content, Some(&big_content), true, Err("requested volume size 1073741824 is less than the size 2147483648 for the source snapshot s1")),
            ("snapshot size wins over content size", &fs_claim, &snap, Some(&big_content), true, ok),
            ("no size known", &small_claim, &size_on_content, Some(&no_size_anywhere), true, ok),
            ("unparsable restoreSize counts as 0", &fs_claim, &bad_size, Some(&content), true, ok),
            ("mode change without annotation", &block_claim, &snap, Some(&content), true, Err(absent.as_str())),
            ("mode change, annotation true", &block_claim, &snap, Some(&allow_true), true, ok),
            ("mode change, annotation T", &block_claim, &snap, Some(&allow_t), true, ok),
            ("mode change, annotation false", &block_claim, &snap, Some(&allow_false), true, Err(is_false.as_str())),
            ("mode change, annotation junk", &block_claim, &snap, Some(&allow_junk), true, Err(junk.as_str())),
            ("mode change, flag off", &block_claim, &snap, Some(&content), false, ok),
            ("Block to Filesystem without annotation", &fs_claim, &snap, Some(&block_content), true, Err(absent.as_str())),
            ("source mode unknown", &block_claim, &snap, Some(&mode_unknown), true, ok),
            ("deleting, no finalizer of ours", &fs_claim, &deleting_plain, Some(&content), true, Err("snapshot s1 is being deleted")),
            ("deleting with our finalizer", &fs_claim, &deleting_ours, Some(&content), true, ok),
        ];
        for (what, pvc, s, c, prevent, want) in cases {
            let got = handle_of(snapshot_source(pvc, s, c, DRIVER, prevent));
            match (want, &got) {
                (Ok(h), Ok(g)) => assert_eq!(g, h, "{what}"),
                (Err(tail), Err(msg)) => assert_eq!(
                    *msg,
                    format!(
                        "error getting handle for DataSource Type VolumeSnapshot by Name s1: {tail}"
                    ),
                    "{what} (a final error would start with \"final: \")"
                ),
                _ => panic!("{what}: want {want:?}, got {got:?}"),
            }
        }
    }

    /// external-provisioner: pkg/controller/controller.go getSnapshotSource
    /// asks for the claim's storage request only when the snapshot has a
    /// restore size.
    #[test]
    fn claim_without_request_fails_only_when_size_matters() {
        let snap = snapshot("s1");
        let content = content_for(&snap);
        let mut no_request = restoring("new", "s1", Some("Pending"));
        no_request.spec.as_mut().unwrap().resources = None;
        let err = snapshot_source(&no_request, &snap, Some(&content), DRIVER, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error getting handle for DataSource Type VolumeSnapshot by Name s1: error getting capacity for PVC new when creating snapshot s1"
        );
        assert!(!err.is_final());
        let mut sizeless = snap.clone();
        sizeless.status.as_mut().unwrap().restore_size = None;
        let mut sizeless_content = content.clone();
        sizeless_content.status.as_mut().unwrap().restore_size = None;
        assert!(
            snapshot_source(
                &no_request,
                &sizeless,
                Some(&sizeless_content),
                DRIVER,
                true
            )
            .is_ok()
        );
    }

    /// What claims.rs reports for a failed snapshot GET (external-provisioner:
    /// pkg/controller/controller.go getSnapshotSource, client-go's
    /// StatusError text).
    #[test]
    fn snapshot_get_errors() {
        let want = "error getting handle for DataSource Type VolumeSnapshot by Name snap: error getting snapshot snap from api server: volumesnapshots.snapshot.storage.k8s.io \"snap\" not found";
        assert_eq!(snapshot_not_found("snap").to_string(), want);
        let api = kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "volumesnapshots.snapshot.storage.k8s.io \"snap\" not found",
                "NotFound",
            )
            .with_code(404),
        ));
        assert_eq!(snapshot_get_error("snap", &api).to_string(), want);
    }

    #[test]
    fn finalizer_add_and_remove() {
        let mut s = snapshot("s1");
        s.metadata.finalizers = Some(vec!["other/finalizer".into()]);
        assert!(!has_source_finalizer(&s));
        assert!(add_source_finalizer(&mut s));
        assert!(!add_source_finalizer(&mut s), "second add is a no-op");
        assert!(has_source_finalizer(&s));
        assert_eq!(s.metadata.finalizers.as_ref().unwrap().len(), 2);
        assert!(remove_source_finalizer(&mut s));
        assert!(!remove_source_finalizer(&mut s));
        assert_eq!(
            s.metadata.finalizers.as_deref(),
            Some(&["other/finalizer".to_string()][..])
        );
        let mut bare = snapshot("s2");
        assert!(!remove_source_finalizer(&mut bare));
    }

    #[test]
    fn claim_snapshot_refs() {
        assert_eq!(
            claim_snapshot_ref(&restoring("a", "s1", None)),
            Some(("ns".into(), "s1".into()))
        );
        let mut no_group = restoring("a", "s1", None);
        no_group
            .spec
            .as_mut()
            .unwrap()
            .data_source
            .as_mut()
            .unwrap()
            .api_group = None;
        assert_eq!(
            claim_snapshot_ref(&no_group),
            Some(("ns".into(), "s1".into()))
        );
        let mut other_group = restoring("a", "s1", None);
        other_group
            .spec
            .as_mut()
            .unwrap()
            .data_source
            .as_mut()
            .unwrap()
            .api_group = Some("example.com".into());
        assert_eq!(claim_snapshot_ref(&other_group), None);
        let mut by_ref = claim("a", "1Gi", None);
        by_ref.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: Some(GROUP.into()),
            kind: "VolumeSnapshot".into(),
            name: "s9".into(),
            namespace: Some("elsewhere".into()),
        });
        assert_eq!(
            claim_snapshot_ref(&by_ref),
            Some(("elsewhere".into(), "s9".into()))
        );
        let mut clone = claim("a", "1Gi", None);
        clone.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: "s1".into(),
        });
        assert_eq!(claim_snapshot_ref(&clone), None);
        assert_eq!(claim_snapshot_ref(&claim("a", "1Gi", None)), None);
    }

    #[test]
    fn in_use_and_orphans() {
        let mut s1 = snapshot("s1");
        add_source_finalizer(&mut s1);
        let mut s2 = snapshot("s2");
        add_source_finalizer(&mut s2);
        let s3_no_finalizer = snapshot("s3");
        let mut s4 = snapshot("s4");
        add_source_finalizer(&mut s4);

        let pending = restoring("p", "s1", Some("Pending"));
        let phase_empty = restoring("e", "s1", None);
        let bound = restoring("b", "s2", Some("Bound"));
        let lost = restoring("l", "s2", Some("Lost"));
        let mut other_ns = restoring("o", "s2", Some("Pending"));
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut via_ref = claim("r", "1Gi", Some("Pending"));
        via_ref.metadata.namespace = Some("elsewhere".into());
        via_ref.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: Some(GROUP.into()),
            kind: "VolumeSnapshot".into(),
            name: "s4".into(),
            namespace: Some("ns".into()),
        });
        let pending_s3 = restoring("p3", "s3", Some("Pending"));

        let table: Vec<(&str, &VolumeSnapshot, Vec<&PersistentVolumeClaim>, bool)> = vec![
            ("pending claim", &s1, vec![&pending], true),
            ("claim without phase", &s1, vec![&phase_empty], true),
            ("bound claim only", &s2, vec![&bound, &lost], false),
            (
                "pending claim in another namespace",
                &s2,
                vec![&other_ns],
                false,
            ),
            ("cross-namespace dataSourceRef", &s4, vec![&via_ref], true),
            ("claim names another snapshot", &s2, vec![&pending], false),
            ("no claims", &s1, vec![], false),
        ];
        for (what, snap, claims, want) in table {
            assert_eq!(snapshot_in_use(snap, claims), want, "{what}");
        }

        let claims = [pending.clone(), bound, other_ns, via_ref, pending_s3];
        let orphans = orphans_to_release([&s1, &s2, &s3_no_finalizer, &s4], &claims);
        assert_eq!(orphans, vec![ObjectRef::new("s2").within("ns")]);
        let no_claims: [PersistentVolumeClaim; 0] = [];
        let all = orphans_to_release([&s1, &s2, &s3_no_finalizer, &s4], &no_claims);
        let names: Vec<_> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s4"]);
    }

    #[test]
    fn deserializes_realistic_objects() {
        let snap: VolumeSnapshot = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": "snap-1", "namespace": "default", "uid": "6f1c-uid",
                "resourceVersion": "812",
                "finalizers": [
                    "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
                    SNAPSHOT_SOURCE_FINALIZER
                ]
            },
            "spec": {
                "source": {"persistentVolumeClaimName": "data"},
                "volumeSnapshotClassName": "csi-hostpath-snapclass",
                "futureField": {"x": 1}
            },
            "status": {
                "boundVolumeSnapshotContentName": "snapcontent-6f1c",
                "creationTime": "2025-01-02T03:04:05Z",
                "readyToUse": true,
                "restoreSize": "1Gi",
                "volumeGroupSnapshotName": "ignored"
            }
        }))
        .unwrap();
        let status = snap.status.as_ref().unwrap();
        assert_eq!(status.restore_size, Some(Quantity("1Gi".into())));
        assert_eq!(status.ready_to_use, Some(true));
        assert!(status.creation_time.is_some());
        assert!(has_source_finalizer(&snap));
        let spec = snap.spec.as_ref().unwrap();
        assert_eq!(
            spec.source
                .as_ref()
                .unwrap()
                .persistent_volume_claim_name
                .as_deref(),
            Some("data")
        );
        // Round trip for Update: apiVersion/kind written, unknown spec kept,
        // absent fields not written as null.
        let back = serde_json::to_value(&snap).unwrap();
        assert_eq!(back["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(back["kind"], "VolumeSnapshot");
        assert_eq!(back["spec"]["futureField"]["x"], 1);
        assert!(
            back["spec"]["source"]
                .get("volumeSnapshotContentName")
                .is_none()
        );
        assert!(back["status"].get("error").is_none());

        let content: VolumeSnapshotContent = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {
                "name": "snapcontent-6f1c",
                "annotations": {ALLOW_VOLUME_MODE_CHANGE_ANNOTATION: "true"}
            },
            "spec": {
                "deletionPolicy": "Delete",
                "driver": DRIVER,
                "source": {"volumeHandle": "vol-42"},
                "sourceVolumeMode": "Filesystem",
                "volumeSnapshotClassName": "csi-hostpath-snapclass",
                "volumeSnapshotRef": {
                    "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                    "name": "snap-1", "namespace": "default", "uid": "6f1c-uid",
                    "resourceVersion": "800"
                }
            },
            "status": {
                "creationTime": 1735787045000000000_i64,
                "readyToUse": true,
                "restoreSize": 1073741824,
                "snapshotHandle": "snap-abc"
            }
        }))
        .unwrap();
        let cs = content.spec.as_ref().unwrap();
        assert_eq!(
            cs.source.as_ref().unwrap().volume_handle.as_deref(),
            Some("vol-42")
        );
        assert_eq!(
            cs.volume_snapshot_ref.as_ref().unwrap().uid.as_deref(),
            Some("6f1c-uid")
        );
        let st = content.status.as_ref().unwrap();
        assert_eq!(st.restore_size, Some(1_073_741_824));
        assert_eq!(st.creation_time, Some(1_735_787_045_000_000_000));

        let claim = restoring("new", "snap-1", Some("Pending"));
        let mut claim = claim;
        claim.metadata.namespace = Some("default".into());
        assert_eq!(
            handle_of(snapshot_source(&claim, &snap, Some(&content), DRIVER, true)),
            Ok("snap-abc".into())
        );

        // Sparse objects: everything optional.
        let bare: VolumeSnapshot = serde_json::from_str("{}").unwrap();
        assert_eq!(bare, VolumeSnapshot::default());
        let bare: VolumeSnapshotContent =
            serde_json::from_str(r#"{"spec":{},"status":{}}"#).unwrap();
        assert!(bare.spec.unwrap().driver.is_none());
    }

    #[test]
    fn resource_identity() {
        use kube::Resource;
        assert_eq!(VolumeSnapshot::plural(&()), "volumesnapshots");
        assert_eq!(
            VolumeSnapshot::api_version(&()),
            "snapshot.storage.k8s.io/v1"
        );
        assert_eq!(VolumeSnapshotContent::kind(&()), "VolumeSnapshotContent");
        assert_eq!(
            VolumeSnapshot::url_path(&(), Some("ns")),
            "/apis/snapshot.storage.k8s.io/v1/namespaces/ns/volumesnapshots"
        );
        assert_eq!(
            VolumeSnapshotContent::url_path(&(), None),
            "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents"
        );
    }
}
