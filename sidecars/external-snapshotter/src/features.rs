//! `--feature-gates`: upstream v8.6.0's gates (external-snapshotter:
//! pkg/features/features.go) plus the generic Kubernetes component gates
//! its binary also accepts.

use std::collections::BTreeMap;

use sidecar_runtime::feature_gates::is_component_gate;

/// csi-snapshotter's gates, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureGates {
    /// `CSIVolumeGroupSnapshot` (beta in v8.6.0, default off): the
    /// VolumeGroupSnapshotContent controller.
    pub volume_group_snapshot: bool,
    /// `ReleaseLeaderElectionOnExit` (alpha, default off): release the Lease
    /// on SIGTERM/SIGINT.
    pub release_leader_election_on_exit: bool,
}

/// Resolves parsed pairs into [`FeatureGates`].
///
/// Errors: `unrecognized feature gate: <name>` for a name upstream does not
/// know (upstream exits 255 on it, `klog.Fatal`).
pub fn resolve(pairs: &BTreeMap<String, bool>) -> Result<FeatureGates, String> {
    let mut gates = FeatureGates::default();
    for (name, value) in pairs {
        match name.as_str() {
            "CSIVolumeGroupSnapshot" => gates.volume_group_snapshot = *value,
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
    use sidecar_runtime::feature_gates::parse_pairs;

    #[test]
    fn defaults_overrides_and_unknown_gates() {
        assert_eq!(
            resolve(&parse_pairs("").unwrap()).unwrap(),
            FeatureGates::default()
        );
        let g = resolve(
            &parse_pairs("CSIVolumeGroupSnapshot=true,ReleaseLeaderElectionOnExit=true").unwrap(),
        )
        .unwrap();
        assert!(g.volume_group_snapshot && g.release_leader_election_on_exit);
        assert_eq!(
            resolve(&parse_pairs("Topology=true").unwrap()).unwrap_err(),
            "unrecognized feature gate: Topology"
        );
    }
}
