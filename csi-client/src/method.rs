//! The unary CSI RPCs a sidecar can issue, named by their gRPC method path.

use std::fmt;

macro_rules! rpcs {
    ($( $variant:ident => $service:literal, $method:literal; )*) => {
        /// One unary RPC of the CSI v1.12 Identity, Controller, GroupController
        /// or Node service.
        ///
        /// `Display` (and [`Rpc::path`]) give the full gRPC method path, e.g.
        /// `/csi.v1.Controller/CreateVolume`, which is also the `method_name`
        /// metric label and the `method` log field of csi-lib-utils
        /// (`connection.LogGRPC`, `metrics` interceptor). The server-streaming
        /// SnapshotMetadata RPCs are not listed: they do not go through the
        /// unary call path.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Rpc {
            $(
                #[doc = concat!("`/csi.v1.", $service, "/", $method, "`")]
                $variant,
            )*
        }

        impl Rpc {
            /// Every unary RPC, in proto declaration order.
            pub const ALL: &'static [Rpc] = &[$(Rpc::$variant),*];

            /// Full gRPC method path, `/csi.v1.<Service>/<Method>`.
            pub const fn path(self) -> &'static str {
                match self {
                    $(Rpc::$variant => concat!("/csi.v1.", $service, "/", $method),)*
                }
            }

            /// Service name without package, e.g. `Controller`.
            pub const fn service(self) -> &'static str {
                match self {
                    $(Rpc::$variant => $service,)*
                }
            }

            /// Method name, e.g. `CreateVolume`.
            pub const fn method(self) -> &'static str {
                match self {
                    $(Rpc::$variant => $method,)*
                }
            }
        }
    };
}

rpcs! {
    GetPluginInfo => "Identity", "GetPluginInfo";
    GetPluginCapabilities => "Identity", "GetPluginCapabilities";
    Probe => "Identity", "Probe";

    CreateVolume => "Controller", "CreateVolume";
    DeleteVolume => "Controller", "DeleteVolume";
    ControllerPublishVolume => "Controller", "ControllerPublishVolume";
    ControllerUnpublishVolume => "Controller", "ControllerUnpublishVolume";
    ValidateVolumeCapabilities => "Controller", "ValidateVolumeCapabilities";
    ListVolumes => "Controller", "ListVolumes";
    GetCapacity => "Controller", "GetCapacity";
    ControllerGetCapabilities => "Controller", "ControllerGetCapabilities";
    CreateSnapshot => "Controller", "CreateSnapshot";
    DeleteSnapshot => "Controller", "DeleteSnapshot";
    ListSnapshots => "Controller", "ListSnapshots";
    GetSnapshot => "Controller", "GetSnapshot";
    ControllerExpandVolume => "Controller", "ControllerExpandVolume";
    ControllerGetVolume => "Controller", "ControllerGetVolume";
    ControllerModifyVolume => "Controller", "ControllerModifyVolume";

    GroupControllerGetCapabilities => "GroupController", "GroupControllerGetCapabilities";
    CreateVolumeGroupSnapshot => "GroupController", "CreateVolumeGroupSnapshot";
    DeleteVolumeGroupSnapshot => "GroupController", "DeleteVolumeGroupSnapshot";
    GetVolumeGroupSnapshot => "GroupController", "GetVolumeGroupSnapshot";

    NodeStageVolume => "Node", "NodeStageVolume";
    NodeUnstageVolume => "Node", "NodeUnstageVolume";
    NodePublishVolume => "Node", "NodePublishVolume";
    NodeUnpublishVolume => "Node", "NodeUnpublishVolume";
    NodeGetVolumeStats => "Node", "NodeGetVolumeStats";
    NodeExpandVolume => "Node", "NodeExpandVolume";
    NodeGetCapabilities => "Node", "NodeGetCapabilities";
    NodeGetInfo => "Node", "NodeGetInfo";
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::Rpc;
    use std::collections::BTreeSet;

    #[test]
    fn display_is_full_method_path() {
        assert_eq!(
            Rpc::CreateVolume.to_string(),
            "/csi.v1.Controller/CreateVolume"
        );
        assert_eq!(Rpc::Probe.service(), "Identity");
        assert_eq!(Rpc::NodeGetInfo.method(), "NodeGetInfo");
    }

    /// The hand-written table must match the unary methods of the compiled proto.
    #[test]
    fn table_matches_proto_services() {
        let pool = crate::sanitize::descriptor_pool();
        let from_proto: BTreeSet<String> = pool
            .services()
            .filter(|s| s.package_name() == "csi.v1")
            .flat_map(|s| {
                let service = s.name().to_owned();
                s.methods()
                    .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
                    .map(move |m| format!("/csi.v1.{service}/{}", m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let table: BTreeSet<String> = Rpc::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(table, from_proto);
    }
}
