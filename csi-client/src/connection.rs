//! The connection to a CSI driver and the one call path every RPC takes
//! (csi-lib-utils `connection`: `Connect`, `LogGRPC`, the metrics
//! interceptor and `ExitOnConnectionLoss`).

use crate::address::Target;
use crate::error::{Error, GoStatus};
use crate::loss::{Dialer, LossPolicy, LossWatch};
use crate::method::Rpc;
use crate::metrics::{CsiMetrics, code_name};
use crate::sanitize::strip_secrets_json;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// How often a pending connect logs `Still connecting`.
const STILL_CONNECTING_EVERY: Duration = Duration::from_secs(10);
/// Pause between dial attempts (upstream's backoff is capped at 1 s).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Bound on one TCP dial so a black-holed host cannot stall the retry loop.
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`Connection::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Driver address: `unix:///path`, bare `/path` (means unix), or
    /// `dns:///host:port`, `host:port`, `http://host:port` (see
    /// [`Target::parse`]).
    pub address: String,
    /// Deadline of each RPC (the sidecar's `--timeout`); sent to the driver
    /// as `grpc-timeout`. `Duration::ZERO` means no deadline.
    pub timeout: Duration,
    /// How long [`Connection::connect`] keeps retrying; `None` waits forever.
    pub connect_timeout: Option<Duration>,
    /// What to do when the established connection breaks.
    pub on_loss: LossPolicy,
    /// Where to record `csi_sidecar_operations_seconds`; `None` records nothing.
    pub metrics: Option<CsiMetrics>,
    /// Cap, in bytes, on the logged response JSON (`--max-grpc-log-length`);
    /// `None` logs it whole.
    pub max_grpc_log_length: Option<usize>,
}

impl ConnectOptions {
    /// Options for `address` with the given per-call `timeout`, waiting
    /// forever to connect, reconnecting on loss, without metrics.
    pub fn new(address: impl Into<String>, timeout: Duration) -> Self {
        ConnectOptions {
            address: address.into(),
            timeout,
            connect_timeout: None,
            on_loss: LossPolicy::Reconnect,
            metrics: None,
            max_grpc_log_length: None,
        }
    }
}

struct Inner {
    channel: Channel,
    address: String,
    timeout: Option<Duration>,
    metrics: Option<CsiMetrics>,
    driver_name: RwLock<String>,
    max_log_len: Option<usize>,
    loss: Arc<LossWatch>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.loss.disarm();
    }
}

/// An established connection to a CSI driver. Cheap to clone; all clones
/// share one HTTP/2 connection, the driver name and the loss policy.
///
/// The connection is never closed for idleness. RPCs fail fast with
/// `Unavailable` while the driver is unreachable; with
/// [`LossPolicy::Reconnect`] the next RPC re-dials.
///
/// A handle also says whether its calls are made for a migrated (in-tree,
/// translated) volume, for the `migrated` metric label: see
/// [`for_migrated`](Self::for_migrated).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    migrated: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.inner.address)
            .field("timeout", &self.inner.timeout)
            .field("migrated", &self.migrated)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Dials the driver, retrying about every second and logging
    /// `Still connecting` (with the address, at info) every 10 s, until
    /// connected or `connect_timeout` elapses (csi-lib-utils `Connect`).
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] if the address cannot be parsed;
    /// [`Error::Connect`] naming the address and the last dial error on timeout.
    pub async fn connect(opts: ConnectOptions) -> Result<Connection, Error> {
        let target = Target::parse(&opts.address)?;
        let authority = match &target {
            Target::Unix(_) => "http://localhost".to_owned(),
            Target::Tcp(host_port) => format!("http://{host_port}"),
        };
        let endpoint = Endpoint::from_shared(authority)
            .map_err(|err| Error::InvalidAddress {
                address: opts.address.clone(),
                reason: err.to_string(),
            })?
            .connect_timeout(DIAL_TIMEOUT);
        let loss = Arc::new(LossWatch::new(opts.address.clone(), opts.on_loss.clone()));
        let dialer = Dialer {
            target: Arc::new(target),
            loss: Arc::clone(&loss),
        };

        tracing::info!(address = %opts.address, "Connecting to CSI driver");
        let started = Instant::now();
        let mut last_error = None;
        let attempts = dial_until_connected(&opts.address, &endpoint, &dialer, &mut last_error);
        let channel = match opts.connect_timeout {
            None => attempts.await,
            Some(limit) => match tokio::time::timeout(limit, attempts).await {
                Ok(channel) => channel,
                Err(_) => {
                    return Err(Error::connect_timeout(
                        &opts.address,
                        started.elapsed(),
                        last_error,
                    ));
                }
            },
        };
        loss.arm();
        tracing::info!(address = %opts.address, "Connected to CSI driver");

        Ok(Connection {
            inner: Arc::new(Inner {
                channel,
                address: opts.address,
                timeout: (!opts.timeout.is_zero()).then_some(opts.timeout),
                metrics: opts.metrics,
                driver_name: RwLock::new(String::new()),
                max_log_len: opts.max_grpc_log_length,
                loss,
            }),
            migrated: false,
        })
    }

    /// A handle on the same connection whose calls are recorded as made for
    /// a migrated volume (`migrated = true`) or not (`false`) — the
    /// counterpart of upstream's per-call `AdditionalInfo{Migrated}` context
    /// value. Handles from [`connect`](Self::connect) say `false`. The label
    /// only shows once [`CsiMetrics::enable_migration_label`] was called.
    #[must_use]
    pub fn for_migrated(&self, migrated: bool) -> Connection {
        Connection {
            inner: Arc::clone(&self.inner),
            migrated,
        }
    }

    /// Whether this handle's calls count as made for a migrated volume (see
    /// [`for_migrated`](Self::for_migrated)).
    pub fn is_for_migrated(&self) -> bool {
        self.migrated
    }

    /// The address this connection was made with.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The default per-call deadline (`None` = no deadline).
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// Sets the `driver_name` metric label for later calls
    /// (csi-lib-utils `CSIMetricsManager.SetDriverName`).
    pub fn set_driver_name(&self, name: impl Into<String>) {
        let mut guard = self
            .inner
            .driver_name
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *guard = name.into();
    }

    /// The driver name set by [`set_driver_name`](Self::set_driver_name), or `""`.
    pub fn driver_name(&self) -> String {
        self.inner
            .driver_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the connection is currently known to be broken (a loss was
    /// detected and no re-dial has succeeded since).
    pub fn is_lost(&self) -> bool {
        self.inner.loss.is_lost()
    }

    /// Issues `rpc` with the default deadline. See [`unary_with_timeout`](Self::unary_with_timeout).
    ///
    /// # Errors
    /// The driver's status, `DeadlineExceeded` past the deadline, or
    /// `Unavailable` when the driver cannot be reached.
    pub async fn unary<Req, Resp>(&self, rpc: Rpc, request: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + prost::Name + Send + Sync + 'static,
        Resp: prost::Message + prost::Name + Default + Send + Sync + 'static,
    {
        self.unary_with_timeout(rpc, request, self.inner.timeout)
            .await
    }

    /// Issues one unary CSI RPC; every typed method ends up here.
    ///
    /// - `timeout` (`None` = none) bounds the whole call and is sent as
    ///   `grpc-timeout`; when it passes the result is `DeadlineExceeded`
    ///   (`context deadline exceeded`), as grpc-go reports it.
    /// - The call is recorded in `csi_sidecar_operations_seconds` (with
    ///   `migrated` as this handle says, when the histogram has that label).
    /// - At TRACE (klog V(5)) it logs `GRPC call` (method, secret-stripped
    ///   request JSON) and `GRPC response` (response JSON, error).
    ///
    /// `Req`/`Resp` must be the request/response types of `rpc`; a mismatch
    /// is reported by the driver or by decoding, never by a panic.
    ///
    /// # Errors
    /// As for [`unary`](Self::unary).
    pub async fn unary_with_timeout<Req, Resp>(
        &self,
        rpc: Rpc,
        request: Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + prost::Name + Send + Sync + 'static,
        Resp: prost::Message + prost::Name + Default + Send + Sync + 'static,
    {
        let method = rpc.path();
        let log = tracing::enabled!(tracing::Level::TRACE);
        if log {
            tracing::trace!(method, request = %strip_secrets_json(&request), "GRPC call");
        }

        let started = Instant::now();
        let call = self.call(rpc, request, timeout);
        let result = match timeout {
            None => call.await,
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Err(deadline_exceeded()),
            },
        };
        // tonic's own grpc-timeout guard can win the race and says Cancelled.
        let result = result.map_err(|status| {
            let expired = timeout.is_some_and(|limit| started.elapsed() >= limit);
            if expired && status.code() == Code::Cancelled {
                deadline_exceeded()
            } else {
                status
            }
        });
        let elapsed = started.elapsed();

        if let Some(metrics) = &self.inner.metrics {
            let code = match &result {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            };
            metrics.record_call(
                &self.driver_name(),
                method,
                code_name(code),
                elapsed,
                self.migrated,
            );
        }
        if log {
            match &result {
                Ok(response) => tracing::trace!(
                    response = %cap_log(strip_secrets_json(response), self.inner.max_log_len),
                    err = "<nil>",
                    "GRPC response"
                ),
                Err(status) => {
                    tracing::trace!(response = "{}", err = %GoStatus(status), "GRPC response")
                }
            }
        }
        result
    }

    async fn call<Req, Resp>(
        &self,
        rpc: Rpc,
        request: Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + prost::Name + Send + Sync + 'static,
        Resp: prost::Message + prost::Name + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.inner.channel.clone());
        grpc.ready()
            .await
            .map_err(|err| tonic::Status::unavailable(format!("connection not ready: {err}")))?;
        let mut request = tonic::Request::new(request);
        if let Some(limit) = timeout {
            request.set_timeout(limit);
        }
        let path = http::uri::PathAndQuery::from_static(rpc.path());
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        grpc.unary(request, path, codec)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Dials `address` once: no retry, no log line, no loss detection, no
/// metrics. For callers that open a short-lived connection per check, as
/// livenessprobe does for every `/healthz` (a fresh connection notices a
/// replaced socket) and node-driver-registrar does for its own
/// registration socket; bound it with a timeout, a black-holed TCP host
/// waits up to 20 s.
///
/// # Errors
/// [`Error::InvalidAddress`] if the address cannot be parsed,
/// [`Error::Connect`] with the dial error otherwise.
pub async fn dial_once(address: &str) -> Result<Channel, Error> {
    let connect_err = |err: tonic::transport::Error| Error::Connect {
        address: address.to_owned(),
        source: error_chain(&err).into(),
    };
    match Target::parse(address)? {
        Target::Unix(path) => {
            let path = Arc::new(path);
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let path = Arc::clone(&path);
                    async move {
                        tokio::net::UnixStream::connect(path.as_path())
                            .await
                            .map(hyper_util::rt::TokioIo::new)
                    }
                }))
                .await
                .map_err(connect_err)
        }
        Target::Tcp(host_port) => Endpoint::from_shared(format!("http://{host_port}"))
            .map_err(|err| Error::InvalidAddress {
                address: address.to_owned(),
                reason: err.to_string(),
            })?
            .connect_timeout(DIAL_TIMEOUT)
            .connect()
            .await
            .map_err(connect_err),
    }
}

/// Caps `text` at `max` bytes (on a char boundary) with upstream's marker
/// (csi-lib-utils `SetMaxGRPCLogLength`).
/// [`ConnectOptions::max_grpc_log_length`] from upstream's
/// `--max-grpc-log-length` flag value: a positive count caps the logged
/// responses, anything else (the default -1, or 0) logs them whole, as
/// csi-lib-utils' `LogGRPC` (`connection/connection.go`) does.
pub fn max_log_length(flag: i64) -> Option<usize> {
    (flag > 0).then(|| usize::try_from(flag).unwrap_or(usize::MAX))
}

fn cap_log(text: String, max: Option<usize>) -> String {
    match max {
        Some(max) if text.len() > max => {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!(
                "{} [response body too large, log capped to {max} chars]",
                &text[..end]
            )
        }
        _ => text,
    }
}

fn deadline_exceeded() -> tonic::Status {
    tonic::Status::deadline_exceeded("context deadline exceeded")
}

/// Dials until a channel is up; records each failure in `last_error` so a
/// timeout can say why.
async fn dial_until_connected(
    address: &str,
    endpoint: &Endpoint,
    dialer: &Dialer,
    last_error: &mut Option<String>,
) -> Channel {
    let mut still_connecting = tokio::time::interval_at(
        Instant::now() + STILL_CONNECTING_EVERY,
        STILL_CONNECTING_EVERY,
    );
    still_connecting.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let attempt = endpoint.connect_with_connector(dialer.clone());
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                result = &mut attempt => break result,
                _ = still_connecting.tick() => tracing::info!(address, "Still connecting"),
            }
        };
        match result {
            Ok(channel) => return channel,
            Err(err) => {
                let text = error_chain(&err);
                tracing::debug!(address, error = %text, "CSI driver not reachable yet");
                *last_error = Some(text);
            }
        }
        let pause = tokio::time::sleep(RETRY_EVERY);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                _ = still_connecting.tick() => tracing::info!(address, "Still connecting"),
            }
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_cap_respects_char_boundaries() {
        assert_eq!(cap_log("abc".into(), None), "abc");
        assert_eq!(max_log_length(-1), None);
        assert_eq!(max_log_length(0), None);
        assert_eq!(max_log_length(7), Some(7));
        assert_eq!(cap_log("abc".into(), Some(3)), "abc");
        assert_eq!(
            cap_log("ééé".into(), Some(3)),
            "é [response body too large, log capped to 3 chars]"
        );
    }

    #[tokio::test]
    async fn dial_once_fails_at_once_on_a_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let err = dial_once(missing.to_str().unwrap()).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        let err = dial_once("https://h:1").await.unwrap_err();
        assert!(matches!(err, Error::InvalidAddress { .. }), "{err}");
    }

    #[tokio::test]
    async fn invalid_address_is_rejected_without_dialing() {
        let err = Connection::connect(ConnectOptions::new("https://h:1", Duration::from_secs(1)))
            .await
            .expect_err("https accepted");
        assert!(matches!(err, Error::InvalidAddress { .. }), "{err}");
    }
}
