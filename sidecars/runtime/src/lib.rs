//! What every CSI sidecar shares, built so that a Rust sidecar can replace an
//! upstream Go image (kubernetes-csi) without changing its manifest, RBAC or
//! Lease.
//!
//! Always built, for every sidecar including the node-side ones:
//!
//! * [`flags`]: Go-`flag`-compatible command line (`-flag=value`, Go bools and
//!   durations, the csi-lib-utils `standardflags` set and component-base logging flags).
//! * [`logging`]: `-v` levels and klog-compatible JSON on top of `tracing`.
//! * [`backoff`]: per-object exponential failure backoff.
//! * [`plain_http`]: a hyper-only HTTP/1.1 server for the node sidecars'
//!   one or two routes (no axum, no router).
//! * [`shutdown`]: resolves on SIGTERM or SIGINT.
//! * [`leader_health`]: the leadership state `/healthz/leader-election` reports.
//! * [`process_metrics`]: the `process_*` metrics Go's client exposes.
//! * [`quantity`]: Kubernetes resource quantities to and from bytes.
//! * [`feature_gates`]: `--feature-gates` pairs and the generic component gates.
//!
//! The `http` feature (axum) adds the diagnostics server, for every sidecar
//! that serves HTTP; the `kube` feature (kube client and runtime,
//! k8s-openapi) adds the Kubernetes side of the controller sidecars. The
//! sections below list their modules (in a build with the feature on).
//!
//! Both features are on by default. The node-side sidecars
//! (node-driver-registrar, livenessprobe) build with
//! `default-features = false` and serve HTTP with [`plain_http`], so no
//! Kubernetes client and no axum is linked into them.
//!
//! Every fallible operation returns [`Error`].
#![cfg_attr(
    feature = "http",
    doc = "\n## `http`\n\n* [`http`]: metrics and `/healthz/leader-election` endpoint."
)]
#![cfg_attr(
    feature = "kube",
    doc = "\n## `kube`\n
* [`kube_client`]: kube client from `--kubeconfig` / in-cluster config with
  client-go's QPS/burst token bucket.
* [`leader`]: Lease leader election interoperable with client-go.
* [`events`]: core/v1 Event recorder.
* [`gofmt`]: Go's `%q` and client-go's API error text, for messages that
  must read like upstream's.
* [`own_writes`]: read-your-own-writes over watch caches, so a controller
  does not act again on a version it has already replaced.
* [`controller`], [`workqueue`], [`write`](mod@write), [`finalizers`]: watches,
  queues and writes of a controller."
)]
#![cfg_attr(
    all(feature = "kube", feature = "http"),
    doc = "* [`app`]: a controller sidecar's start-up and run."
)]

#[cfg(all(feature = "kube", feature = "http"))]
pub mod app;
pub mod backoff;
#[cfg(feature = "kube")]
pub mod controller;
pub mod error;
#[cfg(feature = "kube")]
pub mod events;
pub mod feature_gates;
#[cfg(feature = "kube")]
pub mod finalizers;
pub mod flags;
#[cfg(feature = "kube")]
pub mod gofmt;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kube")]
pub mod kube_client;
#[cfg(feature = "kube")]
pub mod leader;
pub mod leader_health;
pub mod logging;
#[cfg(feature = "kube")]
pub mod own_writes;
pub mod plain_http;
pub mod process_metrics;
pub mod quantity;
pub mod shutdown;
#[cfg(any(all(test, feature = "kube"), feature = "test-util"))]
pub mod test_api;
#[cfg(feature = "kube")]
pub mod workqueue;
#[cfg(feature = "kube")]
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
