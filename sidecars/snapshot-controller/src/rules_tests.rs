use super::*;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
    PersistentVolumeSpec, TypedLocalObjectReference,
};
use snapshot_api::snapshot::v1::{
    VolumeSnapshotClassFields, VolumeSnapshotContentStatus, VolumeSnapshotSource,
    VolumeSnapshotSpec,
};

fn now() -> Time {
    Time(Timestamp::from_second(1_700_000_000).unwrap())
}

fn dynamic(name: &str, claim: &str) -> VolumeSnapshot {
    let mut vs = VolumeSnapshot::new(
        name,
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(claim.into()),
                volume_snapshot_content_name: None,
            },
            volume_snapshot_class_name: Some("gold".into()),
        },
    );
    vs.metadata.namespace = Some("ns".into());
    vs.metadata.uid = Some(format!("uid-{name}"));
    vs.metadata.resource_version = Some("7".into());
    vs
}

fn pre(name: &str, content: &str) -> VolumeSnapshot {
    let mut vs = dynamic(name, "");
    vs.spec.source = VolumeSnapshotSource {
        persistent_volume_claim_name: None,
        volume_snapshot_content_name: Some(content.into()),
    };
    vs
}

fn content_for(
    vs: &VolumeSnapshot,
    name: &str,
    policy: DeletionPolicy,
    handle_is_snapshot: bool,
) -> VolumeSnapshotContent {
    let mut c = VolumeSnapshotContent::new(
        name,
        VolumeSnapshotContentSpec {
            volume_snapshot_ref: ObjectReference {
                name: vs.metadata.name.clone(),
                namespace: vs.metadata.namespace.clone(),
                uid: vs.metadata.uid.clone(),
                ..Default::default()
            },
            deletion_policy: policy,
            driver: "d".into(),
            volume_snapshot_class_name: None,
            source: if handle_is_snapshot {
                VolumeSnapshotContentSource {
                    snapshot_handle: Some("snap-1".into()),
                    volume_handle: None,
                }
            } else {
                VolumeSnapshotContentSource {
                    volume_handle: Some("vol-1".into()),
                    snapshot_handle: None,
                }
            },
            source_volume_mode: None,
        },
    );
    c.metadata.finalizers = Some(vec![VOLUME_SNAPSHOT_CONTENT_FINALIZER.into()]);
    c
}

fn class(name: &str, driver: &str, default: bool) -> VolumeSnapshotClass {
    let mut c = VolumeSnapshotClass::new(
        name,
        VolumeSnapshotClassFields {
            driver: driver.into(),
            parameters: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    if default {
        c.metadata.annotations = Some(BTreeMap::from([(
            IS_DEFAULT_SNAPSHOT_CLASS.to_string(),
            "true".to_string(),
        )]));
    }
    c
}

fn deleting(mut vs: VolumeSnapshot, fins: &[&str]) -> VolumeSnapshot {
    vs.metadata.deletion_timestamp = Some(now());
    vs.metadata.finalizers = Some(fins.iter().map(|f| f.to_string()).collect());
    vs
}

fn bound(mut vs: VolumeSnapshot, content: &str, ready: bool) -> VolumeSnapshot {
    vs.status = Some(VolumeSnapshotStatus {
        bound_volume_snapshot_content_name: Some(content.into()),
        ready_to_use: Some(ready),
        ..Default::default()
    });
    vs
}

#[test]
fn dynamic_content_is_named_after_the_uid_and_copies_class_and_pv() {
    let vs = dynamic("s", "claim");
    let secret = ("sec".to_string(), "secns".to_string());
    let c = new_dynamic_content(
        &vs,
        &class("gold", "d", false),
        "vol-1",
        Some("Block"),
        Some(&secret),
        None,
    );
    assert_eq!(c.name_any(), "snapcontent-uid-s");
    let r = &c.spec.volume_snapshot_ref;
    assert_eq!(r.kind.as_deref(), Some("VolumeSnapshot"));
    assert_eq!(r.api_version.as_deref(), Some("snapshot.storage.k8s.io/v1"));
    assert_eq!(r.uid.as_deref(), Some("uid-s"));
    assert_eq!(r.resource_version.as_deref(), Some("7"));
    assert_eq!(c.spec.source.volume_handle.as_deref(), Some("vol-1"));
    assert_eq!(c.spec.volume_snapshot_class_name.as_deref(), Some("gold"));
    assert_eq!(c.spec.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(c.spec.source_volume_mode.as_deref(), Some("Block"));
    assert_eq!(c.annotations()[ANN_DELETION_SECRET_NAME], "sec");
    assert_eq!(c.annotations()[ANN_DELETION_SECRET_NAMESPACE], "secns");
    assert!(c.labels().is_empty());
    assert!(matches!(
        dynamic_content(&vs, Some(&c)),
        ContentLookup::Found(_)
    ));
}

#[test]
fn preprovisioned_binding_checks_both_directions() {
    let vs = pre("s", "c1");
    let mut c = content_for(&vs, "c1", DeletionPolicy::Retain, true);
    c.spec.volume_snapshot_ref.uid = None;
    assert_eq!(
        preprovisioned_content(&vs, None).unwrap(),
        ContentLookup::Missing
    );
    assert!(matches!(
        preprovisioned_content(&vs, Some(&c)).unwrap(),
        ContentLookup::Found(_)
    ));
    // Binding sets the UID and copies the class.
    let patch = bind_patch(&vs, &c).unwrap().unwrap();
    assert_eq!(patch[0]["path"], "/spec/volumeSnapshotRef/uid");
    assert_eq!(patch[0]["value"], "uid-s");
    assert_eq!(patch[1]["path"], "/spec/volumeSnapshotClassName");
    c.spec.volume_snapshot_ref.uid = Some("uid-s".into());
    c.spec.volume_snapshot_class_name = Some("gold".into());
    assert_eq!(bind_patch(&vs, &c).unwrap(), None);

    // A content naming another snapshot: misbound.
    let mut other = c.clone();
    other.spec.volume_snapshot_ref.name = Some("t".into());
    let ContentLookup::Wrong(p) = preprovisioned_content(&vs, Some(&other)).unwrap() else {
        panic!("misbound content accepted")
    };
    assert_eq!(p.reason, reason::SNAPSHOT_CONTENT_MISBOUND);
    assert_eq!(
        p.message,
        "VolumeSnapshotContent [c1] is bound to a different snapshot"
    );
    assert!(bind_patch(&vs, &other).is_err());
    // Another UID: misbound too.
    let mut stolen = c.clone();
    stolen.spec.volume_snapshot_ref.uid = Some("uid-x".into());
    assert!(matches!(
        preprovisioned_content(&vs, Some(&stolen)).unwrap(),
        ContentLookup::Wrong(Problem {
            reason: reason::SNAPSHOT_CONTENT_MISBOUND,
            ..
        })
    ));
}

#[test]
fn content_of_the_wrong_kind_is_a_mismatch() {
    let vs = pre("s", "c1");
    let dynamic_one = content_for(&vs, "c1", DeletionPolicy::Delete, false);
    let ContentLookup::Wrong(p) = preprovisioned_content(&vs, Some(&dynamic_one)).unwrap() else {
        panic!()
    };
    assert_eq!(p.reason, reason::SNAPSHOT_CONTENT_MISMATCH);
    assert_eq!(
        p.message,
        "VolumeSnapshotContent is dynamically provisioned while expecting a pre-provisioned one"
    );
    let d = dynamic("s", "claim");
    let pre_one = content_for(&d, "snapcontent-uid-s", DeletionPolicy::Delete, true);
    let ContentLookup::Wrong(p) = dynamic_content(&d, Some(&pre_one)) else {
        panic!()
    };
    assert_eq!(
        p.message,
        "VolumeSnapshotContent snapcontent-uid-s is pre-provisioned while expecting a dynamically provisioned one"
    );
    assert!(p.set_ready_false);
}

#[test]
fn finalizers_source_always_bound_only_for_delete() {
    let vs = dynamic("s", "claim");
    assert_eq!(finalizers_to_add(&vs, None), (true, false));
    let b = bound(vs.clone(), "snapcontent-uid-s", false);
    let del = content_for(&b, "snapcontent-uid-s", DeletionPolicy::Delete, false);
    let ret = content_for(&b, "snapcontent-uid-s", DeletionPolicy::Retain, false);
    assert_eq!(finalizers_to_add(&b, Some(&del)), (true, true));
    assert_eq!(finalizers_to_add(&b, Some(&ret)), (true, false));
    // Not bound in status yet: no bound finalizer.
    assert_eq!(finalizers_to_add(&vs, Some(&del)), (true, false));
    let mut both = b.clone();
    both.metadata.finalizers = Some(vec![
        VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER.into(),
        VOLUME_SNAPSHOT_BOUND_FINALIZER.into(),
    ]);
    assert_eq!(finalizers_to_add(&both, Some(&del)), (false, false));
}

#[test]
fn claim_finalizer_stays_while_a_snapshot_of_it_is_not_ready() {
    let taking = dynamic("a", "claim");
    let ready = bound(dynamic("b", "claim"), "c", true);
    let other_claim = dynamic("c", "other");
    let preprov = pre("d", "x");
    assert!(claim_in_use("claim", &ready, [&taking, &ready], false));
    assert!(!claim_in_use("claim", &taking, [&taking, &ready], true));
    assert!(!claim_in_use(
        "claim",
        &ready,
        [&ready, &other_claim, &preprov],
        false
    ));
}

#[test]
fn deletion_with_delete_policy_deletes_content_and_keeps_bound_finalizer() {
    let vs = deleting(
        bound(dynamic("s", "claim"), "snapcontent-uid-s", true),
        &[
            VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER,
            VOLUME_SNAPSHOT_BOUND_FINALIZER,
        ],
    );
    let c = content_for(&vs, "snapcontent-uid-s", DeletionPolicy::Delete, false);
    assert_eq!(
        deletion(&vs, Some(&c), false, None),
        Deletion::Proceed {
            mark_content: Some("snapcontent-uid-s".into()),
            delete_content: Some("snapcontent-uid-s".into()),
            remove_bound: false,
            remove_group: false,
        }
    );
    // Already annotated: not again.
    let mut marked = c.clone();
    marked.metadata.annotations = Some(BTreeMap::from([(
        ANN_VOLUME_SNAPSHOT_BEING_DELETED.to_string(),
        "yes".to_string(),
    )]));
    assert!(matches!(
        deletion(&vs, Some(&marked), false, None),
        Deletion::Proceed {
            mark_content: None,
            delete_content: Some(_),
            ..
        }
    ));
    // Content gone: the bound finalizer goes.
    assert!(matches!(
        deletion(&vs, None, false, None),
        Deletion::Proceed {
            mark_content: None,
            delete_content: None,
            remove_bound: true,
            ..
        }
    ));
}

#[test]
fn deletion_with_retain_keeps_content_and_releases_at_once() {
    let vs = deleting(
        bound(pre("s", "c1"), "c1", true),
        &[VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER],
    );
    let c = content_for(&vs, "c1", DeletionPolicy::Retain, true);
    assert_eq!(
        deletion(&vs, Some(&c), false, None),
        Deletion::Proceed {
            mark_content: Some("c1".into()),
            delete_content: None,
            remove_bound: true,
            remove_group: false,
        }
    );
}

#[test]
fn deletion_waits_for_restores_and_groups_and_ignores_foreign_content() {
    let vs = deleting(
        bound(dynamic("s", "claim"), "snapcontent-uid-s", true),
        &[VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER],
    );
    let c = content_for(&vs, "snapcontent-uid-s", DeletionPolicy::Delete, false);
    let Deletion::Pending { message, .. } = deletion(&vs, Some(&c), true, None) else {
        panic!("deleted while restoring")
    };
    assert_eq!(message, "Snapshot is being used to restore a PVC");
    let mut foreign = c.clone();
    foreign.spec.volume_snapshot_ref.uid = Some("other".into());
    assert!(matches!(
        deletion(&vs, Some(&foreign), true, None),
        Deletion::Proceed {
            mark_content: None,
            delete_content: None,
            remove_bound: true,
            ..
        }
    ));
    assert!(matches!(
        deletion(&vs, Some(&c), false, Some(true)),
        Deletion::Pending { .. }
    ));
    assert!(matches!(
        deletion(&vs, Some(&c), false, Some(false)),
        Deletion::Proceed {
            remove_group: true,
            ..
        }
    ));
    // No finalizer of ours left: nothing.
    let gone = deleting(dynamic("s", "claim"), &["other"]);
    assert_eq!(deletion(&gone, Some(&c), false, None), Deletion::Nothing);
}

#[test]
fn restores_are_pending_claims_naming_the_snapshot() {
    let vs = dynamic("s", "claim");
    let claim = |phase: &str, kind: &str| PersistentVolumeClaim {
        spec: Some(PersistentVolumeClaimSpec {
            data_source: Some(TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: kind.into(),
                name: "s".into(),
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(restoring_from(&vs, [&claim("Pending", "VolumeSnapshot")]));
    assert!(!restoring_from(&vs, [&claim("Bound", "VolumeSnapshot")]));
    assert!(!restoring_from(
        &vs,
        [&claim("Pending", "PersistentVolumeClaim")]
    ));
}

#[test]
fn default_class_needs_exactly_one_for_the_driver() {
    let classes = [
        class("a", "d", true),
        class("b", "other", true),
        class("c", "d", false),
    ];
    assert_eq!(default_class(&classes, "d").unwrap().name_any(), "a");
    assert_eq!(
        default_class(&classes, "none").unwrap_err(),
        "cannot find default snapshot class"
    );
    let two = [class("a", "d", true), class("b", "d", true)];
    assert_eq!(
        default_class(&two, "d").unwrap_err(),
        "2 default snapshot classes were found"
    );
}

#[test]
fn source_claim_and_volume_errors_read_like_upstream() {
    let vs = dynamic("s", "claim");
    assert_eq!(
        source_claim(&vs, None).unwrap_err(),
        r#"failed to retrieve PVC claim from the lister: "persistentvolumeclaim \"claim\" not found""#
    );
    let mut pvc = PersistentVolumeClaim::default();
    pvc.metadata.name = Some("claim".into());
    pvc.metadata.namespace = Some("ns".into());
    pvc.metadata.uid = Some("cu".into());
    assert_eq!(
        bound_volume_name(&pvc).unwrap_err(),
        "the PVC claim is not yet bound to a PV, will not attempt to take a snapshot"
    );
    pvc.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        ..Default::default()
    });
    pvc.spec = Some(PersistentVolumeClaimSpec {
        volume_name: Some("pv1".into()),
        ..Default::default()
    });
    assert_eq!(bound_volume_name(&pvc).unwrap(), "pv1");
    let mut pv = PersistentVolume {
        spec: Some(PersistentVolumeSpec {
            claim_ref: Some(ObjectReference {
                name: Some("claim".into()),
                namespace: Some("ns".into()),
                uid: Some("cu".into()),
                ..Default::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: "d".into(),
                volume_handle: "vol-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(volume_driver(&vs, &pvc, &pv).unwrap(), "d");
    pv.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("other".into());
    assert_eq!(
        volume_driver(&vs, &pvc, &pv).unwrap_err(),
        "claim in dataSource not bound or invalid"
    );
}

#[test]
fn status_copies_the_content_and_clears_errors_when_ready() {
    let vs = dynamic("s", "claim");
    let mut c = content_for(&vs, "snapcontent-uid-s", DeletionPolicy::Delete, false);
    // Bound but not cut yet.
    let s = merged_status(None, &c).unwrap();
    assert_eq!(
        s.bound_volume_snapshot_content_name.as_deref(),
        Some("snapcontent-uid-s")
    );
    assert_eq!(s.ready_to_use, Some(false));
    assert!(s.creation_time.is_none() && s.restore_size.is_none());
    assert_eq!(merged_status(Some(&s), &c), None);
    // Cut and ready.
    c.status = Some(VolumeSnapshotContentStatus {
        snapshot_handle: Some("h".into()),
        creation_time: Some(1_700_000_000_000_000_000),
        restore_size: Some(1 << 20),
        ready_to_use: Some(true),
        ..Default::default()
    });
    let with_err = error_status(Some(&s), "boom", true, now()).unwrap();
    let next = merged_status(Some(&with_err), &c).unwrap();
    assert_eq!(next.ready_to_use, Some(true));
    assert_eq!(next.restore_size, Some(Quantity("1Mi".into())));
    assert_eq!(next.creation_time, Some(now()));
    assert!(next.error.is_none());
    assert_eq!(merged_status(Some(&next), &c), None);
    // A zero size is replaced by a positive one.
    let mut zero = next.clone();
    zero.restore_size = Some(Quantity("0".into()));
    assert_eq!(
        merged_status(Some(&zero), &c).unwrap().restore_size,
        Some(Quantity("1Mi".into()))
    );
}

#[test]
fn error_status_is_written_once_per_message() {
    let s = error_status(None, "VolumeSnapshotContent is missing", true, now()).unwrap();
    assert_eq!(s.ready_to_use, Some(false));
    assert_eq!(
        s.error.as_ref().and_then(|e| e.message.as_deref()),
        Some("VolumeSnapshotContent is missing")
    );
    assert_eq!(
        error_status(Some(&s), "VolumeSnapshotContent is missing", true, now()),
        None
    );
    let kept = error_status(Some(&s), "other", false, now()).unwrap();
    assert_eq!(kept.ready_to_use, Some(false));
}

#[test]
fn content_sync_validates_then_finalizes_then_marks() {
    let vs = bound(dynamic("s", "claim"), "snapcontent-uid-s", false);
    let mut c = content_for(&vs, "snapcontent-uid-s", DeletionPolicy::Delete, false);
    c.spec.source.snapshot_handle = Some("h".into());
    assert!(matches!(
        content_step(&c, Some(&vs)).0,
        ContentStep::Invalid(_)
    ));
    c.spec.source.snapshot_handle = None;
    let mut unbound = c.clone();
    unbound.spec.volume_snapshot_ref.uid = None;
    assert_eq!(
        content_step(&unbound, Some(&vs)).0,
        ContentStep::WaitForBinding
    );
    let mut bare = c.clone();
    bare.metadata.finalizers = None;
    assert_eq!(content_step(&bare, Some(&vs)).0, ContentStep::AddFinalizer);
    assert_eq!(content_step(&c, Some(&vs)), (ContentStep::Nothing, false));
    c.status = Some(VolumeSnapshotContentStatus {
        ready_to_use: Some(true),
        ..Default::default()
    });
    assert_eq!(content_step(&c, Some(&vs)), (ContentStep::Nothing, true));
    let gone = deleting(vs.clone(), &[VOLUME_SNAPSHOT_BOUND_FINALIZER]);
    assert_eq!(
        content_step(&c, Some(&gone)).0,
        ContentStep::MarkBeingDeleted
    );
    // A snapshot re-created under the same name is not ours.
    let mut recreated = gone.clone();
    recreated.metadata.uid = Some("new".into());
    assert_eq!(
        content_step(&c, Some(&recreated)),
        (ContentStep::Nothing, false)
    );
}

#[test]
fn secret_templates_resolve_and_validate() {
    let vs = dynamic("s", "claim");
    let params = |n: &str, ns: &str| {
        BTreeMap::from([
            (SNAPSHOTTER_SECRET_NAME_KEY.to_string(), n.to_string()),
            (SNAPSHOTTER_SECRET_NAMESPACE_KEY.to_string(), ns.to_string()),
        ])
    };
    assert_eq!(
        snapshotter_secret(&BTreeMap::new(), "c", &vs).unwrap(),
        None
    );
    assert_eq!(
        snapshotter_secret(
            &params("${volumesnapshot.name}-sec", "${volumesnapshot.namespace}"),
            "c",
            &vs
        )
        .unwrap(),
        Some(("s-sec".to_string(), "ns".to_string()))
    );
    assert_eq!(
        snapshotter_secret(&params("x", "${volumesnapshot.name}"), "c", &vs).unwrap_err(),
        r#"error resolving value "${volumesnapshot.name}": invalid tokens: ["volumesnapshot.name"]"#
    );
    assert_eq!(
        snapshotter_secret(&params("Bad_Name", "ns"), "c", &vs).unwrap_err(),
        r#""Bad_Name" is not a valid secret name"#
    );
    let mut only_name = params("a", "b");
    only_name.remove(SNAPSHOTTER_SECRET_NAMESPACE_KEY);
    assert!(
        snapshotter_secret(&only_name, "c", &vs)
            .unwrap_err()
            .contains("Both must be specified")
    );
}

#[test]
fn managed_by_is_the_first_node_the_affinity_selects() {
    use k8s_openapi::api::core::v1::{
        Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, VolumeNodeAffinity,
    };
    let node = |name: &str, zone: &str| {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(BTreeMap::from([("zone".to_string(), zone.to_string())]));
        n
    };
    let nodes = [node("a", "z1"), node("b", "z2")];
    let pv_with = |terms: Vec<NodeSelectorTerm>| PersistentVolume {
        spec: Some(PersistentVolumeSpec {
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let expr = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|v| v.to_string()).collect()),
    };
    let by_label = pv_with(vec![NodeSelectorTerm {
        match_expressions: Some(vec![expr("zone", "In", &["z2"])]),
        match_fields: None,
    }]);
    assert_eq!(managed_by_node(&by_label, &nodes).as_deref(), Some("b"));
    let by_name = pv_with(vec![NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![expr("metadata.name", "In", &["a"])]),
    }]);
    assert_eq!(managed_by_node(&by_name, &nodes).as_deref(), Some("a"));
    let none = pv_with(vec![NodeSelectorTerm {
        match_expressions: Some(vec![expr("zone", "NotIn", &["z1", "z2"])]),
        match_fields: None,
    }]);
    assert_eq!(managed_by_node(&none, &nodes), None);
    let empty_term = pv_with(vec![NodeSelectorTerm::default()]);
    assert_eq!(managed_by_node(&empty_term, &nodes), None);
    assert_eq!(managed_by_node(&PersistentVolume::default(), &nodes), None);
}

#[test]
fn claim_finalizer_is_added_once_and_never_to_a_deleted_claim() {
    let mut pvc = PersistentVolumeClaim::default();
    pvc.metadata.name = Some("claim".into());
    assert_eq!(claim_needs_finalizer(&pvc), Ok(true));
    pvc.metadata.finalizers = Some(vec![PVC_AS_SOURCE_FINALIZER.into()]);
    assert_eq!(claim_needs_finalizer(&pvc), Ok(false));
    pvc.metadata.finalizers = None;
    pvc.metadata.deletion_timestamp = Some(now());
    assert_eq!(
        claim_needs_finalizer(&pvc).unwrap_err(),
        "snapshot controller failed to update claim on API server: cannot add finalizer on claim because it is being deleted"
    );
}
