//! The diagnostics HTTP server behind `--http-endpoint` / `--metrics-address`.
//!
//! Paths (exact match, any method, like Go's `http.ServeMux` for these patterns):
//!
//! * `<metrics_path>` (default `/metrics`): the registry in OpenMetrics text
//!   format, `Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8`;
//! * `/healthz/leader-election` (only when a [`LeaderHealth`] is given, i.e.
//!   `--http-endpoint` with `--leader-election`, as upstream): `200 ok`, or
//!   `500 internal server error: failed election to renew leadership on lease <name>`
//!   when this replica leads but has not renewed for lease duration + 20 s
//!   (csi-lib-utils' watchdog);
//! * `/healthz`: `200 ok` (process liveness);
//! * anything else: 404.
//!
//! Registry sharing: the registry is an [`SharedRegistry`]
//! (`Arc<std::sync::Mutex<Registry>>`) so a sidecar may keep registering
//! metrics after the server started (e.g. once the driver name is known). The
//! lock is held only while encoding; metric updates never take it, because
//! prometheus-client metrics are themselves shared handles.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, Uri, header};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::Error;
pub use crate::leader_health::LeaderHealth;

/// A metrics registry shared between the code that registers metrics and the server.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// The OpenMetrics content type prometheus-client's text encoder produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Path of the leader-election health check.
pub const LEADER_HEALTH_PATH: &str = "/healthz/leader-election";

/// Binds `addr` and serves until `shutdown` resolves (see [`bind`] and [`serve_listener`]).
pub async fn serve(
    addr: &str,
    metrics_path: &str,
    registry: SharedRegistry,
    leader: Option<LeaderHealth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = bind(addr).await?;
    serve_listener(listener, metrics_path, registry, leader, shutdown).await
}

/// Binds a Go-style listen address. `:8080` (all interfaces, as Go's `net.Listen`)
/// binds `[::]:8080`, falling back to `0.0.0.0:8080` where IPv6 is disabled;
/// `host:port` and `127.0.0.1:0` bind as given.
///
/// Errors: [`Error::HttpBind`] (upstream treats this as fatal).
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    let err = |source| Error::HttpBind {
        addr: addr.to_owned(),
        source,
    };
    if let Some(port) = addr.strip_prefix(':') {
        match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}"))
                .await
                .map_err(err),
        }
    } else {
        TcpListener::bind(addr).await.map_err(err)
    }
}

#[derive(Clone)]
struct AppState {
    metrics_path: Arc<str>,
    registry: SharedRegistry,
    leader: Option<LeaderHealth>,
}

/// Serves on an already bound listener until `shutdown` resolves, then
/// finishes in-flight requests and returns `Ok(())`.
///
/// Errors: [`Error::HttpServe`] if accepting connections fails fatally.
pub async fn serve_listener(
    listener: TcpListener,
    metrics_path: &str,
    registry: SharedRegistry,
    leader: Option<LeaderHealth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let state = AppState {
        metrics_path: metrics_path.into(),
        registry,
        leader,
    };
    // One fallback handler instead of axum routes: a metrics path that is not a
    // valid axum route, or that collides with /healthz, must not panic.
    let app = Router::new().fallback(dispatch).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::HttpServe)
}

async fn dispatch(State(state): State<AppState>, uri: Uri) -> Response {
    let path = uri.path();
    if path == &*state.metrics_path {
        return metrics(&state.registry);
    }
    match (path, &state.leader) {
        (LEADER_HEALTH_PATH, Some(leader)) => match leader.check(tokio::time::Instant::now()) {
            Ok(()) => ok(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                format!("internal server error: {e}\n"),
            )
                .into_response(),
        },
        ("/healthz", _) => ok(),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

fn ok() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}

fn metrics(registry: &SharedRegistry) -> Response {
    let mut body = String::new();
    let encoded = {
        let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut body, &reg)
    };
    match encoded {
        Ok(()) => Response::builder()
            .header(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let registry: SharedRegistry = Default::default();
        let counter = Counter::<u64>::default();
        registry
            .lock()
            .unwrap()
            .register("test_ops", "Test operations", counter.clone());
        counter.inc();
        let health = LeaderHealth::new("my-lease", Duration::from_secs(15));
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(
            listener,
            "/metrics",
            registry.clone(),
            Some(health.clone()),
            async {
                let _ = rx.await;
            },
        ));

        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            head.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            )
        );
        assert!(body.contains("test_ops_total 1"), "{body}");
        assert!(body.contains("# EOF"));

        // Metrics registered after the server started are served too.
        registry
            .lock()
            .unwrap()
            .register("late", "Registered late", Counter::<u64>::default());
        assert!(get(addr, "/metrics").await.2.contains("late_total 0"));

        let (code, _, body) = get(addr, "/healthz").await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let (code, _, body) = get(addr, LEADER_HEALTH_PATH).await;
        assert_eq!((code, body.as_str()), (200, "ok"));

        // Leader that last renewed long ago: watchdog fires.
        let stale = tokio::time::Instant::now()
            .checked_sub(Duration::from_secs(36))
            .unwrap();
        health.record(true, stale);
        let (code, _, body) = get(addr, LEADER_HEALTH_PATH).await;
        assert_eq!(code, 500);
        assert_eq!(
            body,
            "internal server error: failed election to renew leadership on lease my-lease\n"
        );
        // Non-leaders are always healthy.
        health.record(false, stale);
        assert_eq!(get(addr, LEADER_HEALTH_PATH).await.0, 200);

        assert_eq!(get(addr, "/nope").await.0, 404);
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn no_leader_health_without_leader_election() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_listener(
            listener,
            "/healthz",
            Default::default(),
            None,
            std::future::pending(),
        ));
        assert_eq!(get(addr, LEADER_HEALTH_PATH).await.0, 404);
        // A metrics path that collides with /healthz wins and does not panic.
        let (code, head, _) = get(addr, "/healthz").await;
        assert_eq!(code, 200);
        assert!(head.contains("openmetrics"));
        server.abort();
    }

    #[tokio::test]
    async fn bind_errors_are_reported() {
        let l = bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let e = bind(&addr).await.unwrap_err();
        assert!(matches!(e, Error::HttpBind { .. }));
        assert!(bind("not an address").await.is_err());
        // Go-style ":port" means all interfaces.
        assert!(bind(":0").await.is_ok());
    }
}
