//! N claims at once until all are Bound, then all deleted: time-to-Bound and
//! deletion curves, throughput, API requests per volume, RSS and CPU.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use super::{Ctx, Outcome, create_claims, poll};
use crate::bed::Bed;
use crate::measure::{self, Sampler};
use crate::objects::NS;
use crate::tracker::{Tracker, cumulative, time_to_share};
use crate::volumes;

/// How long the sidecar runs before the claims, to reach its idle state.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Runs the scenario on `bed`.
pub async fn run(ctx: &Ctx, bed: &Bed) -> anyhow::Result<Outcome> {
    let n = ctx.claims;
    let t_start = Instant::now();
    let args = bed.sidecar_args(bed.driver.socket_path(), &[]);
    let sidecar = bed.spawn("csi-provisioner", &args, None)?;
    let pid = sidecar.pid();
    let sampler = Sampler::start(pid, t_start);
    let tracker = Tracker::start(bed.admin.clone());
    tokio::time::sleep(SETTLE).await;
    ensure!(
        sidecar.is_running(),
        "csi-provisioner exited at start: {}",
        sidecar.log_tail(30)
    );
    let rss_idle = measure::rss_kib(pid).context("no RSS")?;
    poll(
        "watches listed",
        ctx.limit,
        Duration::from_millis(50),
        || async { Ok(tracker.synced()) },
    )
    .await?;
    let alive = || {
        ensure!(
            sidecar.is_running(),
            "csi-provisioner exited: {}",
            sidecar.log_tail(30)
        );
        Ok(())
    };

    // Provision.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(bed.admin.clone(), NS);
    let cpu0 = measure::cpu_seconds(pid).context("no CPU time")?;
    let (wall0, t0) = (jiff::Timestamp::now(), Instant::now());
    create_claims(&pvcs, 0..n).await?;
    poll(
        &format!("{n} claims Bound"),
        ctx.limit,
        Duration::from_millis(100),
        || async {
            alive()?;
            Ok(tracker.bound() == n)
        },
    )
    .await?;
    let bound = t0.elapsed().as_secs_f64();
    let wall1 = jiff::Timestamp::now();
    let cpu1 = measure::cpu_seconds(pid).context("no CPU time")?;
    eprintln!("compare: {n} claims Bound in {bound:.1}s");

    // Delete.
    let conn = bed.driver_conn().await?;
    let t1 = Instant::now();
    pvcs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    poll(
        "every PV and driver volume gone",
        ctx.limit,
        Duration::from_millis(100),
        || async {
            alive()?;
            Ok(tracker.claims() == 0
                && tracker.pvs() == 0
                && volumes::list(&conn).await?.is_empty())
        },
    )
    .await?;
    let deleted = t1.elapsed().as_secs_f64();
    let wall2 = jiff::Timestamp::now();
    let cpu2 = measure::cpu_seconds(pid).context("no CPU time")?;
    let rss_end = measure::rss_kib(pid).context("no RSS")?;
    eprintln!("compare: deleted in {deleted:.1}s");
    let rss_peak = sampler.peak_kib().max(rss_idle).max(rss_end);

    let mut out = Outcome {
        bound_curve: cumulative(&tracker.bound_times(t0)),
        delete_curve: cumulative(&tracker.pv_gone_times(t1)),
        rss: sampler.series_mib(),
        ..Default::default()
    };
    drop(sampler);
    tokio::task::block_in_place(|| sidecar.stop(Duration::from_secs(10)));
    let exit = sidecar
        .exit_status()
        .map_or("still running".to_string(), |s| s.to_string());
    let requests = bed.requests().await?;
    let bound_times = tracker.bound_times(t0);
    let nf = n as f64;
    let mib = |k: u64| k as f64 / 1024.0;
    out.fig("claims", nf, 0);
    out.fig(
        "time to 50% Bound (s)",
        time_to_share(&bound_times, n, 0.5).unwrap_or(f64::NAN),
        1,
    );
    out.fig("time to all Bound (s)", bound, 1);
    out.fig("provision throughput (volumes/s)", nf / bound, 2);
    out.fig("delete time (s)", deleted, 1);
    out.fig("delete throughput (volumes/s)", nf / deleted, 2);
    out.fig("API requests, whole run", requests.total() as f64, 0);
    out.fig(
        "API requests per volume, whole run",
        requests.total() as f64 / nf,
        2,
    );
    out.fig(
        "API requests per volume, provision phase",
        requests.between(wall0, wall1) as f64 / nf,
        2,
    );
    out.fig(
        "API requests per volume, delete phase",
        requests.between(wall1, wall2) as f64 / nf,
        2,
    );
    out.fig("RSS idle (MiB)", mib(rss_idle), 1);
    out.fig("RSS peak (MiB)", mib(rss_peak), 1);
    out.fig("RSS end (MiB)", mib(rss_end), 1);
    out.fig("CPU provision phase (s)", cpu1 - cpu0, 2);
    out.fig("CPU delete phase (s)", cpu2 - cpu1, 2);
    out.fig("CPU per volume (ms)", (cpu2 - cpu0) * 1000.0 / nf, 1);
    out.set_requests_per_volume(&requests, n);
    out.notes.push(format!("exit on SIGTERM: {exit}"));
    Ok(out)
}
