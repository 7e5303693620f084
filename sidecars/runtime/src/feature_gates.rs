//! `--feature-gates` syntax shared by the controller sidecars: `Name=bool`
//! pairs, and the generic Kubernetes component gates (k8s.io/component-base)
//! that upstream's binaries accept next to their own and that have no
//! effect on a sidecar.

use std::collections::BTreeMap;

/// Generic component gates upstream's binaries list in `--help` (from
/// k8s.io/component-base, as external-provisioner v6.3.0 lists them);
/// accepted and without effect here.
pub const COMPONENT_GATES: &[&str] = &[
    "APIResponseCompression",
    "APIServerIdentity",
    "APIServingWithRoutine",
    "AllAlpha",
    "AllBeta",
    "AllowParsingUserUIDFromCertAuth",
    "AllowUnsafeMalformedObjectDeletion",
    "CBORServingAndStorage",
    "ComponentFlagz",
    "ComponentStatusz",
    "ConcurrentWatchObjectDecode",
    "ConstrainedImpersonation",
    "CoordinatedLeaderElection",
    "DeclarativeValidationBeta",
    "DetectCacheInconsistency",
    "ListFromCacheSnapshot",
    "ManifestBasedAdmissionControlConfig",
    "NativeHistograms",
    "OpenAPIEnums",
    "RemoteRequestHeaderUID",
    "ShardedListAndWatch",
    "SizeBasedListCostEstimate",
    "StorageVersionAPI",
    "StorageVersionHash",
    "StructuredAuthenticationConfigurationEgressSelector",
    "StructuredAuthenticationConfigurationJWKSMetrics",
    "TokenRequestServiceAccountUIDValidation",
    "UnauthenticatedHTTP2DOSMitigation",
    "UnknownVersionInteroperabilityProxy",
    "WatchCacheInitializationPostStartHook",
    "WatchList",
];

/// Parses `Name=bool,Name=bool` (Go `strconv.ParseBool` values). Used as the
/// flag's value parser, so bad syntax is a usage error (exit 2), as upstream.
pub fn parse_pairs(text: &str) -> Result<BTreeMap<String, bool>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("missing bool value for {item}"))?;
        let value = crate::flags::parse_go_bool(value.trim())
            .map_err(|_| format!("invalid value of {name}: {value}"))?;
        out.insert(name.trim().to_string(), value);
    }
    Ok(out)
}

/// True for a generic component gate ([`COMPONENT_GATES`]).
pub fn is_component_gate(name: &str) -> bool {
    COMPONENT_GATES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_take_go_booleans_and_report_bad_syntax() {
        let p = parse_pairs("Topology=false, AllAlpha=T").unwrap();
        assert_eq!(p.get("Topology"), Some(&false));
        assert_eq!(p.get("AllAlpha"), Some(&true));
        assert!(parse_pairs("").unwrap().is_empty());
        assert_eq!(parse_pairs("X").unwrap_err(), "missing bool value for X");
        assert_eq!(
            parse_pairs("X=maybe").unwrap_err(),
            "invalid value of X: maybe"
        );
        assert!(is_component_gate("WatchList"));
        assert!(!is_component_gate("Topology"));
    }
}
