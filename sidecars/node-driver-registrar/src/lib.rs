//! `csi-node-driver-registrar`: a drop-in for kubernetes-csi's
//! node-driver-registrar v2.17.0. It asks the CSI driver its name, serves
//! the kubelet plugin-registration API on
//! `<plugin-registration-path>/<driver>-reg.sock` so that the kubelet
//! registers the driver, and answers `/healthz` by checking that socket.
//!
//! Pure decisions ([`args`], [`socket`] paths, [`health`] verdicts,
//! [`watch`] re-registration steps) are separate from the I/O in [`run`].

#![forbid(unsafe_code)]

pub mod args;
pub mod authority;
pub mod error;
pub mod health;
pub mod registration;
pub mod run;
pub mod socket;
pub mod watch;

pub use error::Error;
