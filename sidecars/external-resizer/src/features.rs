//! `--feature-gates`: upstream v2.2.0's resizer gates
//! (kubernetes-csi/external-resizer:pkg/features/features.go) plus the
//! generic Kubernetes component gates its binary also accepts.

use std::collections::BTreeMap;

use sidecar_runtime::feature_gates::is_component_gate;
pub use sidecar_runtime::feature_gates::parse_pairs;

/// The resizer's own gates, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates {
    /// Alpha in v2.2.x, default off: the PV's
    /// `volume.alpha.kubernetes.io/pre-resize-capacity` annotation.
    pub annotate_fs_resize: bool,
    /// GA, default on: `allocatedResources`/`allocatedResourceStatuses` and
    /// recovery by lowering the request.
    pub recover_volume_expansion_failure: bool,
    /// GA, default on: the modify controller.
    pub volume_attributes_class: bool,
    /// Whether `VolumeAttributesClass` was given on the command line:
    /// when it was not, start-up asks discovery whether the API server
    /// serves `storage.k8s.io/v1` VolumeAttributesClass (upstream's
    /// `IsVolumeAttributesClassV1Enabled`).
    pub volume_attributes_class_explicit: bool,
    /// Alpha, default off: release the Lease on SIGTERM/SIGINT.
    pub release_leader_election_on_exit: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            annotate_fs_resize: false,
            recover_volume_expansion_failure: true,
            volume_attributes_class: true,
            volume_attributes_class_explicit: false,
            release_leader_election_on_exit: false,
        }
    }
}

/// Resolves parsed pairs into [`FeatureGates`].
///
/// Errors: `unrecognized feature gate: <name>` for a name upstream does not
/// know (upstream exits 255 on it).
pub fn resolve(pairs: &BTreeMap<String, bool>) -> Result<FeatureGates, String> {
    let mut gates = FeatureGates::default();
    for (name, value) in pairs {
        match name.as_str() {
            "AnnotateFsResize" => gates.annotate_fs_resize = *value,
            "RecoverVolumeExpansionFailure" => gates.recover_volume_expansion_failure = *value,
            "VolumeAttributesClass" => {
                gates.volume_attributes_class = *value;
                gates.volume_attributes_class_explicit = true;
            }
            "ReleaseLeaderElectionOnExit" => gates.release_leader_election_on_exit = *value,
            other if is_component_gate(other) => {}
            other => return Err(format!("unrecognized feature gate: {other}")),
        }
    }
    Ok(gates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_unknown_gates() {
        assert_eq!(
            resolve(&parse_pairs("").unwrap()).unwrap(),
            FeatureGates::default()
        );
        let g = resolve(
            &parse_pairs("AnnotateFsResize=true,VolumeAttributesClass=false,WatchList=false")
                .unwrap(),
        )
        .unwrap();
        assert!(g.annotate_fs_resize);
        assert!(!g.volume_attributes_class);
        assert!(g.volume_attributes_class_explicit);
        assert!(g.recover_volume_expansion_failure);
        assert_eq!(
            resolve(&parse_pairs("Topology=true").unwrap()).unwrap_err(),
            "unrecognized feature gate: Topology"
        );
    }
}
