//! Volume and Lease names, as upstream external-provisioner derives them.

use crate::error::Error;

/// The name used both as `CreateVolumeRequest.name` and as the PV name.
///
/// Mirrors external-provisioner's `makeVolumeName`: `<prefix>-<PVC UID>`; with
/// `uuid_length >= 0` the UID loses its dashes and is cut to that many
/// characters. Unlike upstream (which panics on a length above 32), a length
/// longer than the UID keeps the whole UID.
///
/// Errors: [`Error::InvalidClaim`] (final) when `prefix` or `pvc_uid` is empty.
pub fn volume_name(prefix: &str, pvc_uid: &str, uuid_length: i64) -> Result<String, Error> {
    if prefix.is_empty() {
        return Err(Error::InvalidClaim(
            "volume name prefix cannot be of length 0".into(),
        ));
    }
    if pvc_uid.is_empty() {
        return Err(Error::InvalidClaim(
            "corrupted PVC object, it is missing UID".into(),
        ));
    }
    if uuid_length < 0 {
        return Ok(format!("{prefix}-{pvc_uid}"));
    }
    let compact: String = pvc_uid.chars().filter(|c| *c != '-').collect();
    let keep = usize::try_from(uuid_length).unwrap_or(usize::MAX);
    let cut: String = compact.chars().take(keep).collect();
    Ok(format!("{prefix}-{cut}"))
}

/// The Lease name upstream csi-provisioner uses for a driver: `/` replaced by
/// `-`, then sanitised by csi-lib-utils' rules (see
/// [`sidecar_runtime::leader::sanitize_lease_name`]). Go and Rust replicas of
/// the same driver therefore contend for the same Lease.
pub fn lease_name(driver_name: &str) -> String {
    sidecar_runtime::leader::sanitize_lease_name(&driver_name.replace('/', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5b7e1d2c-3f4a-4b5c-8d9e-0a1b2c3d4e5f";

    #[test]
    fn default_keeps_the_whole_uid_with_dashes() {
        assert_eq!(volume_name("pvc", UID, -1).unwrap(), format!("pvc-{UID}"));
    }

    #[test]
    fn length_strips_dashes_and_truncates() {
        assert_eq!(volume_name("vol", UID, 8).unwrap(), "vol-5b7e1d2c");
        assert_eq!(volume_name("vol", UID, 0).unwrap(), "vol-");
        assert_eq!(
            volume_name("vol", UID, 100).unwrap(),
            "vol-5b7e1d2c3f4a4b5c8d9e0a1b2c3d4e5f"
        );
    }

    #[test]
    fn empty_prefix_or_uid_is_an_error() {
        assert!(matches!(
            volume_name("", UID, -1),
            Err(Error::InvalidClaim(m)) if m.contains("prefix cannot be of length 0")
        ));
        assert!(volume_name("pvc", "", -1).is_err());
    }

    #[test]
    fn lease_names_match_upstream() {
        assert_eq!(lease_name("hostpath.csi.k8s.io"), "hostpath-csi-k8s-io");
        assert_eq!(lease_name("ebs.csi.aws.com"), "ebs-csi-aws-com");
        assert_eq!(lease_name("vendor/driver."), "vendor-driver-X");
    }
}
