//! OpenStack Cinder: `kubernetes.io/cinder` ↔ `cinder.csi.openstack.org`
//! (upstream `plugins/openstack_cinder.go`).
//!
//! * Handles: the Cinder volume ID is the handle, both ways.
//! * `fsType` and `readOnly` are copied; the in-tree `secretRef` has no CSI
//!   counterpart and is dropped. Volume attributes are empty.
//! * Topology: Kubernetes zone keys ↔ `topology.cinder.csi.openstack.org/zone`.
//!   No region is derived on the way back: Cinder zone names say nothing
//!   about regions.
//! * StorageClass: `fstype` → `csi.storage.k8s.io/fstype`; every other
//!   parameter, including `availability`, is passed on (the driver reads it);
//!   zone keys in `allowedTopologies` are renamed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, CinderPersistentVolumeSource, PersistentVolume,
    PersistentVolumeSpec, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::topology;
use super::{CSI_FS_TYPE_PARAM, FS_TYPE_PARAM, Result, describe_pv, missing_source, take_csi};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/cinder";
pub(super) const DRIVER_NAME: &str = "cinder.csi.openstack.org";
pub(super) const TOPOLOGY_KEY: &str = "topology.cinder.csi.openstack.org/zone";
const SOURCE_FIELD: &str = "cinder";

pub(super) fn storage_class_to_csi(mut sc: StorageClass) -> Result<StorageClass> {
    let params = sc
        .parameters
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| {
            if key.eq_ignore_ascii_case(FS_TYPE_PARAM) {
                (CSI_FS_TYPE_PARAM.to_owned(), value)
            } else {
                (key, value)
            }
        })
        .collect();
    if let Some(terms) = sc.allowed_topologies.as_mut().filter(|t| !t.is_empty()) {
        *terms = topology::allowed_topologies_to_csi(terms, TOPOLOGY_KEY);
    }
    sc.parameters = Some(params);
    Ok(sc)
}

fn csi_source(
    volume_id: &str,
    fs_type: Option<String>,
    read_only: Option<bool>,
) -> CSIPersistentVolumeSource {
    CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: volume_id.to_owned(),
        read_only,
        fs_type,
        volume_attributes: Some(BTreeMap::new()),
        ..Default::default()
    }
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.cinder.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let csi = csi_source(&source.volume_id, source.fs_type, source.read_only);
    topology::in_tree_to_csi(&mut pv, TOPOLOGY_KEY);
    pv.spec.get_or_insert_default().csi = Some(csi);
    Ok(pv)
}

pub(super) fn pv_to_in_tree(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let csi = take_csi(&mut pv)?;
    let source = CinderPersistentVolumeSource {
        volume_id: csi.volume_handle,
        fs_type: csi.fs_type,
        read_only: csi.read_only,
        secret_ref: None,
    };
    topology::csi_to_in_tree(&mut pv, TOPOLOGY_KEY, None)?;
    pv.spec.get_or_insert_default().cinder = Some(source);
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume) -> Result<PersistentVolume> {
    let source = volume
        .cinder
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{DRIVER_NAME}-{}", source.volume_id)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(csi_source(
                &source.volume_id,
                source.fs_type.clone(),
                source.read_only,
            )),
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::topology::{REGION_BETA, ZONE_BETA, ZONE_GA};
    use k8s_openapi::api::core::v1::CinderVolumeSource;

    #[test]
    fn storage_class_parameters() {
        type Topology = Option<Terms>;
        let cases: [(&str, Pairs, Topology, Pairs, Topology); 4] = [
            (
                "fstype renamed, the rest kept",
                vec![
                    ("fsType", "ext4"),
                    ("availability", "nova"),
                    ("type", "ssd"),
                ],
                None,
                vec![
                    ("csi.storage.k8s.io/fstype", "ext4"),
                    ("availability", "nova"),
                    ("type", "ssd"),
                ],
                None,
            ),
            ("empty", vec![], None, vec![], None),
            (
                "zone keys of allowed topologies renamed",
                vec![],
                Some(vec![vec![(ZONE_BETA, &["nova"]), (REGION_BETA, &["r1"])]]),
                vec![],
                Some(vec![vec![
                    (TOPOLOGY_KEY, &["nova"]),
                    (REGION_BETA, &["r1"]),
                ]]),
            ),
            (
                "empty allowed topologies left alone",
                vec![],
                Some(vec![]),
                vec![],
                Some(vec![]),
            ),
        ];
        for (name, params, allowed, want_params, want_allowed) in cases {
            let got = storage_class_to_csi(storage_class(&params, allowed.as_deref())).unwrap();
            assert_eq!(got.parameters, Some(strings(&want_params)), "{name}");
            assert_eq!(
                got.allowed_topologies,
                want_allowed.as_deref().map(topology_terms),
                "{name}"
            );
        }
    }

    fn cinder_pv(labels: &[(&str, &str)]) -> PersistentVolume {
        let mut pv = pv_with_affinity(&[]);
        pv.metadata.labels = map(labels);
        pv.spec.as_mut().unwrap().cinder = Some(CinderPersistentVolumeSource {
            volume_id: "vol1".into(),
            fs_type: some("ext4"),
            read_only: Some(true),
            secret_ref: None,
        });
        pv
    }

    #[test]
    fn pv_translates_both_ways_without_region() {
        let csi = pv_to_csi(cinder_pv(&[(ZONE_BETA, "nova")])).unwrap();
        let spec = csi.spec.as_ref().unwrap();
        assert_eq!(spec.cinder, None);
        assert_eq!(
            spec.csi,
            Some(CSIPersistentVolumeSource {
                driver: DRIVER_NAME.into(),
                volume_handle: "vol1".into(),
                fs_type: some("ext4"),
                read_only: Some(true),
                volume_attributes: Some(BTreeMap::new()),
                ..Default::default()
            })
        );
        assert_eq!(
            spec.node_affinity,
            affinity(&[vec![(TOPOLOGY_KEY, &["nova"])]])
        );

        let back = pv_to_in_tree(csi).unwrap();
        assert_eq!(back.metadata.labels, map(&[(ZONE_BETA, "nova")]));
        let spec = back.spec.unwrap();
        assert_eq!(
            spec.node_affinity,
            affinity(&[vec![(ZONE_BETA, &["nova"])]])
        );
        assert_eq!(spec.cinder, cinder_pv(&[]).spec.unwrap().cinder);

        // A CSI PV with only CSI topology gets a GA zone label and no region.
        let mut csi_only = pv_with_affinity(&[vec![(TOPOLOGY_KEY, &["nova"])]]);
        csi_only.spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
            driver: DRIVER_NAME.into(),
            volume_handle: "vol2".into(),
            ..Default::default()
        });
        let back = pv_to_in_tree(csi_only).unwrap();
        assert_eq!(back.metadata.labels, map(&[(ZONE_GA, "nova")]));
        assert_eq!(
            back.spec.unwrap().node_affinity,
            affinity(&[vec![(ZONE_GA, &["nova"])]])
        );
    }

    #[test]
    fn pv_without_topology_round_trips() {
        let pv = cinder_pv(&[]);
        assert_eq!(pv_to_in_tree(pv_to_csi(pv.clone()).unwrap()).unwrap(), pv);
    }

    #[test]
    fn inline_volume() {
        let volume = Volume {
            name: "v".into(),
            cinder: Some(CinderVolumeSource {
                volume_id: "c-1".into(),
                fs_type: some("xfs"),
                read_only: Some(false),
                secret_ref: None,
            }),
            ..Default::default()
        };
        let pv = inline_to_csi(&volume).unwrap();
        assert_eq!(
            pv.metadata.name.as_deref(),
            Some("cinder.csi.openstack.org-c-1")
        );
        let spec = pv.spec.unwrap();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        let csi = spec.csi.unwrap();
        assert_eq!(csi.volume_handle, "c-1");
        assert_eq!(csi.fs_type.as_deref(), Some("xfs"));
        assert_eq!(csi.read_only, Some(false));
        assert!(inline_to_csi(&Volume::default()).is_err());
    }
}
