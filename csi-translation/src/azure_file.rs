//! Azure File: `kubernetes.io/azure-file` ↔ `file.csi.azure.com` (upstream
//! `plugins/azure_file.go`).
//!
//! * Handles: `<resourceGroup>#<account>#<share>#<pvName>#<secretNamespace>`.
//!   The resource group comes from the PV annotation
//!   `kubernetes.io/azure-file-resource-group` (empty without it), the storage
//!   account from the secret name `azure-storage-account-<account>-secret` (the
//!   whole secret name when it does not have that form). PV name and namespace
//!   make handles of PVs sharing one file share unique, which the driver needs
//!   to stage them separately. In-line volumes use the pod volume's name.
//! * The secret becomes `nodeStageSecretRef`; its namespace is the source's
//!   `secretNamespace`, else the claim's namespace (an error when neither
//!   exists); for in-line volumes the pod's namespace, else `default`.
//! * The share name travels as the attribute `sharename`; `readOnly` is copied.
//! * Back to in-tree: share, secret name and namespace come from the
//!   attributes `shareName`/`secretName`/`secretNamespace` (any case), the
//!   secret reference overriding them; missing share or secret name are taken
//!   from the handle (`azure-storage-account-<account>-secret`) together with
//!   the resource group, which is put back in the annotation. The namespace
//!   defaults to `default`.
//! * StorageClass parameters are passed on unchanged; no topology.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    AzureFilePersistentVolumeSource, CSIPersistentVolumeSource, PersistentVolume,
    PersistentVolumeSpec, SecretReference, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Result, TranslationError, describe_pv, missing_source, pv_name, take_csi};

pub(super) const IN_TREE_NAME: &str = "kubernetes.io/azure-file";
pub(super) const DRIVER_NAME: &str = "file.csi.azure.com";
const SOURCE_FIELD: &str = "azureFile";
const SEPARATOR: char = '#';
const SHARE_NAME_ATTRIBUTE: &str = "sharename";
const SECRET_NAME_ATTRIBUTE: &str = "secretname";
const SECRET_NAMESPACE_ATTRIBUTE: &str = "secretnamespace";
const SECRET_PREFIX: &str = "azure-storage-account-";
const SECRET_SUFFIX: &str = "-secret";
const DEFAULT_SECRET_NAMESPACE: &str = "default";
/// PV annotation with the resource group of the storage account.
pub(super) const RESOURCE_GROUP_ANNOTATION: &str = "kubernetes.io/azure-file-resource-group";

/// The storage account in a secret name of the form
/// `…azure-storage-account-<account>-secret…`.
pub(super) fn storage_account(secret_name: &str) -> Option<&str> {
    let start = secret_name.find(SECRET_PREFIX)? + SECRET_PREFIX.len();
    let end = secret_name.rfind(SECRET_SUFFIX)?;
    (end > start).then(|| &secret_name[start..end])
}

/// Resource group, storage account and share of a handle
/// `<rg>#<account>#<share>[#…]`.
pub(super) fn file_share_info(handle: &str) -> Result<(&str, &str, &str)> {
    let mut parts = handle.split(SEPARATOR);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(rg), Some(account), Some(share)) => Ok((rg, account, share)),
        _ => Err(TranslationError::InvalidVolumeHandle {
            driver: DRIVER_NAME,
            handle: handle.to_owned(),
            reason:
                "expected at least three '#'-separated parts: <resource group>#<account>#<share>"
                    .to_owned(),
        }),
    }
}

fn handle(rg: &str, account: &str, share: &str, name: &str, namespace: &str) -> String {
    [rg, account, share, name, namespace].join("#")
}

fn csi_source(
    handle: String,
    share: &str,
    secret_name: &str,
    namespace: &str,
    read_only: Option<bool>,
) -> CSIPersistentVolumeSource {
    CSIPersistentVolumeSource {
        driver: DRIVER_NAME.to_owned(),
        volume_handle: handle,
        read_only,
        volume_attributes: Some(BTreeMap::from([(
            SHARE_NAME_ATTRIBUTE.to_owned(),
            share.to_owned(),
        )])),
        node_stage_secret_ref: Some(SecretReference {
            name: Some(secret_name.to_owned()),
            namespace: Some(namespace.to_owned()),
        }),
        ..Default::default()
    }
}

pub(super) fn pv_to_csi(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let source = pv
        .spec
        .as_mut()
        .and_then(|spec| spec.azure_file.take())
        .ok_or_else(|| missing_source(SOURCE_FIELD, describe_pv(&pv)))?;
    let account = storage_account(&source.secret_name).unwrap_or(&source.secret_name);
    let rg = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESOURCE_GROUP_ANNOTATION))
        .map(String::as_str)
        .unwrap_or_default();
    let namespace = match &source.secret_namespace {
        Some(namespace) => namespace.as_str(),
        None => pv
            .spec
            .as_ref()
            .and_then(|spec| spec.claim_ref.as_ref())
            .and_then(|claim| claim.namespace.as_deref())
            .unwrap_or_default(),
    };
    if namespace.is_empty() {
        return Err(TranslationError::MissingSecretNamespace(
            pv_name(&pv).to_owned(),
        ));
    }
    let csi = csi_source(
        handle(rg, account, &source.share_name, pv_name(&pv), namespace),
        &source.share_name,
        &source.secret_name,
        namespace,
        source.read_only,
    );
    pv.spec.get_or_insert_default().csi = Some(csi);
    Ok(pv)
}

pub(super) fn pv_to_in_tree(mut pv: PersistentVolume) -> Result<PersistentVolume> {
    let csi = take_csi(&mut pv)?;
    let mut source = AzureFilePersistentVolumeSource {
        read_only: csi.read_only,
        ..Default::default()
    };
    for (key, value) in csi.volume_attributes.iter().flatten() {
        match key.to_lowercase().as_str() {
            SHARE_NAME_ATTRIBUTE => source.share_name.clone_from(value),
            SECRET_NAME_ATTRIBUTE => source.secret_name.clone_from(value),
            SECRET_NAMESPACE_ATTRIBUTE => source.secret_namespace = Some(value.clone()),
            _ => {}
        }
    }
    if let Some(secret) = &csi.node_stage_secret_ref
        && let Some(name) = secret.name.as_deref().filter(|n| !n.is_empty())
    {
        name.clone_into(&mut source.secret_name);
        source.secret_namespace = Some(secret.namespace.clone().unwrap_or_default());
    }
    let mut resource_group = "";
    if source.share_name.is_empty() || source.secret_name.is_empty() {
        let (rg, account, share) = file_share_info(&csi.volume_handle)?;
        if source.share_name.is_empty() {
            share.clone_into(&mut source.share_name);
        }
        if source.secret_name.is_empty() {
            source.secret_name = format!("{SECRET_PREFIX}{account}{SECRET_SUFFIX}");
        }
        resource_group = rg;
    }
    source
        .secret_namespace
        .get_or_insert_with(|| DEFAULT_SECRET_NAMESPACE.to_owned());
    let annotations = pv.metadata.annotations.get_or_insert_default();
    if !resource_group.is_empty() {
        annotations.insert(
            RESOURCE_GROUP_ANNOTATION.to_owned(),
            resource_group.to_owned(),
        );
    }
    pv.spec.get_or_insert_default().azure_file = Some(source);
    Ok(pv)
}

pub(super) fn inline_to_csi(volume: &Volume, pod_namespace: &str) -> Result<PersistentVolume> {
    let source = volume
        .azure_file
        .as_ref()
        .ok_or_else(|| missing_source(SOURCE_FIELD, format!("volume {:?}", volume.name)))?;
    let account = storage_account(&source.secret_name).unwrap_or(&source.secret_name);
    let namespace = if pod_namespace.is_empty() {
        DEFAULT_SECRET_NAMESPACE
    } else {
        pod_namespace
    };
    let handle = handle("", account, &source.share_name, &volume.name, namespace);
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(handle.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(csi_source(
                handle,
                &source.share_name,
                &source.secret_name,
                namespace,
                source.read_only,
            )),
            access_modes: Some(vec!["ReadWriteMany".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{AzureFileVolumeSource, ObjectReference};

    #[test]
    fn handles_split_into_group_account_and_share() {
        type Parts = (&'static str, &'static str, &'static str);
        let cases: [(&str, Option<Parts>); 6] = [
            (
                "rg#f5713de20cde511e8ba4900#pvc-file-dynamic-17e43f84#diskname.vhd",
                Some(("rg", "f5713de20cde511e8ba4900", "pvc-file-dynamic-17e43f84")),
            ),
            ("rg#acct#share", Some(("rg", "acct", "share"))),
            ("#acct#share#pv#ns", Some(("", "acct", "share"))),
            ("rg#acct", None),
            ("rg", None),
            ("", None),
        ];
        for (input, want) in cases {
            match want {
                Some(want) => assert_eq!(file_share_info(input).unwrap(), want, "{input}"),
                None => assert!(
                    matches!(
                        file_share_info(input),
                        Err(TranslationError::InvalidVolumeHandle { .. })
                    ),
                    "{input}"
                ),
            }
        }
    }

    #[test]
    fn storage_accounts_from_secret_names() {
        let cases = [
            ("azure-storage-account-acct-secret", Some("acct")),
            ("azure-storage-account-a-b-secret", Some("a-b")),
            ("azure-storage-account-a-secret-secret", Some("a-secret")),
            ("x-azure-storage-account-acct-secret-y", Some("acct")),
            ("azure-storage-account--secret", None),
            ("azure-storage-account-secret", None),
            ("secretname", None),
            ("", None),
        ];
        for (secret, want) in cases {
            assert_eq!(storage_account(secret), want, "{secret}");
        }
    }

    fn inline(secret: &str, share: &str) -> Volume {
        Volume {
            name: "vol".into(),
            azure_file: Some(AzureFileVolumeSource {
                read_only: Some(true),
                secret_name: secret.into(),
                share_name: share.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn inline_volumes_use_the_pod_namespace() {
        let cases = [
            (
                "secretname",
                "",
                "#secretname#sharename#vol#default",
                "default",
            ),
            (
                "secretname",
                "test",
                "#secretname#sharename#vol#test",
                "test",
            ),
            (
                "azure-storage-account-acct-secret",
                "ns",
                "#acct#sharename#vol#ns",
                "ns",
            ),
        ];
        for (secret, pod_namespace, want_handle, want_namespace) in cases {
            let pv = inline_to_csi(&inline(secret, "sharename"), pod_namespace).unwrap();
            assert_eq!(pv.metadata.name.as_deref(), Some(want_handle));
            let spec = pv.spec.unwrap();
            assert_eq!(spec.access_modes, Some(vec!["ReadWriteMany".to_owned()]));
            assert_eq!(
                spec.csi,
                Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: want_handle.into(),
                    read_only: Some(true),
                    volume_attributes: Some(strings(&[("sharename", "sharename")])),
                    node_stage_secret_ref: Some(SecretReference {
                        name: some(secret),
                        namespace: some(want_namespace),
                    }),
                    ..Default::default()
                }),
                "{secret} in {pod_namespace:?}"
            );
        }
        assert!(matches!(
            inline_to_csi(&Volume::default(), "ns"),
            Err(TranslationError::MissingSource { .. })
        ));
    }

    fn file_pv(
        secret_namespace: Option<&str>,
        claim_namespace: Option<&str>,
        annotations: &[(&str, &str)],
    ) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: some("pv-file"),
                annotations: map(annotations),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                azure_file: Some(AzureFilePersistentVolumeSource {
                    share_name: "sharename".into(),
                    secret_name: "secretname".into(),
                    secret_namespace: secret_namespace.map(str::to_owned),
                    read_only: Some(true),
                }),
                claim_ref: claim_namespace.map(|ns| ObjectReference {
                    name: some("claim"),
                    namespace: some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pv_to_csi_handles_and_secret_namespaces() {
        type Want = Option<(&'static str, &'static str)>;
        type Ns = Option<&'static str>;
        let cases: [(&str, Ns, Ns, PairSlice, Want); 5] = [
            (
                "secret namespace",
                Some("secretns"),
                Some("claimns"),
                &[],
                Some(("#secretname#sharename#pv-file#secretns", "secretns")),
            ),
            (
                "claim namespace as fallback",
                None,
                Some("claimns"),
                &[],
                Some(("#secretname#sharename#pv-file#claimns", "claimns")),
            ),
            (
                "resource group annotation",
                Some("secretns"),
                None,
                &[(RESOURCE_GROUP_ANNOTATION, "rg")],
                Some(("rg#secretname#sharename#pv-file#secretns", "secretns")),
            ),
            ("no namespace anywhere", None, None, &[], None),
            (
                "empty secret namespace does not fall back",
                Some(""),
                Some("claimns"),
                &[],
                None,
            ),
        ];
        for (name, secret_ns, claim_ns, annotations, want) in cases {
            let got = pv_to_csi(file_pv(secret_ns, claim_ns, annotations));
            match want {
                Some((handle, namespace)) => {
                    let got = got.unwrap();
                    // Annotations are left as they were.
                    assert_eq!(got.metadata.annotations, map(annotations), "{name}");
                    let spec = got.spec.unwrap();
                    assert_eq!(spec.azure_file, None, "{name}");
                    assert_eq!(
                        spec.csi,
                        Some(CSIPersistentVolumeSource {
                            driver: DRIVER_NAME.into(),
                            volume_handle: handle.into(),
                            read_only: Some(true),
                            volume_attributes: Some(strings(&[("sharename", "sharename")])),
                            node_stage_secret_ref: Some(SecretReference {
                                name: some("secretname"),
                                namespace: some(namespace),
                            }),
                            ..Default::default()
                        }),
                        "{name}"
                    );
                }
                None => assert_eq!(
                    got,
                    Err(TranslationError::MissingSecretNamespace("pv-file".into())),
                    "{name}"
                ),
            }
        }
    }

    fn csi_pv(
        handle: &str,
        attributes: &[(&str, &str)],
        secret: Option<(&str, &str)>,
    ) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: some("file.csi.azure.com-sharename"),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: handle.into(),
                    read_only: Some(true),
                    volume_attributes: map(attributes),
                    node_stage_secret_ref: secret.map(|(name, namespace)| SecretReference {
                        name: some(name),
                        namespace: some(namespace),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pv_to_in_tree_families() {
        struct Case {
            name: &'static str,
            pv: PersistentVolume,
            want: Option<(
                AzureFilePersistentVolumeSource,
                Vec<(&'static str, &'static str)>,
            )>,
        }
        let source = |secret: &str, share: &str, namespace: &str| AzureFilePersistentVolumeSource {
            secret_name: secret.into(),
            share_name: share.into(),
            secret_namespace: some(namespace),
            read_only: Some(true),
        };
        let cases = [
            Case {
                name: "secret ref and share attribute: handle not needed",
                pv: csi_pv("", &[("shareName", "sharename")], Some(("ut", "secretns"))),
                want: Some((source("ut", "sharename", "secretns"), vec![])),
            },
            Case {
                name: "share attribute only and a handle without enough parts",
                pv: csi_pv("sharename", &[("shareName", "sharename")], None),
                want: None,
            },
            Case {
                name: "secret name and group from the handle",
                pv: csi_pv(
                    "rg#st#pvc-file-dynamic#diskname.vhd",
                    &[("shareName", "sharename")],
                    None,
                ),
                want: Some((
                    source("azure-storage-account-st-secret", "sharename", "default"),
                    vec![(RESOURCE_GROUP_ANNOTATION, "rg")],
                )),
            },
            Case {
                name: "everything from attributes",
                pv: csi_pv(
                    "rg#st#pvc-file-dynamic#diskname.vhd",
                    &[
                        ("shareName", "sharename"),
                        ("secretName", "secretname"),
                        ("SECRETNAMESPACE", "secretns"),
                    ],
                    None,
                ),
                want: Some((source("secretname", "sharename", "secretns"), vec![])),
            },
            Case {
                name: "secret ref overrides secret attributes",
                pv: csi_pv(
                    "rg#st#pvc-file-dynamic",
                    &[
                        ("shareName", "sharename"),
                        ("secretName", "other"),
                        ("secretNamespace", "otherns"),
                    ],
                    Some(("secretname", "secretns")),
                ),
                want: Some((source("secretname", "sharename", "secretns"), vec![])),
            },
            Case {
                name: "secret ref with empty name is ignored",
                pv: csi_pv("rg#st#share-from-handle", &[], Some(("", "secretns"))),
                want: Some((
                    source(
                        "azure-storage-account-st-secret",
                        "share-from-handle",
                        "default",
                    ),
                    vec![(RESOURCE_GROUP_ANNOTATION, "rg")],
                )),
            },
            Case {
                name: "handle only, empty resource group adds no annotation",
                pv: csi_pv("#st#pvc-file-dynamic#pv#ns", &[], None),
                want: Some((
                    source(
                        "azure-storage-account-st-secret",
                        "pvc-file-dynamic",
                        "default",
                    ),
                    vec![],
                )),
            },
        ];
        for case in cases {
            let got = pv_to_in_tree(case.pv);
            match case.want {
                Some((source, annotations)) => {
                    let got = got.unwrap();
                    assert_eq!(
                        got.metadata.annotations,
                        Some(strings(&annotations)),
                        "{}",
                        case.name
                    );
                    let spec = got.spec.unwrap();
                    assert_eq!(spec.csi, None, "{}", case.name);
                    assert_eq!(spec.azure_file, Some(source), "{}", case.name);
                }
                None => assert!(
                    matches!(got, Err(TranslationError::InvalidVolumeHandle { .. })),
                    "{}: {got:?}",
                    case.name
                ),
            }
        }
    }

    #[test]
    fn pv_round_trip_keeps_the_source() {
        let pv = file_pv(Some("secretns"), None, &[(RESOURCE_GROUP_ANNOTATION, "rg")]);
        let back = pv_to_in_tree(pv_to_csi(pv.clone()).unwrap()).unwrap();
        assert_eq!(back, pv);
    }
}
