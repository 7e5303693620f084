//! Start-up and serving (livenessprobe: cmd/livenessprobe/main.go `main`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use csi_client::metrics::SIDECAR_SUBSYSTEM;
use csi_client::{ConnectOptions, Connection, CsiMetrics, LossPolicy, rpc};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sidecar_runtime::plain_http::{self, Body};
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::Error;
use crate::args::Listeners;
use crate::probe::{self, Outcome};

/// The metrics content type prometheus-client's text encoder produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Help of `process_start_time_seconds`, as component-base writes it.
pub const START_TIME_HELP: &str = "[ALPHA] Start time of the process since unix epoch in seconds.";

/// What every request needs.
pub struct Probe {
    /// `--csi-address`.
    pub address: String,
    /// `--probe-timeout`.
    pub timeout: Duration,
    /// The driver's name, for the metrics.
    pub driver: String,
    /// `csi_sidecar_operations_seconds`.
    pub metrics: CsiMetrics,
    /// Everything served at `--metrics-path`.
    pub registry: Registry,
    /// `--metrics-path`.
    pub metrics_path: String,
}

/// The registry upstream serves: the operations histogram and
/// `process_start_time_seconds`, nothing else.
pub fn registry() -> (Registry, CsiMetrics) {
    let mut registry = Registry::default();
    let metrics = CsiMetrics::register(&mut registry, SIDECAR_SUBSYSTEM);
    let start: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    let started = sidecar_runtime::process_metrics::read_stats()
        .map(|s| s.start_time_seconds)
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        });
    start.set(started);
    registry.register("process_start_time_seconds", START_TIME_HELP, start);
    (registry, metrics)
}

/// Waits for the driver (forever, as upstream since PR #240) and asks its
/// name once, recorded under `unknown-driver` as upstream does.
///
/// # Errors
/// [`Error::Connect`] for an address that cannot be dialled,
/// [`Error::DriverName`] when `GetPluginInfo` fails or names nothing.
pub async fn driver_name(address: &str, metrics: &CsiMetrics) -> Result<String, Error> {
    let conn = Connection::connect(ConnectOptions {
        address: address.to_owned(),
        timeout: Duration::ZERO,
        connect_timeout: None,
        on_loss: LossPolicy::Reconnect,
        metrics: Some(metrics.clone()),
        max_grpc_log_length: None,
    })
    .await
    .map_err(Error::Connect)?;
    rpc::driver_name(&conn).await.map_err(Error::DriverName)
}

/// Answers one request on the health listener (`metrics` says whether the
/// metrics path is served there too).
pub async fn answer(probe: &Probe, path: &str, metrics: bool) -> Response<Body> {
    if metrics && path == probe.metrics_path {
        return encode(&probe.registry);
    }
    if path != "/healthz" {
        return plain_http::not_found();
    }
    let outcome = probe::check(&probe.address, probe.timeout, &probe.metrics, &probe.driver).await;
    match &outcome {
        Outcome::Ready => tracing::trace!("Health check succeeded"),
        other => error!(error = %other.status_and_body().1, "Health check failed"),
    }
    let (status, body) = outcome.status_and_body();
    plain_http::text(status, body)
}

/// The registry in the text format.
pub fn encode(registry: &Registry) -> Response<Body> {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => {
            let mut response = plain_http::text(StatusCode::OK, body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            );
            response
        }
        Err(e) => plain_http::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        ),
    }
}

fn handler(
    probe: Arc<Probe>,
    with_health: bool,
    with_metrics: bool,
) -> impl Fn(Request<Incoming>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |request: Request<Incoming>| {
        let probe = Arc::clone(&probe);
        Box::pin(async move {
            let path = request.uri().path();
            if with_health {
                answer(&probe, path, with_metrics).await
            } else if path == probe.metrics_path {
                encode(&probe.registry)
            } else {
                plain_http::not_found()
            }
        })
    }
}

/// Binds the listeners, then serves until the process ends. Returns `Ok`
/// only if the health listener cannot be bound: upstream's `main` returns
/// then and the process exits 0.
///
/// # Errors
/// [`Error::MetricsListener`] when the separate metrics listener fails.
pub async fn serve(probe: Probe, listeners: &Listeners) -> Result<(), Error> {
    let probe = Arc::new(probe);
    if let Some(address) = &listeners.metrics {
        let listener = plain_http::bind(address)
            .await
            .map_err(Error::MetricsListener)?;
        info!(address = %address, path = %probe.metrics_path, "Serving metrics");
        tokio::spawn(plain_http::serve(
            listener,
            handler(Arc::clone(&probe), false, true),
        ));
    }
    let listener: TcpListener = match plain_http::bind(&listeners.health).await {
        Ok(listener) => listener,
        Err(e) => {
            error!(error = %Error::HealthListener(e), "Serving /healthz failed");
            return Ok(());
        }
    };
    info!(address = %listeners.health, driver = %probe.driver, "ServeMux listening");
    plain_http::serve(
        listener,
        handler(probe, true, listeners.metrics_with_health),
    )
    .await;
    Ok(())
}
