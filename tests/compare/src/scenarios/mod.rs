//! The scenarios: what each one does to a fresh test bed, and what it
//! measured ([`Outcome`]).

pub mod crash;
pub mod end_state;
pub mod memory;
pub mod throughput;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::ValueEnum;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::PostParams;

use crate::audit::Requests;
use crate::bed::Flags;
use crate::objects::claim;

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// Create N claims, wait for all Bound, delete them all.
    Throughput,
    /// Start the sidecar with M bound PVs/PVCs present: idle RSS, time to
    /// the first provisioning.
    Memory,
    /// SIGKILL the sidecar while provisions and deletions are in flight.
    Kill,
    /// Two replicas with leader election; SIGKILL the leader mid-load.
    Leader,
    /// Crash and restart the CSI driver mid-load.
    DriverRestart,
    /// Restart kube-apiserver mid-load.
    ApiserverRestart,
}

impl Scenario {
    /// The name used on the command line, in file names and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Memory => "memory",
            Scenario::Kill => "kill",
            Scenario::Leader => "leader",
            Scenario::DriverRestart => "driver-restart",
            Scenario::ApiserverRestart => "apiserver-restart",
        }
    }

    /// One sentence on what the scenario does, for the report.
    pub fn describe(self, ctx: &Ctx) -> String {
        let n = ctx.claims;
        match self {
            Scenario::Throughput => format!(
                "{n} claims created at once (16 at a time), until all are Bound; then all deleted \
                 (one delete-collection) until no PV and no driver volume is left."
            ),
            Scenario::Memory => format!(
                "{m} PVs of the driver, each bound to its claim (created by the admin before the \
                 sidecar starts, completed by kube-controller-manager's binder, each with a real \
                 driver volume); then the sidecar starts and one new claim is created at once. \
                 kube-controller-manager runs with --kube-api-qps=1000 here to bind the {m} \
                 objects quickly.",
                m = ctx.existing
            ),
            Scenario::Kill
            | Scenario::Leader
            | Scenario::DriverRestart
            | Scenario::ApiserverRestart => crash::describe(self, ctx),
        }
    }
}

/// Settings shared by every run.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Claims per run.
    pub claims: usize,
    /// Pre-existing bound PVs/PVCs of the memory scenario.
    pub existing: usize,
    /// Sidecar flags.
    pub flags: Flags,
    /// Delay of every CSI answer in the crash scenarios.
    pub delay: Duration,
    /// How long the crash scenarios wait without any change before they
    /// call the state final.
    pub quiet: Duration,
    /// Limit of each wait.
    pub limit: Duration,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Row name, with its unit.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// Decimals shown.
    pub decimals: usize,
}

/// What one run of one scenario by one implementation measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The table rows, in order.
    pub figures: Vec<Figure>,
    /// Claims Bound over seconds since the first claim was created.
    pub bound_curve: Vec<(f64, f64)>,
    /// PVs deleted over seconds since the deletion started.
    pub delete_curve: Vec<(f64, f64)>,
    /// RSS in MiB over seconds since the sidecar started.
    pub rss: Vec<(f64, f64)>,
    /// API requests per volume by `verb resource`, whole run.
    pub requests_per_volume: BTreeMap<String, f64>,
    /// Things the reader must know about this run.
    pub notes: Vec<String>,
}

impl Outcome {
    /// Adds a figure.
    pub fn fig(&mut self, name: &'static str, value: f64, decimals: usize) {
        self.figures.push(Figure {
            name,
            value,
            decimals,
        });
    }

    /// Fills [`Outcome::requests_per_volume`] from `requests` over `volumes`.
    pub fn set_requests_per_volume(&mut self, requests: &Requests, volumes: usize) {
        let volumes = volumes.max(1) as f64;
        self.requests_per_volume = requests
            .by_verb_resource_merged()
            .into_iter()
            .map(|(k, n)| (k, n as f64 / volumes))
            .collect();
    }
}

/// Polls `done` every `every` until it returns true; fails after `limit`.
pub async fn poll<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut done: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Creates `claim-<i>` for `i` in `range`, 16 at a time.
pub async fn create_claims(
    pvcs: &Api<PersistentVolumeClaim>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    futures::stream::iter(range)
        .map(|i| {
            let pvcs = pvcs.clone();
            async move {
                pvcs.create(&PostParams::default(), &claim(&format!("claim-{i}")))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
