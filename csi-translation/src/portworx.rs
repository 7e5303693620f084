//! Portworx: `kubernetes.io/portworx-volume` ↔ `pxd.portworx.com` (upstream
//! `plugins/portworx.go`).
//!
//! * Handles: the Portworx volume ID is the handle, both ways.
//! * `fsType` is copied both ways; `readOnly` only from CSI to in-tree (as
//!   upstream: the in-tree flag is not carried into `spec.csi`). Attributes are
//!   empty.
//! * Secrets (clusters with PX-Security): an in-tree PV annotated with both
//!   `openstorage.io/auth-secret-name` and `openstorage.io/auth-secret-namespace`
//!   gets that secret as controller-publish, node-stage, node-publish,
//!   controller-expand and node-expand secret reference.
//! * StorageClass: the same two parameters become the six
//!   `csi.storage.k8s.io/*-secret-name` / `*-secret-namespace` parameters
//!   (provisioner, controller-publish, node-stage, node-publish,
//!   controller-expand, node-expand); everything else, including the `fs`
//!   parameter, is kept. Unlike the other plugins, the class's `provisioner`
//!   becomes the CSI driver name.
//! * No topology.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec, PortworxVolumeSource,
    SecretReference, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Result, describe_pv, missing_source, take_csi};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/portworx-volume";
pub(super) const DRIVER_NAME: &str = "pxd.portworx.com";
const SOURCE_FIELD: &str = "portworxVolume";
/// StorageClass parameter and PV annotation naming the PX-Security secret.
pub(super) const AUTH_SECRET_NAME: &str = "openstorage.io/auth-secret-name";
/// StorageClass parameter and PV annotation with the secret's namespace.
pub(super) const AUTH_SECRET_NAMESPACE: &str = "openstorage.io/auth-secret-namespace";
/// The CSI operations that receive the secret, as in the
/// `csi.storage.k8s.io/<operation>-secret-{name,namespace}` parameters.
const SECRET_OPERATIONS: [&str; 6] = [
    "provisioner",
    "controller-publish",
    "node-stage",
    "node-publish",
    "controller-expand",
    "node-expand",
];

pub(super) fn storage_class_to_csi(mut sc: StorageClass) -> StorageClass {
    let mut params = BTreeMap::new();
    for (key, value) in sc.parameters.iter().flatten() {
        let suffix = match key.as_str() {
            AUTH_SECRET_NAME => "name",
            AUTH_SECRET_NAMESPACE => "namespace",
            _ => {
                params.insert(key.clone(), value.clone());
                continue;
            }
        };
        for operation in SECRET_OPERATIONS {
            params.insert(
                format!("csi.storage.k8s.io/{operation}-secret-{suffix}"),
                value.clone(),
            );
        }
    }
    if !params.is_empty() {
        sc.parameters = Some(params);
    }
    DRIVER_NAME.clone_into(&mut sc.provisioner);
    sc
}

fn csi_source(source: &PortworxVolumeSource) -> CSIPersistentVolumeSource {
    CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: source.volume_id.clone(),
        fs_type: source.fs_type.clone(),
        volume_attributes: Some(BTreeMap::new()),
        ..Default::default()
    }
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.portworx_volume.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let annotations = pv.metadata.annotations.as_ref();
    let secret = annotations.and_then(|a| {
        Some(SecretReference {
            name: Some(a.get(AUTH_SECRET_NAME)?.clone()),
            namespace: Some(a.get(AUTH_SECRET_NAMESPACE)?.clone()),
        })
    });
    let csi = CSIPersistentVolumeSource {
        controller_publish_secret_ref: secret.clone(),
        node_stage_secret_ref: secret.clone(),
        node_publish_secret_ref: secret.clone(),
        controller_expand_secret_ref: secret.clone(),
        node_expand_secret_ref: secret,
        ..csi_source(&source)
    };
    pv.spec.get_or_insert_default().csi = Some(csi);
    Ok(pv)
}

pub(super) fn pv_to_in_tree(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let csi = take_csi(&mut pv)?;
    pv.spec.get_or_insert_default().portworx_volume = Some(PortworxVolumeSource {
        volume_id: csi.volume_handle,
        fs_type: csi.fs_type,
        read_only: csi.read_only,
    });
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume) -> Result<PersistentVolume> {
    let source = volume
        .portworx_volume
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    let access_mode = if source.read_only == Some(true) {
        "ReadOnlyMany"
    } else {
        "ReadWriteOnce"
    };
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{DRIVER_NAME}-{}", source.volume_id)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(csi_source(source)),
            access_modes: Some(vec![access_mode.to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    #[test]
    fn storage_class_secrets_and_provisioner() {
        let secret_params = |name: &str, namespace: &str| {
            let mut want = Vec::new();
            for op in SECRET_OPERATIONS {
                want.push((
                    format!("csi.storage.k8s.io/{op}-secret-name"),
                    name.to_owned(),
                ));
                want.push((
                    format!("csi.storage.k8s.io/{op}-secret-namespace"),
                    namespace.to_owned(),
                ));
            }
            want
        };
        let plain = [
            ("repl", "1"),
            ("fs", "ext4"),
            ("shared", "true"),
            ("priority_io", "high"),
        ];
        type Owned = Vec<(String, String)>;
        let cases: Vec<(&str, Option<Pairs>, Option<Owned>)> = vec![
            (
                "parameters kept",
                Some(plain.to_vec()),
                Some(
                    plain
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            ),
            ("no parameters", None, None),
            ("empty parameters stay empty", Some(vec![]), Some(vec![])),
            (
                "auth secret expanded for every operation",
                Some(vec![
                    ("repl", "2"),
                    (AUTH_SECRET_NAME, "px-user-token"),
                    (AUTH_SECRET_NAMESPACE, "portworx"),
                ]),
                Some({
                    let mut want = secret_params("px-user-token", "portworx");
                    want.push(("repl".into(), "2".into()));
                    want
                }),
            ),
        ];
        for (name, params, want) in cases {
            let sc = StorageClass {
                provisioner: IN_TREE_NAME.into(),
                parameters: params.as_deref().map(strings),
                ..Default::default()
            };
            let got = storage_class_to_csi(sc);
            assert_eq!(got.provisioner, DRIVER_NAME, "{name}");
            assert_eq!(
                got.parameters,
                want.map(|w| w.into_iter().collect::<BTreeMap<_, _>>()),
                "{name}"
            );
        }
        // The secret keys are matched exactly, as upstream does.
        let other_case = storage_class_to_csi(StorageClass {
            parameters: Some(strings(&[("OpenStorage.io/Auth-Secret-Name", "x")])),
            ..Default::default()
        });
        assert_eq!(
            other_case.parameters,
            Some(strings(&[("OpenStorage.io/Auth-Secret-Name", "x")]))
        );
    }

    fn px_pv(annotations: &[(&str, &str)], read_only: Option<bool>) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: some("pxd.portworx.com"),
                annotations: map(annotations),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                claim_ref: Some(ObjectReference {
                    name: some("test-pvc"),
                    namespace: some("default"),
                    ..Default::default()
                }),
                portworx_volume: Some(PortworxVolumeSource {
                    volume_id: "ID1111".into(),
                    fs_type: some("type"),
                    read_only,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pv_to_csi_with_and_without_secret_annotations() {
        let secret = Some(SecretReference {
            name: some("px-token"),
            namespace: some("px-ns"),
        });
        let cases = [
            ("no annotations", vec![], None),
            ("only the name", vec![(AUTH_SECRET_NAME, "px-token")], None),
            (
                "only the namespace",
                vec![(AUTH_SECRET_NAMESPACE, "px-ns")],
                None,
            ),
            (
                "both",
                vec![
                    (AUTH_SECRET_NAME, "px-token"),
                    (AUTH_SECRET_NAMESPACE, "px-ns"),
                ],
                secret.clone(),
            ),
        ];
        for (name, annotations, want_secret) in cases {
            let got = pv_to_csi(px_pv(&annotations, Some(true))).unwrap();
            let spec = got.spec.unwrap();
            assert_eq!(spec.portworx_volume, None, "{name}");
            assert_eq!(spec.claim_ref.unwrap().name.as_deref(), Some("test-pvc"));
            assert_eq!(
                spec.csi,
                Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: "ID1111".into(),
                    fs_type: some("type"),
                    volume_attributes: Some(BTreeMap::new()),
                    controller_publish_secret_ref: want_secret.clone(),
                    node_stage_secret_ref: want_secret.clone(),
                    node_publish_secret_ref: want_secret.clone(),
                    controller_expand_secret_ref: want_secret.clone(),
                    node_expand_secret_ref: want_secret,
                    // readOnly is not carried over, as upstream.
                    read_only: None,
                }),
                "{name}"
            );
        }
    }

    #[test]
    fn pv_to_in_tree_and_round_trip() {
        let mut csi = px_pv(&[], None);
        let spec = csi.spec.as_mut().unwrap();
        spec.portworx_volume = None;
        spec.csi = Some(CSIPersistentVolumeSource {
            driver: DRIVER_NAME.into(),
            volume_handle: "ID1111".into(),
            fs_type: some("type"),
            read_only: Some(true),
            volume_attributes: Some(BTreeMap::new()),
            ..Default::default()
        });
        assert_eq!(pv_to_in_tree(csi).unwrap(), px_pv(&[], Some(true)));

        let pv = px_pv(&[], None);
        assert_eq!(pv_to_in_tree(pv_to_csi(pv.clone()).unwrap()).unwrap(), pv);
    }

    #[test]
    fn inline_volume_access_mode_follows_read_only() {
        for (read_only, want) in [
            (Some(true), "ReadOnlyMany"),
            (Some(false), "ReadWriteOnce"),
            (None, "ReadWriteOnce"),
        ] {
            let volume = Volume {
                name: "PortworxVol".into(),
                portworx_volume: Some(PortworxVolumeSource {
                    volume_id: "ID".into(),
                    fs_type: some("type"),
                    read_only,
                }),
                ..Default::default()
            };
            let pv = inline_to_csi(&volume).unwrap();
            assert_eq!(pv.metadata.name.as_deref(), Some("pxd.portworx.com-ID"));
            let spec = pv.spec.unwrap();
            assert_eq!(spec.access_modes, Some(vec![want.to_owned()]));
            assert_eq!(
                spec.csi,
                Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: "ID".into(),
                    fs_type: some("type"),
                    volume_attributes: Some(BTreeMap::new()),
                    ..Default::default()
                })
            );
        }
        assert!(inline_to_csi(&Volume::default()).is_err());
    }
}
