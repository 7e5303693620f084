//! Typed capability sets returned by the `rpc` helpers.

use crate::csi::v1 as csi;
use std::collections::BTreeSet;

/// A set of capability enum values reported by a driver; values this spec
/// version does not know are left out, since nothing can test for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapabilitySet<T: Ord>(BTreeSet<T>);

impl<T: Ord + Copy> CapabilitySet<T> {
    /// Whether the driver reported `capability`.
    pub fn has(&self, capability: T) -> bool {
        self.0.contains(&capability)
    }

    /// The reported capabilities in enum order.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.0.iter().copied()
    }

    /// Number of distinct capabilities.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the driver reported none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Ord> FromIterator<T> for CapabilitySet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        CapabilitySet(iter.into_iter().collect())
    }
}

/// `PluginCapability.Service.Type` values (csi-lib-utils `PluginCapabilitySet`).
pub type PluginCapabilitySet = CapabilitySet<csi::plugin_capability::service::Type>;
/// `ControllerServiceCapability.RPC.Type` values (csi-lib-utils `ControllerCapabilitySet`).
pub type ControllerCapabilitySet = CapabilitySet<csi::controller_service_capability::rpc::Type>;
/// `NodeServiceCapability.RPC.Type` values.
pub type NodeCapabilitySet = CapabilitySet<csi::node_service_capability::rpc::Type>;
/// `GroupControllerServiceCapability.RPC.Type` values
/// (csi-lib-utils `GroupControllerCapabilitySet`).
pub type GroupControllerCapabilitySet =
    CapabilitySet<csi::group_controller_service_capability::rpc::Type>;

/// Service capabilities of `GetPluginCapabilities`; volume-expansion and
/// empty entries are skipped.
pub(crate) fn plugin_set(caps: &[csi::PluginCapability]) -> PluginCapabilitySet {
    use csi::plugin_capability::Type;
    caps.iter()
        .filter_map(|c| match &c.r#type {
            Some(Type::Service(service)) => service.r#type.try_into().ok(),
            _ => None,
        })
        .collect()
}

/// RPC capabilities of `ControllerGetCapabilities`; empty entries skipped.
pub(crate) fn controller_set(caps: &[csi::ControllerServiceCapability]) -> ControllerCapabilitySet {
    use csi::controller_service_capability::Type;
    caps.iter()
        .filter_map(|c| match &c.r#type {
            Some(Type::Rpc(rpc)) => rpc.r#type.try_into().ok(),
            None => None,
        })
        .collect()
}

/// RPC capabilities of `NodeGetCapabilities`; empty entries skipped.
pub(crate) fn node_set(caps: &[csi::NodeServiceCapability]) -> NodeCapabilitySet {
    use csi::node_service_capability::Type;
    caps.iter()
        .filter_map(|c| match &c.r#type {
            Some(Type::Rpc(rpc)) => rpc.r#type.try_into().ok(),
            None => None,
        })
        .collect()
}

/// RPC capabilities of `GroupControllerGetCapabilities`; empty entries skipped.
pub(crate) fn group_controller_set(
    caps: &[csi::GroupControllerServiceCapability],
) -> GroupControllerCapabilitySet {
    use csi::group_controller_service_capability::Type;
    caps.iter()
        .filter_map(|c| match &c.r#type {
            Some(Type::Rpc(rpc)) => rpc.r#type.try_into().ok(),
            None => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::plugin_capability::service::Type as Service;

    #[test]
    fn skips_empty_non_service_and_unknown_entries() {
        let caps = vec![
            csi::PluginCapability { r#type: None },
            csi::PluginCapability {
                r#type: Some(csi::plugin_capability::Type::VolumeExpansion(
                    csi::plugin_capability::VolumeExpansion { r#type: 1 },
                )),
            },
            csi::PluginCapability {
                r#type: Some(csi::plugin_capability::Type::Service(
                    csi::plugin_capability::Service {
                        r#type: Service::ControllerService as i32,
                    },
                )),
            },
            csi::PluginCapability {
                r#type: Some(csi::plugin_capability::Type::Service(
                    csi::plugin_capability::Service { r#type: 4242 },
                )),
            },
        ];
        let set = plugin_set(&caps);
        assert_eq!(set.len(), 1);
        assert!(set.has(Service::ControllerService));
        assert!(!set.has(Service::VolumeAccessibilityConstraints));
    }
}
