//! Object builders shared by the unit tests of the topology and capacity
//! rules.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A Node with `labels`.
pub(crate) fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A CSINode registering `(driver, Some(keys) | None)` pairs, node ID = name.
pub(crate) fn csi_node(name: &str, drivers: &[(&str, Option<&[&str]>)]) -> CSINode {
    CSINode {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CSINodeSpec {
            drivers: drivers
                .iter()
                .map(|(d, keys)| CSINodeDriver {
                    name: d.to_string(),
                    node_id: name.into(),
                    topology_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                })
                .collect(),
        },
    }
}
