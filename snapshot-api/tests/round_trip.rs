//! Objects with every field set survive JSON → our type → JSON unchanged,
//! and minimal objects (only what the CRDs require) come back without
//! fields added. The full objects are written here by hand after upstream's
//! CRD schemas; `upstream_crds.rs` checks the schemas themselves.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use snapshot_api::groupsnapshot::{v1 as group_v1, v1beta2 as group_v1beta2};
use snapshot_api::snapshot::v1::{self, DeletionPolicy};
use snapshot_api::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};

/// Runs `$body` once with `$api` naming `groupsnapshot::v1` and `$version`
/// = `"v1"`, once with `groupsnapshot::v1beta2` and `"v1beta2"`: the two
/// versions have the same shape, and each must keep every field.
macro_rules! each_group_version {
    (|$api:ident, $version:ident| $body:block) => {{
        {
            use snapshot_api::groupsnapshot::v1 as $api;
            let $version = "groupsnapshot.storage.k8s.io/v1";
            $body
        }
        {
            use snapshot_api::groupsnapshot::v1beta2 as $api;
            let $version = "groupsnapshot.storage.k8s.io/v1beta2";
            $body
        }
    }};
}

/// Parses `value` as `T`, serialises it again and compares; returns the
/// typed object for further checks.
fn round_trip<T: Serialize + DeserializeOwned>(value: Value) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("does not parse: {e}\n{value:#}"));
    let back = serde_json::to_value(&typed).expect("serialises");
    assert_eq!(back, value, "round trip changed the object");
    typed
}

fn metadata(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({
        "name": name,
        "uid": "9b0c7f6e-6a53-4d0e-9d2f-3f1b2a8c0d11",
        "resourceVersion": "4711",
        "generation": 2,
        "creationTimestamp": "2026-03-01T10:00:00Z",
        "labels": {"app": "db"},
        "annotations": {"note": "x"},
        "finalizers": ["snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"],
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn error() -> Value {
    json!({"message": "driver said no", "time": "2026-03-01T10:00:05Z"})
}

#[test]
fn volume_snapshot_full() {
    let vs: VolumeSnapshot = round_trip(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": metadata("snap-1", Some("apps")),
        "spec": {
            "source": {"persistentVolumeClaimName": "data"},
            "volumeSnapshotClassName": "fast",
        },
        "status": {
            "boundVolumeSnapshotContentName": "snapcontent-9b0c",
            "creationTime": "2026-03-01T10:00:03Z",
            "readyToUse": true,
            "restoreSize": "1Gi",
            "error": error(),
            "volumeGroupSnapshotName": "group-1",
        },
    }));
    assert_eq!(
        vs.spec.source.persistent_volume_claim_name.as_deref(),
        Some("data")
    );
    let status = vs.status.expect("status");
    assert_eq!(status.restore_size.expect("restoreSize").0, "1Gi");
    assert_eq!(
        status.error.and_then(|e| e.message).as_deref(),
        Some("driver said no")
    );
}

#[test]
fn volume_snapshot_static_source_and_minimal() {
    let vs: VolumeSnapshot = round_trip(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap-2", "namespace": "apps"},
        "spec": {"source": {"volumeSnapshotContentName": "pre-existing"}},
    }));
    assert_eq!(
        vs.spec.source.volume_snapshot_content_name.as_deref(),
        Some("pre-existing")
    );
    assert!(vs.status.is_none());
}

#[test]
fn volume_snapshot_content_full() {
    let content: VolumeSnapshotContent = round_trip(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": metadata("snapcontent-9b0c", None),
        "spec": {
            "volumeSnapshotRef": {
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshot",
                "name": "snap-1",
                "namespace": "apps",
                "uid": "9b0c7f6e-6a53-4d0e-9d2f-3f1b2a8c0d11",
                "resourceVersion": "4700",
                "fieldPath": "spec",
            },
            "deletionPolicy": "Retain",
            "driver": "hostpath.csi.k8s.io",
            "volumeSnapshotClassName": "fast",
            "source": {"volumeHandle": "vol-1"},
            "sourceVolumeMode": "Block",
        },
        "status": {
            "snapshotHandle": "snap-handle-1",
            "creationTime": 1_772_359_203_123_456_789_i64,
            "restoreSize": 1_073_741_824,
            "readyToUse": false,
            "error": error(),
            "volumeGroupSnapshotHandle": "group-handle-1",
        },
    }));
    assert_eq!(content.spec.deletion_policy, DeletionPolicy::Retain);
    let status = content.status.expect("status");
    assert_eq!(status.creation_time, Some(1_772_359_203_123_456_789));
    assert_eq!(status.restore_size, Some(1 << 30));
}

#[test]
fn volume_snapshot_content_static_source() {
    let content: VolumeSnapshotContent = round_trip(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "pre-existing"},
        "spec": {
            "volumeSnapshotRef": {"name": "snap-2", "namespace": "apps"},
            "deletionPolicy": "Delete",
            "driver": "hostpath.csi.k8s.io",
            "source": {"snapshotHandle": "snap-handle-2"},
        },
    }));
    assert_eq!(
        content.spec.source.snapshot_handle.as_deref(),
        Some("snap-handle-2")
    );
}

/// Go writes `"sourceVolumeMode": null` for an unknown mode (the field has
/// no `omitempty`); it reads as `None`.
#[test]
fn volume_snapshot_content_reads_null_source_volume_mode() {
    let content: VolumeSnapshotContent = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "c"},
        "spec": {
            "volumeSnapshotRef": {"name": "s", "namespace": "n"},
            "deletionPolicy": "Delete",
            "driver": "d",
            "source": {"volumeHandle": "v"},
            "sourceVolumeMode": null,
        },
    }))
    .expect("parses");
    assert_eq!(content.spec.source_volume_mode, None);
}

#[test]
fn volume_snapshot_class_full_and_minimal() {
    let class: VolumeSnapshotClass = round_trip(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": metadata("fast", None),
        "driver": "hostpath.csi.k8s.io",
        "parameters": {
            "csi.storage.k8s.io/snapshotter-secret-name": "s",
            "tier": "gold",
        },
        "deletionPolicy": "Delete",
    }));
    assert_eq!(class.spec.driver, "hostpath.csi.k8s.io");
    assert_eq!(class.spec.parameters.expect("parameters")["tier"], "gold");

    let class: VolumeSnapshotClass = round_trip(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": "plain"},
        "driver": "d",
        "deletionPolicy": "Retain",
    }));
    assert_eq!(class.spec.deletion_policy, DeletionPolicy::Retain);
}

#[test]
fn deletion_policy_rejects_values_outside_the_enum() {
    let err = serde_json::from_value::<DeletionPolicy>(json!("delete")).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn volume_group_snapshot_full() {
    each_group_version!(|api, version| {
        let group: api::VolumeGroupSnapshot = round_trip(json!({
            "apiVersion": version,
            "kind": "VolumeGroupSnapshot",
            "metadata": metadata("group-1", Some("apps")),
            "spec": {
                "source": {
                    "selector": {
                        "matchLabels": {"app.kubernetes.io/name": "postgresql"},
                        "matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["db", "cache"]},
                            {"key": "scratch", "operator": "DoesNotExist"},
                        ],
                    },
                },
                "volumeGroupSnapshotClassName": "group-fast",
            },
            "status": {
                "boundVolumeGroupSnapshotContentName": "groupsnapcontent-1",
                "creationTime": "2026-03-01T10:00:03Z",
                "readyToUse": true,
                "error": error(),
            },
        }));
        let selector = group.spec.source.selector.expect("selector");
        assert_eq!(selector.match_expressions.expect("expressions").len(), 2);
    });
}

#[test]
fn volume_group_snapshot_static_source() {
    each_group_version!(|api, version| {
        let group: api::VolumeGroupSnapshot = round_trip(json!({
            "apiVersion": version,
            "kind": "VolumeGroupSnapshot",
            "metadata": {"name": "group-2", "namespace": "apps"},
            "spec": {"source": {"volumeGroupSnapshotContentName": "pre-existing-group"}},
        }));
        assert!(group.spec.source.selector.is_none());
    });
}

#[test]
fn volume_group_snapshot_content_full() {
    each_group_version!(|api, version| {
        let content: api::VolumeGroupSnapshotContent = round_trip(json!({
            "apiVersion": version,
            "kind": "VolumeGroupSnapshotContent",
            "metadata": metadata("groupsnapcontent-1", None),
            "spec": {
                "volumeGroupSnapshotRef": {
                    "apiVersion": version,
                    "kind": "VolumeGroupSnapshot",
                    "name": "group-1",
                    "namespace": "apps",
                    "uid": "1f2e3d4c-0000-4000-8000-000000000001",
                    "resourceVersion": "12",
                    "fieldPath": "spec",
                },
                "deletionPolicy": "Delete",
                "driver": "hostpath.csi.k8s.io",
                "volumeGroupSnapshotClassName": "group-fast",
                "source": {"volumeHandles": ["vol-1", "vol-2"]},
            },
            "status": {
                "volumeGroupSnapshotHandle": "group-handle-1",
                "creationTime": "2026-03-01T10:00:03Z",
                "readyToUse": true,
                "error": error(),
                "volumeSnapshotInfoList": [
                    {
                        "volumeHandle": "vol-1",
                        "snapshotHandle": "snap-handle-1",
                        "creationTime": 1_772_359_203_000_000_000_i64,
                        "readyToUse": true,
                        "restoreSize": 1_073_741_824,
                    },
                    {"volumeHandle": "vol-2", "snapshotHandle": "snap-handle-2"},
                ],
            },
        }));
        let infos = content
            .status
            .and_then(|s| s.volume_snapshot_info_list)
            .expect("info list");
        assert_eq!(infos[1].snapshot_handle.as_deref(), Some("snap-handle-2"));
    });
}

#[test]
fn volume_group_snapshot_content_static_source() {
    each_group_version!(|api, version| {
        let content: api::VolumeGroupSnapshotContent = round_trip(json!({
            "apiVersion": version,
            "kind": "VolumeGroupSnapshotContent",
            "metadata": {"name": "pre-existing-group"},
            "spec": {
                "volumeGroupSnapshotRef": {"name": "group-2", "namespace": "apps"},
                "deletionPolicy": "Retain",
                "driver": "hostpath.csi.k8s.io",
                "source": {
                    "groupSnapshotHandles": {
                        "volumeGroupSnapshotHandle": "group-handle-2",
                        "volumeSnapshotHandles": ["snap-a", "snap-b"],
                    },
                },
            },
        }));
        let handles = content.spec.source.group_snapshot_handles.expect("handles");
        assert_eq!(handles.volume_snapshot_handles, ["snap-a", "snap-b"]);
    });
}

#[test]
fn volume_group_snapshot_class_full() {
    each_group_version!(|api, version| {
        let class: api::VolumeGroupSnapshotClass = round_trip(json!({
            "apiVersion": version,
            "kind": "VolumeGroupSnapshotClass",
            "metadata": metadata("group-fast", None),
            "driver": "hostpath.csi.k8s.io",
            "parameters": {"consistency": "crash"},
            "deletionPolicy": "Delete",
        }));
        assert_eq!(class.spec.deletion_policy, DeletionPolicy::Delete);
    });
}

/// The root types do not check `apiVersion` when reading; they always
/// write their own. An object read in one group snapshot version is
/// written back in the type's version, which is lossless only because the
/// two schemas are the same.
#[test]
fn the_root_type_writes_its_own_api_version() {
    let v1beta2_object = json!({
        "apiVersion": "groupsnapshot.storage.k8s.io/v1beta2",
        "kind": "VolumeGroupSnapshotClass",
        "metadata": {"name": "c"},
        "driver": "d",
        "deletionPolicy": "Delete",
    });
    let as_v1: group_v1::VolumeGroupSnapshotClass =
        serde_json::from_value(v1beta2_object.clone()).unwrap();
    let mut expected = v1beta2_object;
    expected["apiVersion"] = json!("groupsnapshot.storage.k8s.io/v1");
    assert_eq!(serde_json::to_value(&as_v1).unwrap(), expected);
}

/// A required field missing is an error, not a default.
#[test]
fn required_fields_are_required() {
    let err = serde_json::from_value::<VolumeSnapshotContent>(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "c"},
        "spec": {"deletionPolicy": "Delete", "driver": "d", "source": {}},
    }))
    .unwrap_err();
    assert!(err.to_string().contains("volumeSnapshotRef"), "{err}");
}

#[test]
fn api_version_constants_match_the_types() {
    use kube::Resource;
    assert_eq!(VolumeSnapshot::api_version(&()), v1::API_VERSION);
    assert_eq!(
        group_v1beta2::VolumeGroupSnapshotContent::api_version(&()),
        group_v1beta2::API_VERSION
    );
    assert_eq!(
        group_v1::VolumeGroupSnapshotContent::api_version(&()),
        group_v1::API_VERSION
    );
}
