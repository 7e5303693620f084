//! Tests of the public translation API across all plugins.

use super::testutil::*;
use super::topology::{REGION_BETA, REGION_GA, ZONE_BETA, ZONE_GA};
use super::*;
use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, AzureDiskVolumeSource, AzureFileVolumeSource,
    CinderPersistentVolumeSource, CinderVolumeSource, GCEPersistentDiskVolumeSource,
    PersistentVolumeSpec, PortworxVolumeSource, VsphereVirtualDiskVolumeSource,
};

const PAIRS: [(&str, &str); 7] = [
    ("kubernetes.io/aws-ebs", "ebs.csi.aws.com"),
    ("kubernetes.io/gce-pd", "pd.csi.storage.gke.io"),
    ("kubernetes.io/azure-disk", "disk.csi.azure.com"),
    ("kubernetes.io/azure-file", "file.csi.azure.com"),
    ("kubernetes.io/cinder", "cinder.csi.openstack.org"),
    ("kubernetes.io/vsphere-volume", "csi.vsphere.vmware.com"),
    ("kubernetes.io/portworx-volume", "pxd.portworx.com"),
];

#[test]
fn names_map_both_ways_for_every_plugin() {
    for (in_tree, driver) in PAIRS {
        assert_eq!(driver_for_in_tree_name(in_tree), Some(driver));
        assert_eq!(in_tree_name_for_driver(driver), Some(in_tree));
        assert!(is_migratable_driver(driver), "{driver}");
        assert!(is_migrated_in_tree_name(in_tree), "{in_tree}");
        // The two namespaces never mix.
        assert!(!is_migratable_driver(in_tree), "{in_tree}");
        assert!(!is_migrated_in_tree_name(driver), "{driver}");
    }
}

#[test]
fn unknown_and_retired_names_do_not_map() {
    for name in [
        "",
        "hostpath.csi.k8s.io",
        "kubernetes.io/rbd",
        "rbd.csi.ceph.com",
        "kubernetes.io/cephfs",
        "EBS.CSI.AWS.COM",
        "kubernetes.io/AWS-EBS",
    ] {
        assert_eq!(in_tree_name_for_driver(name), None, "{name}");
        assert_eq!(driver_for_in_tree_name(name), None, "{name}");
        assert!(!is_migratable_driver(name), "{name}");
        assert!(!is_migrated_in_tree_name(name), "{name}");
    }
}

fn pv_with(spec: PersistentVolumeSpec) -> PersistentVolume {
    PersistentVolume {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: some("pv-1"),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

fn in_tree_pvs() -> Vec<(&'static str, PersistentVolume)> {
    vec![
        (
            "kubernetes.io/gce-pd",
            pv_with(PersistentVolumeSpec {
                gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                    pd_name: "test-disk".into(),
                    fs_type: some("ext4"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            "kubernetes.io/aws-ebs",
            pv_with(PersistentVolumeSpec {
                aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                    volume_id: "vol01".into(),
                    fs_type: some("ext3"),
                    partition: Some(1),
                    read_only: Some(true),
                }),
                ..Default::default()
            }),
        ),
        (
            "kubernetes.io/cinder",
            pv_with(PersistentVolumeSpec {
                cinder: Some(CinderPersistentVolumeSource {
                    volume_id: "vol1".into(),
                    fs_type: some("ext4"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            "kubernetes.io/azure-disk",
            pv_with(PersistentVolumeSpec {
                azure_disk: Some(AzureDiskVolumeSource {
                    disk_name: "disk-1".into(),
                    disk_uri: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/disk-1".into(),
                    caching_mode: some("ReadOnly"),
                    fs_type: some("xfs"),
                    kind: some("Managed"),
                    read_only: Some(false),
                }),
                ..Default::default()
            }),
        ),
        (
            "kubernetes.io/portworx-volume",
            pv_with(PersistentVolumeSpec {
                portworx_volume: Some(PortworxVolumeSource {
                    volume_id: "px-1".into(),
                    fs_type: some("ext4"),
                    read_only: None,
                }),
                ..Default::default()
            }),
        ),
    ]
}

#[test]
fn round_trip_restores_the_original_pv() {
    for (in_tree, pv) in in_tree_pvs() {
        assert!(is_pv_migratable(&pv), "{in_tree}");
        assert_eq!(plugin_name_for_pv(&pv), Some(in_tree));
        let csi = translate_in_tree_pv_to_csi(&pv).unwrap();
        let spec = csi.spec.as_ref().unwrap();
        assert_eq!(
            spec.csi.as_ref().map(|c| c.driver.as_str()),
            driver_for_in_tree_name(in_tree),
            "{in_tree}"
        );
        assert_eq!(
            plugin_name_for_pv(&csi),
            None,
            "{in_tree}: in-tree source left behind"
        );
        let back = translate_csi_pv_to_in_tree(&csi).unwrap();
        assert_eq!(back, pv, "{in_tree}");
    }
}

#[test]
fn every_plugin_is_recognised_on_pvs_and_inline_volumes() {
    let spec_cases: Vec<(&str, PersistentVolumeSpec)> = vec![
        (
            "kubernetes.io/azure-file",
            PersistentVolumeSpec {
                azure_file: Some(Default::default()),
                ..Default::default()
            },
        ),
        (
            "kubernetes.io/vsphere-volume",
            PersistentVolumeSpec {
                vsphere_volume: Some(Default::default()),
                ..Default::default()
            },
        ),
    ];
    let mut all: Vec<(&str, PersistentVolume)> = in_tree_pvs();
    all.extend(spec_cases.into_iter().map(|(n, s)| (n, pv_with(s))));
    assert_eq!(all.len(), PAIRS.len());
    for (name, pv) in &all {
        assert_eq!(plugin_name_for_pv(pv), Some(*name));
    }
    for volume in inline_volumes() {
        assert!(is_inline_migratable(&volume), "{}", volume.name);
    }
    // Not migratable: no spec, a CSI PV, an NFS PV, an emptyDir volume.
    let not = [
        PersistentVolume::default(),
        pv_with(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: "pd.csi.storage.gke.io".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        pv_with(PersistentVolumeSpec {
            nfs: Some(Default::default()),
            ..Default::default()
        }),
    ];
    for pv in &not {
        assert!(!is_pv_migratable(pv));
        assert_eq!(plugin_name_for_pv(pv), None);
    }
    let empty_dir = Volume {
        name: "scratch".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    };
    assert!(!is_inline_migratable(&empty_dir));
}

fn inline_volumes() -> Vec<Volume> {
    let base = |name: &str| Volume {
        name: name.into(),
        ..Default::default()
    };
    vec![
        Volume {
            gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                pd_name: "pd-a".into(),
                ..Default::default()
            }),
            ..base("gce")
        },
        Volume {
            aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                volume_id: "vol-0a".into(),
                ..Default::default()
            }),
            ..base("ebs")
        },
        Volume {
            cinder: Some(CinderVolumeSource {
                volume_id: "c-a".into(),
                ..Default::default()
            }),
            ..base("cinder")
        },
        Volume {
            azure_disk: Some(AzureDiskVolumeSource {
                disk_name: "d-a".into(),
                disk_uri: "uri-a".into(),
                ..Default::default()
            }),
            ..base("azuredisk")
        },
        Volume {
            azure_file: Some(AzureFileVolumeSource {
                secret_name: "s-a".into(),
                share_name: "share-a".into(),
                ..Default::default()
            }),
            ..base("azurefile")
        },
        Volume {
            vsphere_volume: Some(VsphereVirtualDiskVolumeSource {
                volume_path: "[ds] kubevols/a.vmdk".into(),
                ..Default::default()
            }),
            ..base("vsphere")
        },
        Volume {
            portworx_volume: Some(PortworxVolumeSource {
                volume_id: "px-a".into(),
                ..Default::default()
            }),
            ..base("portworx")
        },
    ]
}

/// Gives each inline source in `volumes` a different backing volume.
fn with_other_backing_volumes(mut volumes: Vec<Volume>) -> Vec<Volume> {
    for v in &mut volumes {
        if let Some(s) = &mut v.gce_persistent_disk {
            s.pd_name = "pd-b".into();
        }
        if let Some(s) = &mut v.aws_elastic_block_store {
            s.volume_id = "vol-0b".into();
        }
        if let Some(s) = &mut v.cinder {
            s.volume_id = "c-b".into();
        }
        if let Some(s) = &mut v.azure_disk {
            s.disk_uri = "uri-b".into();
        }
        if let Some(s) = &mut v.azure_file {
            s.share_name = "share-b".into();
        }
        if let Some(s) = &mut v.vsphere_volume {
            s.volume_path = "[ds] kubevols/b.vmdk".into();
        }
        if let Some(s) = &mut v.portworx_volume {
            s.volume_id = "px-b".into();
        }
    }
    volumes
}

#[test]
fn inline_translation_names_are_unique_and_filesystem_mode() {
    let first = inline_volumes();
    let second = with_other_backing_volumes(inline_volumes());
    for (a, b) in first.iter().zip(&second) {
        let pa = translate_in_tree_inline_volume_to_csi(a, "").unwrap();
        let pb = translate_in_tree_inline_volume_to_csi(b, "").unwrap();
        assert_ne!(pa.metadata.name, pb.metadata.name, "{}", a.name);
        assert!(pa.metadata.name.as_deref().is_some_and(|n| !n.is_empty()));
        let spec = pa.spec.unwrap();
        assert_eq!(
            spec.volume_mode.as_deref(),
            Some("Filesystem"),
            "{}",
            a.name
        );
        let csi = spec.csi.unwrap();
        assert!(is_migratable_driver(&csi.driver), "{}", a.name);
        assert!(!csi.volume_handle.is_empty(), "{}", a.name);
    }
}

#[test]
fn dispatch_errors_name_what_is_wrong() {
    let sc = storage_class(&[], None);
    assert_eq!(
        translate_in_tree_storage_class_to_csi("kubernetes.io/rbd", &sc),
        Err(TranslationError::UnknownInTreePlugin(
            "kubernetes.io/rbd".into()
        ))
    );
    let nfs = pv_with(PersistentVolumeSpec {
        nfs: Some(Default::default()),
        ..Default::default()
    });
    let err = translate_in_tree_pv_to_csi(&nfs).unwrap_err();
    assert_eq!(
        err,
        TranslationError::NotMigratable("persistent volume \"pv-1\"".into())
    );
    assert!(err.to_string().contains("pv-1"), "{err}");

    assert_eq!(
        translate_csi_pv_to_in_tree(&nfs),
        Err(TranslationError::MissingCsiSource("pv-1".into()))
    );
    let foreign = pv_with(PersistentVolumeSpec {
        csi: Some(CSIPersistentVolumeSource {
            driver: "hostpath.csi.k8s.io".into(),
            volume_handle: "h".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        translate_csi_pv_to_in_tree(&foreign),
        Err(TranslationError::UnknownCsiDriver(
            "hostpath.csi.k8s.io".into()
        ))
    );
    let empty_dir = Volume {
        name: "scratch".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(
        translate_in_tree_inline_volume_to_csi(&empty_dir, "ns"),
        Err(TranslationError::NotMigratable("volume \"scratch\"".into()))
    );
}

#[test]
fn storage_class_dispatch_reaches_the_plugin() {
    let sc = storage_class(&[("fstype", "ext4"), ("type", "gp3")], None);
    let cases = [
        ("kubernetes.io/aws-ebs", Some("ext4")),
        ("kubernetes.io/gce-pd", Some("ext4")),
        ("kubernetes.io/cinder", Some("ext4")),
        ("kubernetes.io/vsphere-volume", Some("ext4")),
        // These two keep fstype as it is.
        ("kubernetes.io/azure-disk", None),
        ("kubernetes.io/azure-file", None),
        ("kubernetes.io/portworx-volume", None),
    ];
    for (in_tree, csi_fs_type) in cases {
        let got = translate_in_tree_storage_class_to_csi(in_tree, &sc).unwrap();
        let params = got.parameters.unwrap_or_default();
        assert_eq!(
            params.get(CSI_FS_TYPE_PARAM).map(String::as_str),
            csi_fs_type,
            "{in_tree}"
        );
    }
}

#[test]
fn repair_volume_handle_only_changes_gce_handles() {
    let node = "projects/p1/zones/us-central1-c/instances/n1";
    let unspecified = "projects/UNSPECIFIED/zones/UNSPECIFIED/disks/d1";
    assert_eq!(
        repair_volume_handle("pd.csi.storage.gke.io", unspecified, node).unwrap(),
        "projects/p1/zones/us-central1-c/disks/d1"
    );
    for (_, driver) in PAIRS.iter().filter(|(_, d)| *d != "pd.csi.storage.gke.io") {
        assert_eq!(
            repair_volume_handle(driver, unspecified, "whatever").unwrap(),
            unspecified,
            "{driver}"
        );
    }
    assert_eq!(
        repair_volume_handle("hostpath.csi.k8s.io", "h", node),
        Err(TranslationError::UnknownCsiDriver(
            "hostpath.csi.k8s.io".into()
        ))
    );
}

/// The node-affinity families of upstream's topology tests, end to end:
/// in-tree → CSI gives the expected CSI affinity, and translating back
/// leaves no CSI key while a Kubernetes zone key is present.
#[test]
fn topology_survives_translation_in_both_directions() {
    struct Case {
        name: &'static str,
        source: fn() -> PersistentVolumeSpec,
        labels: Vec<(&'static str, &'static str)>,
        terms: Vec<Term>,
        csi_key: &'static str,
        want: Vec<Term>,
    }
    fn gce() -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                pd_name: "test-disk".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn ebs() -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                volume_id: "vol-01".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn cinder() -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            cinder: Some(CinderPersistentVolumeSource {
                volume_id: "vol1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    const GCE: &str = "topology.gke.io/zone";
    const EBS: &str = "topology.ebs.csi.aws.com/zone";
    const CINDER: &str = "topology.cinder.csi.openstack.org/zone";
    let beta = vec![(ZONE_BETA, "us-east1-a"), (REGION_BETA, "us-east1")];
    let ga = vec![(ZONE_GA, "us-east1-a"), (REGION_GA, "us-east1")];
    let aws_beta = vec![(ZONE_BETA, "us-east-1a"), (REGION_BETA, "us-east-1")];
    let cases = vec![
        Case {
            name: "GCE beta labels",
            source: gce,
            labels: beta.clone(),
            terms: vec![],
            csi_key: GCE,
            want: vec![vec![(GCE, &["us-east1-a"])]],
        },
        Case {
            name: "GCE GA labels",
            source: gce,
            labels: ga.clone(),
            terms: vec![],
            csi_key: GCE,
            want: vec![vec![(GCE, &["us-east1-a"])]],
        },
        Case {
            name: "GCE beta affinity",
            source: gce,
            labels: vec![],
            terms: vec![vec![(ZONE_BETA, &["us-east1-b"])]],
            csi_key: GCE,
            want: vec![vec![(GCE, &["us-east1-b"])]],
        },
        Case {
            name: "GCE CSI affinity already",
            source: gce,
            labels: vec![],
            terms: vec![vec![(GCE, &["us-east1-b"])]],
            csi_key: GCE,
            want: vec![vec![(GCE, &["us-east1-b"])]],
        },
        Case {
            name: "GCE labels and affinity: affinity wins",
            source: gce,
            labels: beta.clone(),
            terms: vec![vec![(ZONE_BETA, &["us-east1-b"])]],
            csi_key: GCE,
            want: vec![vec![(GCE, &["us-east1-b"])]],
        },
        Case {
            name: "GCE regional label",
            source: gce,
            labels: vec![(ZONE_BETA, "europe-west1-b__europe-west1-c")],
            terms: vec![],
            csi_key: GCE,
            want: vec![vec![(GCE, &["europe-west1-b", "europe-west1-c"])]],
        },
        Case {
            name: "GCE regional affinity",
            source: gce,
            labels: vec![],
            terms: vec![vec![(ZONE_GA, &["europe-west1-b", "europe-west1-c"])]],
            csi_key: GCE,
            want: vec![vec![(GCE, &["europe-west1-b", "europe-west1-c"])]],
        },
        Case {
            name: "GCE regional label and other affinity",
            source: gce,
            labels: vec![(ZONE_GA, "europe-west1-b__europe-west1-c")],
            terms: vec![vec![(ZONE_GA, &["europe-west1-f", "europe-west1-g"])]],
            csi_key: GCE,
            want: vec![vec![(GCE, &["europe-west1-f", "europe-west1-g"])]],
        },
        Case {
            name: "GCE several terms",
            source: gce,
            labels: vec![],
            terms: vec![
                vec![(ZONE_GA, &["europe-west1-f"])],
                vec![(ZONE_GA, &["europe-west1-g"])],
            ],
            csi_key: GCE,
            want: vec![
                vec![(GCE, &["europe-west1-f"])],
                vec![(GCE, &["europe-west1-g"])],
            ],
        },
        Case {
            name: "EBS beta labels",
            source: ebs,
            labels: aws_beta.clone(),
            terms: vec![],
            csi_key: EBS,
            want: vec![vec![(EBS, &["us-east-1a"])]],
        },
        Case {
            name: "EBS GA labels and affinity",
            source: ebs,
            labels: vec![(ZONE_GA, "us-east-1a")],
            terms: vec![vec![(ZONE_GA, &["us-east-2a"])]],
            csi_key: EBS,
            want: vec![vec![(EBS, &["us-east-2a"])]],
        },
        Case {
            name: "Cinder zone label",
            source: cinder,
            labels: vec![(ZONE_BETA, "nova")],
            terms: vec![],
            csi_key: CINDER,
            want: vec![vec![(CINDER, &["nova"])]],
        },
        Case {
            name: "Cinder labels and affinity",
            source: cinder,
            labels: vec![(ZONE_BETA, "nova")],
            terms: vec![vec![(ZONE_BETA, &["az-2"])]],
            csi_key: CINDER,
            want: vec![vec![(CINDER, &["az-2"])]],
        },
    ];
    for case in cases {
        let mut pv = pv_with((case.source)());
        pv.metadata.labels = map(&case.labels);
        pv.spec.as_mut().unwrap().node_affinity = (!case.terms.is_empty())
            .then(|| affinity(&case.terms))
            .flatten();
        let csi = translate_in_tree_pv_to_csi(&pv).unwrap();
        let got = csi.spec.as_ref().unwrap().node_affinity.clone();
        assert_eq!(got, affinity(&case.want), "{}", case.name);

        let back = translate_csi_pv_to_in_tree(&csi).unwrap();
        let back_affinity = back.spec.as_ref().unwrap().node_affinity.as_ref();
        assert!(
            !topology::affinity_has_key(back_affinity, case.csi_key),
            "{}: CSI key left: {back_affinity:?}",
            case.name
        );
        assert!(
            topology::affinity_has_key(back_affinity, ZONE_GA)
                || topology::affinity_has_key(back_affinity, ZONE_BETA),
            "{}: no Kubernetes zone key: {back_affinity:?}",
            case.name
        );
    }
}
