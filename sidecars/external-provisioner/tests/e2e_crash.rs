//! End-to-end crash safety (upstream external-provisioner#486): the
//! provisioner is killed with SIGKILL while CreateVolume calls are in flight,
//! the claims are deleted while it is down, and after a restart no volume,
//! PV, claim or recorded creation may be left behind.
//!
//! A delaying proxy sits between the sidecar and the driver: the driver
//! creates each volume at once, but its answer is held back, so at the kill
//! the driver has volumes no PV records.

mod common;

use std::time::Duration;

use anyhow::ensure;
use common::{
    WAIT, claim, connect, driver_volumes, poll, setup, spawn_provisioner, storage_class,
    testing_ours, volumes_of_namespace,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DelayProxy, Testbed, TestbedOptions};

const CLAIMS: usize = 20;
/// Longer than the whole intent-recording phase, so no answer arrives
/// before the kill.
const RESPONSE_DELAY: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_volume_leaks_after_a_kill_during_create_volume() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let t0 = std::time::Instant::now();
        let setup = setup(tb, "e2e-crash").await?;
        let ns = setup.ns.clone();
        let proxy_path = tb.run_dir().join(format!("px{}.sock", tb.next_seq()));
        let proxy = DelayProxy::start(&proxy_path, setup.driver.socket_path(), Duration::ZERO)?;
        let first = spawn_provisioner(
            tb,
            &setup,
            "csi-provisioner-1",
            proxy.socket_path(),
            &["--timeout=60s".into(), "--kube-api-qps=100".into(), "--kube-api-burst=200".into()],
        )?;

        // Answers are held back only once the sidecar is up and leading.
        let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);
        poll("first provisioner leading", WAIT, || async {
            let lease = leases.get_opt("hostpath-csi-k8s-io").await?;
            Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity).map(|_| ()))
        })
        .await?;
        proxy.set_delay(RESPONSE_DELAY);

        let class = format!("e2e-crash-{}", setup.suffix);
        let classes: Api<StorageClass> = Api::all(admin.clone());
        classes.create(&PostParams::default(), &storage_class(&class, &[])).await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        for i in 0..CLAIMS {
            pvcs.create(&PostParams::default(), &claim(&format!("data-{i}"), &class)).await?;
        }

        // Every claim has its creation recorded and the driver holds volumes
        // whose answers have not come back yet.
        let driver = connect(setup.driver.socket_path()).await?;
        if testing_ours() {
            poll("creation intent of every claim recorded", WAIT, || async {
                let uids: Vec<String> = pvcs
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect();
                let recorded = common::recorded_intents(&admin, &ns).await?;
                let all = uids.len() == CLAIMS && uids.iter().all(|u| recorded.contains(u));
                Ok(all.then_some(()))
            })
            .await?;
        }
        let in_flight = poll("CreateVolume reaching the driver", WAIT, || async {
            let n = driver_volumes(&driver).await?.len();
            Ok((n == CLAIMS).then_some(n))
        })
        .await?;
        let pv_api: Api<PersistentVolume> = Api::all(admin.clone());
        let saved = volumes_of_namespace(&pv_api, &ns).await?.len();
        ensure!(saved == 0, "{saved} PVs were saved before the kill; the delay did not hold answers back");

        eprintln!("e2e crash: {in_flight} CreateVolume calls in flight after {:.1?}", t0.elapsed());
        first.kill9()?;
        ensure!(first.wait_exit(Duration::from_secs(10)).await.is_some(), "first provisioner survived SIGKILL");
        pvcs.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
        drop(proxy);

        let restarted = std::time::Instant::now();
        let second = spawn_provisioner(tb, &setup, "csi-provisioner-2", setup.driver.socket_path(), &[])?;
        poll("every claim gone", WAIT, || async {
            Ok(pvcs.list(&ListParams::default()).await?.items.is_empty().then_some(()))
        })
        .await?;
        eprintln!("e2e crash: claims gone {:.1?} after restart", restarted.elapsed());
        poll("every driver volume deleted", WAIT, || async {
            Ok(driver_volumes(&driver).await?.is_empty().then_some(()))
        })
        .await?;
        let left = volumes_of_namespace(&pv_api, &ns).await?;
        ensure!(left.is_empty(), "PVs left: {:?}", left.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>());
        ensure!(second.is_running(), "second provisioner exited: {}", second.log_tail(40));
        if testing_ours() {
            poll("every recorded creation finished", WAIT, || async {
                Ok(common::recorded_intents(&admin, &ns).await?.is_empty().then_some(()))
            })
            .await?;
        }
        eprintln!("e2e crash: {in_flight} volumes were in flight at SIGKILL; {:.1?} after restart 0 leaked, 0 PVs, 0 claims left", restarted.elapsed());
        classes.delete(&class, &DeleteParams::default()).await?;
        Ok(())
    })
    .await
}
