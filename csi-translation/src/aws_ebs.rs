//! AWS EBS: `kubernetes.io/aws-ebs` ↔ `ebs.csi.aws.com` (upstream
//! `plugins/aws_ebs.go`).
//!
//! * Handles: the in-tree `volumeID` may be `vol-…`, `aws:///vol-…` or
//!   `aws://<zone>/vol-…`; the CSI handle is the bare `vol-…`. Any other value
//!   without the `aws://` prefix passes through unchanged. Back to in-tree the
//!   handle is used as `volumeID` as is.
//! * `fsType` and `readOnly` are copied; `partition` travels as the volume
//!   attribute `partition` (always written, `"0"` for none).
//! * Topology: Kubernetes zone keys ↔ `topology.ebs.csi.aws.com/zone`; back to
//!   in-tree, a region derived from the zones (`us-west-2a` → `us-west-2`, local
//!   and wavelength zones too) is added.
//! * StorageClass: `fstype` → `csi.storage.k8s.io/fstype`, `zone`/`zones` →
//!   `allowedTopologies`, and `iopsPerGB` is kept with
//!   `allowautoiopspergbincrease: "true"` added, because the in-tree provisioner
//!   silently raised too-low IOPS where the CSI driver would fail.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, CSIPersistentVolumeSource, PersistentVolume,
    PersistentVolumeSpec, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::topology::{self, ZONE_PARAM, ZONES_PARAM, ZoneParameter};
use super::{
    CSI_FS_TYPE_PARAM, FS_TYPE_PARAM, PARTITION_ATTRIBUTE, Result, TranslationError, describe_pv,
    missing_source, parse_partition, take_csi,
};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/aws-ebs";
pub(super) const DRIVER_NAME: &str = "ebs.csi.aws.com";
pub(super) const TOPOLOGY_KEY: &str = "topology.ebs.csi.aws.com/zone";
const SOURCE_FIELD: &str = "awsElasticBlockStore";
const IOPS_PER_GB_PARAM: &str = "iopspergb";
const ALLOW_IOPS_INCREASE_PARAM: &str = "allowautoiopspergbincrease";
const URL_PREFIX: &str = "aws://";

pub(super) fn storage_class_to_csi(mut sc: StorageClass) -> Result<StorageClass> {
    let mut params = BTreeMap::new();
    let mut zones = ZoneParameter::default();
    for (key, value) in sc.parameters.take().unwrap_or_default() {
        match key.to_lowercase().as_str() {
            FS_TYPE_PARAM => {
                params.insert(CSI_FS_TYPE_PARAM.to_owned(), value);
            }
            ZONE_PARAM | ZONES_PARAM => zones.record(&key, &value)?,
            IOPS_PER_GB_PARAM => {
                params.insert(key, value);
                params.insert(ALLOW_IOPS_INCREASE_PARAM.to_owned(), "true".to_owned());
            }
            _ => {
                params.insert(key, value);
            }
        }
    }
    zones.apply(&mut sc, TOPOLOGY_KEY)?;
    sc.parameters = Some(params);
    Ok(sc)
}

fn csi_source(source: &AWSElasticBlockStoreVolumeSource) -> Result<CSIPersistentVolumeSource> {
    Ok(CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: ebs_volume_id(&source.volume_id)?,
        read_only: source.read_only,
        fs_type: source.fs_type.clone(),
        volume_attributes: Some(BTreeMap::from([(
            PARTITION_ATTRIBUTE.to_owned(),
            source.partition.unwrap_or(0).to_string(),
        )])),
        ..Default::default()
    })
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.aws_elastic_block_store.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let csi = csi_source(&source)?;
    topology::in_tree_to_csi(&mut pv, TOPOLOGY_KEY);
    pv.spec.get_or_insert_default().csi = Some(csi);
    Ok(pv)
}

pub(super) fn pv_to_in_tree(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let csi = take_csi(&mut pv)?;
    let partition = match csi
        .volume_attributes
        .as_ref()
        .and_then(|a| a.get(PARTITION_ATTRIBUTE))
    {
        Some(value) => parse_partition(value)?,
        None => None,
    };
    let source = AWSElasticBlockStoreVolumeSource {
        volume_id: csi.volume_handle,
        fs_type: csi.fs_type,
        read_only: csi.read_only,
        partition,
    };
    topology::csi_to_in_tree(&mut pv, TOPOLOGY_KEY, Some(region_from_zones))?;
    pv.spec.get_or_insert_default().aws_elastic_block_store = Some(source);
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume) -> Result<PersistentVolume> {
    let source = volume
        .aws_elastic_block_store
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    let csi = csi_source(source)?;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{DRIVER_NAME}-{}", csi.volume_handle)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(csi),
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn invalid_id(id: &str, reason: &str) -> TranslationError {
    TranslationError::InvalidVolumeHandle {
        driver: DRIVER_NAME,
        handle: id.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The EBS volume ID (`vol-…`) of an in-tree `volumeID`. Values starting with
/// `aws://` are read as URLs whose path (query and fragment ignored, escapes
/// decoded, slashes trimmed) must be `vol-` followed by no further `/`; other
/// values are taken to be bare IDs already.
pub(super) fn ebs_volume_id(kubernetes_id: &str) -> Result<String> {
    let Some(rest) = kubernetes_id.strip_prefix(URL_PREFIX) else {
        return Ok(kubernetes_id.to_owned());
    };
    if kubernetes_id.chars().any(|c| c.is_ascii_control()) {
        return Err(invalid_id(kubernetes_id, "contains control characters"));
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    // Everything up to the first '/' is the host (the zone, possibly empty).
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = percent_decode(path)
        .ok_or_else(|| invalid_id(kubernetes_id, "malformed %-escape in the path"))?;
    let id = path.trim_matches('/');
    if !id.starts_with("vol-") || id.contains('/') {
        return Err(invalid_id(
            kubernetes_id,
            "expected aws://<zone>/vol-<id> or aws:///vol-<id>",
        ));
    }
    Ok(id.to_owned())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The one AWS region of `zones`. Zones look like `us-west-2a`,
/// `us-gov-east-1a` (region: drop the zone letter), `us-west-2-lax-1a` (local
/// zone) or `us-east-1-wl1-bos-wlz-1` (wavelength; region: first three parts).
pub(super) fn region_from_zones(zones: &[String]) -> Result<String> {
    let invalid = |reason: String| TranslationError::InvalidZones {
        zones: zones.to_vec(),
        reason,
    };
    if zones.is_empty() {
        return Err(invalid("no zones to derive an AWS region from".to_owned()));
    }
    let mut regions = BTreeSet::new();
    for zone in zones {
        let parts: Vec<&str> = zone.split('-').collect();
        let last = parts[parts.len() - 1];
        let region = if (parts.len() == 3 || parts.len() == 4) && last.len() == 2 {
            // One zone letter after a one-digit region number.
            let number = last
                .get(..1)
                .ok_or_else(|| invalid(format!("{zone:?} is not an AWS zone")))?;
            let mut region = parts[..parts.len() - 1].join("-");
            region.push('-');
            region.push_str(number);
            region
        } else if parts.len() == 5 || parts.len() == 7 {
            parts[..3].join("-")
        } else {
            return Err(invalid(format!("{zone:?} is not an AWS zone")));
        };
        regions.insert(region);
    }
    let mut regions = regions.into_iter();
    match (regions.next(), regions.next()) {
        (Some(region), None) => Ok(region),
        (first, second) => Err(invalid(format!(
            "zones span several regions ({}, {}, …)",
            first.unwrap_or_default(),
            second.unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::topology::{REGION_GA, ZONE_BETA, ZONE_GA};

    const ID: &str = "vol-02399794d890f9375";

    #[test]
    fn kubernetes_volume_ids_become_ebs_ids() {
        let cases: [(&str, Option<&str>); 13] = [
            (ID, Some(ID)),
            ("aws:///vol-02399794d890f9375", Some(ID)),
            ("aws://us-west-2a/vol-02399794d890f9375", Some(ID)),
            ("aws://us-west-2a/vol-02399794d890f9375/", Some(ID)),
            ("aws://us-west-2a/vol-0239?x=1#frag", Some("vol-0239")),
            ("aws://us-west-2a/vol-%30%31", Some("vol-01")),
            // Not a URL: passed through even if odd.
            ("vol01", Some("vol01")),
            ("aws://us-west-2a/02399794d890f9375", None),
            ("aws://us-west-2a", None),
            ("aws://us-west-2a/vol-1/extra", None),
            ("aws://us-west-2a/vol-%zz", None),
            ("aws://us-west-2a/vol-%+1", None),
            ("aws://zone/vol-1\n", None),
        ];
        for (input, want) in cases {
            match want {
                Some(want) => assert_eq!(ebs_volume_id(input).unwrap(), want, "{input}"),
                None => {
                    let err = ebs_volume_id(input).unwrap_err();
                    assert!(
                        matches!(&err, TranslationError::InvalidVolumeHandle { handle, .. } if handle == input),
                        "{input}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn storage_class_parameters() {
        struct Case {
            name: &'static str,
            params: Vec<(&'static str, &'static str)>,
            allowed: Option<Vec<Term>>,
            want_params: Vec<(&'static str, &'static str)>,
            want_allowed: Option<Vec<Term>>,
        }
        let cases = [
            Case {
                name: "unknown parameters kept",
                params: vec![("foo", "bar"), ("type", "io1")],
                allowed: None,
                want_params: vec![("foo", "bar"), ("type", "io1")],
                want_allowed: None,
            },
            Case {
                name: "empty",
                params: vec![],
                allowed: None,
                want_params: vec![],
                want_allowed: None,
            },
            Case {
                name: "fstype in any case",
                params: vec![("FsType", "ext3")],
                allowed: None,
                want_params: vec![("csi.storage.k8s.io/fstype", "ext3")],
                want_allowed: None,
            },
            Case {
                name: "iopsPerGB keeps its spelling and allows increases",
                params: vec![("iopsPerGB", "100")],
                allowed: None,
                want_params: vec![("iopsPerGB", "100"), ("allowautoiopspergbincrease", "true")],
                want_allowed: None,
            },
            Case {
                name: "zone",
                params: vec![("zone", "us-east-1a")],
                allowed: None,
                want_params: vec![],
                want_allowed: Some(vec![vec![(TOPOLOGY_KEY, &["us-east-1a"])]]),
            },
            Case {
                name: "zones",
                params: vec![("zones", "us-east-1a,us-east-1b")],
                allowed: None,
                want_params: vec![],
                want_allowed: Some(vec![vec![(TOPOLOGY_KEY, &["us-east-1a", "us-east-1b"])]]),
            },
            Case {
                name: "allowed topologies on beta and GA keys",
                params: vec![],
                allowed: Some(vec![vec![(ZONE_BETA, &["a"])], vec![(ZONE_GA, &["b"])]]),
                want_params: vec![],
                want_allowed: Some(vec![
                    vec![(TOPOLOGY_KEY, &["a"])],
                    vec![(TOPOLOGY_KEY, &["b"])],
                ]),
            },
        ];
        for case in cases {
            let sc = storage_class(&case.params, case.allowed.as_deref());
            let got = storage_class_to_csi(sc).unwrap();
            assert_eq!(
                got.parameters,
                Some(strings(&case.want_params)),
                "{}",
                case.name
            );
            assert_eq!(
                got.allowed_topologies,
                case.want_allowed.as_deref().map(topology_terms),
                "{}",
                case.name
            );
        }
        let both = storage_class(&[("zone", "a")], Some(&[vec![(TOPOLOGY_KEY, &["a"])]]));
        assert!(matches!(
            storage_class_to_csi(both),
            Err(TranslationError::InvalidStorageClass(_))
        ));
    }

    fn ebs_pv(volume_id: &str, partition: Option<i32>) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                    volume_id: volume_id.to_owned(),
                    fs_type: some("xfs"),
                    partition,
                    read_only: Some(true),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pv_to_csi_builds_handle_and_attributes() {
        let cases = [
            (ID, None, "0"),
            ("aws://us-west-2a/vol-02399794d890f9375", Some(3), "3"),
            ("aws:///vol-02399794d890f9375", Some(0), "0"),
        ];
        for (volume_id, partition, want_partition) in cases {
            let got = pv_to_csi(ebs_pv(volume_id, partition)).unwrap();
            let spec = got.spec.unwrap();
            assert_eq!(spec.aws_elastic_block_store, None, "{volume_id}");
            let csi = spec.csi.unwrap();
            assert_eq!(csi.driver, DRIVER_NAME);
            assert_eq!(csi.volume_handle, ID, "{volume_id}");
            assert_eq!(csi.fs_type.as_deref(), Some("xfs"));
            assert_eq!(csi.read_only, Some(true));
            assert_eq!(
                csi.volume_attributes,
                Some(strings(&[("partition", want_partition)])),
                "{volume_id}"
            );
        }
        let err = pv_to_csi(ebs_pv("aws://zone/not-a-volume", None)).unwrap_err();
        assert!(
            matches!(err, TranslationError::InvalidVolumeHandle { .. }),
            "{err}"
        );
    }

    fn csi_pv(attributes: &[(&str, &str)], terms: &[Term]) -> PersistentVolume {
        let mut pv = pv_with_affinity(terms);
        pv.spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
            driver: DRIVER_NAME.to_owned(),
            volume_handle: ID.to_owned(),
            fs_type: some("ext4"),
            volume_attributes: map(attributes),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn pv_to_in_tree_parses_partition_and_restores_zones() {
        let cases: [(PairSlice, Option<i32>); 4] = [
            (&[], None),
            (&[("partition", "")], None),
            (&[("partition", "0")], None),
            (&[("partition", "2")], Some(2)),
        ];
        for (attributes, want) in cases {
            let got = pv_to_in_tree(csi_pv(attributes, &[])).unwrap();
            let source = got.spec.unwrap().aws_elastic_block_store.unwrap();
            assert_eq!(source.partition, want, "{attributes:?}");
            assert_eq!(source.volume_id, ID);
            assert_eq!(source.fs_type.as_deref(), Some("ext4"));
        }
        for bad in ["x", "1.5", "99999999999"] {
            let err = pv_to_in_tree(csi_pv(&[("partition", bad)], &[])).unwrap_err();
            assert!(
                matches!(&err, TranslationError::InvalidVolumeAttribute { value, .. } if value == bad),
                "{bad}: {err}"
            );
        }

        let got = pv_to_in_tree(csi_pv(&[], &[vec![(TOPOLOGY_KEY, &["us-east-1a"])]])).unwrap();
        assert_eq!(
            got.metadata.labels,
            map(&[(ZONE_GA, "us-east-1a"), (REGION_GA, "us-east-1")])
        );
        assert_eq!(
            got.spec.unwrap().node_affinity,
            affinity(&[vec![
                (ZONE_GA, &["us-east-1a"]),
                (REGION_GA, &["us-east-1"])
            ]])
        );

        let err = pv_to_in_tree(csi_pv(&[], &[vec![(TOPOLOGY_KEY, &["nowhere"])]])).unwrap_err();
        assert!(
            matches!(err, TranslationError::InvalidZones { .. }),
            "{err}"
        );
    }

    #[test]
    fn inline_volume_names_and_handles() {
        let cases = [
            (ID, Some(format!("ebs.csi.aws.com-{ID}"))),
            (
                "aws:///vol-02399794d890f9375",
                Some(format!("ebs.csi.aws.com-{ID}")),
            ),
            (
                "aws://us-west-2a/vol-02399794d890f9375",
                Some(format!("ebs.csi.aws.com-{ID}")),
            ),
            ("aws://us-west-2a/02399794d890f9375", None),
        ];
        for (volume_id, want_name) in cases {
            let volume = Volume {
                name: "data".into(),
                aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                    volume_id: volume_id.into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match want_name {
                Some(name) => {
                    let pv = inline_to_csi(&volume).unwrap();
                    assert_eq!(pv.metadata.name, Some(name), "{volume_id}");
                    let spec = pv.spec.unwrap();
                    assert_eq!(spec.csi.unwrap().volume_handle, ID);
                    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
                }
                None => assert!(inline_to_csi(&volume).is_err(), "{volume_id}"),
            }
        }
        let empty = Volume::default();
        assert!(matches!(
            inline_to_csi(&empty),
            Err(TranslationError::MissingSource {
                source_field: "awsElasticBlockStore",
                ..
            })
        ));
    }

    #[test]
    fn regions_from_zones() {
        let cases: [(&[&str], Option<&str>); 10] = [
            (&["us-west-2a", "us-west-2b"], Some("us-west-2")),
            (&["us-gov-east-1a"], Some("us-gov-east-1")),
            (&["us-east-1-wl1-bos-wlz-1"], Some("us-east-1")),
            (&["us-west-2-lax-1a"], Some("us-west-2")),
            (&[], None),
            (&["us-west-2a", "us-east-1a"], None),
            (&["us-west-2"], None),
            (&["us-west-2ab"], None),
            (&["us-west"], None),
            (&["us-west-é"], None),
        ];
        for (zones, want) in cases {
            let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
            match want {
                Some(want) => assert_eq!(region_from_zones(&zones).unwrap(), want, "{zones:?}"),
                None => assert!(
                    matches!(
                        region_from_zones(&zones),
                        Err(TranslationError::InvalidZones { .. })
                    ),
                    "{zones:?}"
                ),
            }
        }
    }

    #[test]
    fn bare_id_round_trips() {
        for partition in [None, Some(1)] {
            let pv = ebs_pv(ID, partition);
            let back = pv_to_in_tree(pv_to_csi(pv.clone()).unwrap()).unwrap();
            assert_eq!(back, pv, "{partition:?}");
        }
        // The URL forms come back as the bare ID, like upstream.
        let back =
            pv_to_in_tree(pv_to_csi(ebs_pv("aws://us-west-2a/vol-1", None)).unwrap()).unwrap();
        assert_eq!(
            back.spec
                .unwrap()
                .aws_elastic_block_store
                .unwrap()
                .volume_id,
            "vol-1"
        );
    }
}
