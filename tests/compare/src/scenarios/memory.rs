//! Start-up with M provisioned volumes present: M claims in
//! [`EXISTING_NS`], each with a driver volume and a PV as the provisioner
//! would have written it, bound by kube-controller-manager's binder before
//! the sidecar starts. Then: time from process start to the first new
//! claim Bound, and idle RSS once the sidecar has settled.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use csi_client::csi::v1::volume_capability::access_mode::Mode;
use csi_client::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi_client::csi::v1::{CapacityRange, CreateVolumeRequest, VolumeCapability};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt as _};

use super::{Ctx, Outcome, poll};
use crate::bed::Bed;
use crate::measure::{self, Sampler};
use crate::objects::{EXISTING_NS, NS, SIZE_BYTES, claim, provisioned_pv};
use crate::volumes;

/// Extra kube-controller-manager flags: bind M objects in seconds, not minutes.
pub const KCM_ARGS: [&str; 2] = ["--kube-api-qps=1000", "--kube-api-burst=2000"];
/// Objects created at once while populating.
const CONCURRENCY: usize = 32;
/// CPU below this share of one core for [`QUIET_SECONDS`] seconds in a row
/// counts as settled.
const QUIET_SHARE: f64 = 0.02;
/// See [`QUIET_SHARE`].
const QUIET_SECONDS: u32 = 3;
/// Longest wait for the sidecar to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

fn is_bound(c: &PersistentVolumeClaim) -> bool {
    c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Creates `m` claims, driver volumes and PVs as a provisioner would have,
/// and waits until the binder has bound every claim.
async fn populate(bed: &Bed, m: usize, limit: Duration) -> anyhow::Result<()> {
    bed.tb.create_namespace(EXISTING_NS).await?;
    let conn = bed.driver_conn().await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(bed.admin.clone(), EXISTING_NS);
    let pvs: Api<PersistentVolume> = Api::all(bed.admin.clone());
    futures::stream::iter(0..m)
        .map(|i| {
            let (pvcs, pvs, conn) = (pvcs.clone(), pvs.clone(), conn.clone());
            async move {
                let name = format!("existing-{i}");
                let c = pvcs.create(&PostParams::default(), &claim(&name)).await?;
                let uid = c.uid().context("claim without UID")?;
                let vol = conn
                    .create_volume(CreateVolumeRequest {
                        name: crate::objects::pv_name(&uid),
                        capacity_range: Some(CapacityRange {
                            required_bytes: SIZE_BYTES,
                            limit_bytes: 0,
                        }),
                        volume_capabilities: vec![VolumeCapability {
                            access_mode: Some(AccessMode {
                                mode: Mode::SingleNodeWriter as i32,
                            }),
                            access_type: Some(AccessType::Mount(MountVolume::default())),
                        }],
                        ..Default::default()
                    })
                    .await
                    .context("CreateVolume")?
                    .volume
                    .context("CreateVolume answered no volume")?;
                pvs.create(
                    &PostParams::default(),
                    &provisioned_pv(EXISTING_NS, &name, &uid, &vol.volume_id),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    poll(
        &format!("{m} existing claims Bound"),
        limit,
        Duration::from_secs(1),
        || async {
            let list = pvcs.list(&ListParams::default()).await?;
            Ok(list.items.iter().filter(|c| is_bound(c)).count() == m)
        },
    )
    .await
}

/// Runs the scenario on `bed` (started with [`KCM_ARGS`]).
pub async fn run(ctx: &Ctx, bed: &Bed) -> anyhow::Result<Outcome> {
    let m = ctx.existing;
    let t_pop = Instant::now();
    populate(bed, m, ctx.limit).await?;
    let populated = t_pop.elapsed().as_secs_f64();
    eprintln!("compare: {m} bound PVs/PVCs in {populated:.1}s");
    // Let the binder's last status writes land before the sidecar lists.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(bed.admin.clone(), NS);
    let args = bed.sidecar_args(bed.driver.socket_path(), &[]);
    let wall0 = jiff::Timestamp::now();
    let t0 = Instant::now();
    let sidecar = bed.spawn("csi-provisioner", &args, None)?;
    let pid = sidecar.pid();
    let sampler = Sampler::start(pid, t0);
    pvcs.create(&PostParams::default(), &claim("first")).await?;
    poll(
        "the first claim Bound",
        ctx.limit,
        Duration::from_millis(50),
        || async {
            ensure!(
                sidecar.is_running(),
                "csi-provisioner exited: {}",
                sidecar.log_tail(30)
            );
            Ok(pvcs.get_opt("first").await?.as_ref().is_some_and(is_bound))
        },
    )
    .await?;
    let first = t0.elapsed().as_secs_f64();
    eprintln!("compare: first claim Bound {first:.2}s after the start");

    // Settle: CPU quiet for a few seconds in a row.
    let mut quiet = 0;
    let mut last = measure::cpu_seconds(pid).context("no CPU time")?;
    while quiet < QUIET_SECONDS && t0.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = measure::cpu_seconds(pid).context("no CPU time")?;
        quiet = if now - last < QUIET_SHARE {
            quiet + 1
        } else {
            0
        };
        last = now;
    }
    let settled = t0.elapsed().as_secs_f64();
    let wall1 = jiff::Timestamp::now();
    let rss_idle = measure::rss_kib(pid).context("no RSS")?;
    let rss_peak = sampler.peak_kib().max(rss_idle);

    // The sidecar must have left the existing volumes alone.
    let existing: Api<PersistentVolumeClaim> = Api::namespaced(bed.admin.clone(), EXISTING_NS);
    let still_bound = existing
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|c| is_bound(c))
        .count();
    let driver_volumes = volumes::list(&bed.driver_conn().await?).await?.len();

    let mut out = Outcome {
        rss: sampler.series_mib(),
        ..Default::default()
    };
    drop(sampler);
    tokio::task::block_in_place(|| sidecar.stop(Duration::from_secs(10)));
    let requests = bed.requests().await?;
    let mib = |k: u64| k as f64 / 1024.0;
    out.fig("existing bound PVs/PVCs", m as f64, 0);
    out.fig("time to create and bind them (s, set-up)", populated, 1);
    out.fig("process start → first new claim Bound (s)", first, 2);
    out.fig("process start → settled (s)", settled, 1);
    out.fig("RSS idle after settling (MiB)", mib(rss_idle), 1);
    out.fig("RSS peak during start-up (MiB)", mib(rss_peak), 1);
    out.fig("CPU start → settled (s)", last, 2);
    out.fig(
        "API requests start → settled",
        requests.between(wall0, wall1) as f64,
        0,
    );
    out.fig(
        "existing claims no longer Bound",
        m.saturating_sub(still_bound) as f64,
        0,
    );
    out.fig(
        "driver volumes lost (expected M + 1)",
        (m + 1).saturating_sub(driver_volumes) as f64,
        0,
    );
    Ok(out)
}
