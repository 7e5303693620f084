//! The CSI requests: ControllerExpandVolume and ControllerModifyVolume
//! from a PV (translated first when it is a migrated in-tree volume), and
//! the secrets they name.
//!
//! Source: kubernetes-csi/external-resizer v2.2.0, pkg/resizer/csi_resizer.go
//! (`Resize`, `GetVolumeCapabilities`, `getCredentials`),
//! pkg/modifier/csi_modifier.go (`Modify`, `getModifyCredentials`), and
//! csi-lib-utils accessmodes `ToCSIAccessMode`.

use std::collections::BTreeMap;

use csi_client::csi::v1::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
};
use csi_client::csi::v1::{CapacityRange, ControllerExpandVolumeRequest, VolumeCapability};
use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolume};

use crate::error::Error;
use crate::names::{MODIFY_SECRET_NAME, MODIFY_SECRET_NAMESPACE};

/// A Secret to read: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl SecretRef {
    /// Upstream's text for a failed read: `error getting secret <name> in
    /// namespace <namespace>: <error>`.
    pub fn read_failed(&self, error: &str) -> String {
        format!(
            "error getting secret {} in namespace {}: {error}",
            self.name, self.namespace
        )
    }
}

/// The CSI source of `pv`, translated when the PV is an in-tree volume of
/// the plugin `migrated` driver replaced; `(source, spec with the source,
/// migrated?)`.
///
/// Errors (upstream's texts): `volume <pv> is not migrated to CSI`,
/// `failed to translate persistent volume: <error>`.
pub fn csi_source(
    pv: &PersistentVolume,
    migrated: bool,
) -> Result<(CSIPersistentVolumeSource, PersistentVolume, bool), Error> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    if let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.clone()) {
        return Ok((csi, pv.clone(), false));
    }
    if !migrated {
        return Err(Error::Request(format!(
            "volume {name} is not migrated to CSI"
        )));
    }
    let translated = csi_translation::translate_in_tree_pv_to_csi(pv)
        .map_err(|e| Error::Request(format!("failed to translate persistent volume: {e}")))?;
    let csi = translated
        .spec
        .as_ref()
        .and_then(|s| s.csi.clone())
        .ok_or_else(|| Error::Request(format!("volume {name} is not migrated to CSI")))?;
    Ok((csi, translated, true))
}

/// The expansion secret: `spec.csi.controllerExpandSecretRef`.
pub fn expand_secret(source: &CSIPersistentVolumeSource) -> Option<SecretRef> {
    source
        .controller_expand_secret_ref
        .as_ref()
        .map(|r| SecretRef {
            namespace: r.namespace.clone().unwrap_or_default(),
            name: r.name.clone().unwrap_or_default(),
        })
}

/// The modify secret: the PV's `controller-modify-secret-{name,namespace}`
/// annotations when both are set, else the expansion secret.
pub fn modify_secret(
    pv: &PersistentVolume,
    source: &CSIPersistentVolumeSource,
) -> Option<SecretRef> {
    let ann = pv.metadata.annotations.as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).cloned().unwrap_or_default();
    let (name, namespace) = (get(MODIFY_SECRET_NAME), get(MODIFY_SECRET_NAMESPACE));
    if !name.is_empty() && !namespace.is_empty() {
        return Some(SecretRef { namespace, name });
    }
    expand_secret(source)
}

/// `ToCSIAccessMode` over a PV's access modes.
///
/// Errors: csi-lib-utils' texts for RWOP mixed with others, ROX+RWO, and
/// anything else it does not map.
pub fn access_mode(modes: &[String], single_node_multi_writer: bool) -> Result<Mode, Error> {
    csi_client::access_modes::to_csi_access_mode(modes, single_node_multi_writer)
        .map_err(|e| Error::Request(e.to_string()))
}

/// `GetVolumeCapabilities`: block for `volumeMode: Block`, else a mount
/// with the CSI fsType and the PV's mount options; one access mode.
pub fn volume_capability(
    pv: &PersistentVolume,
    source: &CSIPersistentVolumeSource,
    single_node_multi_writer: bool,
) -> Result<VolumeCapability, Error> {
    let spec = pv.spec.clone().unwrap_or_default();
    let access_type = if spec.volume_mode.as_deref() == Some("Block") {
        AccessType::Block(BlockVolume {})
    } else {
        AccessType::Mount(MountVolume {
            fs_type: source.fs_type.clone().unwrap_or_default(),
            mount_flags: spec.mount_options.clone().unwrap_or_default(),
            ..Default::default()
        })
    };
    let mode = access_mode(
        &spec.access_modes.unwrap_or_default(),
        single_node_multi_writer,
    )?;
    Ok(VolumeCapability {
        access_type: Some(access_type),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    })
}

/// The ControllerExpandVolume request for `pv` (already through
/// [`csi_source`]) to `required_bytes`.
///
/// Errors: `empty volume handle`; `failed to get capabilities of volume
/// <pv> with <error>`.
pub fn expand_request(
    pv: &PersistentVolume,
    source: &CSIPersistentVolumeSource,
    required_bytes: i64,
    secrets: BTreeMap<String, String>,
    single_node_multi_writer: bool,
) -> Result<ControllerExpandVolumeRequest, Error> {
    if source.volume_handle.is_empty() {
        return Err(Error::Request("empty volume handle".into()));
    }
    let capability = volume_capability(pv, source, single_node_multi_writer).map_err(|e| {
        Error::Request(format!(
            "failed to get capabilities of volume {} with {e}",
            pv.metadata.name.as_deref().unwrap_or_default()
        ))
    })?;
    Ok(ControllerExpandVolumeRequest {
        volume_id: source.volume_handle.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes,
            limit_bytes: 0,
        }),
        secrets: secrets.into_iter().collect(),
        volume_capability: Some(capability),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeSpec, SecretReference};

    fn pv(modes: &[&str], block: bool) -> PersistentVolume {
        let mut pv = PersistentVolume::default();
        pv.metadata.name = Some("pv1".into());
        pv.spec = Some(PersistentVolumeSpec {
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            volume_mode: block.then(|| "Block".into()),
            mount_options: Some(vec!["noatime".into()]),
            csi: Some(CSIPersistentVolumeSource {
                driver: "d".into(),
                volume_handle: "vol-1".into(),
                fs_type: Some("ext4".into()),
                controller_expand_secret_ref: Some(SecretReference {
                    name: Some("s".into()),
                    namespace: Some("n".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn expand_request_fields() {
        let v = pv(&["ReadWriteOnce"], false);
        let (src, spec, migrated) = csi_source(&v, false).unwrap();
        assert!(!migrated);
        let req = expand_request(
            &spec,
            &src,
            2 << 30,
            [("k".to_string(), "v".to_string())].into(),
            false,
        )
        .unwrap();
        assert_eq!(req.volume_id, "vol-1");
        assert_eq!(req.capacity_range.unwrap().required_bytes, 2 << 30);
        assert_eq!(req.secrets["k"], "v");
        match req.volume_capability.unwrap().access_type.unwrap() {
            AccessType::Mount(m) => {
                assert_eq!(m.fs_type, "ext4");
                assert_eq!(m.mount_flags, ["noatime"]);
            }
            other => panic!("{other:?}"),
        }
        let b = pv(&["ReadWriteOnce"], true);
        let req = expand_request(&b, &src, 1, BTreeMap::new(), false).unwrap();
        assert!(matches!(
            req.volume_capability.unwrap().access_type,
            Some(AccessType::Block(_))
        ));
        let mut empty = src.clone();
        empty.volume_handle.clear();
        assert_eq!(
            expand_request(&b, &empty, 1, BTreeMap::new(), false)
                .unwrap_err()
                .to_string(),
            "empty volume handle"
        );
    }

    #[test]
    fn secrets_and_in_tree_volumes() {
        let mut v = pv(&["ReadWriteOnce"], false);
        let src = v.spec.as_ref().unwrap().csi.clone().unwrap();
        let expand = SecretRef {
            namespace: "n".into(),
            name: "s".into(),
        };
        assert_eq!(expand_secret(&src), Some(expand.clone()));
        assert_eq!(modify_secret(&v, &src), Some(expand));
        v.metadata.annotations = Some(
            [
                (MODIFY_SECRET_NAME.to_string(), "m".to_string()),
                (MODIFY_SECRET_NAMESPACE.to_string(), "mn".to_string()),
            ]
            .into(),
        );
        assert_eq!(
            modify_secret(&v, &src),
            Some(SecretRef {
                namespace: "mn".into(),
                name: "m".into()
            })
        );
        let mut intree = pv(&["ReadWriteOnce"], false);
        intree.spec.as_mut().unwrap().csi = None;
        assert_eq!(
            csi_source(&intree, false).unwrap_err().to_string(),
            "volume pv1 is not migrated to CSI"
        );
    }
}
