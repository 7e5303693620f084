//! GCE PD: `kubernetes.io/gce-pd` ↔ `pd.csi.storage.gke.io` (upstream
//! `plugins/gce_pd.go`).
//!
//! * Handles: `projects/<project>/zones/<zone>/disks/<pdName>` or
//!   `projects/<project>/regions/<region>/disks/<pdName>`. In-tree PVs know
//!   neither project nor (always) zone, so the project is `UNSPECIFIED`; the
//!   zone comes from the PV's zone label (beta first, then GA): one zone gives a
//!   zonal handle, several (`a__b`) a regional one, none `zones/UNSPECIFIED`.
//!   Back to in-tree only the disk name (sixth `/`-separated part) is kept.
//!   [`repair_volume_handle`] fills the `UNSPECIFIED` parts from a node ID.
//! * `fsType` and `readOnly` are copied; `partition` travels as the attribute
//!   `partition` (empty for none).
//! * Access modes: the in-tree plugin accepted `ReadWriteMany` and
//!   `ReadWriteOnce`+`ReadOnlyMany` but attached read-write to one node; the CSI
//!   driver rejects those, so they become `ReadWriteOnce`.
//! * Topology: Kubernetes zone keys ↔ `topology.gke.io/zone`; back to in-tree a
//!   region (`us-central1-a` → `us-central1`) is added.
//! * StorageClass: `fstype` → `csi.storage.k8s.io/fstype`, `zone`/`zones` →
//!   `allowedTopologies`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, GCEPersistentDiskVolumeSource, PersistentVolume,
    PersistentVolumeSpec, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::topology::{
    self, MULTI_ZONE_SEPARATOR, ZONE_BETA, ZONE_GA, ZONE_PARAM, ZONES_PARAM, ZoneParameter,
};
use super::{
    CSI_FS_TYPE_PARAM, FS_TYPE_PARAM, PARTITION_ATTRIBUTE, Result, TranslationError, describe_pv,
    missing_source, parse_partition, take_csi,
};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/gce-pd";
pub(super) const DRIVER_NAME: &str = "pd.csi.storage.gke.io";
pub(super) const TOPOLOGY_KEY: &str = "topology.gke.io/zone";
/// Placeholder for a project or zone that the in-tree PV does not know.
pub(super) const UNSPECIFIED: &str = "UNSPECIFIED";
const SOURCE_FIELD: &str = "gcePersistentDisk";
/// Handles and node IDs have at least this many `/`-separated parts.
const MIN_PARTS: usize = 6;

fn zonal_handle(project: &str, zone: &str, disk: &str) -> String {
    format!("projects/{project}/zones/{zone}/disks/{disk}")
}

fn regional_handle(project: &str, region: &str, disk: &str) -> String {
    format!("projects/{project}/regions/{region}/disks/{disk}")
}

pub(super) fn storage_class_to_csi(mut sc: StorageClass) -> Result<StorageClass> {
    let mut params = BTreeMap::new();
    let mut zones = ZoneParameter::default();
    for (key, value) in sc.parameters.take().unwrap_or_default() {
        match key.to_lowercase().as_str() {
            FS_TYPE_PARAM => {
                params.insert(CSI_FS_TYPE_PARAM.to_owned(), value);
            }
            ZONE_PARAM | ZONES_PARAM => zones.record(&key, &value)?,
            _ => {
                params.insert(key, value);
            }
        }
    }
    zones.apply(&mut sc, TOPOLOGY_KEY)?;
    sc.parameters = Some(params);
    Ok(sc)
}

/// `ReadWriteMany` counts as `ReadWriteOnce`; any set containing
/// `ReadWriteOnce` becomes just that; `ReadOnlyMany` alone stays; anything else
/// (including an empty list) becomes `ReadWriteOnce`. An absent list stays
/// absent.
pub(super) fn backward_compatible_access_modes(modes: Option<Vec<String>>) -> Option<Vec<String>> {
    let modes = modes?;
    let has = |m: &str| modes.iter().any(|x| x == m);
    let writable = has("ReadWriteOnce") || has("ReadWriteMany");
    let mode = if !writable && has("ReadOnlyMany") {
        "ReadOnlyMany"
    } else {
        "ReadWriteOnce"
    };
    Some(vec![mode.to_owned()])
}

fn partition_attribute(partition: Option<i32>) -> BTreeMap<String, String> {
    let value = match partition {
        Some(p) if p != 0 => p.to_string(),
        _ => String::new(),
    };
    BTreeMap::from([(PARTITION_ATTRIBUTE.to_owned(), value)])
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.gce_persistent_disk.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let labels = pv.metadata.labels.as_ref();
    let label = |key| {
        labels
            .and_then(|l| l.get(key))
            .map(String::as_str)
            .unwrap_or_default()
    };
    let zones_label = match label(ZONE_BETA) {
        "" => label(ZONE_GA),
        beta => beta,
    };
    let zones: Vec<String> = zones_label
        .split(MULTI_ZONE_SEPARATOR)
        .map(str::to_owned)
        .collect();
    let handle = match zones.as_slice() {
        [zone] if !zone.is_empty() => zonal_handle(UNSPECIFIED, zone, &source.pd_name),
        [_] => zonal_handle(UNSPECIFIED, UNSPECIFIED, &source.pd_name),
        _ => regional_handle(UNSPECIFIED, &region_from_zones(&zones)?, &source.pd_name),
    };
    let csi = CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: handle,
        read_only: source.read_only,
        fs_type: source.fs_type,
        volume_attributes: Some(partition_attribute(source.partition)),
        ..Default::default()
    };
    topology::in_tree_to_csi(&mut pv, TOPOLOGY_KEY);
    let spec = pv.spec.get_or_insert_default();
    spec.csi = Some(csi);
    spec.access_modes = backward_compatible_access_modes(spec.access_modes.take());
    Ok(pv)
}

/// The disk name of a handle: its sixth `/`-separated part.
fn disk_name(handle: &str) -> Result<String> {
    let parts: Vec<&str> = handle.split('/').collect();
    if parts.len() < MIN_PARTS {
        return Err(TranslationError::InvalidVolumeHandle {
            driver: DRIVER_NAME,
            handle: handle.to_owned(),
            reason: format!(
                "has {} '/'-separated parts, expected at least {MIN_PARTS} as in projects/<project>/zones/<zone>/disks/<name>",
                parts.len()
            ),
        });
    }
    Ok(parts[5].to_owned())
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
    let source = GCEPersistentDiskVolumeSource {
        pd_name: disk_name(&csi.volume_handle)?,
        fs_type: csi.fs_type,
        read_only: csi.read_only,
        partition,
    };
    topology::csi_to_in_tree(&mut pv, TOPOLOGY_KEY, Some(region_from_zones))?;
    pv.spec.get_or_insert_default().gce_persistent_disk = Some(source);
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume) -> Result<PersistentVolume> {
    let source = volume
        .gce_persistent_disk
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    let access_mode = if source.read_only == Some(true) {
        "ReadOnlyMany"
    } else {
        "ReadWriteOnce"
    };
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{DRIVER_NAME}-{}", source.pd_name)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER_NAME.to_owned(),
                volume_handle: zonal_handle(UNSPECIFIED, UNSPECIFIED, &source.pd_name),
                read_only: source.read_only,
                fs_type: source.fs_type.clone(),
                volume_attributes: Some(partition_attribute(source.partition)),
                ..Default::default()
            }),
            access_modes: Some(vec![access_mode.to_owned()]),
            volume_mode: Some("Filesystem".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// See [`super::repair_volume_handle`].
pub(super) fn repair_volume_handle(handle: &str, node_id: &str) -> Result<String> {
    let parts: Vec<&str> = handle.split('/').collect();
    if parts.len() < MIN_PARTS {
        return Err(TranslationError::InvalidVolumeHandle {
            driver: DRIVER_NAME,
            handle: handle.to_owned(),
            reason: format!(
                "has {} '/'-separated parts, expected at least {MIN_PARTS}",
                parts.len()
            ),
        });
    }
    if parts[1] != UNSPECIFIED {
        return Ok(handle.to_owned());
    }
    let node: Vec<&str> = node_id.split('/').collect();
    if node.len() < MIN_PARTS {
        return Err(TranslationError::InvalidNodeId {
            driver: DRIVER_NAME,
            node_id: node_id.to_owned(),
            reason: format!(
                "has {} '/'-separated parts, expected at least {MIN_PARTS} as in projects/<project>/zones/<zone>/instances/<name>",
                node.len()
            ),
        });
    }
    let (project, node_zone, disk) = (node[1], node[3], parts[5]);
    match parts[2] {
        "zones" => {
            let zone = if parts[3] == UNSPECIFIED {
                node_zone
            } else {
                parts[3]
            };
            Ok(zonal_handle(project, zone, disk))
        }
        "regions" => {
            let region = if parts[3] == UNSPECIFIED {
                region_from_zones(&[node_zone.to_owned()])?
            } else {
                parts[3].to_owned()
            };
            Ok(regional_handle(project, &region, disk))
        }
        other => Err(TranslationError::InvalidVolumeHandle {
            driver: DRIVER_NAME,
            handle: handle.to_owned(),
            reason: format!("expected \"zones\" or \"regions\" as third part, got {other:?}"),
        }),
    }
}

/// The one GCE region of `zones`, each of the form `<locale>-<region>-<zone>`
/// (`us-central1-a` → `us-central1`).
pub(crate) fn region_from_zones(zones: &[String]) -> Result<String> {
    let invalid = |reason: String| TranslationError::InvalidZones {
        zones: zones.to_vec(),
        reason,
    };
    if zones.is_empty() {
        return Err(invalid("no zones to derive a GCE region from".to_owned()));
    }
    let mut regions = BTreeSet::new();
    for zone in zones {
        match zone.split('-').collect::<Vec<_>>().as_slice() {
            [locale, region, _] => regions.insert(format!("{locale}-{region}")),
            _ => {
                return Err(invalid(format!(
                    "{zone:?} is not of the form <locale>-<region>-<zone>"
                )));
            }
        };
    }
    if regions.len() != 1 {
        return Err(invalid(format!("zones span regions {regions:?}")));
    }
    Ok(regions.into_iter().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::topology::{REGION_GA, ZONE_BETA, ZONE_GA};

    #[test]
    fn storage_class_parameters() {
        struct Case {
            name: &'static str,
            params: Vec<(&'static str, &'static str)>,
            allowed: Option<Vec<Term>>,
            want: Option<(Pairs, Option<Terms>)>,
        }
        let cases = [
            Case {
                name: "nothing special",
                params: vec![("foo", "bar"), ("type", "pd-ssd")],
                allowed: None,
                want: Some((vec![("foo", "bar"), ("type", "pd-ssd")], None)),
            },
            Case {
                name: "fstype",
                params: vec![("fstype", "myfs")],
                allowed: None,
                want: Some((vec![("csi.storage.k8s.io/fstype", "myfs")], None)),
            },
            Case {
                name: "empty",
                params: vec![],
                allowed: None,
                want: Some((vec![], None)),
            },
            Case {
                name: "zone",
                params: vec![("zone", "foo")],
                allowed: None,
                want: Some((vec![], Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]))),
            },
            Case {
                name: "zones",
                params: vec![("zones", "foo,bar,baz")],
                allowed: None,
                want: Some((
                    vec![],
                    Some(vec![vec![(TOPOLOGY_KEY, &["foo", "bar", "baz"])]]),
                )),
            },
            Case {
                name: "CSI topology kept",
                params: vec![],
                allowed: Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]),
                want: Some((vec![], Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]))),
            },
            Case {
                name: "beta topology translated",
                params: vec![],
                allowed: Some(vec![vec![(ZONE_BETA, &["foo"])]]),
                want: Some((vec![], Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]))),
            },
            Case {
                name: "zone and topology",
                params: vec![("zone", "foo")],
                allowed: Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]),
                want: None,
            },
        ];
        for case in cases {
            let got = storage_class_to_csi(storage_class(&case.params, case.allowed.as_deref()));
            match case.want {
                Some((params, allowed)) => {
                    let got = got.unwrap();
                    assert_eq!(got.parameters, Some(strings(&params)), "{}", case.name);
                    assert_eq!(
                        got.allowed_topologies,
                        allowed.as_deref().map(topology_terms),
                        "{}",
                        case.name
                    );
                }
                None => assert!(
                    matches!(got, Err(TranslationError::InvalidStorageClass(_))),
                    "{}",
                    case.name
                ),
            }
        }
    }

    #[test]
    fn repair_fills_unspecified_parts_from_the_node() {
        let node = |p: &str, z: &str| format!("projects/{p}/zones/{z}/instances/boom");
        let cases = [
            (
                "fully specified",
                zonal_handle("foo", "bar", "baz"),
                node("bing", "bada"),
                Some(zonal_handle("foo", "bar", "baz")),
            ),
            (
                "fully specified regional",
                regional_handle("foo", "us-central1-c", "baz"),
                node("bing", "bada"),
                Some(regional_handle("foo", "us-central1-c", "baz")),
            ),
            (
                "no project",
                zonal_handle(UNSPECIFIED, "bar", "baz"),
                node("bing", "bada"),
                Some(zonal_handle("bing", "bar", "baz")),
            ),
            (
                "no project or zone",
                zonal_handle(UNSPECIFIED, UNSPECIFIED, "baz"),
                node("bing", "bada"),
                Some(zonal_handle("bing", "bada", "baz")),
            ),
            (
                "no project or region",
                regional_handle(UNSPECIFIED, UNSPECIFIED, "baz"),
                node("bing", "us-central1-c"),
                Some(regional_handle("bing", "us-central1", "baz")),
            ),
            (
                "no project, regional",
                regional_handle(UNSPECIFIED, "us-west1", "baz"),
                node("bing", "us-central1-c"),
                Some(regional_handle("bing", "us-west1", "baz")),
            ),
            (
                "invalid handle",
                "foo".to_owned(),
                node("bing", "us-central1-c"),
                None,
            ),
            (
                "invalid node ID",
                regional_handle(UNSPECIFIED, "us-west1", "baz"),
                "foo".to_owned(),
                None,
            ),
            (
                "neither zones nor regions",
                "projects/UNSPECIFIED/places/x/disks/d".to_owned(),
                node("bing", "bada"),
                None,
            ),
            (
                "node zone without region",
                regional_handle(UNSPECIFIED, UNSPECIFIED, "baz"),
                node("bing", "bada"),
                None,
            ),
        ];
        for (name, handle, node_id, want) in cases {
            let got = repair_volume_handle(&handle, &node_id);
            match want {
                Some(want) => assert_eq!(got.unwrap(), want, "{name}"),
                None => assert!(got.is_err(), "{name}: {got:?}"),
            }
        }
        assert!(matches!(
            repair_volume_handle("foo", "projects/p/zones/z/instances/n"),
            Err(TranslationError::InvalidVolumeHandle { .. })
        ));
        assert!(matches!(
            repair_volume_handle(&zonal_handle(UNSPECIFIED, "z", "d"), "foo"),
            Err(TranslationError::InvalidNodeId { .. })
        ));
    }

    #[test]
    fn access_modes_become_what_the_driver_accepts() {
        type Modes = Option<&'static [&'static str]>;
        let cases: [(Modes, Modes); 10] = [
            (None, None),
            (Some(&[]), Some(&["ReadWriteOnce"])),
            (Some(&["ReadOnlyMany"]), Some(&["ReadOnlyMany"])),
            (Some(&["ReadWriteOnce"]), Some(&["ReadWriteOnce"])),
            (Some(&["ReadWriteMany"]), Some(&["ReadWriteOnce"])),
            (
                Some(&["ReadOnlyMany", "ReadWriteOnce"]),
                Some(&["ReadWriteOnce"]),
            ),
            (
                Some(&["ReadWriteOnce", "ReadWriteMany"]),
                Some(&["ReadWriteOnce"]),
            ),
            (
                Some(&["ReadWriteMany", "ReadOnlyMany"]),
                Some(&["ReadWriteOnce"]),
            ),
            (
                Some(&["ReadWriteMany", "ReadWriteOnce", "ReadOnlyMany"]),
                Some(&["ReadWriteOnce"]),
            ),
            (Some(&["ReadWriteOncePod"]), Some(&["ReadWriteOnce"])),
        ];
        let owned =
            |m: Option<&[&str]>| m.map(|m| m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        for (input, want) in cases {
            assert_eq!(
                backward_compatible_access_modes(owned(input)),
                owned(want),
                "{input:?}"
            );
        }
    }

    #[test]
    fn read_only_inline_volume_is_read_only_many() {
        for (read_only, want_mode) in [
            (Some(true), "ReadOnlyMany"),
            (Some(false), "ReadWriteOnce"),
            (None, "ReadWriteOnce"),
        ] {
            let volume = Volume {
                name: "v".into(),
                gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                    pd_name: "foo".into(),
                    read_only,
                    partition: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let pv = inline_to_csi(&volume).unwrap();
            assert_eq!(
                pv.metadata.name.as_deref(),
                Some("pd.csi.storage.gke.io-foo")
            );
            let spec = pv.spec.unwrap();
            assert_eq!(spec.access_modes, Some(vec![want_mode.to_owned()]));
            let csi = spec.csi.unwrap();
            assert_eq!(csi.read_only, read_only);
            assert_eq!(
                csi.volume_handle,
                "projects/UNSPECIFIED/zones/UNSPECIFIED/disks/foo"
            );
            assert_eq!(csi.volume_attributes, Some(strings(&[("partition", "2")])));
        }
    }

    fn gce_pv(labels: &[(&str, &str)]) -> PersistentVolume {
        let mut pv = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                    pd_name: "pd-name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        pv.metadata.labels = map(labels);
        pv
    }

    #[test]
    fn pv_handle_comes_from_the_zone_labels() {
        let cases: [(&str, PairSlice, Option<&str>); 8] = [
            (
                "no labels",
                &[],
                Some("projects/UNSPECIFIED/zones/UNSPECIFIED/disks/pd-name"),
            ),
            (
                "beta zonal",
                &[(ZONE_BETA, "us-east1-a")],
                Some("projects/UNSPECIFIED/zones/us-east1-a/disks/pd-name"),
            ),
            (
                "GA zonal",
                &[(ZONE_GA, "us-east1-a")],
                Some("projects/UNSPECIFIED/zones/us-east1-a/disks/pd-name"),
            ),
            (
                "beta regional",
                &[(ZONE_BETA, "us-central1-a__us-central1-c")],
                Some("projects/UNSPECIFIED/regions/us-central1/disks/pd-name"),
            ),
            (
                "GA regional",
                &[(ZONE_GA, "us-central1-a__us-central1-c")],
                Some("projects/UNSPECIFIED/regions/us-central1/disks/pd-name"),
            ),
            (
                "beta wins over GA",
                &[(ZONE_BETA, "us-east1-b"), (ZONE_GA, "us-east1-a")],
                Some("projects/UNSPECIFIED/zones/us-east1-b/disks/pd-name"),
            ),
            (
                "empty beta falls back to GA",
                &[(ZONE_BETA, ""), (ZONE_GA, "us-east1-a")],
                Some("projects/UNSPECIFIED/zones/us-east1-a/disks/pd-name"),
            ),
            (
                "zones of two regions",
                &[(ZONE_GA, "us-central1-a__europe-west1-b")],
                None,
            ),
        ];
        for (name, labels, want) in cases {
            let got = pv_to_csi(gce_pv(labels));
            match want {
                Some(want) => {
                    let csi = got.unwrap().spec.unwrap().csi.unwrap();
                    assert_eq!(csi.volume_handle, want, "{name}");
                    assert_eq!(csi.driver, DRIVER_NAME);
                    assert_eq!(csi.volume_attributes, Some(strings(&[("partition", "")])));
                }
                None => assert!(
                    matches!(got, Err(TranslationError::InvalidZones { .. })),
                    "{name}: {got:?}"
                ),
            }
        }
    }

    fn csi_pv(handle: &str, attributes: &[(&str, &str)]) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: handle.into(),
                    volume_attributes: map(attributes),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pv_to_in_tree_takes_the_disk_name() {
        type Want = std::result::Result<(&'static str, Option<i32>), ()>;
        let cases: [(&str, PairSlice, Want); 6] = [
            ("projects/p/zones/z/disks/disk-1", &[], Ok(("disk-1", None))),
            (
                "projects/p/regions/r/disks/disk-2",
                &[("partition", "")],
                Ok(("disk-2", None)),
            ),
            (
                "projects/p/zones/z/disks/disk-3",
                &[("partition", "4")],
                Ok(("disk-3", Some(4))),
            ),
            (
                "projects/p/zones/z/disks/disk-4",
                &[("partition", "four")],
                Err(()),
            ),
            ("disk-5", &[], Err(())),
            ("projects/p/zones/z/disks", &[], Err(())),
        ];
        for (handle, attributes, want) in cases {
            let got = pv_to_in_tree(csi_pv(handle, attributes));
            match want {
                Ok((name, partition)) => {
                    let spec = got.unwrap().spec.unwrap();
                    assert_eq!(spec.csi, None);
                    let source = spec.gce_persistent_disk.unwrap();
                    assert_eq!(source.pd_name, name, "{handle}");
                    assert_eq!(source.partition, partition, "{handle}");
                }
                Err(()) => assert!(got.is_err(), "{handle}: {got:?}"),
            }
        }
    }

    #[test]
    fn round_trip_with_zone_keeps_the_handle_zone_in_labels() {
        // No labels, with partition, read-only, fsType: exact round trip.
        let mut pv = gce_pv(&[]);
        let source = pv
            .spec
            .as_mut()
            .unwrap()
            .gce_persistent_disk
            .as_mut()
            .unwrap();
        source.partition = Some(1);
        source.read_only = Some(true);
        source.fs_type = some("ext4");
        pv.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteOnce".into()]);
        let back = pv_to_in_tree(pv_to_csi(pv.clone()).unwrap()).unwrap();
        assert_eq!(back, pv);

        // With a zone label, the way back also gains zone and region affinity.
        let csi = pv_to_csi(gce_pv(&[(ZONE_GA, "us-east1-a")])).unwrap();
        assert_eq!(
            csi.spec.as_ref().unwrap().node_affinity,
            affinity(&[vec![(TOPOLOGY_KEY, &["us-east1-a"])]])
        );
        let back = pv_to_in_tree(csi).unwrap();
        assert_eq!(
            back.spec.unwrap().node_affinity,
            affinity(&[vec![(ZONE_GA, &["us-east1-a"]), (REGION_GA, &["us-east1"])]])
        );
        assert_eq!(
            back.metadata.labels,
            map(&[(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")])
        );
    }

    #[test]
    fn regions_from_zones() {
        let cases: [(&[&str], Option<&str>); 6] = [
            (&["us-central1-a"], Some("us-central1")),
            (&["us-central1-a", "us-central1-f"], Some("us-central1")),
            (&[], None),
            (&["us-central1-a", "europe-west1-b"], None),
            (&["us-central1"], None),
            (&["us-east-1-wl1-bos-wlz-1"], None),
        ];
        for (zones, want) in cases {
            let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
            match want {
                Some(want) => assert_eq!(region_from_zones(&zones).unwrap(), want),
                None => assert!(region_from_zones(&zones).is_err(), "{zones:?}"),
            }
        }
    }
}
