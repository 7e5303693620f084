//! Crash safety, the same for both implementations: N claims are created
//! with every CSI answer delayed (a [`DelayProxy`] between sidecar and
//! driver), and once a quarter are Bound the first half of the claims is
//! deleted; right then a fault hits (SIGKILL of the sidecar, of the leader
//! of two replicas, a driver crash, an API server restart). Sidecars that
//! exit are restarted after 1 s ([`Supervisor`]). Then the run waits for
//! quiescence and counts what is left over.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::DeleteParams;
use testbed::DelayProxy;

use super::end_state::{Observed, observe};
use super::{Ctx, Outcome, Scenario, create_claims, poll};
use crate::bed::Bed;
use crate::objects::NS;
use crate::supervisor::Supervisor;
use crate::tracker::{Tracker, cumulative};

/// The Lease both implementations use for [`DRIVER`].
const LEASE: &str = "hostpath-csi-k8s-io";
/// How long a single sidecar runs before the load.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait after the deletions for a PV to be Released before the fault.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Shortest quiet window of the leader scenario: the follower takes over
/// only once the Lease expired (15 s) and its next jittered retry (5 to 11 s)
/// came.
const LEADER_QUIET: Duration = Duration::from_secs(40);

/// The report's description of a crash scenario.
pub fn describe(s: Scenario, ctx: &Ctx) -> String {
    let common = format!(
        "{n} claims, every CSI answer delayed {d:.1?} by a proxy; when a quarter are Bound the \
         first {h} claims are deleted, and once one of their PVs is Released (at most 5 s later) the \
         fault hits; answers from then on are not \
         delayed (gRPC-Go gives up on a driver whose connection preface takes over 1 s, so a \
         restarted upstream sidecar would crash-loop behind the proxy). Exited sidecars are restarted \
         after 1 s, as kubelet would. Quiescence: the other {k} claims Bound with one PV and \
         one driver volume each and nothing else left, or no change for {q:.0?}.",
        n = ctx.claims,
        d = ctx.delay,
        h = ctx.claims / 2,
        k = ctx.claims - ctx.claims / 2,
        q = ctx.quiet,
    );
    let fault = match s {
        Scenario::Kill => "Fault: SIGKILL of the one sidecar (no leader election).",
        Scenario::Leader => {
            "Fault: SIGKILL of the leader of two replicas (--leader-election, each with its own \
             host name as identity); the killed replica is not restarted (its node is gone), so \
             the other one must take over when the Lease expires (quiet window at least 40 s \
             here, longer than the Lease duration plus the retry period)."
        }
        Scenario::DriverRestart => {
            "Fault: SIGKILL of csi-testdriver, started again at once on the same socket. \
             csi-testdriver keeps volumes in memory: the restart forgets every volume, so PVs \
             Bound before it have no driver volume afterwards (counted as \"PVs whose driver \
             volume is missing\"), and it numbers new volumes from the same start, so a new \
             volume can get the ID of a forgotten one and a DeleteVolume for an old PV can hit \
             it. Those counts describe the test driver, not the sidecars."
        }
        Scenario::ApiserverRestart => {
            "Fault: kube-apiserver stopped (SIGTERM) and started again with the same flags, \
             port and etcd."
        }
        _ => "",
    };
    format!("{common} {fault}")
}

/// The Lease holder's identity, if any.
async fn leader(bed: &Bed) -> anyhow::Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(bed.admin.clone(), NS)
        .get_opt(LEASE)
        .await?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Runs the crash scenario `s` on `bed`.
pub async fn run(s: Scenario, ctx: &Ctx, bed: &mut Bed) -> anyhow::Result<Outcome> {
    let n = ctx.claims;
    let (deleted, kept) = (n / 2, n - n / 2);
    let proxy_path = bed.tb.run_dir().join("px.sock");
    let proxy = DelayProxy::start(&proxy_path, bed.driver.socket_path(), Duration::ZERO)?;
    let mut sup = Supervisor::default();
    if s == Scenario::Leader {
        let extra = [
            "--leader-election".to_string(),
            format!("--leader-election-namespace={NS}"),
        ];
        for i in 1..=2 {
            let args = bed.sidecar_args(proxy.socket_path(), &extra);
            let name = format!("replica-{i}");
            sup.start(bed, &format!("csi-provisioner-{i}"), args, Some(&name))?;
        }
    } else {
        let args = bed.sidecar_args(proxy.socket_path(), &[]);
        sup.start(bed, "csi-provisioner", args, None)?;
    }
    let tracker = Tracker::start(bed.admin.clone());
    let t_ready = Instant::now();
    loop {
        sup.tick(bed)?;
        let ready = match s {
            Scenario::Leader => leader(bed).await?.is_some(),
            _ => t_ready.elapsed() >= SETTLE,
        };
        if ready && tracker.synced() {
            break;
        }
        if t_ready.elapsed() > ctx.limit {
            bail!("sidecars not ready: {}", sup.log_tails(20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.set_delay(ctx.delay);

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(bed.admin.clone(), NS);
    let t0 = Instant::now();
    create_claims(&pvcs, 0..n).await?;
    let quarter = (n / 4).max(1);
    let mut sup_err = None;
    poll(
        &format!("{quarter} claims Bound"),
        ctx.limit,
        Duration::from_millis(100),
        || {
            if let Err(e) = sup.tick(bed) {
                sup_err = Some(e);
            }
            let b = tracker.bound();
            async move { Ok(b >= quarter) }
        },
    )
    .await
    .with_context(|| sup.log_tails(20))?;
    if let Some(e) = sup_err {
        return Err(e);
    }
    futures::stream::iter(0..deleted)
        .map(|i| {
            let pvcs = pvcs.clone();
            async move {
                pvcs.delete(&format!("claim-{i}"), &DeleteParams::default())
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    // Let the binder mark the deleted claims' PVs Released so that their
    // DeleteVolume calls are under way too (at most a few seconds).
    let conn = bed.driver_conn().await?;
    let t_del = Instant::now();
    let before = loop {
        let now = observe(bed, &conn, deleted).await?;
        if now.pvs_stuck > 0 || t_del.elapsed() >= RELEASE_WAIT {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let bound_at_fault = tracker.bound();

    let t_fault = Instant::now();
    eprintln!(
        "compare: {} fault {:.1}s after the first claim",
        s.name(),
        t0.elapsed().as_secs_f64()
    );
    // Answers already held back stay delayed; new ones pass at once, since a
    // restarted upstream sidecar gives up on a driver whose HTTP/2 preface
    // takes more than a second (gRPC-Go) and would crash-loop.
    proxy.set_delay(Duration::ZERO);
    let mut out = Outcome::default();
    match s {
        Scenario::Kill => sup.replicas[0].process.kill9()?,
        Scenario::Leader => {
            let holder = leader(bed).await?.context("no leader at the fault")?;
            let i = sup
                .replicas
                .iter()
                .position(|r| r.hostname.as_deref() == Some(holder.as_str()))
                .with_context(|| format!("leader {holder} is none of the replicas"))?;
            sup.replicas[i].process.kill9()?;
            sup.replicas.remove(i);
            eprintln!("compare: killed the leader {holder}");
        }
        Scenario::DriverRestart => bed.tb.restart_driver(&mut bed.driver).await?,
        Scenario::ApiserverRestart => {
            let away = bed.tb.restart_apiserver().await?;
            out.fig("API server away (s)", away.as_secs_f64(), 1);
        }
        _ => bail!("{} is not a crash scenario", s.name()),
    }

    // Quiescence.
    let quiet = if s == Scenario::Leader {
        ctx.quiet.max(LEADER_QUIET)
    } else {
        ctx.quiet
    };
    let conn = bed.driver_conn().await?;
    let (mut last, mut last_change) = (None::<Observed>, Instant::now());
    let (state, reached) = loop {
        sup.tick(bed)?;
        match observe(bed, &conn, deleted).await {
            Ok(now) => {
                if now.goal(kept) {
                    last_change = Instant::now();
                    break (now, true);
                }
                if last.as_ref() != Some(&now) {
                    last_change = Instant::now();
                    last = Some(now);
                }
            }
            Err(e) => eprintln!("compare: observing: {e:#}"),
        }
        if last.is_some() && last_change.elapsed() >= quiet {
            break (last.take().unwrap_or_default(), false);
        }
        if t_fault.elapsed() > ctx.limit {
            bail!("no observation succeeded within {:?}", ctx.limit);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let quiescence = last_change.duration_since(t_fault).as_secs_f64();
    eprintln!(
        "compare: {} after {quiescence:.1}s: {state:?}",
        if reached { "quiescent" } else { "no change" }
    );
    let restarts = sup.restarts();
    drop(proxy);
    drop(sup);
    let requests = bed.requests().await?;

    out.bound_curve = cumulative(&tracker.bound_times(t0));
    out.fig("claims (first half deleted at the fault)", n as f64, 0);
    out.fig("claims Bound at the fault", bound_at_fault as f64, 0);
    out.fig(
        "driver volumes without PV at the fault (CreateVolume in flight)",
        before.acc.leaked as f64,
        0,
    );
    out.fig(
        "PVs Released or being deleted at the fault",
        before.pvs_stuck as f64,
        0,
    );
    out.fig("sidecar restarts", restarts as f64, 0);
    out.fig("leaked volumes", state.acc.leaked as f64, 0);
    out.fig("duplicate volumes", state.acc.duplicates as f64, 0);
    out.fig("claims stuck Pending", state.claims_pending as f64, 0);
    out.fig(
        "claims stuck Terminating",
        state.claims_terminating as f64,
        0,
    );
    out.fig(
        "PVs stuck Released/Terminating (Delete policy)",
        state.pvs_stuck as f64,
        0,
    );
    out.fig(
        "PVs whose driver volume is missing",
        state.acc.missing as f64,
        0,
    );
    out.fig("kept claims Bound", state.kept_bound as f64, 0);
    out.fig(
        "goal state reached (1 yes, 0 no)",
        f64::from(u8::from(reached)),
        0,
    );
    out.fig("time from fault to quiescence (s)", quiescence, 1);
    out.fig(
        "API requests per claim, whole run",
        requests.total() as f64 / n as f64,
        2,
    );
    out.set_requests_per_volume(&requests, n);
    if before.acc.leaked == 0 {
        out.notes.push(
            "no CreateVolume was in flight at the fault: this run did not test what the \
             scenario is for (use more claims or a longer --csi-delay)"
                .into(),
        );
    }
    if !reached {
        out.notes.push(format!(
            "the goal state was not reached; the state stopped changing {quiescence:.1}s after \
             the fault and stayed so for {quiet:.0?}"
        ));
    }
    Ok(out)
}
