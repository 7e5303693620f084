//! Volume data sources: which kind a claim asks for, and whether a source
//! claim can be cloned now.
//!
//! Mirrors external-provisioner's data-source normalisation and
//! `getPVCSource` checks (contract A4.3 step 1 and 3, A4.10).

use csi_client::csi::v1::VolumeContentSource;
use csi_client::csi::v1::volume_content_source::{Type as SourceType, VolumeSource};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

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

/// Reads the claim's data source: `spec.dataSource`, else `spec.dataSourceRef`.
///
/// Errors (final): a reference to another namespace (the
/// CrossNamespaceVolumeDataSource gate is off), an empty name, a
/// VolumeSnapshot outside `snapshot.storage.k8s.io`.
pub fn data_source(pvc: &PersistentVolumeClaim) -> Result<DataSource, Error> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let (group, kind, name) = if let Some(ds) = spec.data_source {
        (ds.api_group.unwrap_or_default(), ds.kind, ds.name)
    } else if let Some(r) = spec.data_source_ref {
        if r.namespace
            .as_deref()
            .is_some_and(|ns| !ns.is_empty() && Some(ns) != pvc.metadata.namespace.as_deref())
        {
            return Err(Error::Unsupported(
                "dataSourceRef.namespace needs the CrossNamespaceVolumeDataSource feature gate, which is disabled".into(),
            ));
        }
        (r.api_group.unwrap_or_default(), r.kind, r.name)
    } else {
        return Ok(DataSource::None);
    };
    match (group.as_str(), kind.as_str()) {
        ("", "PersistentVolumeClaim") | ("snapshot.storage.k8s.io", "VolumeSnapshot")
            if name.is_empty() =>
        {
            Err(Error::InvalidClaim(
                "the claim's data source has an empty name".into(),
            ))
        }
        ("", "PersistentVolumeClaim") => Ok(DataSource::Claim(name)),
        ("snapshot.storage.k8s.io", "VolumeSnapshot") => Ok(DataSource::Snapshot(name)),
        (g, "VolumeSnapshot") => Err(Error::InvalidClaim(format!(
            "the claim's data source VolumeSnapshot has apiGroup {g:?}, want snapshot.storage.k8s.io"
        ))),
        _ => Ok(DataSource::Populator {
            api_group: group,
            kind,
        }),
    }
}

/// Checks that `source` (the claim named by a clone request, from the cache)
/// can be cloned for `pvc` now, and returns the CSI content source.
///
/// `source_pv` is the PV `source` is bound to, from the cache;
/// `provisioner` is the new claim's StorageClass provisioner.
///
/// Errors: [`Error::DataSource`] (retried) for every unmet condition, with
/// upstream's conditions: source exists, is Bound and not being deleted,
/// both claims name a StorageClass, the new claim is at least as large,
/// the source PV is a CSI volume of the same driver bound to exactly this
/// source claim, and both claims have the same volume mode.
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
    let source = source.ok_or_else(|| not_ready("claim not found".into()))?;
    if source.metadata.deletion_timestamp.is_some() {
        return Err(not_ready("the source claim is being deleted".into()));
    }
    if source.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(not_ready("the source claim is not Bound".into()));
    }
    let class = |p: &PersistentVolumeClaim| {
        p.spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .filter(|c| !c.is_empty())
    };
    if class(pvc).is_none() || class(source).is_none() {
        return Err(not_ready("both claims must name a StorageClass".into()));
    }
    let (want, have) = (
        quantity::claim_request_bytes(pvc)?,
        quantity::claim_request_bytes(source)?,
    );
    if want < have {
        return Err(not_ready(format!(
            "the new claim requests {want} bytes, less than the source's {have}"
        )));
    }
    let volume_name = source
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume_name) = volume_name else {
        return Err(not_ready("the source claim has no volume".into()));
    };
    let pv = source_pv
        .filter(|pv| pv.metadata.name.as_deref() == Some(volume_name.as_str()))
        .ok_or_else(|| not_ready(format!("persistent volume {volume_name} not found")))?;
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let csi = pv_spec.csi.as_ref().ok_or_else(|| {
        not_ready(format!(
            "persistent volume {volume_name} is not a CSI volume"
        ))
    })?;
    if csi.driver != provisioner {
        return Err(not_ready(format!(
            "the source volume belongs to driver {}, not {provisioner}",
            csi.driver
        )));
    }
    let claim_ref = pv_spec.claim_ref.clone().unwrap_or_default();
    if claim_ref.uid != source.metadata.uid
        || claim_ref.namespace != source.metadata.namespace
        || claim_ref.name != source.metadata.name
    {
        return Err(not_ready(format!(
            "persistent volume {volume_name} is not bound to the source claim"
        )));
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(not_ready(format!(
            "persistent volume {volume_name} is not Bound"
        )));
    }
    let mode = |p: &PersistentVolumeClaim| {
        p.spec
            .as_ref()
            .and_then(|s| s.volume_mode.clone())
            .unwrap_or_else(|| "Filesystem".into())
    };
    if mode(pvc) != mode(source) {
        return Err(not_ready(format!(
            "the source claim's volume mode {} differs from {}",
            mode(source),
            mode(pvc)
        )));
    }
    Ok(VolumeContentSource {
        r#type: Some(SourceType::Volume(VolumeSource {
            volume_id: csi.volume_handle.clone(),
        })),
    })
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

    #[test]
    fn data_source_errors() {
        let mut cross = pvc("a", "1Gi", "Pending");
        cross.spec.as_mut().unwrap().data_source_ref = Some(TypedObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: "src".into(),
            namespace: Some("other".into()),
        });
        assert!(data_source(&cross).unwrap_err().is_final());
        let empty = cloning("a", "");
        assert!(data_source(&empty).is_err());
        let mut wrong_group = pvc("a", "1Gi", "Pending");
        wrong_group.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            api_group: Some("example.com".into()),
            kind: "VolumeSnapshot".into(),
            name: "s".into(),
        });
        assert!(data_source(&wrong_group).is_err());
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

    #[test]
    fn clone_checks_are_retried_not_final() {
        let new = cloning("new", "src");
        let src = pvc("src", "1Gi", "Bound");
        let pv = pv_for(&src, DRIVER);
        let pending = pvc("src", "1Gi", "Pending");
        let bigger = pvc("src", "2Gi", "Bound");
        let mut deleting = src.clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let mut block = src.clone();
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let mut no_class = src.clone();
        no_class.spec.as_mut().unwrap().storage_class_name = None;
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
        let cases: Vec<(
            &str,
            Option<&PersistentVolumeClaim>,
            Option<&PersistentVolume>,
        )> = vec![
            ("missing", None, Some(&pv)),
            ("pending", Some(&pending), Some(&pv)),
            ("deleting", Some(&deleting), Some(&pv)),
            ("larger source", Some(&bigger), Some(&pv)),
            ("mode", Some(&block), Some(&pv)),
            ("no class", Some(&no_class), Some(&pv)),
            ("no pv", Some(&src), None),
            ("other driver", Some(&src), Some(&other_driver)),
            ("pv bound elsewhere", Some(&src), Some(&wrong_claim)),
        ];
        for (what, s, p) in cases {
            let err = clone_source(&new, "src", s, p, DRIVER).unwrap_err();
            assert!(matches!(err, Error::DataSource(_)), "{what}: {err}");
            assert!(!err.is_final(), "{what}");
        }
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
