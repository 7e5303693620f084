//! One `/healthz`: a fresh connection to the driver and one `Probe`, both
//! within `--probe-timeout` (livenessprobe: cmd/livenessprobe/main.go
//! `healthProbe.checkProbe`).

use std::time::Duration;

use csi_client::csi::v1::ProbeRequest;
use csi_client::csi::v1::identity_client::IdentityClient;
use csi_client::error::GoStatus;
use csi_client::metrics::code_name;
use csi_client::{CsiMetrics, Rpc};
use http::StatusCode;
use tokio::time::Instant;
use tonic::Code;

/// The body of the 500 answer to `ready: false`.
pub const NOT_READY: &str = "driver responded but is not ready";

/// grpc-go's text for an expired context.
pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// Pause between dial attempts within one check (grpc's backoff is capped
/// at 1 s in csi-lib-utils).
const REDIAL_EVERY: Duration = Duration::from_secs(1);

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `Probe` said ready, or did not say (the spec: assume ready).
    Ready,
    /// `Probe` said `ready: false`.
    NotReady,
    /// No connection within the deadline (or a bad address); the error text.
    ConnectFailed(String),
    /// `Probe` failed; the Go-formatted status.
    ProbeFailed(String),
}

/// The outcome of an answered `Probe`: an absent `ready` counts as ready.
pub fn from_ready(ready: Option<bool>) -> Outcome {
    if ready.unwrap_or(true) {
        Outcome::Ready
    } else {
        Outcome::NotReady
    }
}

impl Outcome {
    /// The HTTP status and body upstream answers with.
    pub fn status_and_body(&self) -> (StatusCode, String) {
        match self {
            Outcome::Ready => (StatusCode::OK, "ok".to_owned()),
            Outcome::NotReady => (StatusCode::INTERNAL_SERVER_ERROR, NOT_READY.to_owned()),
            Outcome::ConnectFailed(e) | Outcome::ProbeFailed(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.clone())
            }
        }
    }
}

/// Dials `address` afresh and probes it, all within `timeout`; the Probe
/// is recorded in `metrics` under `driver`.
pub async fn check(
    address: &str,
    timeout: Duration,
    metrics: &CsiMetrics,
    driver: &str,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let channel = loop {
        match tokio::time::timeout_at(deadline, csi_client::dial_once(address)).await {
            Ok(Ok(channel)) => break channel,
            Ok(Err(e @ csi_client::Error::InvalidAddress { .. })) => {
                return Outcome::ConnectFailed(e.to_string());
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "CSI driver not reachable yet");
                if Instant::now() + REDIAL_EVERY >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Outcome::ConnectFailed(DEADLINE_EXCEEDED.into());
                }
                tokio::time::sleep(REDIAL_EVERY).await;
            }
            Err(_) => return Outcome::ConnectFailed(DEADLINE_EXCEEDED.into()),
        }
    };
    tracing::trace!(driver, "Sending probe request to CSI driver");
    let started = Instant::now();
    let mut request = tonic::Request::new(ProbeRequest {});
    request.set_timeout(deadline.saturating_duration_since(started));
    let mut client = IdentityClient::new(channel);
    let result = match tokio::time::timeout_at(deadline, client.probe(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner().ready),
        Ok(Err(status)) if status.code() == Code::Cancelled && Instant::now() >= deadline => {
            Err(tonic::Status::deadline_exceeded(DEADLINE_EXCEEDED))
        }
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded(DEADLINE_EXCEEDED)),
    };
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    metrics.record(
        driver,
        Rpc::Probe.path(),
        code_name(code),
        started.elapsed(),
    );
    match result {
        Ok(ready) => from_ready(ready),
        Err(status) => Outcome::ProbeFailed(GoStatus(&status).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_upstreams_codes_and_bodies() {
        assert_eq!(from_ready(None), Outcome::Ready);
        assert_eq!(from_ready(Some(true)), Outcome::Ready);
        assert_eq!(from_ready(Some(false)), Outcome::NotReady);
        assert_eq!(
            Outcome::Ready.status_and_body(),
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            Outcome::NotReady.status_and_body(),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "driver responded but is not ready".into()
            )
        );
        assert_eq!(
            Outcome::ConnectFailed(DEADLINE_EXCEEDED.into()).status_and_body(),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "context deadline exceeded".into()
            )
        );
        assert_eq!(
            Outcome::ProbeFailed("rpc error: code = Unavailable desc = x".into())
                .status_and_body()
                .1,
            "rpc error: code = Unavailable desc = x"
        );
    }

    #[tokio::test]
    async fn missing_socket_waits_for_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let address = dir.path().join("none.sock");
        let metrics = CsiMetrics::register(&mut Default::default(), "csi_sidecar");
        let started = std::time::Instant::now();
        let out = check(
            address.to_str().unwrap(),
            Duration::from_millis(300),
            &metrics,
            "d",
        )
        .await;
        assert_eq!(out, Outcome::ConnectFailed(DEADLINE_EXCEEDED.into()));
        assert!(started.elapsed() >= Duration::from_millis(290));
        let out = check("https://x:1", Duration::from_secs(1), &metrics, "d").await;
        assert!(matches!(out, Outcome::ConnectFailed(t) if t.contains("invalid CSI address")));
    }
}
