//! `--feature-gates`: the attacher's two gates (contract B1,
//! `kubernetes-csi/external-attacher:pkg/features/features.go`).

use std::collections::BTreeMap;

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

/// Parses `Name=bool,Name=bool` as component-base's `MapStringBool`
/// (Go booleans; empty input is no gate).
pub fn parse_pairs(s: &str) -> Result<BTreeMap<String, bool>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("missing bool value for {item}"))?;
        let v = sidecar_runtime::flags::parse_go_bool(v.trim())
            .map_err(|_| format!("invalid value of {k}={v}, err: strconv.ParseBool"))?;
        out.insert(k.trim().to_string(), v);
    }
    Ok(out)
}

/// Applies the flag's pairs to the defaults. Unknown gates are an error, as
/// upstream's `SetFromMap` (which exits 1).
pub fn resolve(pairs: &BTreeMap<String, bool>) -> Result<FeatureGates, String> {
    let mut g = FeatureGates::default();
    for (k, v) in pairs {
        match k.as_str() {
            "MutableCSINodeAllocatableCount" => g.mutable_csi_node_allocatable_count = *v,
            "ReleaseLeaderElectionOnExit" => g.release_leader_election_on_exit = *v,
            "AllAlpha" | "AllBeta" => {}
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
        assert!(parse_pairs("X").is_err());
        assert!(parse_pairs("X=maybe").is_err());
    }
}
