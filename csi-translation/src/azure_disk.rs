//! Azure Disk: `kubernetes.io/azure-disk` ↔ `disk.csi.azure.com` (upstream
//! `plugins/azure_disk.go`).
//!
//! * Handles: the disk URI (`diskURI`) is the CSI handle. Back to in-tree the
//!   disk name is taken from the URI: the part after
//!   `…/subscriptions/…/resourceGroups/…/providers/Microsoft.Compute/disks/`
//!   for managed disks, after `…/vhds/` for blob URIs starting with `http`.
//! * Only managed disks migrate: `kind` `Shared` or `Dedicated` is an error;
//!   the CSI attribute `kind` is always `Managed` and comes back as such.
//! * Attributes: `cachingmode` and `fstype` (matched case-insensitively on the
//!   way back); `fsType` and `readOnly` are also copied directly. Back to
//!   in-tree `fsType` and `readOnly` are always set (possibly empty / false).
//! * Topology: Kubernetes zone keys → `topology.disk.csi.azure.com/zone` on the
//!   way to CSI; nothing is translated back.
//! * StorageClass: `zone`/`zones` → `allowedTopologies`; other parameters,
//!   including `fsType`, are kept (the driver reads them). Zone values that are
//!   plain numbers (`"0"`, `"1"`: the fault domains of regions without
//!   availability zones) become `""`, which is what the driver reports there.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    AzureDiskVolumeSource, CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec,
    Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::topology::{self, ZONE_PARAM, ZONES_PARAM, ZoneParameter};
use super::{Result, TranslationError, describe_pv, missing_source, take_csi};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/azure-disk";
pub(super) const DRIVER_NAME: &str = "disk.csi.azure.com";
pub(super) const TOPOLOGY_KEY: &str = "topology.disk.csi.azure.com/zone";
const SOURCE_FIELD: &str = "azureDisk";
const KIND_ATTRIBUTE: &str = "kind";
const CACHING_MODE_ATTRIBUTE: &str = "cachingmode";
const FS_TYPE_ATTRIBUTE: &str = "fstype";
const MANAGED: &str = "Managed";
const MANAGED_PREFIXES: [&str; 2] = ["/subscriptions/", "/resourceGroups/"];
const MANAGED_MARKER: &str = "/providers/Microsoft.Compute/disks/";
const BLOB_PREFIXES: [&str; 2] = ["http", "://"];
const BLOB_MARKER: &str = "/vhds/";

pub(super) fn storage_class_to_csi(mut sc: StorageClass) -> Result<StorageClass> {
    let mut params = BTreeMap::new();
    let mut zones = ZoneParameter::default();
    for (key, value) in sc.parameters.take().unwrap_or_default() {
        match key.to_lowercase().as_str() {
            ZONE_PARAM | ZONES_PARAM => zones.record(&key, &value)?,
            _ => {
                params.insert(key, value);
            }
        }
    }
    zones.apply(&mut sc, TOPOLOGY_KEY)?;
    for expr in sc
        .allowed_topologies
        .iter_mut()
        .flatten()
        .flat_map(|term| term.match_label_expressions.iter_mut().flatten())
        .filter(|expr| expr.key == TOPOLOGY_KEY)
    {
        for value in &mut expr.values {
            if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                value.clear();
            }
        }
    }
    sc.parameters = Some(params);
    Ok(sc)
}

fn check_kind(kind: Option<&String>) -> Result<()> {
    match kind {
        Some(kind) if !kind.eq_ignore_ascii_case(MANAGED) => {
            Err(TranslationError::UnsupportedAzureDiskKind(kind.clone()))
        }
        _ => Ok(()),
    }
}

/// The CSI source of an in-tree disk. `skip_empty_caching` drops an empty
/// `cachingMode` (in-line volumes) instead of passing it on (PVs).
fn csi_source(
    source: &AzureDiskVolumeSource,
    skip_empty_caching: bool,
) -> Result<CSIPersistentVolumeSource> {
    check_kind(source.kind.as_ref())?;
    let mut attributes = BTreeMap::new();
    if let Some(mode) = &source.caching_mode
        && !(skip_empty_caching && mode.is_empty())
    {
        attributes.insert(CACHING_MODE_ATTRIBUTE.to_owned(), mode.clone());
    }
    if let Some(fs_type) = &source.fs_type {
        attributes.insert(FS_TYPE_ATTRIBUTE.to_owned(), fs_type.clone());
    }
    attributes.insert(KIND_ATTRIBUTE.to_owned(), MANAGED.to_owned());
    Ok(CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: source.disk_uri.clone(),
        read_only: source.read_only,
        fs_type: source.fs_type.clone(),
        volume_attributes: Some(attributes),
        ..Default::default()
    })
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.azure_disk.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let csi = csi_source(&source, false)?;
    topology::in_tree_to_csi(&mut pv, TOPOLOGY_KEY);
    pv.spec.get_or_insert_default().csi = Some(csi);
    Ok(pv)
}

pub(super) fn pv_to_in_tree(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let csi = take_csi(&mut pv)?;
    let disk_name = disk_name_from_uri(&csi.volume_handle)?;
    let mut source = AzureDiskVolumeSource {
        disk_name,
        disk_uri: csi.volume_handle,
        fs_type: Some(csi.fs_type.unwrap_or_default()),
        read_only: Some(csi.read_only.unwrap_or(false)),
        kind: Some(MANAGED.to_owned()),
        caching_mode: None,
    };
    for (key, value) in csi.volume_attributes.into_iter().flatten() {
        if value.is_empty() {
            continue;
        }
        match key.to_lowercase().as_str() {
            CACHING_MODE_ATTRIBUTE => source.caching_mode = Some(value),
            FS_TYPE_ATTRIBUTE => source.fs_type = Some(value),
            _ => {}
        }
    }
    pv.spec.get_or_insert_default().azure_disk = Some(source);
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume) -> Result<PersistentVolume> {
    let source = volume
        .azure_disk
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    let csi = csi_source(source, true)?;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            // Unique per disk; the name of a disk alone is not.
            name: Some(source.disk_uri.clone()),
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

/// Whether `uri` names a managed disk: anything not starting with `http`
/// (any case).
pub(super) fn is_managed_disk(uri: &str) -> bool {
    !(uri.len() > 4 && uri.as_bytes()[..4].eq_ignore_ascii_case(b"http"))
}

/// The text after the last `marker` in `s` that is preceded by all of
/// `prefixes` in order and followed by at least one character.
fn name_after(s: &str, prefixes: &[&str], marker: &str) -> Option<String> {
    let mut from = 0;
    for prefix in prefixes {
        from += s[from..].find(prefix)? + prefix.len();
    }
    let mut end = s.len();
    while let Some(at) = s[from..end].rfind(marker) {
        let start = from + at;
        let name = &s[start + marker.len()..];
        if !name.is_empty() {
            return Some(name.to_owned());
        }
        end = start;
    }
    None
}

/// The disk name in a managed-disk resource ID or an unmanaged blob URI.
pub(super) fn disk_name_from_uri(uri: &str) -> Result<String> {
    let (found, expected) = if is_managed_disk(uri) {
        (
            name_after(uri, &MANAGED_PREFIXES, MANAGED_MARKER),
            "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/disks/<name>",
        )
    } else {
        (
            name_after(uri, &BLOB_PREFIXES, BLOB_MARKER),
            "http(s)://<account>/vhds/<name>",
        )
    };
    found.ok_or_else(|| TranslationError::InvalidVolumeHandle {
        driver: DRIVER_NAME,
        handle: uri.to_owned(),
        reason: format!("no disk name, expected {expected}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::topology::{ZONE_BETA, ZONE_GA};

    const URI: &str =
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/disks/disk-1";

    #[test]
    fn managed_or_not_by_prefix() {
        let cases = [
            (
                "testurl/subscriptions/12/resourceGroups/23/providers/Microsoft.Compute/disks/name",
                true,
            ),
            ("test.com", true),
            ("http", true),
            ("HTTP://test.com", false),
            ("http://test.com/vhds/name", false),
            ("https://x.blob.core.windows.net/vhds/name.vhd", false),
        ];
        for (uri, managed) in cases {
            assert_eq!(is_managed_disk(uri), managed, "{uri}");
        }
    }

    #[test]
    fn disk_names_from_uris() {
        let cases: [(&str, Option<&str>); 10] = [
            (
                "testurl/subscriptions/12/resourceGroups/23/providers/Microsoft.Compute/disks/name",
                Some("name"),
            ),
            (URI, Some("disk-1")),
            (
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Compute/disks/x",
                None,
            ),
            (
                "testurl/subscriptions/23/providers/Microsoft.Compute/disks/name",
                None,
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/",
                None,
            ),
            // The last marker with something after it wins.
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/a/providers/Microsoft.Compute/disks/b",
                Some("b"),
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/a/providers/Microsoft.Compute/disks/",
                Some("a/providers/Microsoft.Compute/disks/"),
            ),
            ("http://test.com/vhds/name", Some("name")),
            (
                "https://acct.blob.core.windows.net/vhds/disk.vhd",
                Some("disk.vhd"),
            ),
            ("http://test.io/name", None),
        ];
        for (uri, want) in cases {
            match want {
                Some(want) => assert_eq!(disk_name_from_uri(uri).unwrap(), want, "{uri}"),
                None => assert!(
                    matches!(
                        disk_name_from_uri(uri),
                        Err(TranslationError::InvalidVolumeHandle { .. })
                    ),
                    "{uri}"
                ),
            }
        }
        // "HTTP" counts as unmanaged but the blob pattern wants lower-case http.
        assert!(disk_name_from_uri("HTTP://test.com/vhds/name").is_err());
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
                name: "nothing special, fsType kept",
                params: vec![
                    ("foo", "bar"),
                    ("fsType", "xfs"),
                    ("skuName", "Premium_LRS"),
                ],
                allowed: None,
                want_params: vec![
                    ("foo", "bar"),
                    ("fsType", "xfs"),
                    ("skuName", "Premium_LRS"),
                ],
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
                name: "zone",
                params: vec![("zone", "eastus-1")],
                allowed: None,
                want_params: vec![],
                want_allowed: Some(vec![vec![(TOPOLOGY_KEY, &["eastus-1"])]]),
            },
            Case {
                name: "zones",
                params: vec![("zones", "eastus-1,eastus-2")],
                allowed: None,
                want_params: vec![],
                want_allowed: Some(vec![vec![(TOPOLOGY_KEY, &["eastus-1", "eastus-2"])]]),
            },
            Case {
                name: "CSI topology kept",
                params: vec![],
                allowed: Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]),
                want_params: vec![],
                want_allowed: Some(vec![vec![(TOPOLOGY_KEY, &["foo"])]]),
            },
            Case {
                name: "GA and beta keys translated",
                params: vec![],
                allowed: Some(vec![vec![(ZONE_GA, &["foo"])], vec![(ZONE_BETA, &["bar"])]]),
                want_params: vec![],
                want_allowed: Some(vec![
                    vec![(TOPOLOGY_KEY, &["foo"])],
                    vec![(TOPOLOGY_KEY, &["bar"])],
                ]),
            },
            Case {
                name: "fault domains of unzoned regions become empty zones",
                params: vec![],
                allowed: Some(vec![
                    vec![(ZONE_GA, &["0", "1", "westus-1", "x2"])],
                    vec![("other", &["0"])],
                ]),
                want_params: vec![],
                want_allowed: Some(vec![
                    vec![(TOPOLOGY_KEY, &["", "", "westus-1", "x2"])],
                    vec![("other", &["0"])],
                ]),
            },
            Case {
                name: "numeric zone parameter too",
                params: vec![("zone", "0")],
                allowed: None,
                want_params: vec![],
                want_allowed: Some(vec![vec![(TOPOLOGY_KEY, &[""])]]),
            },
        ];
        for case in cases {
            let got =
                storage_class_to_csi(storage_class(&case.params, case.allowed.as_deref())).unwrap();
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
        assert!(storage_class_to_csi(both).is_err());
    }

    fn disk(kind: Option<&str>) -> AzureDiskVolumeSource {
        AzureDiskVolumeSource {
            disk_name: "disk-1".into(),
            disk_uri: URI.into(),
            caching_mode: some("ReadOnly"),
            fs_type: some("ext4"),
            kind: kind.map(str::to_owned),
            read_only: Some(true),
        }
    }

    #[test]
    fn pv_to_csi_attributes_topology_and_kinds() {
        for kind in [None, Some("Managed"), Some("managed")] {
            let mut pv = pv_with_affinity(&[vec![(ZONE_GA, &["eastus-1"])]]);
            pv.spec.as_mut().unwrap().azure_disk = Some(disk(kind));
            let spec = pv_to_csi(pv).unwrap().spec.unwrap();
            assert_eq!(spec.azure_disk, None);
            assert_eq!(
                spec.node_affinity,
                affinity(&[vec![(TOPOLOGY_KEY, &["eastus-1"])]])
            );
            let csi = spec.csi.unwrap();
            assert_eq!(csi.volume_handle, URI);
            assert_eq!(csi.fs_type.as_deref(), Some("ext4"));
            assert_eq!(csi.read_only, Some(true));
            assert_eq!(
                csi.volume_attributes,
                Some(strings(&[
                    ("cachingmode", "ReadOnly"),
                    ("fstype", "ext4"),
                    ("kind", "Managed")
                ])),
                "{kind:?}"
            );
        }
        for kind in ["Shared", "Dedicated", "shared"] {
            let mut pv = pv_with_affinity(&[]);
            pv.spec.as_mut().unwrap().azure_disk = Some(disk(Some(kind)));
            assert_eq!(
                pv_to_csi(pv),
                Err(TranslationError::UnsupportedAzureDiskKind(kind.into()))
            );
        }
    }

    fn csi_pv(
        handle: &str,
        fs_type: Option<&str>,
        attributes: &[(&str, &str)],
    ) -> PersistentVolume {
        let mut pv = pv_with_affinity(&[]);
        pv.spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
            driver: DRIVER_NAME.into(),
            volume_handle: handle.into(),
            fs_type: fs_type.map(str::to_owned),
            volume_attributes: map(attributes),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn pv_to_in_tree_reads_attributes_in_any_case() {
        struct Case {
            name: &'static str,
            fs_type: Option<&'static str>,
            attributes: Vec<(&'static str, &'static str)>,
            want_caching: Option<&'static str>,
            want_fs_type: &'static str,
        }
        let cases = [
            Case {
                name: "no attributes",
                fs_type: None,
                attributes: vec![],
                want_caching: None,
                want_fs_type: "",
            },
            Case {
                name: "fsType field only",
                fs_type: Some("ext4"),
                attributes: vec![],
                want_caching: None,
                want_fs_type: "ext4",
            },
            Case {
                name: "lower-case keys",
                fs_type: Some("ext4"),
                attributes: vec![("cachingmode", "None"), ("fstype", "xfs")],
                want_caching: Some("None"),
                want_fs_type: "xfs",
            },
            Case {
                name: "camelCase keys",
                fs_type: None,
                attributes: vec![
                    ("cachingMode", "ReadOnly"),
                    ("fsType", "btrfs"),
                    ("kind", "managed"),
                ],
                want_caching: Some("ReadOnly"),
                want_fs_type: "btrfs",
            },
            Case {
                name: "empty values ignored",
                fs_type: Some("ext4"),
                attributes: vec![("cachingMode", ""), ("fsType", "")],
                want_caching: None,
                want_fs_type: "ext4",
            },
        ];
        for case in cases {
            let spec = pv_to_in_tree(csi_pv(URI, case.fs_type, &case.attributes))
                .unwrap()
                .spec
                .unwrap();
            assert_eq!(spec.csi, None);
            let source = spec.azure_disk.unwrap();
            assert_eq!(source.disk_name, "disk-1", "{}", case.name);
            assert_eq!(source.disk_uri, URI);
            assert_eq!(source.kind.as_deref(), Some("Managed"), "{}", case.name);
            assert_eq!(source.read_only, Some(false), "{}", case.name);
            assert_eq!(
                source.caching_mode.as_deref(),
                case.want_caching,
                "{}",
                case.name
            );
            assert_eq!(
                source.fs_type.as_deref(),
                Some(case.want_fs_type),
                "{}",
                case.name
            );
        }
        assert!(matches!(
            pv_to_in_tree(csi_pv("not-a-disk-uri", None, &[])),
            Err(TranslationError::InvalidVolumeHandle { .. })
        ));
    }

    #[test]
    fn inline_volumes() {
        let volume = |source: AzureDiskVolumeSource| Volume {
            name: "data".into(),
            azure_disk: Some(source),
            ..Default::default()
        };
        let plain = AzureDiskVolumeSource {
            disk_name: "diskname".into(),
            disk_uri: "datadiskuri".into(),
            ..Default::default()
        };
        let pv = inline_to_csi(&volume(plain.clone())).unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("datadiskuri"));
        let spec = pv.spec.unwrap();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        let csi = spec.csi.unwrap();
        assert_eq!(csi.volume_handle, "datadiskuri");
        assert_eq!(csi.volume_attributes, Some(strings(&[("kind", "Managed")])));

        let empty_caching = AzureDiskVolumeSource {
            caching_mode: some(""),
            fs_type: some("ext4"),
            read_only: Some(true),
            ..plain.clone()
        };
        let csi = inline_to_csi(&volume(empty_caching))
            .unwrap()
            .spec
            .unwrap()
            .csi
            .unwrap();
        assert_eq!(
            csi.volume_attributes,
            Some(strings(&[("fstype", "ext4"), ("kind", "Managed")]))
        );
        assert_eq!(csi.read_only, Some(true));

        let shared = AzureDiskVolumeSource {
            kind: some("Shared"),
            ..plain
        };
        assert!(matches!(
            inline_to_csi(&volume(shared)),
            Err(TranslationError::UnsupportedAzureDiskKind(_))
        ));
    }

    #[test]
    fn fully_specified_managed_disk_round_trips() {
        let mut pv = pv_with_affinity(&[]);
        pv.spec.as_mut().unwrap().azure_disk = Some(disk(Some("Managed")));
        let back = pv_to_in_tree(pv_to_csi(pv.clone()).unwrap()).unwrap();
        assert_eq!(back, pv);
    }
}
