//! `csi-demo`: the README's first command.
//!
//! Starts the test bed (a local control plane, or the cluster named by
//! `KUBECONFIG`), the CSI driver and our `csi-provisioner` under a
//! ServiceAccount with upstream's provisioner RBAC, creates a StorageClass and
//! a PersistentVolumeClaim, waits for it to be Bound and prints the claim, its
//! PV, the volume handle the driver reports and how long each step took.
//! Everything is removed on exit.
//!
//! Expects `csi-provisioner` next to this binary (`cargo build -p
//! external-provisioner --bin csi-provisioner` puts it there) or at
//! `CSI_PROVISIONER_BIN`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use csi_client::csi::v1::ListVolumesRequest;
use csi_client::{ConnectOptions, Connection};
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

const DRIVER: &str = "hostpath.csi.k8s.io";
const NAMESPACE: &str = "csi-demo";
const CLASS: &str = "csi-demo";
const CLAIM: &str = "demo-data";

fn provisioner_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CSI_PROVISIONER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating csi-demo")?;
    let sibling = exe.with_file_name("csi-provisioner");
    if !sibling.exists() {
        bail!(
            "{} not found: build it first with `cargo build -p external-provisioner --bin csi-provisioner`, or set CSI_PROVISIONER_BIN",
            sibling.display()
        );
    }
    Ok(sibling)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = Instant::now();
    let provisioner = provisioner_binary()?;
    println!(
        "starting the test bed (first run on a machine builds it from Go modules; that takes minutes)..."
    );
    let tb = Testbed::start(TestbedOptions::default()).await?;
    if tb.is_local() {
        println!(
            "control plane up in {:.1?} at {}",
            tb.started_in(),
            tb.server_url()
        );
    } else {
        println!("using the cluster from KUBECONFIG at {}", tb.server_url());
    }
    let result = tb.run_test(async |tb| demo(tb, provisioner).await).await;
    println!("total {:.1?}", total.elapsed());
    result
}

async fn demo(tb: &Testbed, provisioner: PathBuf) -> anyhow::Result<()> {
    let admin = tb.admin_client();
    tb.create_namespace(NAMESPACE).await?;
    tb.create_csidriver(DRIVER, false).await?;
    let driver = tb.start_driver(DriverOptions::named(DRIVER)).await?;
    tb.apply_manifest(
        &testbed::manifest_path("rbac-csi-provisioner.yaml"),
        &[("NAMESPACE", NAMESPACE)],
    )
    .await?;
    let kubeconfig = tb
        .service_account_kubeconfig(NAMESPACE, "csi-provisioner")
        .await?;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let sidecar = tb.spawn(
        "csi-provisioner",
        &provisioner,
        [
            format!("--csi-address={}", driver.socket_path().display()),
            format!("--kubeconfig={kubeconfig}"),
            "--leader-election".to_string(),
            format!("--leader-election-namespace={NAMESPACE}"),
            "-v=2".to_string(),
        ],
        &[("KUBECONFIG", kubeconfig.as_str())],
    )?;
    println!(
        "driver {DRIVER} on {}; csi-provisioner (pid {}) runs as ServiceAccount {NAMESPACE}/csi-provisioner",
        driver.socket_path().display(),
        sidecar.pid()
    );

    let classes: Api<StorageClass> = Api::all(admin.clone());
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    };
    let _ = classes.delete(CLASS, &DeleteParams::default()).await;
    classes.create(&PostParams::default(), &class).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), NAMESPACE);
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(CLAIM.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(CLASS.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = Instant::now();
    claims.create(&PostParams::default(), &claim).await?;
    println!(
        "created PersistentVolumeClaim {NAMESPACE}/{CLAIM} (1Gi, ReadWriteOnce, class {CLASS})"
    );

    let bound = loop {
        let c = claims.get(CLAIM).await?;
        if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
            break c;
        }
        if created.elapsed() > Duration::from_secs(120) {
            bail!(
                "claim not Bound after 2 minutes; csi-provisioner log:\n{}",
                sidecar.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bound_in = created.elapsed();
    let pv_name = bound
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .context("bound claim has no volumeName")?;
    let pv = Api::<PersistentVolume>::all(admin.clone())
        .get(&pv_name)
        .await?;
    let spec = pv.spec.clone().unwrap_or_default();
    let csi = spec.csi.clone().context("PV has no spec.csi")?;

    let conn = Connection::connect(ConnectOptions::new(
        driver.socket_path().display().to_string(),
        Duration::from_secs(10),
    ))
    .await?;
    let listed = conn.list_volumes(ListVolumesRequest::default()).await?;
    let on_driver: Vec<String> = listed
        .entries
        .iter()
        .filter_map(|e| e.volume.as_ref())
        .map(|v| format!("{} ({} bytes)", v.volume_id, v.capacity_bytes))
        .collect();

    println!();
    println!("PersistentVolumeClaim {NAMESPACE}/{CLAIM}: Bound in {bound_in:.2?}");
    println!("  uid {}", bound.metadata.uid.unwrap_or_default());
    println!(
        "  capacity {}",
        bound
            .status
            .and_then(|s| s.capacity)
            .and_then(|c| c.get("storage").map(|q| q.0.clone()))
            .unwrap_or_default()
    );
    println!("PersistentVolume {pv_name}");
    println!(
        "  provisioned-by {}",
        pv.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get("pv.kubernetes.io/provisioned-by")
            .cloned()
            .unwrap_or_default()
    );
    println!(
        "  finalizers {:?}",
        pv.metadata.finalizers.clone().unwrap_or_default()
    );
    println!(
        "  reclaim policy {}",
        spec.persistent_volume_reclaim_policy.unwrap_or_default()
    );
    println!("  spec.csi.driver {}", csi.driver);
    println!("  spec.csi.volumeHandle {}", csi.volume_handle);
    println!("driver ListVolumes: {}", on_driver.join(", "));

    let deleting = Instant::now();
    claims.delete(CLAIM, &DeleteParams::default()).await?;
    let pvs: Api<PersistentVolume> = Api::all(admin.clone());
    loop {
        let left = conn
            .list_volumes(ListVolumesRequest::default())
            .await?
            .entries
            .len();
        if left == 0 && pvs.get_opt(&pv_name).await?.is_none() {
            break;
        }
        if deleting.elapsed() > Duration::from_secs(120) {
            bail!(
                "volume not deleted after 2 minutes; csi-provisioner log:\n{}",
                sidecar.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "deleted the claim: PV and driver volume gone in {:.2?}",
        deleting.elapsed()
    );
    classes.delete(CLASS, &DeleteParams::default()).await?;
    Ok(())
}
