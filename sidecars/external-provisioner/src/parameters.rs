//! StorageClass parameters: the reserved `csi.storage.k8s.io/` keys the
//! sidecar consumes, fsType selection, and what reaches the driver.
//!
//! Mirrors external-provisioner `pkg/controller/controller.go`
//! (`removePrefixedParameters` and the fsType rules of `pkg/controller/controller.go`).

use std::collections::BTreeMap;

use crate::error::Error;
use crate::secrets::SecretKind;

/// The prefix reserved for keys the sidecar consumes.
pub const RESERVED_PREFIX: &str = "csi.storage.k8s.io/";
/// fsType key.
pub const FSTYPE_KEY: &str = "csi.storage.k8s.io/fstype";
/// The deprecated fsType key, matched case-insensitively and passed on to the
/// driver.
pub const DEPRECATED_FSTYPE_KEY: &str = "fstype";
/// Extra metadata keys added with `--extra-create-metadata`.
pub const PVC_NAME_KEY: &str = "csi.storage.k8s.io/pvc/name";
/// See [`PVC_NAME_KEY`].
pub const PVC_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pvc/namespace";
/// See [`PVC_NAME_KEY`].
pub const PV_NAME_KEY: &str = "csi.storage.k8s.io/pv/name";

/// Returns the parameters with every reserved key removed, i.e. what
/// `CreateVolumeRequest.parameters` carries (before extra metadata).
///
/// Errors: [`Error::InvalidParameter`] (final) for a key under the reserved
/// prefix that the sidecar does not know, with upstream's message
/// (`prepareProvision` wrapping `removePrefixedParameters`).
pub fn strip_reserved(
    params: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for (k, v) in params {
        if let Some(rest) = k.strip_prefix(RESERVED_PREFIX) {
            if !is_known_reserved(rest) {
                return Err(Error::InvalidParameter(format!(
                    "failed to strip CSI Parameters of prefixed keys: found unknown parameter key \"{k}\" with reserved namespace {RESERVED_PREFIX}"
                )));
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

fn is_known_reserved(rest: &str) -> bool {
    if rest == "fstype" || rest == "secret-name" || rest == "secret-namespace" {
        return true;
    }
    SecretKind::ALL.iter().any(|kind| {
        let (name, ns) = kind.keys();
        name.strip_prefix(RESERVED_PREFIX) == Some(rest)
            || ns.strip_prefix(RESERVED_PREFIX) == Some(rest)
    })
}

/// The fsType for a new volume: `csi.storage.k8s.io/fstype`, else the
/// deprecated `fstype` key (any case), else `default_fstype`
/// (`--default-fstype`, may be empty).
///
/// Errors: [`Error::InvalidParameter`] (final) when more than one key gives
/// an fsType (the new key and a deprecated one, or two spellings of the
/// deprecated one), as upstream counts them.
pub fn fs_type(params: &BTreeMap<String, String>, default_fstype: &str) -> Result<String, Error> {
    let found: Vec<&String> = params
        .iter()
        .filter(|(k, _)| k.as_str() == FSTYPE_KEY || k.eq_ignore_ascii_case(DEPRECATED_FSTYPE_KEY))
        .map(|(_, v)| v)
        .collect();
    match found.as_slice() {
        [] => Ok(default_fstype.to_string()),
        [v] if !v.is_empty() => Ok((*v).clone()),
        [_] => Ok(default_fstype.to_string()),
        _ => Err(Error::InvalidParameter(format!(
            "fstype specified in parameters with both \"{DEPRECATED_FSTYPE_KEY}\" and \"{FSTYPE_KEY}\" keys"
        ))),
    }
}

/// Adds the `--extra-create-metadata` keys to driver parameters.
pub fn add_extra_metadata(
    params: &mut BTreeMap<String, String>,
    pvc_name: &str,
    pvc_namespace: &str,
    pv_name: &str,
) {
    params.insert(PVC_NAME_KEY.into(), pvc_name.into());
    params.insert(PVC_NAMESPACE_KEY.into(), pvc_namespace.into());
    params.insert(PV_NAME_KEY.into(), pv_name.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn strips_every_known_reserved_key_and_keeps_the_rest() {
        let params = map(&[
            ("csi.storage.k8s.io/fstype", "ext4"),
            ("csi.storage.k8s.io/secret-name", "s"),
            ("csi.storage.k8s.io/secret-namespace", "ns"),
            ("csi.storage.k8s.io/provisioner-secret-name", "p"),
            ("csi.storage.k8s.io/provisioner-secret-namespace", "pns"),
            ("csi.storage.k8s.io/controller-publish-secret-name", "c"),
            ("csi.storage.k8s.io/node-stage-secret-namespace", "n"),
            ("csi.storage.k8s.io/node-publish-secret-name", "np"),
            ("csi.storage.k8s.io/controller-expand-secret-name", "ce"),
            ("csi.storage.k8s.io/node-expand-secret-namespace", "ne"),
            ("csi.storage.k8s.io/controller-modify-secret-name", "cm"),
            ("type", "fast"),
            ("csiProvisionerSecretName", "legacy"),
            ("fstype", "xfs"),
        ]);
        let out = strip_reserved(&params).unwrap();
        assert_eq!(
            out,
            map(&[
                ("type", "fast"),
                ("csiProvisionerSecretName", "legacy"),
                ("fstype", "xfs")
            ])
        );
    }

    #[test]
    fn unknown_reserved_key_is_a_final_error_with_upstreams_text() {
        let err = strip_reserved(&map(&[("csi.storage.k8s.io/bogus", "1")])).unwrap_err();
        // external-provisioner: pkg/controller/controller.go prepareProvision
        // (wrapping removePrefixedParameters).
        assert_eq!(
            err.to_string(),
            "failed to strip CSI Parameters of prefixed keys: found unknown parameter key \"csi.storage.k8s.io/bogus\" with reserved namespace csi.storage.k8s.io/"
        );
        assert!(err.is_final());
    }

    #[test]
    fn empty_parameters_stay_empty() {
        assert!(strip_reserved(&BTreeMap::new()).unwrap().is_empty());
    }

    #[test]
    fn fstype_rules() {
        assert_eq!(
            fs_type(&map(&[(FSTYPE_KEY, "xfs")]), "ext4").unwrap(),
            "xfs"
        );
        assert_eq!(fs_type(&map(&[("FsType", "btrfs")]), "").unwrap(), "btrfs");
        assert_eq!(fs_type(&map(&[]), "ext4").unwrap(), "ext4");
        assert_eq!(fs_type(&map(&[]), "").unwrap(), "");
        // external-provisioner: pkg/controller/controller.go prepareProvision
        // counts every key that gives an fsType.
        let both = "fstype specified in parameters with both \"fstype\" and \"csi.storage.k8s.io/fstype\" keys";
        for params in [
            map(&[(FSTYPE_KEY, "xfs"), ("fstype", "ext4")]),
            map(&[("fstype", "xfs"), ("FsType", "ext4")]),
        ] {
            assert_eq!(fs_type(&params, "").unwrap_err().to_string(), both);
        }
    }

    #[test]
    fn extra_metadata_keys() {
        let mut p = BTreeMap::new();
        add_extra_metadata(&mut p, "claim", "ns", "pvc-1");
        assert_eq!(p[PVC_NAME_KEY], "claim");
        assert_eq!(p[PVC_NAMESPACE_KEY], "ns");
        assert_eq!(p[PV_NAME_KEY], "pvc-1");
    }
}
