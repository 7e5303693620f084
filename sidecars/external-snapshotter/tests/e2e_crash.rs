//! No orphaned snapshot after a crash mid-CreateSnapshot: the sidecar is
//! killed with SIGKILL while CreateSnapshot calls are in flight (the driver
//! has cut the snapshots, its answers are held back by a proxy), the
//! VolumeSnapshots are deleted while it is down, and after a restart every
//! content is gone and the driver holds no snapshot of the source volume.
//! The `volumesnapshot-being-created` annotation, written before each call,
//! is the record that makes the restarted sidecar ask again (same name, so
//! the driver answers with the snapshot it already cut) and then delete.

mod common;

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{LEASE, WAIT, claim, poll, scenario, snapshot_of, spawn_snapshotter, testing_ours};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use snapshot_api::names as n;
use testbed::{Testbed, TestbedOptions};

const SNAPSHOTS: usize = 5;
/// Longer than the whole test's in-flight phase: no answer arrives before
/// the kill.
const RESPONSE_DELAY: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_snapshot_leaks_after_a_kill_during_create_snapshot() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let who = if testing_ours() { "ours" } else { "upstream" };
        let s = scenario(tb, "e2e-snapcrash", &["--timeout=120s"]).await?;
        let leases: Api<Lease> = Api::namespaced(s.admin.clone(), &s.ns);
        poll("snapshotter leading", WAIT, || async {
            let l = leases.get_opt(LEASE).await?;
            Ok(l.and_then(|l| l.spec).and_then(|s| s.holder_identity).map(|_| ()))
        })
        .await?;
        let pp = PostParams::default();
        s.pvcs.create(&pp, &claim("src", &s.storage_class, None)).await?;
        s.wait_bound("src").await?;
        let volume = s.volume_handle("src").await?;

        s.proxy.set_delay(RESPONSE_DELAY);
        for i in 0..SNAPSHOTS {
            s.snapshots
                .create(&pp, &snapshot_of(&format!("snap{i}"), "src", &s.snapshot_class))
                .await?;
        }
        // Every call reached the driver, and every content carries the record.
        poll("all snapshots cut on the driver", WAIT, || async {
            let n = s.driver_snapshots(Some(&volume)).await?.len();
            Ok((n == SNAPSHOTS).then_some(()))
        })
        .await?;
        let recorded = s
            .contents
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| c.spec.volume_snapshot_ref.namespace.as_deref() == Some(s.ns.as_str()))
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED))
            })
            .count();
        ensure!(recorded == SNAPSHOTS, "{recorded} of {SNAPSHOTS} contents carry the being-created record");
        s.snapshotter.kill9()?;
        println!("[{who}] killed with {SNAPSHOTS} CreateSnapshot calls in flight");

        for i in 0..SNAPSHOTS {
            s.snapshots
                .delete(&format!("snap{i}"), &DeleteParams::default())
                .await?;
        }
        s.proxy.set_delay(Duration::ZERO);
        let t = Instant::now();
        let _second = spawn_snapshotter(
            tb,
            &s.ns,
            &s.snapshotter_kubeconfig,
            s.proxy.socket_path(),
            "csi-snapshotter-2",
            &["--timeout=120s"],
        )?;
        poll("snapshots and contents gone", WAIT, || async {
            let snaps = s.snapshots.list(&ListParams::default()).await?.items.len();
            let contents = s
                .contents
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|c| c.spec.volume_snapshot_ref.namespace.as_deref() == Some(s.ns.as_str()))
                .count();
            Ok((snaps == 0 && contents == 0).then_some(()))
        })
        .await?;
        let cleaned_in = t.elapsed();
        let leaked = s.driver_snapshots(Some(&volume)).await?;
        println!(
            "[{who}] after restart: all gone in {cleaned_in:?}; snapshots left on the driver with no content: {}",
            leaked.len()
        );
        ensure!(leaked.is_empty(), "orphaned snapshots on the driver: {leaked:?}");
        s.pvcs.delete("src", &DeleteParams::default()).await?;
        Ok(())
    })
    .await
}
