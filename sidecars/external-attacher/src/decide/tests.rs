//! Cases modelled on upstream's `csi_handler_test.go`, `util_test.go` and
//! `controller_test.go` (TestCSIHandler, TestGetVolumeCapabilities,
//! TestAddFinalizerPatch, TestRemoveFinalizerPatch, TestShouldEnqueueVAChange,
//! TestCSIHandlerReconcileVA), written as plain values.

use super::*;
use k8s_openapi::api::core::v1::{GCEPersistentDiskVolumeSource, SecretReference};
use k8s_openapi::api::storage::v1::{
    CSINodeDriver, CSINodeSpec, VolumeAttachmentSource, VolumeAttachmentSpec,
    VolumeAttachmentStatus, VolumeError,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const DRIVER: &str = "csi.test.io";
const FIN: &str = "external-attacher/csi-test-io";

fn va(pv: Option<&str>) -> VolumeAttachment {
    let mut va = VolumeAttachment::default();
    va.metadata.name = Some("va1".into());
    va.metadata.resource_version = Some("1".into());
    va.spec = VolumeAttachmentSpec {
        attacher: DRIVER.into(),
        node_name: "node1".into(),
        source: VolumeAttachmentSource {
            persistent_volume_name: pv.map(Into::into),
            ..Default::default()
        },
    };
    va
}

fn csi_spec(modes: &[&str]) -> PersistentVolumeSpec {
    PersistentVolumeSpec {
        access_modes: Some(modes.iter().map(|s| s.to_string()).collect()),
        csi: Some(CSIPersistentVolumeSource {
            driver: DRIVER.into(),
            volume_handle: "vol-1".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pv(name: &str) -> PersistentVolume {
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some(name.into());
    pv.spec = Some(csi_spec(&["ReadWriteOnce"]));
    pv
}

fn deleting<T: kube::Resource>(mut o: T) -> T {
    o.meta_mut().deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    o
}

#[test]
fn source_rules_and_texts() {
    assert_eq!(source(&va(Some("pv1"))).unwrap(), Source::Pv("pv1".into()));
    let mut both = va(Some("pv1"));
    both.spec.source.inline_volume_spec = Some(csi_spec(&["ReadWriteOnce"]));
    assert_eq!(
        source(&both).unwrap_err().to_string(),
        "both InlineCSIVolumeSource and PersistentVolumeName specified in VA source"
    );
    assert_eq!(
        source(&va(None)).unwrap_err().to_string(),
        "neither InlineCSIVolumeSource nor PersistentVolumeName specified in VA source"
    );
    let mut inline = va(None);
    inline.spec.source.inline_volume_spec = Some(PersistentVolumeSpec::default());
    assert_eq!(
        source(&inline).unwrap_err().to_string(),
        "inline volume spec contains nil CSI source"
    );
    inline.spec.source.inline_volume_spec = Some(csi_spec(&["ReadWriteOnce"]));
    assert!(matches!(source(&inline).unwrap(), Source::Inline(_)));
}

#[test]
fn deleting_pv_is_refused() {
    assert!(check_pv_not_deleting(&pv("pv1")).is_ok());
    assert_eq!(
        check_pv_not_deleting(&deleting(pv("pv1")))
            .unwrap_err()
            .to_string(),
        "PersistentVolume \"pv1\" is marked for deletion"
    );
    assert_eq!(
        pv_not_found("x").to_string(),
        "persistentvolume \"x\" not found"
    );
}

#[test]
fn access_modes_as_csi_lib_utils() {
    let m = |modes: &[&str], smnw| {
        access_mode(
            &modes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            smnw,
        )
    };
    assert_eq!(
        m(&["ReadWriteOnce"], false).unwrap(),
        Mode::SingleNodeWriter
    );
    assert_eq!(
        m(&["ReadWriteOnce"], true).unwrap(),
        Mode::SingleNodeMultiWriter
    );
    assert_eq!(
        m(&["ReadWriteOncePod"], false).unwrap(),
        Mode::SingleNodeWriter
    );
    assert_eq!(
        m(&["ReadWriteOncePod"], true).unwrap(),
        Mode::SingleNodeSingleWriter
    );
    assert_eq!(
        m(&["ReadWriteMany", "ReadOnlyMany"], false).unwrap(),
        Mode::MultiNodeMultiWriter
    );
    assert_eq!(
        m(&["ReadOnlyMany"], false).unwrap(),
        Mode::MultiNodeReaderOnly
    );
    assert_eq!(
        m(&["ReadOnlyMany", "ReadWriteOnce"], false)
            .unwrap_err()
            .to_string(),
        "CSI does not support ReadOnlyMany and ReadWriteOnce on the same PersistentVolume"
    );
    assert!(
        m(&["ReadWriteOncePod", "ReadWriteOnce"], true)
            .unwrap_err()
            .to_string()
            .starts_with("Kubernetes does not support use of ReadWriteOncePod")
    );
    assert_eq!(
        m(&[], false).unwrap_err().to_string(),
        "unsupported AccessMode combination: []"
    );
}

#[test]
fn capability_mount_block_fstype() {
    let mut spec = csi_spec(&["ReadWriteOnce"]);
    spec.mount_options = Some(vec!["ro".into()]);
    let cap = volume_capability(&spec, false, "ext4").unwrap();
    match cap.access_type.unwrap() {
        AccessType::Mount(m) => {
            assert_eq!(m.fs_type, "ext4", "--default-fstype fills an empty fsType");
            assert_eq!(m.mount_flags, vec!["ro".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    spec.csi.as_mut().unwrap().fs_type = Some("xfs".into());
    match volume_capability(&spec, false, "ext4")
        .unwrap()
        .access_type
        .unwrap()
    {
        AccessType::Mount(m) => assert_eq!(m.fs_type, "xfs"),
        other => panic!("{other:?}"),
    }
    spec.volume_mode = Some("Block".into());
    let cap = volume_capability(&spec, false, "ext4").unwrap();
    assert!(matches!(cap.access_type, Some(AccessType::Block(_))));
    assert_eq!(cap.access_mode.unwrap().mode, Mode::SingleNodeWriter as i32);
}

#[test]
fn readonly_needs_the_capability_and_secrets_come_from_the_pv() {
    let mut csi = csi_spec(&["ReadOnlyMany"]).csi.unwrap();
    csi.read_only = Some(true);
    assert!(!readonly(&csi, &Capabilities::default()));
    let caps = Capabilities {
        publish_readonly: true,
        ..Default::default()
    };
    assert!(readonly(&csi, &caps));
    assert_eq!(publish_secret(&csi), None);
    csi.controller_publish_secret_ref = Some(SecretReference {
        name: Some("s".into()),
        namespace: Some("ns".into()),
    });
    assert_eq!(publish_secret(&csi), Some(("ns".into(), "s".into())));
}

#[test]
fn capabilities_need_the_controller_service() {
    let c = Capabilities::from_driver(false, true, true, true, true, true);
    assert_eq!(c, Capabilities::default());
    let c = Capabilities::from_driver(true, true, false, true, false, false);
    assert!(c.publish_unpublish);
    assert!(
        !c.list_published_nodes,
        "both LIST_VOLUMES capabilities needed"
    );
}

#[test]
fn node_id_from_csinode_then_annotation() {
    let mut n = CSINode::default();
    n.metadata.name = Some("node1".into());
    n.spec = CSINodeSpec {
        drivers: vec![CSINodeDriver {
            name: DRIVER.into(),
            node_id: "id-1".into(),
            ..Default::default()
        }],
    };
    assert_eq!(node_id(Some(&n), "node1", DRIVER, None).unwrap(), "id-1");
    assert_eq!(
        node_id(None, "node1", DRIVER, None)
            .unwrap_err()
            .to_string(),
        "csinode.storage.k8s.io \"node1\" not found"
    );
    assert_eq!(
        node_id(Some(&n), "node1", "other", None)
            .unwrap_err()
            .to_string(),
        "CSINode node1 does not contain driver other"
    );
    let mut annotated = va(Some("pv1"));
    annotated.metadata.annotations =
        Some([(NODE_ID_ANNOTATION.to_string(), "old-id".to_string())].into());
    assert_eq!(
        node_id(None, "node1", DRIVER, Some(&annotated)).unwrap(),
        "old-id"
    );
    assert_eq!(
        node_id(Some(&n), "node1", DRIVER, Some(&annotated)).unwrap(),
        "id-1"
    );
}

#[test]
fn va_metadata_before_publish() {
    let v = va(Some("pv1"));
    assert_eq!(
        va_metadata_patch(&v, FIN, "id-1").unwrap(),
        json!({"metadata": {"finalizers": [FIN], "annotations": {NODE_ID_ANNOTATION: "id-1"}}})
    );
    let mut done = v.clone();
    done.metadata.finalizers = Some(vec!["other".into(), FIN.into()]);
    done.metadata.annotations = Some([(NODE_ID_ANNOTATION.to_string(), "id-1".to_string())].into());
    assert_eq!(va_metadata_patch(&done, FIN, "id-1"), None);
    assert_eq!(
        va_metadata_patch(&done, FIN, "id-2").unwrap(),
        json!({"metadata": {"annotations": {NODE_ID_ANNOTATION: "id-2"}}})
    );
}

#[test]
fn status_patches() {
    let mut v = va(Some("pv1"));
    let meta: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
    assert_eq!(
        attached_status_patch(&v, &meta),
        json!({"status": {"attached": true, "attachError": null, "attachmentMetadata": {"a": "1"}}})
    );
    v.status = Some(VolumeAttachmentStatus {
        attached: false,
        attachment_metadata: Some([("old".to_string(), "x".to_string())].into()),
        ..Default::default()
    });
    assert_eq!(
        attached_status_patch(&v, &meta)["status"]["attachmentMetadata"],
        json!({"old": null, "a": "1"})
    );
    let err = Error::Csi {
        rpc: "ControllerPublishVolume",
        status: tonic::Status::internal("boom"),
    };
    assert_eq!(
        attach_error_patch(&err, "2026-01-01T00:00:00Z", true),
        json!({"status": {"attachError": {"message": "rpc error: code = Internal desc = boom", "time": "2026-01-01T00:00:00Z", "errorCode": 13}}})
    );
    assert!(
        attach_error_patch(&err, "t", false)["status"]["attachError"]
            .get("errorCode")
            .is_none()
    );
    assert!(
        attach_error_patch(&Error::invalid("x"), "t", true)["status"]["attachError"]
            .get("errorCode")
            .is_none()
    );
    assert_eq!(
        detach_error_patch(&err, "t"),
        json!({"status": {"detachError": {"message": "rpc error: code = Internal desc = boom", "time": "t"}}})
    );
}

#[test]
fn detach_removes_the_finalizer_then_the_status() {
    let mut v = deleting(va(Some("pv1")));
    assert_eq!(remove_va_finalizer_patch(&v, FIN), None);
    assert!(!needs_detached_status(&v, FIN));
    v.metadata.finalizers = Some(vec![FIN.into()]);
    assert_eq!(
        remove_va_finalizer_patch(&v, FIN).unwrap(),
        json!({"metadata": {"finalizers": null}})
    );
    v.metadata.finalizers = Some(vec!["a".into(), FIN.into()]);
    assert_eq!(
        remove_va_finalizer_patch(&v, FIN).unwrap(),
        json!({"metadata": {"finalizers": ["a"]}})
    );
    assert!(needs_detached_status(&v, FIN));
    assert_eq!(
        detached_status_patch(),
        json!({"status": {"attached": false, "detachError": null, "attachmentMetadata": null}})
    );
}

#[test]
fn pv_finalizer_patches_as_upstream() {
    assert_eq!(
        add_pv_finalizer_patch(None, FIN).unwrap(),
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": [FIN]}])
    );
    assert_eq!(
        add_pv_finalizer_patch(Some(&[]), FIN).unwrap(),
        json!([{"op": "test", "path": "/metadata/finalizers", "value": []},
               {"op": "replace", "path": "/metadata/finalizers", "value": [FIN]}])
    );
    assert_eq!(
        add_pv_finalizer_patch(Some(&["x".to_string()]), FIN).unwrap(),
        json!([{"op": "add", "path": "/metadata/finalizers/-", "value": FIN}])
    );
    assert_eq!(add_pv_finalizer_patch(Some(&[FIN.to_string()]), FIN), None);
    assert_eq!(
        remove_pv_finalizer_patch(&["x".to_string(), FIN.to_string()], FIN).unwrap(),
        json!([{"op": "test", "path": "/metadata/finalizers/1", "value": FIN},
               {"op": "remove", "path": "/metadata/finalizers/1"}])
    );
    assert_eq!(remove_pv_finalizer_patch(&["x".to_string()], FIN), None);
}

#[test]
fn pv_finalizer_rule() {
    let mut p = pv("pv1");
    p.metadata.finalizers = Some(vec![FIN.into()]);
    assert_eq!(
        pv_action(&p, DRIVER, FIN, false),
        PvAction::Ignore,
        "not deleting"
    );
    let d = deleting(p.clone());
    assert_eq!(pv_action(&d, DRIVER, FIN, true), PvAction::Keep);
    assert_eq!(pv_action(&d, DRIVER, FIN, false), PvAction::Remove);
    let mut foreign = d.clone();
    foreign.metadata.finalizers = Some(vec!["external-attacher/other".into()]);
    assert_eq!(pv_action(&foreign, DRIVER, FIN, false), PvAction::Ignore);

    // An in-tree GCE PD PV served by pd.csi.storage.gke.io: the finalizer
    // stays while migrated-to names the driver, and goes on rollback.
    let gce = "pd.csi.storage.gke.io";
    let gfin = crate::names::finalizer(gce);
    let mut intree = PersistentVolume::default();
    intree.metadata.name = Some("pv2".into());
    intree.metadata.finalizers = Some(vec![gfin.clone()]);
    intree.spec = Some(PersistentVolumeSpec {
        gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
            pd_name: "disk".into(),
            ..Default::default()
        }),
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        ..Default::default()
    });
    assert_eq!(pv_action(&intree, gce, &gfin, false), PvAction::Remove);
    intree.metadata.annotations =
        Some([(MIGRATED_TO_ANNOTATION.to_string(), gce.to_string())].into());
    assert_eq!(pv_action(&intree, gce, &gfin, false), PvAction::Ignore);
}

#[test]
fn migrated_pv_is_translated() {
    let mut intree = PersistentVolume::default();
    intree.metadata.name = Some("pv2".into());
    intree.spec = Some(PersistentVolumeSpec {
        gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
            pd_name: "disk".into(),
            ..Default::default()
        }),
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        ..Default::default()
    });
    let (spec, migrated) = processed_spec(&intree).unwrap();
    assert!(migrated);
    let csi = csi_source(&spec).unwrap();
    assert_eq!(csi.driver, "pd.csi.storage.gke.io");
    assert!(
        csi.volume_handle.ends_with("/disks/disk"),
        "{}",
        csi.volume_handle
    );
    let (spec, migrated) = processed_spec(&pv("pv1")).unwrap();
    assert!(!migrated);
    assert_eq!(csi_source(&spec).unwrap().volume_handle, "vol-1");
    assert_eq!(
        csi_source(&PersistentVolumeSpec::default())
            .unwrap_err()
            .to_string(),
        "pv spec contained non-csi source that was not migrated"
    );
}

#[test]
fn error_only_updates_are_not_enqueued() {
    let old = va(Some("pv1"));
    assert!(should_enqueue_va_change(&old, &old), "resync");
    let mut new = old.clone();
    new.metadata.resource_version = Some("2".into());
    new.status = Some(VolumeAttachmentStatus {
        attach_error: Some(VolumeError {
            message: Some("boom".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        !should_enqueue_va_change(&old, &new),
        "only attachError changed"
    );
    let mut attached = new.clone();
    attached.status.as_mut().unwrap().attached = true;
    assert!(should_enqueue_va_change(&old, &attached));
    let mut deleted = new.clone();
    deleted.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(should_enqueue_va_change(&old, &deleted));
    let mut plain = old.clone();
    plain.metadata.resource_version = Some("3".into());
    assert!(
        should_enqueue_va_change(&old, &plain),
        "no errors on either side"
    );
}

#[test]
fn reconcile_redoes_only_disagreements() {
    let o = |name: &str, attached: bool, handle: &str, node: &str| Observed {
        name: name.into(),
        attached,
        handle: handle.into(),
        node_id: node.into(),
    };
    let published: HashMap<String, Vec<String>> = [
        ("v1".to_string(), vec!["n1".to_string()]),
        ("v2".to_string(), vec![]),
    ]
    .into();
    let observed = vec![
        o("consistent", true, "v1", "n1"),
        o("attached-not-published", true, "v2", "n1"),
        o("published-not-attached", false, "v1", "n1"),
        o("neither", false, "v3", "n1"),
        o("other-node", true, "v1", "n2"),
    ];
    assert_eq!(
        reconcile_diff(&observed, &published),
        vec![
            "attached-not-published",
            "published-not-attached",
            "other-node"
        ]
    );
    assert!(reconcile_diff(&[], &published).is_empty());
}

#[test]
fn lanes() {
    assert_eq!(Lane::of(&va(Some("p"))), Lane::Attach);
    assert_eq!(Lane::of(&deleting(va(Some("p")))), Lane::Detach);
}

#[test]
fn force_holds_only_while_the_status_is_unchanged() {
    assert!(force_still_needed(true, true));
    assert!(force_still_needed(false, false));
    assert!(!force_still_needed(false, true), "attached since: settled");
    assert!(!force_still_needed(true, false), "detached since: settled");
}
