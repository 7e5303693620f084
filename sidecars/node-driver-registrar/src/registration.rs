//! The kubelet plugin-registration service served on `<driver>-reg.sock`
//! (`pluginregistration.Registration`, k8s.io/kubelet
//! pkg/apis/pluginregistration/v1/api.proto).

use std::sync::Arc;

use csi_client::pluginregistration::registration_server::{Registration, RegistrationServer};
use csi_client::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use tokio::net::UnixListener;
use tokio::sync::mpsc::UnboundedSender;
use tonic::{Request, Response, Status};

use crate::Error;
use crate::authority::FixAuthority;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

/// `PluginInfo.type` of a CSI driver (kubelet's `registerapi.CSIPlugin`).
pub const CSI_PLUGIN_TYPE: &str = "CSIPlugin";

/// The versions of the registration API offered to the kubelet.
pub const SUPPORTED_VERSIONS: [&str; 1] = ["1.0.0"];

/// What the registrar answers `GetInfo` with
/// (node-driver-registrar: cmd/csi-node-driver-registrar/main.go
/// `newRegistrationServer` and `registrationServer.GetInfo`): the driver name and the host path of its
/// socket, verbatim.
pub fn plugin_info(driver: &str, kubelet_registration_path: &str) -> PluginInfo {
    PluginInfo {
        r#type: CSI_PLUGIN_TYPE.to_owned(),
        name: driver.to_owned(),
        endpoint: kubelet_registration_path.to_owned(),
        supported_versions: SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    }
}

/// A call the kubelet made, reported to the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletCall {
    /// `GetInfo`.
    GetInfo,
    /// `NotifyRegistrationStatus` with `plugin_registered = true`.
    Registered,
}

/// What to do when the kubelet reports a failed registration; the
/// production hook exits 1 (see [`exit_on_failed_registration`]).
pub type OnFailure = Arc<dyn Fn(&str) + Send + Sync>;

/// Upstream's reaction to `NotifyRegistrationStatus(false)`
/// (node-driver-registrar: cmd/csi-node-driver-registrar/main.go
/// `registrationServer.NotifyRegistrationStatus`): log and exit 1 before
/// answering, so the container restart retries the registration.
pub fn exit_on_failed_registration() -> OnFailure {
    Arc::new(|error: &str| {
        tracing::error!(
            error,
            "Registration process failed with error, restarting registration container"
        );
        std::process::exit(1);
    })
}

/// The `Registration` service: stateless answers, calls reported on `calls`.
#[derive(Clone)]
pub struct Service {
    info: PluginInfo,
    calls: UnboundedSender<KubeletCall>,
    on_failure: OnFailure,
}

impl Service {
    /// A service answering with `info`, reporting calls to `calls` and
    /// running `on_failure` with the kubelet's error text on a failed
    /// registration.
    pub fn new(
        info: PluginInfo,
        calls: UnboundedSender<KubeletCall>,
        on_failure: OnFailure,
    ) -> Self {
        Service {
            info,
            calls,
            on_failure,
        }
    }
}

#[tonic::async_trait]
impl Registration for Service {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        tracing::debug!("Received GetInfo call");
        // The main loop may be gone during shutdown; the answer still stands.
        let _ = self.calls.send(KubeletCall::GetInfo);
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        tracing::info!(
            registered = status.plugin_registered,
            error = %status.error,
            "Received NotifyRegistrationStatus call"
        );
        if !status.plugin_registered {
            (self.on_failure)(&status.error);
            return Err(Status::internal(format!(
                "registration failed: {}",
                status.error
            )));
        }
        let _ = self.calls.send(KubeletCall::Registered);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// Serves `service` over HTTP/2 on `listener` until the task is dropped
/// or aborted, one task per connection. Each connection goes through
/// [`FixAuthority`], so the kubelet's socket-path `:authority` is
/// accepted. (hyper directly rather than tonic's router, which would link
/// axum for one service.)
///
/// # Errors
/// [`Error::Accept`] when accepting connections fails.
pub async fn serve(listener: UnixListener, service: Service) -> Result<(), Error> {
    let service = RegistrationServer::new(service);
    loop {
        let (stream, _) = listener.accept().await.map_err(Error::Accept)?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(FixAuthority::new(stream));
            if let Err(error) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "registration connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_upstreams() {
        let info = plugin_info("hostpath.csi.k8s.io", "/var/lib/kubelet/plugins/h/csi.sock");
        assert_eq!(info.r#type, "CSIPlugin");
        assert_eq!(info.name, "hostpath.csi.k8s.io");
        assert_eq!(info.endpoint, "/var/lib/kubelet/plugins/h/csi.sock");
        assert_eq!(info.supported_versions, vec!["1.0.0".to_owned()]);
    }
}
