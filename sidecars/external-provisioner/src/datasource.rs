//! Volume data sources: which kind a claim asks for, and whether a source
//! claim can be cloned now.
//!
//! Mirrors external-provisioner's data-source normalisation and
//! `getPVCSource` checks (`external-provisioner: pkg/controller/controller.go`
//! `dataSource`, `getPVCSource`).

use csi_client::csi::v1::VolumeContentSource;
use csi_client::csi::v1::volume_content_source::{Type as SourceType, VolumeSource};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sidecar_runtime::gofmt::quote;

use crate::error::Error;
use crate::quantity;

/// What a claim's `dataSource`/`dataSourceRef` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// No data source: an empty volume.
    None,
    /// Clone of the PVC of this name, in the claim's namespace.
    Claim(String),
    /// Restore from the VolumeSnapshot of this name.
    Snapshot(String),
    /// Any other kind: left to an external volume populator.
    Populator {
        /// `apiGroup`, "" for the core group.
        api_group: String,
        /// `kind`.
        kind: String,
    },
}

impl DataSource {
    /// The `source` label of the provision metrics: the kind, or "".
    pub fn metric_label(&self) -> &str {
        match self {
            DataSource::None => "",
            DataSource::Claim(_) => "PersistentVolumeClaim",
            DataSource::Snapshot(_) => "VolumeSnapshot",
            DataSource::Populator { kind, .. } => kind,
        }
    }
}

/// Upstream's first data-source check (`dataSource`, before the
/// StorageClass is translated): a `spec.dataSourceRef` with a namespace
/// needs the CrossNamespaceVolumeDataSource feature gate, which this
/// provisioner does not offer.
///
/// Errors: [`Error::Unsupported`] (final) with upstream's text.
pub fn check_data_source_namespace(pvc: &PersistentVolumeClaim) -> Result<(), Error> {
    let spec = pvc.spec.as_ref();
    let cross = spec.is_some_and(|s| {
        s.data_source.is_none()
            && s.data_source_ref
                .as_ref()
                .and_then(|r| r.namespace.as_deref())
                .is_some_and(|ns| !ns.is_empty())
    });
    if cross {
        return Err(Error::Unsupported(
            "dataSourceRef namespace specified but the CrossNamespaceVolumeDataSource feature is disabled".into(),
        ));
    }
    Ok(())
}

/// Reads the claim's data source: `spec.dataSource`, else `spec.dataSourceRef`.
///
/// As upstream (`dataSource` and the kind switch of `prepareProvision`):
/// kind `PersistentVolumeClaim` is a clone whatever its apiGroup, kind
/// `VolumeSnapshot` a restore that must name `snapshot.storage.k8s.io`,
/// anything else is left to a populator.
///
/// Errors (final), with upstream's texts: a `dataSourceRef` with a namespace
/// ([`check_data_source_namespace`]), an empty name (`the PVC source not
/// found for PVC <claim>`), a VolumeSnapshot of another apiGroup.
pub fn data_source(pvc: &PersistentVolumeClaim) -> Result<DataSource, Error> {
    check_data_source_namespace(pvc)?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let (group, kind, name) = if let Some(ds) = spec.data_source {
        (ds.api_group.unwrap_or_default(), ds.kind, ds.name)
    } else if let Some(r) = spec.data_source_ref {
        (r.api_group.unwrap_or_default(), r.kind, r.name)
    } else {
        return Ok(DataSource::None);
    };
    if name.is_empty() {
        return Err(Error::InvalidClaim(format!(
            "the PVC source not found for PVC {}",
            pvc.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    match kind.as_str() {
        "VolumeSnapshot" if group == SNAPSHOT_GROUP => Ok(DataSource::Snapshot(name)),
        "VolumeSnapshot" => Err(Error::InvalidClaim(format!(
            "the PVC source does not belong to the right APIGroup. Expected {SNAPSHOT_GROUP}, Got {group}"
        ))),
        "PersistentVolumeClaim" => Ok(DataSource::Claim(name)),
        _ => Ok(DataSource::Populator {
            api_group: group,
            kind,
        }),
    }
}

const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

/// The claim's storage request in bytes, 0 when absent or unreadable, as
/// Go's `Quantity.Value()` of a missing map entry.
fn request_or_zero(pvc: &PersistentVolumeClaim) -> i64 {
    quantity::claim_request_bytes(pvc).unwrap_or(0)
}

/// Checks that `source` (the claim named by a clone request, from the cache)
/// can be cloned for `pvc` now, and returns the CSI content source.
///
/// `source_pv` is the PV `source` is bound to, from the cache;
/// `provisioner` is the new claim's StorageClass provisioner.
///
/// Errors: [`Error::DataSource`] (retried) for every unmet condition, with
/// upstream's conditions, order and texts (`getPVCSource`, wrapped by
/// `prepareProvision` in `error getting handle for DataSource Type
/// PersistentVolumeClaim by Name <source>: `): the source exists, is Bound
/// and not being deleted, both claims name a StorageClass, the new claim is
/// at least as large, the source has a volume that is a CSI volume of the
/// same driver, Bound to exactly this source claim, and the source volume's
/// mode is the new claim's.
pub fn clone_source(
    pvc: &PersistentVolumeClaim,
    source_name: &str,
    source: Option<&PersistentVolumeClaim>,
    source_pv: Option<&PersistentVolume>,
    provisioner: &str,
) -> Result<VolumeContentSource, Error> {
    let not_ready = |why: String| {
        Error::DataSource(format!(
            "error getting handle for DataSource Type PersistentVolumeClaim by Name {source_name}: {why}"
        ))
    };
    let claim_ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
    let source = source.ok_or_else(|| {
        not_ready(format!(
            "error getting PVC {source_name} (namespace {}) from api server: persistentvolumeclaim {} not found",
            quote(claim_ns),
            quote(source_name)
        ))
    })?;
    if source.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(not_ready(format!(
            "the PVC DataSource {source_name} must have a status of Bound.  Got {}",
            go_claim_status(source.status.as_ref())
        )));
    }
    if source.metadata.deletion_timestamp.is_some() {
        return Err(not_ready(format!(
            "the PVC DataSource {source_name} is currently being deleted"
        )));
    }
    let has_class = |p: &PersistentVolumeClaim| {
        p.spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
    };
    if !has_class(source) {
        return Err(not_ready(format!(
            "the source PVC ({}) storageclass cannot be empty",
            source.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    if !has_class(pvc) {
        return Err(not_ready(format!(
            "the requested PVC ({}) storageclass cannot be empty",
            pvc.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    let (want, have) = (request_or_zero(pvc), request_or_zero(source));
    if want < have {
        return Err(not_ready(format!(
            "error, new PVC request must be greater than or equal in size to the specified PVC data source, requested {want} but source is {have}"
        )));
    }
    let volume_name = source
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if volume_name.is_empty() {
        return Err(not_ready(format!(
            "volume name is empty in source PVC {}",
            source.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    // Upstream logs why and reports one text for all of these.
    let invalid = || not_ready("claim in dataSource not bound or invalid".into());
    let pv = source_pv
        .filter(|pv| pv.metadata.name.as_deref() == Some(volume_name.as_str()))
        .ok_or_else(invalid)?;
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let csi = pv_spec.csi.as_ref().ok_or_else(invalid)?;
    if csi.driver != provisioner {
        return Err(invalid());
    }
    let claim_ref = pv_spec.claim_ref.clone().ok_or_else(invalid)?;
    if claim_ref.uid != source.metadata.uid
        || claim_ref.namespace != source.metadata.namespace
        || claim_ref.name != source.metadata.name
    {
        return Err(invalid());
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(invalid());
    }
    let claim_mode = pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let pv_mode = pv_spec.volume_mode.as_deref();
    if claim_mode.is_none_or(|m| m == "Filesystem") && pv_mode.is_some_and(|m| m != "Filesystem") {
        return Err(not_ready(
            "the source PVC and destination PVCs must have the same volume mode for cloning.  Source is Block, but new PVC requested Filesystem".into(),
        ));
    }
    if claim_mode == Some("Block") && pv_mode != Some("Block") {
        return Err(not_ready(
            "the source PVC and destination PVCs must have the same volume mode for cloning.  Source is Filesystem, but new PVC requested Block".into(),
        ));
    }
    Ok(VolumeContentSource {
        r#type: Some(SourceType::Volume(VolumeSource {
            volume_id: csi.volume_handle.clone(),
        })),
    })
}

/// A claim status as Go's `%v` prints a `v1.PersistentVolumeClaimStatus`
/// (upstream puts it into the "must have a status of Bound" text):
/// `{<phase> <accessModes> <capacity> <conditions> <allocatedResources>
/// <allocatedResourceStatuses> <currentVolumeAttributesClassName>
/// <modifyVolumeStatus>}`, e.g. `{Pending [] map[] [] map[] map[] <nil> nil}`.
///
/// Exact for every field but one: a set `currentVolumeAttributesClassName`
/// is a pointer, which Go prints as its address; it is rendered as
/// `0xc000000000` here. Condition times print in UTC, as Go does in a pod
/// whose time zone is UTC.
pub fn go_claim_status(status: Option<&PersistentVolumeClaimStatus>) -> String {
    let st = status.cloned().unwrap_or_default();
    let resources = |m: &Option<BTreeMap<String, Quantity>>| {
        let pairs: Vec<String> = m
            .iter()
            .flatten()
            .map(|(k, q)| format!("{k}:{}", quantity::go_value(&q.0)))
            .collect();
        format!("map[{}]", pairs.join(" "))
    };
    let time = |t: &Option<Time>| {
        t.as_ref().map_or_else(
            || "0001-01-01 00:00:00 +0000 UTC".to_string(),
            |t| t.0.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        )
    };
    let conditions: Vec<String> = st
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            format!(
                "{{{} {} {} {} {} {}}}",
                c.type_,
                c.status,
                time(&c.last_probe_time),
                time(&c.last_transition_time),
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let statuses: Vec<String> = st
        .allocated_resource_statuses
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let modify = st.modify_volume_status.as_ref().map_or_else(
        || "nil".to_string(),
        |m| {
            format!(
                "&ModifyVolumeStatus{{TargetVolumeAttributesClassName:{},Status:{},}}",
                m.target_volume_attributes_class_name
                    .as_deref()
                    .unwrap_or_default(),
                m.status
            )
        },
    );
    format!(
        "{{{} [{}] {} [{}] {} map[{}] {} {}}}",
        st.phase.as_deref().unwrap_or_default(),
        st.access_modes.unwrap_or_default().join(" "),
        resources(&st.capacity),
        conditions.join(" "),
        resources(&st.allocated_resources),
        statuses.join(" "),
        if st.current_volume_attributes_class_name.is_some() {
            "0xc000000000"
        } else {
            "<nil>"
        },
        modify
    )
}

/// True when a claim being deleted still has to keep the cloning-protection
/// finalizer: some Pending claim in `claims` (same namespace) clones it.
pub fn clone_in_progress<'a>(
    source: &PersistentVolumeClaim,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> bool {
    let name = source.metadata.name.as_deref();
    let ns = source.metadata.namespace.as_deref();
    claims.into_iter().any(|c| {
        c.metadata.namespace.as_deref() == ns
            && c.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending")
                == "Pending"
            && matches!(data_source(c), Ok(DataSource::Claim(n)) if Some(n.as_str()) == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, ObjectReference, PersistentVolumeClaimSpec,
        PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus,
        TypedLocalObjectReference, TypedObjectReference, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    const DRIVER: &str = "hostpath.csi.k8s.io";

    fn pvc(name: &str, size: &str, phase: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("fast".into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    ..Default::default()
                }),
                volume_name: (phase == "Bound").then(|| format!("pv-{name}")),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn cloning(name: &str, source: &str) -> PersistentVolumeClaim {
        let mut c = pvc(name, "1Gi", "Pending");
        c.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: source.into(),
        });
        c
    }

    fn pv_for(source: &PersistentVolumeClaim, driver: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: source.spec.as_ref().unwrap().volume_name.clone(),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "vol-src".into(),
                    ..Default::default()
                }),
                claim_ref: Some(ObjectReference {
                    name: source.metadata.name.clone(),
                    namespace: source.metadata.namespace.clone(),
                    uid: source.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Bound".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn data_source_kinds() {
        assert_eq!(
            data_source(&pvc("a", "1Gi", "Pending")).unwrap(),
            DataSource::None
        );
        assert_eq!(
            data_source(&cloning("a", "src")).unwrap(),
            DataSource::Claim("src".into())
        );
        let mut snap = pvc("a", "1Gi", "Pending");
        snap.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: "s1".into(),
            namespace: None,
        });
        assert_eq!(
            data_source(&snap).unwrap(),
            DataSource::Snapshot("s1".into())
        );
        let mut pop = pvc("a", "1Gi", "Pending");
        pop.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: Some("hello.example.com".into()),
            kind: "Hello".into(),
            name: "h".into(),
            namespace: None,
        });
        assert_eq!(
            data_source(&pop).unwrap(),
            DataSource::Populator {
                api_group: "hello.example.com".into(),
                kind: "Hello".into()
            }
        );
        assert_eq!(data_source(&pop).unwrap().metric_label(), "Hello");
    }

    /// external-provisioner: pkg/controller/controller.go dataSource and
    /// prepareProvision.
    #[test]
    fn data_source_errors() {
        let mut cross = pvc("a", "1Gi", "Pending");
        cross.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: "src".into(),
            namespace: Some("ns".into()),
        });
        let mut wrong_group = pvc("a", "1Gi", "Pending");
        wrong_group.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            api_group: Some("example.com".into()),
            kind: "VolumeSnapshot".into(),
            name: "s".into(),
        });
        let cases = [
            (
                cross,
                "dataSourceRef namespace specified but the CrossNamespaceVolumeDataSource feature is disabled",
            ),
            (cloning("a", ""), "the PVC source not found for PVC a"),
            (
                wrong_group,
                "the PVC source does not belong to the right APIGroup. Expected snapshot.storage.k8s.io, Got example.com",
            ),
        ];
        for (claim, want) in cases {
            let err = data_source(&claim).unwrap_err();
            assert_eq!(err.to_string(), want);
            assert!(err.is_final(), "{want}");
        }
        // Kind PersistentVolumeClaim is a clone whatever its apiGroup.
        let mut grouped = cloning("a", "src");
        grouped
            .spec
            .as_mut()
            .unwrap()
            .data_source
            .as_mut()
            .unwrap()
            .api_group = Some("example.com".into());
        assert_eq!(
            data_source(&grouped).unwrap(),
            DataSource::Claim("src".into())
        );
    }

    /// Go: `fmt.Sprintf("%v", status)` of the same
    /// `v1.PersistentVolumeClaimStatus` (k8s.io/api v0.36).
    #[test]
    fn claim_status_prints_as_go() {
        use k8s_openapi::api::core::v1::{ModifyVolumeStatus, PersistentVolumeClaimCondition};
        let lost = PersistentVolumeClaimStatus {
            phase: Some("Lost".into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
            ..Default::default()
        };
        let resizing = PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PersistentVolumeClaimCondition {
                type_: "Resizing".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let modifying = PersistentVolumeClaimStatus {
            allocated_resource_statuses: Some(
                [(
                    "storage".to_string(),
                    "ControllerResizeInProgress".to_string(),
                )]
                .into(),
            ),
            modify_volume_status: Some(ModifyVolumeStatus {
                target_volume_attributes_class_name: Some("gold".into()),
                status: "InProgress".into(),
            }),
            ..Default::default()
        };
        let pending = PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        };
        let cases = [
            (None, "{ [] map[] [] map[] map[] <nil> nil}"),
            (
                Some(&pending),
                "{Pending [] map[] [] map[] map[] <nil> nil}",
            ),
            (
                Some(&lost),
                "{Lost [ReadWriteOnce] map[storage:{{1073741824 0} {<nil>} 1Gi BinarySI}] [] map[] map[] <nil> nil}",
            ),
            (
                Some(&resizing),
                "{Pending [] map[] [{Resizing True 0001-01-01 00:00:00 +0000 UTC 0001-01-01 00:00:00 +0000 UTC  }] map[] map[] <nil> nil}",
            ),
            (
                Some(&modifying),
                "{ [] map[] [] map[] map[storage:ControllerResizeInProgress] <nil> &ModifyVolumeStatus{TargetVolumeAttributesClassName:gold,Status:InProgress,}}",
            ),
        ];
        for (status, want) in cases {
            assert_eq!(go_claim_status(status), want);
        }
    }

    #[test]
    fn clone_of_a_bound_claim() {
        let src = pvc("src", "1Gi", "Bound");
        let pv = pv_for(&src, DRIVER);
        let got =
            clone_source(&cloning("new", "src"), "src", Some(&src), Some(&pv), DRIVER).unwrap();
        assert_eq!(
            got.r#type,
            Some(SourceType::Volume(VolumeSource {
                volume_id: "vol-src".into()
            }))
        );
    }

    /// external-provisioner: pkg/controller/controller.go getPVCSource,
    /// wrapped by prepareProvision.
    #[test]
    fn clone_checks_are_retried_with_upstreams_texts() {
        let new = cloning("new", "src");
        let src = pvc("src", "1Gi", "Bound");
        let pv = pv_for(&src, DRIVER);
        let pending = pvc("src", "1Gi", "Pending");
        let bigger = pvc("src", "2Gi", "Bound");
        let mut deleting = src.clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let mut block_pv = pv.clone();
        block_pv.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let mut new_block = new.clone();
        new_block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let mut no_class = src.clone();
        no_class.spec.as_mut().unwrap().storage_class_name = None;
        let mut new_no_class = new.clone();
        new_no_class.spec.as_mut().unwrap().storage_class_name = None;
        let mut no_volume = src.clone();
        no_volume.spec.as_mut().unwrap().volume_name = None;
        let other_driver = pv_for(&src, "other.csi");
        let mut wrong_claim = pv.clone();
        wrong_claim
            .spec
            .as_mut()
            .unwrap()
            .claim_ref
            .as_mut()
            .unwrap()
            .uid = Some("someone-else".into());
        let mut no_claim_ref = pv.clone();
        no_claim_ref.spec.as_mut().unwrap().claim_ref = None;
        let mut released = pv.clone();
        released.status.as_mut().unwrap().phase = Some("Released".into());
        let mut not_csi = pv.clone();
        not_csi.spec.as_mut().unwrap().csi = None;
        let invalid = "claim in dataSource not bound or invalid";
        type Case<'a> = (
            &'a str,
            &'a PersistentVolumeClaim,
            Option<&'a PersistentVolumeClaim>,
            Option<&'a PersistentVolume>,
            &'a str,
        );
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("missing", &new, None, Some(&pv), "error getting PVC src (namespace \"ns\") from api server: persistentvolumeclaim \"src\" not found"),
            ("pending", &new, Some(&pending), Some(&pv), "the PVC DataSource src must have a status of Bound.  Got {Pending [] map[] [] map[] map[] <nil> nil}"),
            ("deleting", &new, Some(&deleting), Some(&pv), "the PVC DataSource src is currently being deleted"),
            ("source without class", &new, Some(&no_class), Some(&pv), "the source PVC (src) storageclass cannot be empty"),
            ("new claim without class", &new_no_class, Some(&src), Some(&pv), "the requested PVC (new) storageclass cannot be empty"),
            ("larger source", &new, Some(&bigger), Some(&pv), "error, new PVC request must be greater than or equal in size to the specified PVC data source, requested 1073741824 but source is 2147483648"),
            ("no volume", &new, Some(&no_volume), Some(&pv), "volume name is empty in source PVC src"),
            ("no pv", &new, Some(&src), None, invalid),
            ("not csi", &new, Some(&src), Some(&not_csi), invalid),
            ("other driver", &new, Some(&src), Some(&other_driver), invalid),
            ("pv without claimRef", &new, Some(&src), Some(&no_claim_ref), invalid),
            ("pv bound elsewhere", &new, Some(&src), Some(&wrong_claim), invalid),
            ("pv not Bound", &new, Some(&src), Some(&released), invalid),
            ("block source, filesystem clone", &new, Some(&src), Some(&block_pv), "the source PVC and destination PVCs must have the same volume mode for cloning.  Source is Block, but new PVC requested Filesystem"),
            ("filesystem source, block clone", &new_block, Some(&src), Some(&pv), "the source PVC and destination PVCs must have the same volume mode for cloning.  Source is Filesystem, but new PVC requested Block"),
        ];
        for (what, claim, s, p, tail) in cases {
            let err = clone_source(claim, "src", s, p, DRIVER).unwrap_err();
            assert!(matches!(err, Error::DataSource(_)), "{what}: {err}");
            assert!(!err.is_final(), "{what}");
            assert_eq!(
                err.to_string(),
                format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name src: {tail}"
                ),
                "{what}"
            );
        }
        // Same mode on both sides, the PV's mode deciding: fine.
        let block_src = pvc("src", "1Gi", "Bound");
        assert!(clone_source(&new_block, "src", Some(&block_src), Some(&block_pv), DRIVER).is_ok());
    }

    #[test]
    fn protection_holds_while_a_pending_clone_exists() {
        let src = pvc("src", "1Gi", "Bound");
        let pending_clone = cloning("new", "src");
        let mut bound_clone = cloning("done", "src");
        bound_clone.status.as_mut().unwrap().phase = Some("Bound".into());
        let mut other_ns = cloning("x", "src");
        other_ns.metadata.namespace = Some("elsewhere".into());
        assert!(clone_in_progress(&src, [&pending_clone, &bound_clone]));
        assert!(!clone_in_progress(&src, [&bound_clone, &other_ns]));
        assert!(!clone_in_progress(&src, []));
    }
}
