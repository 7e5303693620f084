//! `--feature-gates`: upstream's provisioner gates plus the generic
//! Kubernetes component gates its binary also accepts
//! (`external-provisioner: cmd/csi-provisioner/csi-provisioner.go`, `main`).

use std::collections::BTreeMap;

/// The provisioner's own gates, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates {
    /// GA, default on: topology, when the driver also supports it.
    pub topology: bool,
    /// Alpha, default off: `dataSourceRef.namespace` (not supported here yet).
    pub cross_namespace_volume_data_source: bool,
    /// GA, default on: VolumeAttributesClass parameters.
    pub volume_attributes_class: bool,
    /// Alpha, default off: release the Lease on SIGTERM/SIGINT.
    pub release_leader_election_on_exit: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            topology: true,
            cross_namespace_volume_data_source: false,
            volume_attributes_class: true,
            release_leader_election_on_exit: false,
        }
    }
}

use sidecar_runtime::feature_gates::is_component_gate;
pub use sidecar_runtime::feature_gates::parse_pairs;

/// Resolves parsed pairs into [`FeatureGates`].
///
/// Errors: `unrecognized feature gate: <name>` for a name upstream does not
/// know (upstream exits 255 on it).
pub fn resolve(pairs: &BTreeMap<String, bool>) -> Result<FeatureGates, String> {
    let mut gates = FeatureGates::default();
    for (name, value) in pairs {
        match name.as_str() {
            "Topology" => gates.topology = *value,
            "CrossNamespaceVolumeDataSource" => gates.cross_namespace_volume_data_source = *value,
            "VolumeAttributesClass" => gates.volume_attributes_class = *value,
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
    fn defaults_and_overrides() {
        assert_eq!(
            resolve(&parse_pairs("").unwrap()).unwrap(),
            FeatureGates::default()
        );
        let g = resolve(
            &parse_pairs("Topology=false, ReleaseLeaderElectionOnExit=true,WatchList=false")
                .unwrap(),
        )
        .unwrap();
        assert!(!g.topology);
        assert!(g.release_leader_election_on_exit);
        assert!(g.volume_attributes_class);
    }

    #[test]
    fn syntax_errors_and_unknown_gates() {
        assert!(parse_pairs("Topology").is_err());
        assert!(
            parse_pairs("Topology=maybe")
                .unwrap_err()
                .contains("invalid value of Topology")
        );
        assert!(parse_pairs("Topology=T").unwrap()["Topology"]);
        assert_eq!(
            resolve(&parse_pairs("NoSuch=true").unwrap()).unwrap_err(),
            "unrecognized feature gate: NoSuch"
        );
    }
}
