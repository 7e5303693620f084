//! Driver-level helpers the sidecars run at startup (csi-lib-utils
//! `rpc/common.go`): driver name, capability sets and readiness probing.

use crate::capabilities::{
    ControllerCapabilitySet, GroupControllerCapabilitySet, NodeCapabilitySet, PluginCapabilitySet,
    controller_set, group_controller_set, node_set, plugin_set,
};
use crate::connection::Connection;
use crate::csi::v1 as csi;
use crate::error::{Error, GoStatus};
use crate::method::Rpc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tonic::Code;

/// Interval between readiness probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

fn rpc_error(rpc: Rpc) -> impl FnOnce(tonic::Status) -> Error {
    move |status| Error::Rpc { rpc, status }
}

/// The driver's name from `GetPluginInfo` (`GetDriverName`).
///
/// # Errors
/// [`Error::Rpc`] if the call fails, [`Error::EmptyDriverName`] if the
/// driver returns an empty name.
pub async fn driver_name(conn: &Connection) -> Result<String, Error> {
    let info = conn
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .map_err(rpc_error(Rpc::GetPluginInfo))?;
    if info.name.is_empty() {
        return Err(Error::EmptyDriverName);
    }
    Ok(info.name)
}

/// Service capabilities from `GetPluginCapabilities` (`GetPluginCapabilities`);
/// empty and non-service entries are skipped.
///
/// # Errors
/// [`Error::Rpc`] if the call fails.
pub async fn plugin_capabilities(conn: &Connection) -> Result<PluginCapabilitySet, Error> {
    let resp = conn
        .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
        .await
        .map_err(rpc_error(Rpc::GetPluginCapabilities))?;
    Ok(plugin_set(&resp.capabilities))
}

/// RPC capabilities from `ControllerGetCapabilities` (`GetControllerCapabilities`).
///
/// # Errors
/// [`Error::Rpc`] if the call fails.
pub async fn controller_capabilities(conn: &Connection) -> Result<ControllerCapabilitySet, Error> {
    let resp = conn
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .map_err(rpc_error(Rpc::ControllerGetCapabilities))?;
    Ok(controller_set(&resp.capabilities))
}

/// RPC capabilities from `NodeGetCapabilities`.
///
/// # Errors
/// [`Error::Rpc`] if the call fails.
pub async fn node_capabilities(conn: &Connection) -> Result<NodeCapabilitySet, Error> {
    let resp = conn
        .node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
        .await
        .map_err(rpc_error(Rpc::NodeGetCapabilities))?;
    Ok(node_set(&resp.capabilities))
}

/// RPC capabilities from `GroupControllerGetCapabilities`
/// (`GetGroupControllerCapabilities`).
///
/// # Errors
/// [`Error::Rpc`] if the call fails.
pub async fn group_controller_capabilities(
    conn: &Connection,
) -> Result<GroupControllerCapabilitySet, Error> {
    let resp = conn
        .group_controller_get_capabilities(csi::GroupControllerGetCapabilitiesRequest {})
        .await
        .map_err(rpc_error(Rpc::GroupControllerGetCapabilities))?;
    Ok(group_controller_set(&resp.capabilities))
}

/// One `Probe` with the connection's default deadline (`Probe`); a response
/// without `ready` counts as ready.
///
/// # Errors
/// [`Error::Rpc`] if the call fails.
pub async fn probe(conn: &Connection) -> Result<bool, Error> {
    probe_once(conn, conn.timeout())
        .await
        .map_err(rpc_error(Rpc::Probe))
}

async fn probe_once(conn: &Connection, timeout: Option<Duration>) -> Result<bool, tonic::Status> {
    let resp: csi::ProbeResponse = conn
        .unary_with_timeout(Rpc::Probe, csi::ProbeRequest {}, timeout)
        .await?;
    Ok(resp.ready.unwrap_or(true))
}

/// Probes until the driver is ready (`ProbeForever`): once immediately,
/// then every [`PROBE_INTERVAL`], each probe bounded by
/// `single_probe_timeout` (`Duration::ZERO` = unbounded). Not-ready answers
/// and timeouts are logged and retried; drop the future to give up.
///
/// # Errors
/// [`Error::ProbeFailed`] on any other failure (sidecars exit 1 on it).
pub async fn probe_forever(conn: &Connection, single_probe_timeout: Duration) -> Result<(), Error> {
    tracing::info!("Probing CSI driver for readiness");
    let timeout = (!single_probe_timeout.is_zero()).then_some(single_probe_timeout);
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match probe_once(conn, timeout).await {
            Ok(true) => return Ok(()),
            Ok(false) => tracing::info!("CSI driver is not ready"),
            Err(status) if status.code() == Code::DeadlineExceeded => {
                tracing::warn!(err = %GoStatus(&status), "CSI driver probe timed out");
            }
            Err(status) => return Err(Error::ProbeFailed(status)),
        }
    }
}
