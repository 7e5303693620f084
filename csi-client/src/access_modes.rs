//! Kubernetes access modes to the one CSI access mode of a volume
//! capability, as kubernetes-csi/csi-lib-utils `accessmodes.ToCSIAccessMode`
//! maps them for every sidecar that builds a capability from a PV.

use crate::csi::v1::volume_capability::access_mode::Mode;
use crate::error::Error;

/// The CSI access mode for all of `modes` (Kubernetes names such as
/// `ReadWriteOnce`) together. `single_node_multi_writer` is the driver's
/// SINGLE_NODE_MULTI_WRITER controller capability: with it RWO becomes
/// SINGLE_NODE_MULTI_WRITER and RWOP SINGLE_NODE_SINGLE_WRITER; without it
/// both are SINGLE_NODE_WRITER.
///
/// Errors: [`Error::AccessModes`] with csi-lib-utils' texts for
/// ReadWriteOncePod next to another mode, ReadOnlyMany with ReadWriteOnce,
/// and any other combination it does not map (an empty list, an unknown
/// name).
pub fn to_csi_access_mode<S: AsRef<str>>(
    modes: &[S],
    single_node_multi_writer: bool,
) -> Result<Mode, Error> {
    let unique: std::collections::BTreeSet<&str> = modes.iter().map(AsRef::as_ref).collect();
    let has = |m: &str| unique.contains(m);
    if has("ReadWriteOncePod") {
        if unique.len() > 1 {
            return Err(Error::AccessModes(
                "Kubernetes does not support use of ReadWriteOncePod with other access modes on the same PersistentVolume".into(),
            ));
        }
        return Ok(if single_node_multi_writer {
            Mode::SingleNodeSingleWriter
        } else {
            Mode::SingleNodeWriter
        });
    }
    if has("ReadWriteMany") {
        return Ok(Mode::MultiNodeMultiWriter);
    }
    if has("ReadOnlyMany") && has("ReadWriteOnce") {
        return Err(Error::AccessModes(
            "CSI does not support ReadOnlyMany and ReadWriteOnce on the same PersistentVolume"
                .into(),
        ));
    }
    if has("ReadOnlyMany") {
        return Ok(Mode::MultiNodeReaderOnly);
    }
    if has("ReadWriteOnce") {
        return Ok(if single_node_multi_writer {
            Mode::SingleNodeMultiWriter
        } else {
            Mode::SingleNodeWriter
        });
    }
    let listed: Vec<&str> = modes.iter().map(AsRef::as_ref).collect();
    Err(Error::AccessModes(format!(
        "unsupported AccessMode combination: [{}]",
        listed.join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_lib_utils_matrix() {
        let m = |modes: &[&str], smw| to_csi_access_mode(modes, smw).map_err(|e| e.to_string());
        assert_eq!(m(&["ReadWriteOnce"], false), Ok(Mode::SingleNodeWriter));
        assert_eq!(m(&["ReadWriteOnce"], true), Ok(Mode::SingleNodeMultiWriter));
        assert_eq!(
            m(&["ReadWriteOncePod"], true),
            Ok(Mode::SingleNodeSingleWriter)
        );
        assert_eq!(m(&["ReadWriteOncePod"], false), Ok(Mode::SingleNodeWriter));
        assert_eq!(
            m(&["ReadWriteOncePod", "ReadWriteOncePod"], true),
            Ok(Mode::SingleNodeSingleWriter),
            "duplicates count once, as upstream's set"
        );
        assert_eq!(
            m(&["ReadWriteMany", "ReadOnlyMany"], false),
            Ok(Mode::MultiNodeMultiWriter)
        );
        assert_eq!(m(&["ReadOnlyMany"], false), Ok(Mode::MultiNodeReaderOnly));
        assert_eq!(
            m(&["ReadWriteOncePod", "ReadWriteOnce"], false),
            Err("Kubernetes does not support use of ReadWriteOncePod with other access modes on the same PersistentVolume".into())
        );
        assert_eq!(
            m(&["ReadOnlyMany", "ReadWriteOnce"], false),
            Err(
                "CSI does not support ReadOnlyMany and ReadWriteOnce on the same PersistentVolume"
                    .into()
            )
        );
        assert_eq!(
            m(&[], false),
            Err("unsupported AccessMode combination: []".into())
        );
        assert_eq!(
            m(&["Bogus"], true),
            Err("unsupported AccessMode combination: [Bogus]".into())
        );
    }
}
