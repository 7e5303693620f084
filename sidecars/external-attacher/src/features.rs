//! `--feature-gates`: the attacher's two gates
//! (`kubernetes-csi/external-attacher:pkg/features/features.go`) plus the
//! generic Kubernetes component gates its binary also accepts.

use std::collections::BTreeMap;

use sidecar_runtime::feature_gates::is_component_gate;
pub use sidecar_runtime::feature_gates::parse_pairs;

/// The attacher's gates, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates {
    /// GA, default on: write `status.attachError.errorCode` (the gRPC code).
    pub mutable_csi_node_allocatable_count: bool,
    /// Alpha, default off: release the Lease on SIGTERM/SIGINT.
    pub release_leader_election_on_exit: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            mutable_csi_node_allocatable_count: true,
            release_leader_election_on_exit: false,
        }
    }
}

/// Applies the flag's pairs to the defaults. Unknown gates are an error, as
/// upstream's `SetFromMap` (which exits 1).
pub fn resolve(pairs: &BTreeMap<String, bool>) -> Result<FeatureGates, String> {
    let mut g = FeatureGates::default();
    for (k, v) in pairs {
        match k.as_str() {
            "MutableCSINodeAllocatableCount" => g.mutable_csi_node_allocatable_count = *v,
            "ReleaseLeaderElectionOnExit" => g.release_leader_election_on_exit = *v,
            other if is_component_gate(other) => {}
            other => return Err(format!("unrecognized feature gate: {other}")),
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(resolve(&BTreeMap::new()).unwrap(), FeatureGates::default());
        let g = resolve(&parse_pairs("MutableCSINodeAllocatableCount=false").unwrap()).unwrap();
        assert!(!g.mutable_csi_node_allocatable_count);
        assert!(resolve(&parse_pairs("Nope=true").unwrap()).is_err());
        // The component gates upstream's binary lists are accepted, without effect.
        let g = resolve(&parse_pairs("WatchList=false,AllAlpha=true").unwrap()).unwrap();
        assert_eq!(g, FeatureGates::default());
        assert!(parse_pairs("X").is_err());
        assert!(parse_pairs("X=maybe").is_err());
    }
}
