//! What every CSI sidecar shares, built so that a Rust sidecar can replace an
//! upstream Go image (kubernetes-csi) without changing its manifest, RBAC or
//! Lease:
//!
//! * [`flags`]: Go-`flag`-compatible command line (`-flag=value`, Go bools and
//!   durations, the csi-lib-utils `standardflags` set and component-base logging flags).
//! * [`logging`]: `-v` levels and klog-compatible JSON on top of `tracing`.
//! * [`kube_client`]: kube client from `--kubeconfig` / in-cluster config with
//!   client-go's QPS/burst token bucket.
//! * [`http`]: metrics and `/healthz/leader-election` endpoint.
//! * [`leader`]: Lease leader election interoperable with client-go.
//! * [`backoff`]: per-object exponential failure backoff.
//! * [`events`]: core/v1 Event recorder.
//! * [`gofmt`]: Go's `%q` and client-go's API error text, for messages that
//!   must read like upstream's.
//! * [`migration`]: CSI migration of in-tree volumes (csi-translation-lib).
//! * [`plain_http`]: a hyper-only HTTP/1.1 server for the node sidecars'
//!   one or two routes.
//! * [`shutdown`]: resolves on SIGTERM or SIGINT.
//! * [`own_writes`]: read-your-own-writes over watch caches, so a controller
//!   does not act again on a version it has already replaced.
//!
//! Every fallible operation returns [`Error`].

pub mod app;
pub mod backoff;
pub mod controller;
pub mod error;
pub mod events;
pub mod finalizers;
pub mod flags;
pub mod gofmt;
pub mod http;
pub mod kube_client;
pub mod leader;
pub mod logging;
pub mod migration;
pub mod own_writes;
pub mod plain_http;
pub mod process_metrics;
pub mod shutdown;
#[cfg(test)]
mod test_api;
pub mod workqueue;
pub mod write;

pub use error::Error;

/// Reads the machine's host name the way Go's `os.Hostname()` does on Linux:
/// `/proc/sys/kernel/hostname` first, then the `HOSTNAME` environment variable.
/// In a pod this is the pod name. Returns `"localhost"` when neither is available,
/// so that callers never have to handle a missing identity.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}
