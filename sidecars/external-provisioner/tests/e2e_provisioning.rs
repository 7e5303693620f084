//! End-to-end: our csi-provisioner against a real control plane and a real
//! CSI driver process, under a ServiceAccount bound to upstream's provisioner
//! RBAC rules.
//!
//! With `KUBECONFIG` set the test uses that cluster (e.g. a kind cluster);
//! otherwise the test bed starts etcd, kube-apiserver and
//! kube-controller-manager itself. A missing test bed fails the test.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::{
    DRIVER, WAIT, claim, connect, driver_volumes, poll, setup, spawn_provisioner, storage_class,
    volumes_of_namespace,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{Testbed, TestbedOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLAIMS: usize = 20;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_and_deletes_real_volumes() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let setup = setup(tb, "e2e-prov").await?;
        let (ns, suffix) = (setup.ns.clone(), setup.suffix.clone());
        let port = free_port()?;
        let started = Instant::now();
        let provisioner = spawn_provisioner(
            tb,
            &setup,
            "csi-provisioner",
            setup.driver.socket_path(),
            &[format!("--http-endpoint=127.0.0.1:{port}"), "--timeout=15s".into(), "--worker-threads=10".into()],
        )?;

        let good = format!("e2e-{suffix}");
        let bad = format!("e2e-bad-{suffix}");
        let classes: Api<StorageClass> = Api::all(admin.clone());
        classes.create(&PostParams::default(), &storage_class(&good, &[("kind", "e2e")])).await?;
        classes.create(&PostParams::default(), &storage_class(&bad, &[("csi.storage.k8s.io/bogus", "1")])).await?;

        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        for i in 0..CLAIMS {
            pvcs.create(&PostParams::default(), &claim(&format!("data-{i}"), &good)).await?;
        }
        pvcs.create(&PostParams::default(), &claim("invalid", &bad)).await?;

        let bound = poll("20 claims Bound", WAIT, || async {
            let list = pvcs.list(&ListParams::default()).await?;
            let bound: Vec<_> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.name.as_deref() != Some("invalid"))
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
                .collect();
            Ok((bound.len() == CLAIMS).then_some(bound))
        })
        .await?;
        let provision_time = started.elapsed();

        let conn = connect(setup.driver.socket_path()).await?;
        let volumes = driver_volumes(&conn).await?;
        let pv_api: Api<PersistentVolume> = Api::all(admin.clone());
        let mut handles = BTreeSet::new();
        for pvc in &bound {
            let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).context("bound claim without volumeName")?;
            let uid = pvc.metadata.uid.clone().unwrap_or_default();
            ensure!(pv_name == format!("pvc-{uid}"), "PV name {pv_name} is not pvc-<claim uid>");
            let pv = pv_api.get(&pv_name).await?;
            let ann = pv.metadata.annotations.clone().unwrap_or_default();
            ensure!(ann.get("pv.kubernetes.io/provisioned-by").map(String::as_str) == Some(DRIVER), "PV {pv_name} lacks provisioned-by: {ann:?}");
            let finalizers = pv.metadata.finalizers.clone().unwrap_or_default();
            ensure!(finalizers.iter().any(|f| f == "external-provisioner.volume.kubernetes.io/finalizer"), "PV {pv_name} lacks our finalizer: {finalizers:?}");
            let csi = pv.spec.as_ref().and_then(|s| s.csi.clone()).context("PV without spec.csi")?;
            ensure!(csi.driver == DRIVER);
            ensure!(volumes.contains(&csi.volume_handle), "volume handle {} of {pv_name} not reported by ListVolumes {volumes:?}", csi.volume_handle);
            handles.insert(csi.volume_handle);
        }
        ensure!(handles.len() == CLAIMS, "expected {CLAIMS} distinct volume handles, got {}", handles.len());
        ensure!(volumes == handles, "driver has volumes no PV refers to: {:?}", volumes.difference(&handles).collect::<Vec<_>>());

        // The invalid class: a ProvisioningFailed event and no PV.
        let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
        let failed = poll("ProvisioningFailed event", WAIT, || async {
            let list = events.list(&ListParams::default().fields("involvedObject.name=invalid")).await?;
            Ok(list.items.into_iter().find(|e| e.reason.as_deref() == Some("ProvisioningFailed")))
        })
        .await?;
        ensure!(failed.type_.as_deref() == Some("Warning"));
        let message = failed.message.unwrap_or_default();
        ensure!(message.contains("csi.storage.k8s.io/bogus"), "event message does not name the parameter: {message}");
        let invalid = pvcs.get("invalid").await?;
        ensure!(invalid.spec.as_ref().and_then(|s| s.volume_name.clone()).is_none(), "invalid claim got a volume");
        let invalid_pv = format!("pvc-{}", invalid.metadata.uid.unwrap_or_default());
        ensure!(pv_api.get_opt(&invalid_pv).await?.is_none(), "a PV was created for the invalid claim");

        // Lease and metrics, as upstream names them.
        let lease = Api::<Lease>::namespaced(admin.clone(), &ns).get("hostpath-csi-k8s-io").await?;
        ensure!(lease.spec.and_then(|s| s.holder_identity).is_some_and(|h| !h.is_empty()), "Lease has no holder");
        let metrics = http_get(port, "/metrics").await?;
        ensure!(metrics.contains("csi_sidecar_operations_seconds_bucket") && metrics.contains("/csi.v1.Controller/CreateVolume"), "metrics lack the CreateVolume histogram");
        ensure!(metrics.contains("controller_persistentvolumeclaim_provision_total"), "metrics lack the provision counter");
        ensure!(metrics.contains("workqueue_adds_total{name=\"claims\"}"), "metrics lack the claims work queue");
        // Every claim waited in the queue at least once before its reconcile.
        let waits = metrics
            .lines()
            .find(|l| l.starts_with("workqueue_queue_duration_seconds_count{name=\"claims\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        ensure!(waits >= 20.0, "workqueue_queue_duration_seconds counted {waits} claim waits, expected at least 20");
        ensure!(metrics.contains("workqueue_depth{name=\"volumes\"}"), "metrics lack workqueue_depth");
        ensure!(metrics.contains("process_resident_memory_bytes"), "metrics lack process_* figures");

        // Delete every claim: every PV and every driver volume must go.
        let started = Instant::now();
        pvcs.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
        poll("PVs of the test deleted", WAIT, || async {
            Ok(volumes_of_namespace(&pv_api, &ns).await?.is_empty().then_some(()))
        })
        .await?;
        let left = driver_volumes(&conn).await?;
        ensure!(left.is_empty(), "driver volumes left after deletion: {left:?}");
        let delete_time = started.elapsed();
        ensure!(provisioner.is_running(), "csi-provisioner exited: {}", provisioner.log_tail(50));

        // SIGTERM: the controllers drain and the process exits 0.
        tokio::task::block_in_place(|| provisioner.stop(Duration::from_secs(10)));
        let status = provisioner.exit_status().context("csi-provisioner still running after SIGTERM")?;
        ensure!(status.success(), "csi-provisioner exited with {status} on SIGTERM: {}", provisioner.log_tail(30));

        eprintln!("e2e: {CLAIMS} claims Bound in {provision_time:.1?} (from sidecar start); all deleted in {delete_time:.1?}");
        classes.delete(&good, &DeleteParams::default()).await?;
        classes.delete(&bad, &DeleteParams::default()).await?;
        Ok(())
    })
    .await
}
