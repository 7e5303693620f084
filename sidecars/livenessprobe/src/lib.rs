//! `livenessprobe`: a drop-in for kubernetes-csi's livenessprobe v2.19.0.
//! It serves `/healthz` for a kubelet liveness probe on the driver
//! container: each request dials the driver afresh and calls `Probe`.
//!
//! Pure decisions ([`args`] listeners, [`probe::Outcome`] → HTTP) are
//! separate from the I/O ([`probe::check`], [`run`]).

#![forbid(unsafe_code)]

pub mod args;
pub mod error;
pub mod probe;
pub mod run;

pub use error::Error;
