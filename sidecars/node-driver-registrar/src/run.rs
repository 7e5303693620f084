//! The registrar's I/O: connect, name, serve the registration socket and
//! `/healthz`, follow the driver and the socket, stop on SIGTERM
//! (node-driver-registrar: cmd/csi-node-driver-registrar/main.go `main`
//! and node_register.go `nodeRegister`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use csi_client::csi::v1 as csi;
use csi_client::{ConnectOptions, Connection, LossPolicy, rpc};
use sidecar_runtime::plain_http;
use tokio::sync::Notify;
use tokio::sync::mpsc::unbounded_channel;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use crate::args::Config;
use crate::registration::{self, KubeletCall, OnFailure, Service, plugin_info};
use crate::socket::{self, FileId, registration_socket_path};
use crate::watch::{
    Callbacks, DriverCheck, Reason, Silence, State, Step, TICK, after_driver_answer, next_step,
};
use crate::{Error, health};

/// How long the first dial of the driver may take (csi-lib-utils
/// `Connect`'s default, which the registrar keeps).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The registration server on one socket file.
struct Served {
    id: FileId,
    task: JoinHandle<Result<(), Error>>,
}

impl Served {
    fn open(path: &Path, service: Service) -> Result<Served, Error> {
        let (listener, id) = socket::listen(path)?;
        let task = tokio::spawn(registration::serve(listener, service));
        Ok(Served { id, task })
    }
}

/// Runs the registrar until SIGTERM (`Ok`, after removing the socket) or
/// a fatal error. `on_failure` runs when the kubelet reports a failed
/// registration ([`registration::exit_on_failed_registration`] in
/// production).
///
/// # Errors
/// Every [`Error`] that upstream exits 1 on, plus
/// [`Error::DriverRenamed`].
pub async fn run(config: Config, on_failure: OnFailure) -> Result<(), Error> {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let lost = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let on_loss = {
        let (lost, wake) = (Arc::clone(&lost), Arc::clone(&wake));
        LossPolicy::Callback(Arc::new(move || {
            lost.store(true, Ordering::SeqCst);
            wake.notify_one();
        }))
    };
    let conn = Connection::connect(ConnectOptions {
        address: config.csi_address.clone(),
        timeout: config.timeout,
        connect_timeout: Some(CONNECT_TIMEOUT),
        on_loss,
        metrics: None,
        max_grpc_log_length: None,
    })
    .await
    .map_err(Error::Driver)?;
    let driver = rpc::driver_name(&conn).await.map_err(Error::Driver)?;
    info!(driver = %driver, "CSI driver name");
    log_node_info(&conn).await;

    let path = registration_socket_path(&config.plugin_registration_path, &driver)?;
    let (calls, mut kubelet) = unbounded_channel();
    let service = Service::new(
        plugin_info(&driver, &config.kubelet_registration_path),
        calls,
        on_failure,
    );
    let mut served = Served::open(&path, service.clone())?;
    info!(path = %path.display(), "Registration server started");

    if let Some(address) = &config.http_address {
        let listener = plain_http::bind(address).await?;
        info!(address = %address, "Serving /healthz");
        tokio::spawn(plain_http::serve(
            listener,
            health::handler(path.clone(), driver.clone(), config.timeout),
        ));
    }

    let mut sigterm = sigterm()?;
    let mut callbacks = Callbacks::new(Instant::now());
    let mut state = State {
        socket: served.id,
        driver_lost: false,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sigterm.recv() => {
                info!(path = %path.display(), "Received SIGTERM, removing the registration socket");
                served.task.abort();
                socket::remove(&path)?;
                return Ok(());
            }
            ended = &mut served.task => {
                return match ended {
                    Ok(Err(e)) => Err(e),
                    // The server never returns Ok on its own and is only
                    // aborted by us right before being replaced.
                    Ok(Ok(())) | Err(_) => Err(Error::Socket {
                        what: "serving on",
                        path,
                        source: std::io::Error::other("registration server stopped"),
                    }),
                };
            }
            Some(call) = kubelet.recv() => match call {
                KubeletCall::GetInfo => callbacks.on_get_info(),
                KubeletCall::Registered => match callbacks.on_registered(Instant::now()) {
                    Some(after) => info!(driver = %driver, after = ?after, "The kubelet registered the driver, late"),
                    None => info!(driver = %driver, "The kubelet registered the driver"),
                },
            },
            () = wake.notified() => {}
            _ = tick.tick() => {}
        }
        if lost.swap(false, Ordering::SeqCst) && !state.driver_lost {
            warn!(
                driver = %driver,
                "Lost the connection to the CSI driver; the registration will be renewed when it answers again"
            );
            state.driver_lost = true;
        }
        if let Some(silence) = callbacks.overdue(Instant::now()) {
            warn_silence(silence, &path);
        }
        let reason = match next_step(&state, socket::socket_id(&path)) {
            Step::Idle => continue,
            Step::Reregister(reason) => reason,
            Step::AskDriver => match after_driver_answer(&driver, rpc::driver_name(&conn).await) {
                DriverCheck::StillAway => continue,
                DriverCheck::Renamed(new) => {
                    return Err(Error::DriverRenamed { old: driver, new });
                }
                DriverCheck::Back => {
                    state.driver_lost = false;
                    log_node_info(&conn).await;
                    Reason::DriverRestarted
                }
            },
        };
        info!(reason = reason.as_str(), path = %path.display(), "Re-creating the registration socket so that the kubelet registers the driver again");
        served.task.abort();
        served = Served::open(&path, service.clone())?;
        state.socket = served.id;
        callbacks = Callbacks::new(Instant::now());
    }
}

fn warn_silence(silence: Silence, path: &Path) {
    let waited = crate::watch::CALLBACK_WARNING_AFTER;
    match silence {
        Silence::NoGetInfo => warn!(
            path = %path.display(),
            waited = ?waited,
            "The kubelet has not called GetInfo on the registration socket: check that --plugin-registration-path is the host's <kubelet root dir>/plugins_registry (usually /var/lib/kubelet/plugins_registry) mounted into this container"
        ),
        Silence::NoStatus => warn!(
            path = %path.display(),
            waited = ?waited,
            "The kubelet called GetInfo but has not reported the registration status: it may still be waiting for the driver's NodeGetInfo, or cannot reach the driver at --kubelet-registration-path on the host"
        ),
    }
}

/// Beyond upstream: logs what the kubelet will learn from the driver's
/// `NodeGetInfo` (node ID, topology, volume limit), so a registration that
/// goes wrong can be compared with it. A failure is only logged; the
/// kubelet makes the same call and reports its own failure.
async fn log_node_info(conn: &Connection) {
    match conn.node_get_info(csi::NodeGetInfoRequest {}).await {
        Ok(info) => {
            let topology = info
                .accessible_topology
                .map(|t| {
                    t.segments
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            info!(
                node_id = %info.node_id,
                topology = %topology,
                max_volumes_per_node = info.max_volumes_per_node,
                "CSI driver node info"
            );
        }
        Err(status) => warn!(
            error = %csi_client::error::GoStatus(&status),
            "NodeGetInfo failed; the kubelet will call it during registration too"
        ),
    }
}

fn sigterm() -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(Error::Signal)
}
