//! The CSI gRPC client shared by every sidecar.
//!
//! Mirrors the parts of kubernetes-csi/csi-lib-utils the sidecars rely on:
//! `connection` ([`Connection`]: dialing, per-call deadlines, connection-loss
//! policy, V(5) call logging), `metrics` ([`CsiMetrics`],
//! `csi_sidecar_operations_seconds`), `protosanitizer`
//! ([`strip_secrets_json`]) and `rpc` (driver name, capabilities, probing).

pub mod access_modes;
pub mod address;
mod calls;
pub mod capabilities;
pub mod connection;
pub mod error;
pub mod loss;
pub mod method;
pub mod metrics;
pub mod rpc;
pub mod sanitize;

pub use address::Target;
pub use calls::RpcResult;
pub use capabilities::{
    CapabilitySet, ControllerCapabilitySet, GroupControllerCapabilitySet, NodeCapabilitySet,
    PluginCapabilitySet,
};
pub use connection::{ConnectOptions, Connection, dial_once, max_log_length};
pub use error::{Error, is_final_code};
pub use loss::LossPolicy;
pub use method::Rpc;
pub use metrics::CsiMetrics;
pub use sanitize::strip_secrets_json;

pub mod csi {
    //! Generated CSI spec types (`package csi.v1`, spec v1.12.0).

    /// `csi.v1`: messages, `*_client` and `*_server` modules for the
    /// Identity, Controller, GroupController, SnapshotMetadata and Node
    /// services. Every message implements `prost::Name`.
    #[allow(missing_docs, clippy::all, rustdoc::all)]
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

/// Generated kubelet plugin-registration API (`package pluginregistration`,
/// k8s.io/kubelet/pkg/apis/pluginregistration/v1): `Registration` service
/// with `GetInfo` and `NotifyRegistrationStatus`.
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// Encoded `google.protobuf.FileDescriptorSet` of the CSI and
/// plugin-registration protos, with imports and extension options (so
/// `csi.v1.csi_secret` is visible to prost-reflect).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/csi_descriptor_set.bin"));
