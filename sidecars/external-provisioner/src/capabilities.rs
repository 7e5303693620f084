//! PVC access modes and volume mode → CSI `VolumeCapability` list.
//!
//! Mirrors csi-lib-utils `accessmodes.ToCSIAccessMode` and
//! external-provisioner's per-access-mode capability list
//! (`pkg/controller/controller.go` `getVolumeCapability`).

use csi_client::csi::v1::VolumeCapability;
use csi_client::csi::v1::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
};

use crate::error::Error;

/// Maps one Kubernetes access mode to a CSI mode.
///
/// `single_node_multi_writer` is the driver's `SINGLE_NODE_MULTI_WRITER`
/// controller capability: with it RWO becomes SINGLE_NODE_MULTI_WRITER and
/// RWOP SINGLE_NODE_SINGLE_WRITER; without it both are SINGLE_NODE_WRITER.
///
/// Errors: [`Error::InvalidClaim`] (final) for an unknown mode, with
/// csi-lib-utils' text for a one-mode list (`unsupported AccessMode
/// combination: [<mode>]`), which is what upstream asks it about.
pub fn csi_access_mode(k8s_mode: &str, single_node_multi_writer: bool) -> Result<Mode, Error> {
    Ok(match (k8s_mode, single_node_multi_writer) {
        ("ReadWriteOnce", false) | ("ReadWriteOncePod", false) => Mode::SingleNodeWriter,
        ("ReadWriteOnce", true) => Mode::SingleNodeMultiWriter,
        ("ReadWriteOncePod", true) => Mode::SingleNodeSingleWriter,
        ("ReadOnlyMany", _) => Mode::MultiNodeReaderOnly,
        ("ReadWriteMany", _) => Mode::MultiNodeMultiWriter,
        (other, _) => {
            return Err(Error::InvalidClaim(format!(
                "unsupported AccessMode combination: [{other}]"
            )));
        }
    })
}

/// One capability per PVC access mode, each block or mount.
///
/// `block` is `volumeMode: Block`; otherwise each capability is a mount with
/// `fs_type` and the StorageClass `mount_flags`.
///
/// As upstream, each mode is mapped on its own, so no combination is
/// refused here and a claim without modes gets no capabilities (the API
/// server refuses both kinds of claim anyway).
///
/// Errors: [`Error::InvalidClaim`] (final) for an unknown mode.
pub fn volume_capabilities(
    access_modes: &[String],
    block: bool,
    fs_type: &str,
    mount_flags: &[String],
    single_node_multi_writer: bool,
) -> Result<Vec<VolumeCapability>, Error> {
    access_modes
        .iter()
        .map(|m| {
            let mode = csi_access_mode(m, single_node_multi_writer)?;
            let access_type = if block {
                AccessType::Block(BlockVolume {})
            } else {
                AccessType::Mount(MountVolume {
                    fs_type: fs_type.to_string(),
                    mount_flags: mount_flags.to_vec(),
                    ..Default::default()
                })
            };
            Ok(VolumeCapability {
                access_mode: Some(AccessMode { mode: mode as i32 }),
                access_type: Some(access_type),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_mode_table() {
        let cases = [
            ("ReadWriteOnce", false, Mode::SingleNodeWriter),
            ("ReadWriteOnce", true, Mode::SingleNodeMultiWriter),
            ("ReadWriteOncePod", false, Mode::SingleNodeWriter),
            ("ReadWriteOncePod", true, Mode::SingleNodeSingleWriter),
            ("ReadOnlyMany", false, Mode::MultiNodeReaderOnly),
            ("ReadOnlyMany", true, Mode::MultiNodeReaderOnly),
            ("ReadWriteMany", false, Mode::MultiNodeMultiWriter),
            ("ReadWriteMany", true, Mode::MultiNodeMultiWriter),
        ];
        for (k8s, snmw, want) in cases {
            assert_eq!(
                csi_access_mode(k8s, snmw).unwrap(),
                want,
                "{k8s} snmw={snmw}"
            );
        }
        // csi-lib-utils: accessmodes/access_modes.go toCSIAccessMode, asked
        // by external-provisioner's getVolumeCapability about one mode.
        assert_eq!(
            csi_access_mode("ReadWriteSometimes", false)
                .unwrap_err()
                .to_string(),
            "unsupported AccessMode combination: [ReadWriteSometimes]"
        );
    }

    #[test]
    fn one_mount_capability_per_access_mode() {
        let modes = vec!["ReadWriteOnce".to_string(), "ReadOnlyMany".to_string()];
        let caps = volume_capabilities(&modes, false, "ext4", &["noatime".into()], false).unwrap();
        assert_eq!(caps.len(), 2);
        for cap in &caps {
            match cap.access_type.as_ref().unwrap() {
                AccessType::Mount(m) => {
                    assert_eq!(m.fs_type, "ext4");
                    assert_eq!(m.mount_flags, vec!["noatime".to_string()]);
                }
                AccessType::Block(_) => panic!("expected mount"),
            }
        }
        assert_eq!(
            caps[1].access_mode.unwrap().mode,
            Mode::MultiNodeReaderOnly as i32
        );
    }

    #[test]
    fn block_mode_has_no_fs_type() {
        let caps =
            volume_capabilities(&["ReadWriteOnce".into()], true, "ext4", &[], false).unwrap();
        assert!(matches!(caps[0].access_type, Some(AccessType::Block(_))));
    }

    /// external-provisioner: pkg/controller/controller.go getVolumeCapabilities
    /// maps each mode alone, so combinations csi-lib-utils would refuse in
    /// one list pass, and no modes means no capabilities.
    #[test]
    fn modes_are_mapped_one_by_one() {
        assert!(
            volume_capabilities(&[], false, "", &[], false)
                .unwrap()
                .is_empty()
        );
        let rwop = vec!["ReadWriteOncePod".to_string(), "ReadOnlyMany".to_string()];
        let caps = volume_capabilities(&rwop, false, "", &[], false).unwrap();
        let modes: Vec<i32> = caps.iter().map(|c| c.access_mode.unwrap().mode).collect();
        assert_eq!(
            modes,
            vec![
                Mode::SingleNodeWriter as i32,
                Mode::MultiNodeReaderOnly as i32
            ]
        );
        let err = volume_capabilities(
            &["ReadWriteOnce".into(), "Bogus".into()],
            false,
            "",
            &[],
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported AccessMode combination: [Bogus]"
        );
    }
}
