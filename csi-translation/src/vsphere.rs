//! vSphere: `kubernetes.io/vsphere-volume` ↔ `csi.vsphere.vmware.com`
//! (upstream `plugins/vsphere_volume.go`).
//!
//! * Handles: the in-tree `volumePath` (`[datastore] dir/disk.vmdk`) is the
//!   CSI handle. Volumes the driver creates for migrated classes have a UUID
//!   handle and report their path in the attribute `initialvolumefilepath`,
//!   which becomes the in-tree `volumePath`; a CSI PV without it cannot be
//!   expressed in-tree and is an error.
//! * `fsType` is copied (both ways), `storagePolicyName` travels as the
//!   attribute `storagepolicyname` (one way). `readOnly` does not exist in-tree.
//! * Topology: zone and region keys each have a CSI key,
//!   `topology.csi.vmware.com/zone` and `topology.csi.vmware.com/region`. To
//!   CSI, node-affinity expressions are renamed, or built from the PV's zone /
//!   region labels (taken whole, not split on `__`); back, they are renamed to
//!   the Kubernetes keys in use and missing labels get their first value.
//! * StorageClass: known parameters are renamed as the driver expects them for
//!   migrated classes (`datastore` → `datastore-migrationparam`, the vSAN
//!   policy knobs likewise, `fstype` → `csi.storage.k8s.io/fstype`,
//!   `storagePolicyName` kept), unknown ones are dropped, `csimigration: "true"`
//!   is added (it makes the driver return `initialvolumefilepath`), and zone
//!   keys of `allowedTopologies` become the CSI zone key.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec, Volume,
    VsphereVirtualDiskVolumeSource,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::topology::{self, labels_in_use, rename_key, values_of};
use super::{
    CSI_FS_TYPE_PARAM, FS_TYPE_PARAM, Result, TranslationError, describe_pv, missing_source,
    take_csi,
};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/vsphere-volume";
pub(super) const DRIVER_NAME: &str = "csi.vsphere.vmware.com";
pub(super) const ZONE_KEY: &str = "topology.csi.vmware.com/zone";
pub(super) const REGION_KEY: &str = "topology.csi.vmware.com/region";
const SOURCE_FIELD: &str = "vsphereVolume";
const STORAGE_POLICY_NAME: &str = "storagepolicyname";
const CSI_MIGRATION_PARAM: &str = "csimigration";
/// Attribute in which the driver reports the path of a volume it created.
pub(super) const INITIAL_VOLUME_FILE_PATH: &str = "initialvolumefilepath";

/// In-tree parameter (lower case) → parameter name for the CSI driver.
const RENAMED_PARAMS: [(&str, &str); 10] = [
    (FS_TYPE_PARAM, CSI_FS_TYPE_PARAM),
    (STORAGE_POLICY_NAME, STORAGE_POLICY_NAME),
    ("datastore", "datastore-migrationparam"),
    ("diskformat", "diskformat-migrationparam"),
    (
        "hostfailurestotolerate",
        "hostfailurestotolerate-migrationparam",
    ),
    ("forceprovisioning", "forceprovisioning-migrationparam"),
    ("cachereservation", "cachereservation-migrationparam"),
    ("diskstripes", "diskstripes-migrationparam"),
    (
        "objectspacereservation",
        "objectspacereservation-migrationparam",
    ),
    ("iopslimit", "iopslimit-migrationparam"),
];

pub(super) fn storage_class_to_csi(mut sc: StorageClass) -> Result<StorageClass> {
    let mut params = BTreeMap::new();
    for (key, value) in sc.parameters.take().unwrap_or_default() {
        let lower = key.to_lowercase();
        match RENAMED_PARAMS.iter().find(|(from, _)| *from == lower) {
            Some((_, to)) => {
                params.insert((*to).to_owned(), value);
            }
            None => tracing::info!(
                parameter = %key,
                value = %value,
                "vSphere StorageClass parameter has no CSI equivalent; dropped"
            ),
        }
    }
    params.insert(CSI_MIGRATION_PARAM.to_owned(), "true".to_owned());
    if let Some(terms) = sc.allowed_topologies.as_mut().filter(|t| !t.is_empty()) {
        *terms = topology::allowed_topologies_to_csi(terms, ZONE_KEY);
    }
    sc.parameters = Some(params);
    Ok(sc)
}

fn csi_source(source: &VsphereVirtualDiskVolumeSource) -> CSIPersistentVolumeSource {
    let mut attributes = BTreeMap::new();
    if let Some(policy) = source
        .storage_policy_name
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        attributes.insert(STORAGE_POLICY_NAME.to_owned(), policy.clone());
    }
    CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: source.volume_path.clone(),
        fs_type: source.fs_type.clone(),
        volume_attributes: Some(attributes),
        ..Default::default()
    }
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.vsphere_volume.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let csi = csi_source(&source);
    topology_to_csi(&mut pv);
    pv.spec.get_or_insert_default().csi = Some(csi);
    Ok(pv)
}

/// Kubernetes zone/region expressions → CSI keys; labels fill in when the
/// affinity has no such expression.
fn topology_to_csi(pv: &mut PersistentVolume) {
    let (zone_key, region_key) = labels_in_use(pv);
    for (kubernetes_key, csi_key) in [(zone_key, ZONE_KEY), (region_key, REGION_KEY)] {
        if !values_of(pv, kubernetes_key).is_empty() {
            rename_key(pv, kubernetes_key, csi_key);
        } else if let Some(value) = pv
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(kubernetes_key))
            .filter(|v| !v.is_empty())
            .cloned()
        {
            // A whitespace-only label adds nothing, which is not worth failing for.
            let _ = topology::add_requirement(pv, csi_key, &[value]);
        }
    }
}

/// CSI zone/region expressions → Kubernetes keys, adding missing labels.
fn topology_to_in_tree(pv: &mut PersistentVolume) {
    let (zone_key, region_key) = labels_in_use(pv);
    for (csi_key, kubernetes_key) in [(ZONE_KEY, zone_key), (REGION_KEY, region_key)] {
        rename_key(pv, csi_key, kubernetes_key);
    }
    for kubernetes_key in [zone_key, region_key] {
        if let Some(first) = values_of(pv, kubernetes_key).into_iter().next() {
            pv.metadata
                .labels
                .get_or_insert_default()
                .entry(kubernetes_key.to_owned())
                .or_insert(first);
        }
    }
}

pub(super) fn pv_to_in_tree(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let csi = take_csi(&mut pv)?;
    let volume_path = csi
        .volume_attributes
        .as_ref()
        .and_then(|a| a.get(INITIAL_VOLUME_FILE_PATH))
        .cloned()
        .ok_or(TranslationError::MissingVolumeAttribute {
            driver: DRIVER_NAME,
            key: INITIAL_VOLUME_FILE_PATH,
        })?;
    let source = VsphereVirtualDiskVolumeSource {
        volume_path,
        fs_type: csi.fs_type,
        ..Default::default()
    };
    topology_to_in_tree(&mut pv);
    pv.spec.get_or_insert_default().vsphere_volume = Some(source);
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume) -> Result<PersistentVolume> {
    let source = volume
        .vsphere_volume
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{DRIVER_NAME}-{}", source.volume_path)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(csi_source(source)),
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
    use crate::topology::{REGION_BETA, REGION_GA, ZONE_BETA, ZONE_GA};

    const PATH: &str =
        "[vsanDatastore] 6785a85e-268e-6352-a2e8-02008b7afadd/kubernetes-dynamic-pvc-68734c9f.vmdk";

    #[test]
    fn storage_class_parameters() {
        let ga_terms: Vec<Term> = vec![vec![(ZONE_GA, &["zone-a"]), (REGION_GA, &["region-a"])]];
        let beta_terms: Vec<Term> =
            vec![vec![(ZONE_BETA, &["zone-a"]), (REGION_BETA, &["region-a"])]];
        type Topology = Option<Terms>;
        let cases: Vec<(&str, Pairs, Topology, Pairs, Topology)> = vec![
            (
                "no parameter",
                vec![],
                None,
                vec![("csimigration", "true")],
                None,
            ),
            (
                "unknown parameter dropped",
                vec![("unknownparam", "value")],
                None,
                vec![("csimigration", "true")],
                None,
            ),
            (
                "storage policy and datastore",
                vec![
                    ("storagepolicyname", "test-policy-name"),
                    ("datastore", "vsanDatastore"),
                ],
                None,
                vec![
                    ("storagepolicyname", "test-policy-name"),
                    ("datastore-migrationparam", "vsanDatastore"),
                    ("csimigration", "true"),
                ],
                None,
            ),
            (
                "fstype and camelCase policy",
                vec![("storagePolicyName", "p"), ("fstype", "ext4")],
                None,
                vec![
                    ("storagepolicyname", "p"),
                    ("csi.storage.k8s.io/fstype", "ext4"),
                    ("csimigration", "true"),
                ],
                None,
            ),
            (
                "GA allowed topology: zone renamed, region kept",
                vec![("storagepolicyname", "p")],
                Some(ga_terms),
                vec![("storagepolicyname", "p"), ("csimigration", "true")],
                Some(vec![vec![
                    (ZONE_KEY, &["zone-a"]),
                    (REGION_GA, &["region-a"]),
                ]]),
            ),
            (
                "beta allowed topology",
                vec![],
                Some(beta_terms),
                vec![("csimigration", "true")],
                Some(vec![vec![
                    (ZONE_KEY, &["zone-a"]),
                    (REGION_BETA, &["region-a"]),
                ]]),
            ),
            (
                "all parameters",
                vec![
                    ("storagepolicyname", "test-policy-name"),
                    ("datastore", "test-datastore-name"),
                    ("fstype", "ext4"),
                    ("diskformat", "thin"),
                    ("hostfailurestotolerate", "1"),
                    ("forceprovisioning", "yes"),
                    ("cachereservation", "25"),
                    ("diskstripes", "4"),
                    ("objectspacereservation", "10"),
                    ("iopslimit", "32"),
                ],
                None,
                vec![
                    ("storagepolicyname", "test-policy-name"),
                    ("datastore-migrationparam", "test-datastore-name"),
                    ("csi.storage.k8s.io/fstype", "ext4"),
                    ("diskformat-migrationparam", "thin"),
                    ("hostfailurestotolerate-migrationparam", "1"),
                    ("forceprovisioning-migrationparam", "yes"),
                    ("cachereservation-migrationparam", "25"),
                    ("diskstripes-migrationparam", "4"),
                    ("objectspacereservation-migrationparam", "10"),
                    ("iopslimit-migrationparam", "32"),
                    ("csimigration", "true"),
                ],
                None,
            ),
            (
                "csimigration given as false is forced to true",
                vec![("csimigration", "false")],
                None,
                vec![("csimigration", "true")],
                None,
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

    fn vsphere_pv(
        policy: Option<&str>,
        labels: &[(&str, &str)],
        terms: &[Term],
    ) -> PersistentVolume {
        let mut pv = pv_with_affinity(terms);
        pv.metadata.name = some("pvc-d8b4475f");
        pv.metadata.labels = map(labels);
        let spec = pv.spec.as_mut().unwrap();
        spec.access_modes = Some(vec!["ReadWriteOnce".into()]);
        spec.vsphere_volume = Some(VsphereVirtualDiskVolumeSource {
            volume_path: PATH.into(),
            fs_type: some("ext4"),
            storage_policy_name: policy.map(str::to_owned),
            storage_policy_id: None,
        });
        pv
    }

    #[test]
    fn pv_to_csi_copies_path_policy_and_topology() {
        struct Case {
            name: &'static str,
            policy: Option<&'static str>,
            labels: Vec<(&'static str, &'static str)>,
            terms: Vec<Term>,
            want_attributes: Vec<(&'static str, &'static str)>,
            want_terms: Option<Vec<Term>>,
        }
        let cases = [
            Case {
                name: "policy, no topology",
                policy: Some("vSAN Default Storage Policy"),
                labels: vec![],
                terms: vec![],
                want_attributes: vec![("storagepolicyname", "vSAN Default Storage Policy")],
                want_terms: None,
            },
            Case {
                name: "empty policy is not an attribute",
                policy: Some(""),
                labels: vec![],
                terms: vec![],
                want_attributes: vec![],
                want_terms: None,
            },
            Case {
                name: "zone and region from GA labels, whole values",
                policy: None,
                labels: vec![(ZONE_GA, "zone-a__zone-b"), (REGION_GA, "region-a")],
                terms: vec![],
                want_attributes: vec![],
                want_terms: Some(vec![vec![
                    (ZONE_KEY, &["zone-a__zone-b"]),
                    (REGION_KEY, &["region-a"]),
                ]]),
            },
            Case {
                name: "beta affinity renamed",
                policy: None,
                labels: vec![],
                terms: vec![vec![(ZONE_BETA, &["zone-a"]), (REGION_BETA, &["region-a"])]],
                want_attributes: vec![],
                want_terms: Some(vec![vec![
                    (ZONE_KEY, &["zone-a"]),
                    (REGION_KEY, &["region-a"]),
                ]]),
            },
            Case {
                name: "zone in affinity, region from label",
                policy: None,
                labels: vec![(REGION_GA, "region-a")],
                terms: vec![vec![(ZONE_GA, &["zone-a"])]],
                want_attributes: vec![],
                want_terms: Some(vec![vec![
                    (ZONE_KEY, &["zone-a"]),
                    (REGION_KEY, &["region-a"]),
                ]]),
            },
        ];
        for case in cases {
            let got = pv_to_csi(vsphere_pv(case.policy, &case.labels, &case.terms)).unwrap();
            assert_eq!(got.metadata.labels, map(&case.labels), "{}", case.name);
            let spec = got.spec.unwrap();
            assert_eq!(spec.vsphere_volume, None);
            assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
            assert_eq!(
                spec.node_affinity,
                case.want_terms.as_deref().and_then(affinity),
                "{}",
                case.name
            );
            assert_eq!(
                spec.csi,
                Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: PATH.into(),
                    fs_type: some("ext4"),
                    volume_attributes: Some(strings(&case.want_attributes)),
                    ..Default::default()
                }),
                "{}",
                case.name
            );
        }
    }

    fn csi_pv(
        attributes: &[(&str, &str)],
        labels: &[(&str, &str)],
        terms: &[Term],
    ) -> PersistentVolume {
        let mut pv = pv_with_affinity(terms);
        pv.metadata.labels = map(labels);
        pv.spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
            driver: DRIVER_NAME.into(),
            volume_handle: "e4073a6d-642e-4dff-8f4a-b4e3a47c4bbd".into(),
            fs_type: some("ext4"),
            volume_attributes: map(attributes),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn pv_to_in_tree_uses_the_initial_path() {
        let got = pv_to_in_tree(csi_pv(
            &[
                ("storagepolicyname", "vSAN Default Storage Policy"),
                ("initialvolumefilepath", PATH),
            ],
            &[],
            &[],
        ))
        .unwrap();
        let spec = got.spec.unwrap();
        assert_eq!(spec.csi, None);
        assert_eq!(
            spec.vsphere_volume,
            Some(VsphereVirtualDiskVolumeSource {
                volume_path: PATH.into(),
                fs_type: some("ext4"),
                ..Default::default()
            })
        );
        assert_eq!(got.metadata.labels, None);

        assert_eq!(
            pv_to_in_tree(csi_pv(&[("storagepolicyname", "p")], &[], &[])),
            Err(TranslationError::MissingVolumeAttribute {
                driver: DRIVER_NAME,
                key: "initialvolumefilepath",
            })
        );
    }

    #[test]
    fn pv_to_in_tree_restores_zone_and_region() {
        let cases: [(&str, Pairs, Terms, Terms, Pairs); 3] = [
            (
                "GA by default, labels added from the first values",
                vec![],
                vec![vec![
                    (ZONE_KEY, &["zone-b", "zone-a"]),
                    (REGION_KEY, &["region-a"]),
                ]],
                vec![vec![
                    (ZONE_GA, &["zone-b", "zone-a"]),
                    (REGION_GA, &["region-a"]),
                ]],
                vec![(ZONE_GA, "zone-a"), (REGION_GA, "region-a")],
            ),
            (
                "beta labels select beta keys and are kept",
                vec![(ZONE_BETA, "old-zone")],
                vec![vec![(ZONE_KEY, &["zone-a"]), (REGION_KEY, &["region-a"])]],
                vec![vec![(ZONE_BETA, &["zone-a"]), (REGION_BETA, &["region-a"])]],
                vec![(ZONE_BETA, "old-zone"), (REGION_BETA, "region-a")],
            ),
            (
                "other keys untouched",
                vec![],
                vec![vec![("kubernetes.io/hostname", &["n1"])]],
                vec![vec![("kubernetes.io/hostname", &["n1"])]],
                vec![],
            ),
        ];
        for (name, labels, terms, want_terms, want_labels) in cases {
            let got =
                pv_to_in_tree(csi_pv(&[("initialvolumefilepath", PATH)], &labels, &terms)).unwrap();
            assert_eq!(got.metadata.labels, map(&want_labels), "{name}");
            assert_eq!(
                got.spec.unwrap().node_affinity,
                affinity(&want_terms),
                "{name}"
            );
        }
    }

    #[test]
    fn inline_volume_keeps_its_storage_policy() {
        let volume = |policy: Option<&str>| Volume {
            name: "inlinevolume".into(),
            vsphere_volume: Some(VsphereVirtualDiskVolumeSource {
                volume_path: "[vsanDatastore] volume/inlinevolume.vmdk".into(),
                fs_type: some("ext4"),
                storage_policy_name: policy.map(str::to_owned),
                storage_policy_id: None,
            }),
            ..Default::default()
        };
        for (policy, want) in [
            (None, vec![]),
            (Some("gold"), vec![("storagepolicyname", "gold")]),
        ] {
            let pv = inline_to_csi(&volume(policy)).unwrap();
            assert_eq!(
                pv.metadata.name.as_deref(),
                Some("csi.vsphere.vmware.com-[vsanDatastore] volume/inlinevolume.vmdk")
            );
            let spec = pv.spec.unwrap();
            assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
            let csi = spec.csi.unwrap();
            assert_eq!(
                csi.volume_handle,
                "[vsanDatastore] volume/inlinevolume.vmdk"
            );
            assert_eq!(csi.volume_attributes, Some(strings(&want)), "{policy:?}");
        }
        assert!(inline_to_csi(&Volume::default()).is_err());
    }
}
