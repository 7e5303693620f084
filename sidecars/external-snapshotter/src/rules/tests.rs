//! The rules with plain values: upstream's sidecar-controller test matrix
//! in miniature (create, not-ready poll, delete with Delete/Retain,
//! pre-provisioned, group member, the crash record).

use super::*;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use snapshot_api::snapshot::v1::VolumeSnapshotContentSpec;
use snapshot_api::snapshot::v1::{VolumeSnapshotClassFields, VolumeSnapshotContentSource};

const DRIVER: &str = "hostpath.csi.k8s.io";
const UID: &str = "11111111-2222-3333-4444-555555555555";

fn dynamic() -> VolumeSnapshotContent {
    let mut c = VolumeSnapshotContent::new(
        "snapcontent-1",
        VolumeSnapshotContentSpec {
            volume_snapshot_ref: ObjectReference {
                name: Some("snap".into()),
                namespace: Some("ns".into()),
                uid: Some(UID.into()),
                ..Default::default()
            },
            deletion_policy: DeletionPolicy::Delete,
            driver: DRIVER.into(),
            volume_snapshot_class_name: Some("class".into()),
            source: VolumeSnapshotContentSource {
                volume_handle: Some("vol-1".into()),
                snapshot_handle: None,
            },
            source_volume_mode: None,
        },
    );
    c.metadata.finalizers = Some(vec![n::VOLUME_SNAPSHOT_CONTENT_FINALIZER.into()]);
    c
}

fn pre_provisioned() -> VolumeSnapshotContent {
    let mut c = dynamic();
    c.spec.source = VolumeSnapshotContentSource {
        volume_handle: None,
        snapshot_handle: Some("snap-handle".into()),
    };
    c.spec.volume_snapshot_class_name = None;
    c
}

fn class(params: &[(&str, &str)]) -> VolumeSnapshotClass {
    VolumeSnapshotClass {
        metadata: ObjectMeta {
            name: Some("class".into()),
            ..Default::default()
        },
        spec: VolumeSnapshotClassFields {
            driver: DRIVER.into(),
            parameters: Some(
                params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            deletion_policy: DeletionPolicy::Delete,
        },
    }
}

fn status(handle: &str, ready: bool) -> VolumeSnapshotContentStatus {
    VolumeSnapshotContentStatus {
        snapshot_handle: Some(handle.into()),
        ready_to_use: Some(ready),
        creation_time: Some(1),
        ..Default::default()
    }
}

fn annotate(c: &mut VolumeSnapshotContent, key: &str) {
    c.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), "yes".into());
}

fn deleting(mut c: VolumeSnapshotContent) -> VolumeSnapshotContent {
    c.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    c
}

fn rules() -> NameRules {
    NameRules {
        prefix: "snapshot".into(),
        uuid_length: -1,
        extra_create_metadata: false,
    }
}

#[test]
fn ownership_by_driver_handle_and_class() {
    let c = dynamic();
    assert!(is_ours(&c, DRIVER, None));
    assert!(is_ours(&c, DRIVER, Some(&class(&[]))));
    assert!(!is_ours(&c, "other.csi", None));
    let mut other_class = class(&[]);
    other_class.spec.driver = "other.csi".into();
    assert!(!is_ours(&c, DRIVER, Some(&other_class)));
    let mut no_source = dynamic();
    no_source.spec.source.volume_handle = None;
    assert!(!is_ours(&no_source, DRIVER, None));
}

#[test]
fn new_dynamic_content_is_created_then_polled_until_ready() {
    let mut c = dynamic();
    assert_eq!(plan(&c), Plan::Create);
    // Not ready: CreateSnapshot again (upstream's poll).
    c.status = Some(status("h", false));
    assert_eq!(plan(&c), Plan::Create);
    c.status = Some(status("h", true));
    assert_eq!(plan(&c), Plan::Done);
    annotate(&mut c, n::ANN_VOLUME_SNAPSHOT_BEING_CREATED);
    assert_eq!(plan(&c), Plan::RemoveBeingCreated);
}

#[test]
fn error_status_without_handle_is_retried_with_create() {
    let mut c = dynamic();
    c.status = Some(VolumeSnapshotContentStatus {
        ready_to_use: Some(false),
        error: Some(VolumeSnapshotError {
            time: None,
            message: Some("boom".into()),
        }),
        ..Default::default()
    });
    assert_eq!(plan(&c), Plan::Create);
}

#[test]
fn pre_provisioned_content_is_listed_until_ready() {
    let c = pre_provisioned();
    assert_eq!(
        plan(&c),
        Plan::CheckStatus {
            handle: "snap-handle".into(),
            group_member: false
        }
    );
    let mut ready = c.clone();
    ready.status = Some(status("snap-handle", true));
    assert_eq!(plan(&ready), Plan::Done);
}

#[test]
fn deletion_with_delete_policy_deletes_the_snapshot_then_the_finalizer() {
    let mut c = deleting(dynamic());
    c.status = Some(status("h", true));
    // Not yet marked by snapshot-controller: nothing happens.
    assert_eq!(plan(&c), Plan::Done);
    annotate(&mut c, n::ANN_VOLUME_SNAPSHOT_BEING_DELETED);
    assert_eq!(plan(&c), Plan::DeleteSnapshot { handle: "h".into() });
    // After DeleteSnapshot the status lost its handle.
    c.status = Some(VolumeSnapshotContentStatus::default());
    assert_eq!(plan(&c), Plan::RemoveFinalizer);
    c.metadata.finalizers = None;
    assert_eq!(plan(&c), Plan::Done);
}

#[test]
fn deletion_with_retain_policy_only_removes_the_finalizer() {
    let mut c = deleting(dynamic());
    c.spec.deletion_policy = DeletionPolicy::Retain;
    c.status = Some(status("h", true));
    annotate(&mut c, n::ANN_VOLUME_SNAPSHOT_BEING_DELETED);
    assert_eq!(plan(&c), Plan::RemoveFinalizer);
}

#[test]
fn unbound_pre_provisioned_content_is_deleted_without_the_annotation() {
    let mut c = deleting(pre_provisioned());
    c.spec.volume_snapshot_ref.uid = None;
    c.status = Some(status("snap-handle", true));
    assert_eq!(
        plan(&c),
        Plan::DeleteSnapshot {
            handle: "snap-handle".into()
        }
    );
}

#[test]
fn crash_record_blocks_deletion_and_repeats_create() {
    // Killed mid-CreateSnapshot: the annotation is there, no status; the
    // snapshot and content were then deleted.
    let mut c = deleting(dynamic());
    annotate(&mut c, n::ANN_VOLUME_SNAPSHOT_BEING_CREATED);
    annotate(&mut c, n::ANN_VOLUME_SNAPSHOT_BEING_DELETED);
    assert!(!should_delete(&c));
    assert_eq!(plan(&c), Plan::Create);
    // The repeated CreateSnapshot recorded the handle and dropped the
    // annotation: now the snapshot is deleted on the driver.
    c.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED);
    c.status = Some(status("h", true));
    assert_eq!(plan(&c), Plan::DeleteSnapshot { handle: "h".into() });
}

#[test]
fn group_member_content_is_never_created_or_deleted_alone() {
    let mut c = dynamic();
    c.spec.volume_snapshot_class_name = None;
    annotate(&mut c, n::ANN_VOLUME_GROUP_SNAPSHOT_HANDLE);
    assert!(is_group_member(&c));
    assert_eq!(plan(&c), Plan::Done);
    // With a handle from the group: its readiness comes from ListSnapshots.
    c.status = Some(VolumeSnapshotContentStatus {
        snapshot_handle: Some("m1".into()),
        volume_group_snapshot_handle: Some("g".into()),
        ready_to_use: Some(false),
        ..Default::default()
    });
    assert_eq!(
        plan(&c),
        Plan::CheckStatus {
            handle: "m1".into(),
            group_member: true
        }
    );
    let mut d = deleting(c);
    annotate(&mut d, n::ANN_VOLUME_SNAPSHOT_BEING_DELETED);
    assert_eq!(plan(&d), Plan::RemoveFinalizer);
}

#[test]
fn create_input_strips_reserved_parameters_and_adds_metadata() {
    let c = dynamic();
    let cl = class(&[
        ("type", "fast"),
        (n::SNAPSHOTTER_SECRET_NAME_KEY, "s"),
        (n::SNAPSHOTTER_SECRET_NAMESPACE_KEY, "ns"),
    ]);
    let input = create_input(&c, Ok(Some(&cl)), &rules()).unwrap();
    assert_eq!(input.name, format!("snapshot-{UID}"));
    assert_eq!(input.source_volume_id, "vol-1");
    assert_eq!(
        input.parameters,
        BTreeMap::from([("type".to_string(), "fast".to_string())])
    );
    let mut r = rules();
    r.extra_create_metadata = true;
    r.uuid_length = 8;
    let input = create_input(&c, Ok(Some(&cl)), &r).unwrap();
    assert_eq!(input.name, "snapshot-11111111");
    assert_eq!(input.parameters[n::VOLUME_SNAPSHOT_NAME_KEY], "snap");
    assert_eq!(input.parameters[n::VOLUME_SNAPSHOT_NAMESPACE_KEY], "ns");
    assert_eq!(
        input.parameters[n::VOLUME_SNAPSHOT_CONTENT_NAME_KEY],
        "snapcontent-1"
    );
}

#[test]
fn create_input_errors_read_like_upstream() {
    let c = dynamic();
    let bad = class(&[("csi.storage.k8s.io/fstype", "ext4")]);
    assert_eq!(
        create_input(&c, Ok(Some(&bad)), &rules()).unwrap_err(),
        "failed to remove CSI Parameters of prefixed keys: found unknown parameter key \"csi.storage.k8s.io/fstype\" with reserved namespace csi.storage.k8s.io/"
    );
    assert_eq!(
        create_input(&c, Ok(None), &rules()).unwrap_err(),
        "failed to get input parameters to create snapshot for content snapcontent-1: \"failed to take snapshot snapcontent-1 without a snapshot class\""
    );
    let missing = "volumesnapshotclass.snapshot.storage.k8s.io \"class\" not found".to_string();
    assert_eq!(
        create_input(&c, Err(missing), &rules()).unwrap_err(),
        "failed to get input parameters to create snapshot for content snapcontent-1: \"volumesnapshotclass.snapshot.storage.k8s.io \\\"class\\\" not found\""
    );
    let mut unbound = dynamic();
    unbound.spec.volume_snapshot_ref.uid = None;
    assert!(
        create_input(&unbound, Ok(Some(&class(&[]))), &rules())
            .unwrap_err()
            .contains("not bound to a snapshot")
    );
}

#[test]
fn secrets_from_annotations_and_class() {
    let mut c = dynamic();
    assert_eq!(deletion_secret_ref(&c).unwrap(), None);
    let a = c.metadata.annotations.get_or_insert_with(Default::default);
    a.insert(n::ANN_DELETION_SECRET_NAME.into(), "sec".into());
    a.insert(n::ANN_DELETION_SECRET_NAMESPACE.into(), "secns".into());
    assert_eq!(
        deletion_secret_ref(&c).unwrap(),
        Some(("secns".into(), "sec".into()))
    );
    c.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(n::ANN_DELETION_SECRET_NAME.into(), "".into());
    assert!(deletion_secret_ref(&c).is_err());

    let cl = class(&[
        (
            n::SNAPSHOTTER_LIST_SECRET_NAME_KEY,
            "list-${volumesnapshotcontent.name}",
        ),
        (n::SNAPSHOTTER_LIST_SECRET_NAMESPACE_KEY, "kube-system"),
    ]);
    assert_eq!(
        list_secret_ref(&cl, "content-a").unwrap(),
        Some(("kube-system".into(), "list-content-a".into()))
    );
    let half = class(&[(n::SNAPSHOTTER_LIST_SECRET_NAME_KEY, "x")]);
    assert!(list_secret_ref(&half, "c").is_err());
    let bad = class(&[
        (n::SNAPSHOTTER_LIST_SECRET_NAME_KEY, "x"),
        (
            n::SNAPSHOTTER_LIST_SECRET_NAMESPACE_KEY,
            "${volumesnapshot.namespace}",
        ),
    ]);
    assert!(list_secret_ref(&bad, "c").is_err());
}

#[test]
fn status_merge_keeps_recorded_fields() {
    let r = SnapshotResult {
        handle: "h".into(),
        ready: false,
        created_ns: 42,
        size: 0,
        group_snapshot_id: String::new(),
    };
    let first = merged_status(None, &r).unwrap();
    assert_eq!(first.snapshot_handle.as_deref(), Some("h"));
    assert_eq!(first.ready_to_use, Some(false));
    assert_eq!(first.creation_time, Some(42));
    assert_eq!(first.restore_size, None);
    // The same answer again: no write.
    assert_eq!(merged_status(Some(&first), &r), None);
    // Ready with a size, later time: readiness, size set, time kept, error gone.
    let mut with_error = first.clone();
    with_error.error = Some(VolumeSnapshotError {
        time: None,
        message: Some("x".into()),
    });
    let ready = SnapshotResult {
        ready: true,
        size: 1 << 20,
        created_ns: 99,
        ..r
    };
    let s = merged_status(Some(&with_error), &ready).unwrap();
    assert_eq!(s.ready_to_use, Some(true));
    assert_eq!(s.restore_size, Some(1 << 20));
    assert_eq!(s.creation_time, Some(42));
    assert_eq!(s.error, None);
}

#[test]
fn error_status_patch_shapes() {
    let now = Time(jiff::Timestamp::UNIX_EPOCH);
    let mut c = dynamic();
    let p = error_status_patch(&c, "boom", now.clone()).unwrap();
    assert_eq!(p[0]["path"], "/status");
    assert_eq!(p[0]["value"]["readyToUse"], false);
    assert_eq!(p[0]["value"]["error"]["message"], "boom");
    c.status = Some(status("h", false));
    let p = error_status_patch(&c, "boom", now.clone()).unwrap();
    assert_eq!(p[0]["path"], "/status/error");
    assert_eq!(p[1]["path"], "/status/readyToUse");
    c.status.as_mut().unwrap().error = Some(VolumeSnapshotError {
        time: None,
        message: Some("boom".into()),
    });
    assert_eq!(error_status_patch(&c, "boom", now), None);
}

#[test]
fn annotation_and_finalizer_patches() {
    let mut c = dynamic();
    annotate(&mut c, "other");
    let p = set_being_created_patch(&c);
    assert_eq!(p[0]["value"]["other"], "yes");
    assert_eq!(p[0]["value"][n::ANN_VOLUME_SNAPSHOT_BEING_CREATED], "yes");
    assert_eq!(
        remove_being_created_patch()[0]["path"],
        "/metadata/annotations/snapshot.storage.kubernetes.io~1volumesnapshot-being-created"
    );
    c.metadata.finalizers = Some(vec![
        "a".into(),
        n::VOLUME_SNAPSHOT_CONTENT_FINALIZER.into(),
    ]);
    let p = remove_finalizer_patch(&c);
    assert_eq!(p[0]["op"], "test");
    assert_eq!(p[1]["value"], json!(["a"]));
}

#[test]
fn enqueue_filter_ignores_own_writes() {
    let mut old = dynamic();
    old.metadata.resource_version = Some("1".into());
    let mut new = old.clone();
    assert!(should_enqueue(&old, &new), "resync");
    new.metadata.resource_version = Some("2".into());
    new.status = Some(status("h", false));
    annotate(&mut new, n::ANN_VOLUME_SNAPSHOT_BEING_CREATED);
    new.metadata.finalizers = None;
    assert!(
        !should_enqueue(&old, &new),
        "status/finalizer/being-created only"
    );
    let mut ready = new.clone();
    ready.metadata.resource_version = Some("3".into());
    ready.status = Some(status("h", true));
    assert!(should_enqueue(&new, &ready), "became ready");
    let mut marked = ready.clone();
    marked.metadata.resource_version = Some("4".into());
    annotate(&mut marked, n::ANN_VOLUME_SNAPSHOT_BEING_DELETED);
    assert!(should_enqueue(&ready, &marked), "being-deleted annotation");
    let mut del = marked.clone();
    del.metadata.resource_version = Some("5".into());
    del = deleting(del);
    assert!(should_enqueue(&marked, &del), "deletion timestamp");
}
