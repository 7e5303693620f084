//! The one error type of this crate.

/// Everything that stops livenessprobe; each ends the process with status
/// 1, except a failing health listener (see [`Error::HealthListener`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--health-port` other than the default together with `--http-endpoint`.
    #[error("only one of `--health-port` and `--http-endpoint` can be set")]
    HealthPortAndHttpEndpoint,

    /// `--metrics-address` together with `--http-endpoint`.
    #[error("only one of `--metrics-address` and `--http-endpoint` can be set")]
    MetricsAddressAndHttpEndpoint,

    /// The driver's address cannot be dialled.
    #[error("failed to connect to CSI driver: {0}")]
    Connect(#[source] csi_client::Error),

    /// The driver did not say its name at start.
    #[error("failed to get CSI driver name: {0}")]
    DriverName(#[source] csi_client::Error),

    /// The /healthz listener could not be bound. Upstream returns from
    /// `main` then, so the process exits 0; so does this one.
    #[error("failed to start the health server: {0}")]
    HealthListener(#[source] sidecar_runtime::Error),

    /// The separate metrics listener could not be bound.
    #[error("failed to start the metrics server: {0}")]
    MetricsListener(#[source] sidecar_runtime::Error),
}
