//! End-to-end: our csi-provisioner against a real control plane and a real
//! CSI driver process, under a ServiceAccount bound to upstream's provisioner
//! RBAC rules.
//!
//! With `KUBECONFIG` set the test uses that cluster (e.g. a kind cluster);
//! otherwise the test bed starts etcd, kube-apiserver and
//! kube-controller-manager itself. A missing test bed fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use csi_client::{ConnectOptions, Connection, LossPolicy};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Event, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DRIVER: &str = "hostpath.csi.k8s.io";
const CLAIMS: usize = 20;
const WAIT: Duration = Duration::from_secs(180);

fn provisioner_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_csi-provisioner"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn storage_class(name: &str, params: &[(&str, &str)]) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        parameters: Some(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

fn claim(name: &str, class: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Mi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Volume IDs the driver reports through ListVolumes.
async fn driver_volumes(conn: &Connection) -> anyhow::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let resp = conn
            .list_volumes(csi_client::csi::v1::ListVolumesRequest {
                starting_token: token.clone(),
                ..Default::default()
            })
            .await
            .context("ListVolumes")?;
        ids.extend(
            resp.entries
                .iter()
                .filter_map(|e| e.volume.as_ref())
                .map(|v| v.volume_id.clone()),
        );
        if resp.next_token.is_empty() {
            return Ok(ids);
        }
        token = resp.next_token;
    }
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
        let suffix = format!("{:04x}", rand_suffix());
        let ns = format!("e2e-prov-{suffix}");
        let admin = tb.admin_client();

        tb.create_namespace(&ns).await?;
        tb.create_csidriver(DRIVER, false).await?;
        let driver = tb.start_driver(DriverOptions::named(DRIVER)).await?;
        if tb.is_local() {
            // What kubelet and node-driver-registrar would have created. Never
            // done on a user's cluster, whose Nodes are real.
            tb.create_node_with_csinode("e2e-node", DRIVER, driver.node_id(), &[], BTreeMap::new()).await?;
        }
        let manifest = testbed::manifest_path("rbac-csi-provisioner.yaml");
        tb.apply_manifest(&manifest, &[("NAMESPACE", ns.as_str())]).await?;
        let kubeconfig = tb.service_account_kubeconfig(&ns, "csi-provisioner").await?;
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        let port = free_port()?;
        let started = Instant::now();
        let provisioner = tb.spawn(
            "csi-provisioner",
            provisioner_binary(),
            [
                format!("-csi-address={}", driver.socket_path().display()),
                format!("-kubeconfig={kubeconfig}"),
                "-v=5".into(),
                "-leader-election".into(),
                format!("-leader-election-namespace={ns}"),
                format!("-http-endpoint=127.0.0.1:{port}"),
                "-timeout=15s".into(),
                "-worker-threads=10".into(),
            ],
            // Upstream lets KUBECONFIG override --kubeconfig; point it at the
            // ServiceAccount too so the sidecar never runs as admin.
            &[("KUBECONFIG", kubeconfig.as_str())],
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

        let conn = Connection::connect(ConnectOptions {
            address: driver.socket_path().display().to_string(),
            timeout: Duration::from_secs(10),
            connect_timeout: Some(Duration::from_secs(10)),
            on_loss: LossPolicy::Reconnect,
            metrics: None,
            max_grpc_log_length: None,
        })
        .await?;
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

        // Delete every claim: every PV and every driver volume must go.
        let started = Instant::now();
        pvcs.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
        poll("PVs of the test deleted", WAIT, || async {
            let left = pv_api
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|pv| pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|c| c.namespace.as_deref()) == Some(ns.as_str()))
                .count();
            Ok((left == 0).then_some(()))
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

fn rand_suffix() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    (nanos ^ std::process::id()) as u16
}
