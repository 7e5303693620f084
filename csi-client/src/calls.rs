//! One typed method per CSI RPC the sidecars issue, each a thin wrapper
//! over [`Connection::unary`] so all of them share deadline, metrics and
//! logging.

use crate::connection::Connection;
use crate::csi::v1 as csi;
use crate::method::Rpc;

/// Result of one CSI RPC: the response, or the gRPC status.
pub type RpcResult<T> = Result<T, tonic::Status>;

impl Connection {
    /// `/csi.v1.Identity/Probe` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn probe(&self, request: csi::ProbeRequest) -> RpcResult<csi::ProbeResponse> {
        self.unary(Rpc::Probe, request).await
    }

    /// `/csi.v1.Identity/GetPluginInfo` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn get_plugin_info(
        &self,
        request: csi::GetPluginInfoRequest,
    ) -> RpcResult<csi::GetPluginInfoResponse> {
        self.unary(Rpc::GetPluginInfo, request).await
    }

    /// `/csi.v1.Identity/GetPluginCapabilities` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn get_plugin_capabilities(
        &self,
        request: csi::GetPluginCapabilitiesRequest,
    ) -> RpcResult<csi::GetPluginCapabilitiesResponse> {
        self.unary(Rpc::GetPluginCapabilities, request).await
    }

    /// `/csi.v1.Controller/ControllerGetCapabilities` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn controller_get_capabilities(
        &self,
        request: csi::ControllerGetCapabilitiesRequest,
    ) -> RpcResult<csi::ControllerGetCapabilitiesResponse> {
        self.unary(Rpc::ControllerGetCapabilities, request).await
    }

    /// `/csi.v1.Controller/CreateVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn create_volume(
        &self,
        request: csi::CreateVolumeRequest,
    ) -> RpcResult<csi::CreateVolumeResponse> {
        self.unary(Rpc::CreateVolume, request).await
    }

    /// `/csi.v1.Controller/DeleteVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn delete_volume(
        &self,
        request: csi::DeleteVolumeRequest,
    ) -> RpcResult<csi::DeleteVolumeResponse> {
        self.unary(Rpc::DeleteVolume, request).await
    }

    /// `/csi.v1.Controller/ControllerPublishVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn controller_publish_volume(
        &self,
        request: csi::ControllerPublishVolumeRequest,
    ) -> RpcResult<csi::ControllerPublishVolumeResponse> {
        self.unary(Rpc::ControllerPublishVolume, request).await
    }

    /// `/csi.v1.Controller/ControllerUnpublishVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn controller_unpublish_volume(
        &self,
        request: csi::ControllerUnpublishVolumeRequest,
    ) -> RpcResult<csi::ControllerUnpublishVolumeResponse> {
        self.unary(Rpc::ControllerUnpublishVolume, request).await
    }

    /// `/csi.v1.Controller/ValidateVolumeCapabilities` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn validate_volume_capabilities(
        &self,
        request: csi::ValidateVolumeCapabilitiesRequest,
    ) -> RpcResult<csi::ValidateVolumeCapabilitiesResponse> {
        self.unary(Rpc::ValidateVolumeCapabilities, request).await
    }

    /// `/csi.v1.Controller/ListVolumes` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn list_volumes(
        &self,
        request: csi::ListVolumesRequest,
    ) -> RpcResult<csi::ListVolumesResponse> {
        self.unary(Rpc::ListVolumes, request).await
    }

    /// `/csi.v1.Controller/GetCapacity` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn get_capacity(
        &self,
        request: csi::GetCapacityRequest,
    ) -> RpcResult<csi::GetCapacityResponse> {
        self.unary(Rpc::GetCapacity, request).await
    }

    /// `/csi.v1.Controller/CreateSnapshot` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn create_snapshot(
        &self,
        request: csi::CreateSnapshotRequest,
    ) -> RpcResult<csi::CreateSnapshotResponse> {
        self.unary(Rpc::CreateSnapshot, request).await
    }

    /// `/csi.v1.Controller/DeleteSnapshot` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn delete_snapshot(
        &self,
        request: csi::DeleteSnapshotRequest,
    ) -> RpcResult<csi::DeleteSnapshotResponse> {
        self.unary(Rpc::DeleteSnapshot, request).await
    }

    /// `/csi.v1.Controller/ListSnapshots` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn list_snapshots(
        &self,
        request: csi::ListSnapshotsRequest,
    ) -> RpcResult<csi::ListSnapshotsResponse> {
        self.unary(Rpc::ListSnapshots, request).await
    }

    /// `/csi.v1.Controller/GetSnapshot` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn get_snapshot(
        &self,
        request: csi::GetSnapshotRequest,
    ) -> RpcResult<csi::GetSnapshotResponse> {
        self.unary(Rpc::GetSnapshot, request).await
    }

    /// `/csi.v1.Controller/ControllerExpandVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn controller_expand_volume(
        &self,
        request: csi::ControllerExpandVolumeRequest,
    ) -> RpcResult<csi::ControllerExpandVolumeResponse> {
        self.unary(Rpc::ControllerExpandVolume, request).await
    }

    /// `/csi.v1.Controller/ControllerGetVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn controller_get_volume(
        &self,
        request: csi::ControllerGetVolumeRequest,
    ) -> RpcResult<csi::ControllerGetVolumeResponse> {
        self.unary(Rpc::ControllerGetVolume, request).await
    }

    /// `/csi.v1.Controller/ControllerModifyVolume` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn controller_modify_volume(
        &self,
        request: csi::ControllerModifyVolumeRequest,
    ) -> RpcResult<csi::ControllerModifyVolumeResponse> {
        self.unary(Rpc::ControllerModifyVolume, request).await
    }

    /// `/csi.v1.GroupController/GroupControllerGetCapabilities` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn group_controller_get_capabilities(
        &self,
        request: csi::GroupControllerGetCapabilitiesRequest,
    ) -> RpcResult<csi::GroupControllerGetCapabilitiesResponse> {
        self.unary(Rpc::GroupControllerGetCapabilities, request)
            .await
    }

    /// `/csi.v1.GroupController/CreateVolumeGroupSnapshot` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn create_volume_group_snapshot(
        &self,
        request: csi::CreateVolumeGroupSnapshotRequest,
    ) -> RpcResult<csi::CreateVolumeGroupSnapshotResponse> {
        self.unary(Rpc::CreateVolumeGroupSnapshot, request).await
    }

    /// `/csi.v1.GroupController/DeleteVolumeGroupSnapshot` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn delete_volume_group_snapshot(
        &self,
        request: csi::DeleteVolumeGroupSnapshotRequest,
    ) -> RpcResult<csi::DeleteVolumeGroupSnapshotResponse> {
        self.unary(Rpc::DeleteVolumeGroupSnapshot, request).await
    }

    /// `/csi.v1.GroupController/GetVolumeGroupSnapshot` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn get_volume_group_snapshot(
        &self,
        request: csi::GetVolumeGroupSnapshotRequest,
    ) -> RpcResult<csi::GetVolumeGroupSnapshotResponse> {
        self.unary(Rpc::GetVolumeGroupSnapshot, request).await
    }

    /// `/csi.v1.Node/NodeGetInfo` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn node_get_info(
        &self,
        request: csi::NodeGetInfoRequest,
    ) -> RpcResult<csi::NodeGetInfoResponse> {
        self.unary(Rpc::NodeGetInfo, request).await
    }

    /// `/csi.v1.Node/NodeGetCapabilities` with the default deadline.
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` or `Unavailable`.
    pub async fn node_get_capabilities(
        &self,
        request: csi::NodeGetCapabilitiesRequest,
    ) -> RpcResult<csi::NodeGetCapabilitiesResponse> {
        self.unary(Rpc::NodeGetCapabilities, request).await
    }
}
