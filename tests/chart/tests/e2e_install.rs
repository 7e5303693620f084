//! End-to-end: `helm install` of the chart on the test bed's real node
//! (kubelet, containerd, kube-scheduler, the workload controllers), with our
//! sidecars as static binaries packed into images and imported (nothing is
//! pulled) and csi-testdriver as the driver. All pods become Ready, a claim
//! of the chart's StorageClass is provisioned by the chart's csi-provisioner,
//! attached by its csi-attacher and mounted in a Pod through the node
//! plugin, all under the chart's RBAC (the sidecars authenticate with the
//! controller's ServiceAccount token); `helm test` passes; `helm uninstall`
//! leaves no object of the release, no PV, VolumeAttachment or CSINode entry.
//!
//! csi-testdriver keeps volumes in memory, so controller and node calls must
//! reach the same process: the controller runs with
//! `controller.useNodeSocket` on the node (as csi-driver-host-path's single
//! pod does). The local API server listens on 127.0.0.1 and no kube-proxy
//! runs, so the controller pod uses the host network and
//! `KUBERNETES_SERVICE_HOST=127.0.0.1` (chart values `controller.hostNetwork`
//! and `controller.env`). csi-snapshotter and snapshot-controller are not
//! installed: this tree has no Rust snapshot sidecars yet (the chart takes
//! their images and flags through values).
//!
//! With `$KUBECONFIG` the cluster's own node is used: the images are packed
//! into the run directory and loaded with the command in
//! `CSI_E2E_IMAGE_LOADER` (e.g. `kind load image-archive --name csi`), run
//! once per archive with the archive's path appended.
//!
//! Needs `tests/testbed/build.sh node` and `tests/testbed/build-chart.sh`
//! (run by the test when missing). Never skipped.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, ServiceAccount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass, VolumeAttachment};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use testbed::{Node, Testbed, TestbedOptions, poll};

const DRIVER: &str = "hostpath.csi.k8s.io";
const RELEASE: &str = "csi";
const WAIT: Duration = Duration::from_secs(180);
const TAG: &str = "ours";
const REGISTRY: &str = "csi-testbed.local";

/// `(package, binary)` of every sidecar image the chart runs here.
const SIDECARS: [(&str, &str); 5] = [
    ("external-provisioner", "csi-provisioner"),
    ("external-attacher", "csi-attacher"),
    ("external-resizer", "csi-resizer"),
    ("node-driver-registrar", "csi-node-driver-registrar"),
    ("livenessprobe", "livenessprobe"),
];

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port())
}

fn image(bin: &str) -> serde_json::Value {
    json!({"repository": format!("{REGISTRY}/{bin}"), "tag": TAG, "pullPolicy": "Never"})
}

/// Our sidecars' images (and, on a `$KUBECONFIG` cluster, the driver's and
/// pause) on the node.
async fn load_images(tb: &Testbed, node: &Node<'_>) -> anyhow::Result<()> {
    let t = Instant::now();
    let bins = tokio::task::spawn_blocking(|| {
        SIDECARS
            .iter()
            .map(|(pkg, bin)| Ok((*bin, testbed::static_binary(pkg, bin)?)))
            .collect::<anyhow::Result<Vec<(&str, PathBuf)>>>()
    })
    .await??;
    eprintln!(
        "e2e_install: static builds of the sidecars ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let refs: Vec<(String, PathBuf)> = bins
        .iter()
        .map(|(bin, path)| (format!("{REGISTRY}/{bin}:{TAG}"), path.clone()))
        .collect();
    if node.is_local() {
        let images: Vec<(&str, &Path)> = refs
            .iter()
            .map(|(r, p)| (r.as_str(), p.as_path()))
            .collect();
        node.import_images(&images).await?;
        return Ok(());
    }
    let loader = std::env::var("CSI_E2E_IMAGE_LOADER").context(
        "with $KUBECONFIG, set CSI_E2E_IMAGE_LOADER to a command that loads an image archive \
         into the cluster's nodes, e.g. `kind load image-archive --name <cluster>`",
    )?;
    let mut all = refs;
    all.push((testbed::DRIVER_IMAGE.into(), tb.bin("csi-testdriver")));
    all.push((testbed::PAUSE_IMAGE.into(), tb.bin("pause")));
    for (reference, binary) in all {
        let name = reference.replace(['/', ':'], "_");
        let archive = tb.run_dir().join(format!("{name}.tar"));
        oci_image::write_archive(
            &oci_image::ImageSpec::single_binary(&reference, &binary),
            &archive,
        )
        .map_err(|e| anyhow::anyhow!("pack {reference}: {e}"))?;
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{loader} \"$0\""))
            .arg(&archive)
            .status()
            .await?;
        ensure!(status.success(), "{loader} {} failed", archive.display());
    }
    Ok(())
}

/// The values of this install.
fn values(tb: &Testbed, node: &Node<'_>, storage_class: &str) -> anyhow::Result<serde_json::Value> {
    let kubelet = node.kubelet_root().display().to_string();
    let state_dir = format!("{kubelet}/plugins/{DRIVER}/volumes");
    let mut controller = json!({
        "replicas": 1,
        "useNodeSocket": true,
        "nodeSelector": {"kubernetes.io/hostname": node.name()},
        // The node plugin's socket belongs to root: the sidecars connect as
        // root (still without capabilities or privilege escalation).
        "podSecurityContext": {
            "runAsNonRoot": false, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}
        },
    });
    if tb.is_local() {
        let port = tb
            .server_url()
            .rsplit(':')
            .next()
            .context("API server port")?
            .to_owned();
        controller["hostNetwork"] = json!(true);
        controller["env"] = json!([
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port},
        ]);
    }
    Ok(json!({
        "driver": {"name": DRIVER, "attachRequired": true},
        "kubeletDir": kubelet,
        "controller": controller,
        "node": {
            "driver": {
                "image": {
                    "repository": testbed::DRIVER_IMAGE.rsplit_once(':').map(|(r, _)| r).unwrap_or_default(),
                    "tag": testbed::DRIVER_IMAGE.rsplit_once(':').map(|(_, t)| t).unwrap_or_default(),
                    "pullPolicy": "Never",
                },
                // No --nodeid: csi-testdriver's ControllerPublishVolume
                // accepts only its service's fixed node ID, which
                // NodeGetInfo then reports to the kubelet.
                "args": [
                    "--endpoint=$(CSI_ENDPOINT)",
                    "--drivername={{ .Values.driver.name }}",
                    "--enable-attach=true",
                    "--node-mounts=true",
                    format!("--state-dir={state_dir}"),
                    "--log-calls=true",
                ],
                "volumeMounts": [{"name": "state", "mountPath": state_dir}],
            },
            "extraVolumes": [
                {"name": "state", "hostPath": {"path": state_dir, "type": "DirectoryOrCreate"}}
            ],
        },
        "csiProvisioner": {"image": image("csi-provisioner"), "httpPort": free_port()?, "logLevel": 5},
        "csiAttacher": {"image": image("csi-attacher"), "httpPort": free_port()?, "logLevel": 5},
        "csiResizer": {"image": image("csi-resizer"), "httpPort": free_port()?},
        "nodeDriverRegistrar": {"image": image("csi-node-driver-registrar")},
        "livenessProbe": {"image": image("livenessprobe")},
        "storageClass": {"create": true, "name": storage_class, "volumeBindingMode": "Immediate"},
    }))
}

/// Runs helm, failing with its output unless it succeeds.
async fn helm(tb: &Testbed, args: &[&str]) -> anyhow::Result<String> {
    let helm = chart::helm()?;
    let t = Instant::now();
    let out = tokio::process::Command::new(&helm)
        .args(args)
        .env("KUBECONFIG", tb.admin_kubeconfig())
        .env("HELM_CACHE_HOME", tb.run_dir().join("helm/cache"))
        .env("HELM_CONFIG_HOME", tb.run_dir().join("helm/config"))
        .env("HELM_DATA_HOME", tb.run_dir().join("helm/data"))
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "helm {} failed:\n{text}",
        args.join(" ")
    );
    eprintln!(
        "e2e_install: helm {} took {:.1}s",
        args[0],
        t.elapsed().as_secs_f64()
    );
    Ok(text)
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn release_labels() -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"))
}

fn host_mounts_containing(part: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.contains(part))
        .count()
}

async fn provision_attach_mount(
    tb: &Testbed,
    node: &Node<'_>,
    ns: &str,
    sc: &str,
) -> anyhow::Result<()> {
    let client = tb.admin_client();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let t = Instant::now();
    claims
        .create(
            &PostParams::default(),
            &PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: Some(sc.into()),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity("1Mi".into()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    let pv_name = poll(
        "claim Bound by the chart's csi-provisioner",
        WAIT,
        || async {
            let c = claims.get("data").await?;
            Ok(c.spec
                .and_then(|s| s.volume_name)
                .filter(|_| c.status.and_then(|s| s.phase).as_deref() == Some("Bound")))
        },
    )
    .await?;
    let pv = pvs.get(&pv_name).await?;
    ensure!(
        pv.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
            == Some(&DRIVER.to_string()),
        "PV {pv_name} not provisioned by {DRIVER}"
    );
    eprintln!(
        "e2e_install: claim Bound to {pv_name} in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    pods.create(
        &PostParams::default(),
        &testbed::workload_pod("app", node.name(), "data"),
    )
    .await?;
    node.wait_pod_running(&pods, "app").await?;
    let va = vas
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv_name.as_str()))
        .context("no VolumeAttachment for the PV")?;
    ensure!(
        va.status.as_ref().is_some_and(|s| s.attached),
        "VolumeAttachment not attached: {:?}",
        va.status
    );
    ensure!(
        va.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f.starts_with("external-attacher/")),
        "the chart's csi-attacher left no finalizer on {:?}",
        va.metadata.name
    );
    if node.is_local() {
        ensure!(
            host_mounts_containing(&pv_name) >= 1,
            "no mount of {pv_name} on the node"
        );
    }
    eprintln!(
        "e2e_install: Pod Running with the volume attached and mounted in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    pods.delete("app", &DeleteParams::default()).await?;
    poll("workload Pod gone", WAIT, || async {
        Ok(pods.get_opt("app").await?.is_none().then_some(()))
    })
    .await?;
    claims.delete("data", &DeleteParams::default()).await?;
    poll(
        "PV deleted by the chart's csi-provisioner",
        WAIT,
        || async { Ok(pvs.get_opt(&pv_name).await?.is_none().then_some(())) },
    )
    .await?;
    poll("VolumeAttachment gone", WAIT, || async {
        let left = vas
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv_name.as_str()));
        Ok((!left).then_some(()))
    })
    .await?;
    eprintln!(
        "e2e_install: unmounted, detached and deleted in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Names of the objects of a kind in `ns` carrying the release's labels.
async fn labelled<K>(api: Api<K>) -> anyhow::Result<Vec<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&release_labels())
        .await?
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect())
}

async fn nothing_left(tb: &Testbed, node: &Node<'_>, ns: &str, sc: &str) -> anyhow::Result<()> {
    let c = tb.admin_client();
    poll("every pod of the release gone", WAIT, || async {
        let left = labelled(Api::<Pod>::namespaced(c.clone(), ns)).await?;
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    let mut left = Vec::new();
    for (kind, names) in [
        (
            "Deployment",
            labelled(Api::<Deployment>::namespaced(c.clone(), ns)).await?,
        ),
        (
            "DaemonSet",
            labelled(Api::<DaemonSet>::namespaced(c.clone(), ns)).await?,
        ),
        (
            "ServiceAccount",
            labelled(Api::<ServiceAccount>::namespaced(c.clone(), ns)).await?,
        ),
        (
            "Role",
            labelled(Api::<Role>::namespaced(c.clone(), ns)).await?,
        ),
        (
            "RoleBinding",
            labelled(Api::<RoleBinding>::namespaced(c.clone(), ns)).await?,
        ),
        (
            "PersistentVolumeClaim",
            labelled(Api::<PersistentVolumeClaim>::namespaced(c.clone(), ns)).await?,
        ),
        (
            "ClusterRole",
            labelled(Api::<ClusterRole>::all(c.clone())).await?,
        ),
        (
            "ClusterRoleBinding",
            labelled(Api::<ClusterRoleBinding>::all(c.clone())).await?,
        ),
        (
            "CSIDriver",
            labelled(Api::<CSIDriver>::all(c.clone())).await?,
        ),
        (
            "StorageClass",
            labelled(Api::<StorageClass>::all(c.clone())).await?,
        ),
    ] {
        left.extend(names.into_iter().map(|n| format!("{kind}/{n}")));
    }
    ensure!(
        Api::<StorageClass>::all(c.clone())
            .get_opt(sc)
            .await?
            .is_none(),
        "StorageClass {sc} left"
    );
    ensure!(left.is_empty(), "helm uninstall left {left:?}");
    let pvs: Vec<String> = Api::<PersistentVolume>::all(c.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .is_some_and(|csi| csi.driver == DRIVER)
        })
        .filter_map(|pv| pv.metadata.name)
        .collect();
    ensure!(pvs.is_empty(), "PVs of {DRIVER} left: {pvs:?}");
    let vas = Api::<VolumeAttachment>::all(c.clone())
        .list(&ListParams::default())
        .await?
        .items
        .len();
    ensure!(vas == 0, "{vas} VolumeAttachments left");
    poll("the driver deregistered from CSINode", WAIT, || async {
        let registered = Api::<CSINode>::all(c.clone())
            .get_opt(node.name())
            .await?
            .is_some_and(|n| n.spec.drivers.iter().any(|d| d.name == DRIVER));
        Ok((!registered).then_some(()))
    })
    .await?;
    // What the sidecars wrote themselves, as upstream's do: their
    // leader-election Leases (released, not deleted, on exit).
    let leases: Vec<String> = Api::<Lease>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|l| l.metadata.name)
        .collect();
    eprintln!(
        "e2e_install: after helm uninstall: no object of the release, no PV, VolumeAttachment or CSINode entry; the sidecars' leader-election Leases remain as upstream's do: {leases:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_provisions_attaches_mounts_tests_and_uninstalls() -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Builds helm and kube-scheduler when missing (before the node's lock).
    chart::tools_dir()?;
    let chart = common::prepared_chart().await?;
    let tb = Testbed::start(TestbedOptions::with_workloads()).await?;
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let ns = format!("chart-e2e-{:04x}", std::process::id() as u16);
        let sc = format!("{ns}-sc");
        tb.create_namespace(&ns).await?;
        let node = tb.start_node().await?;
        load_images(tb, &node).await?;
        let values = tb.run_dir().join("chart-values.json");
        std::fs::write(
            &values,
            serde_json::to_vec_pretty(&values_json(tb, &node, &sc)?)?,
        )?;
        let chart_s = chart.to_str().context("chart path")?;
        let values_s = values.to_str().context("values path")?;

        let t = Instant::now();
        let installed = helm(
            tb,
            &[
                "install",
                RELEASE,
                chart_s,
                "-n",
                &ns,
                "-f",
                values_s,
                "--wait",
                "--timeout",
                "4m",
            ],
        )
        .await;
        let result = async {
            installed?;
            let pods: Api<Pod> = Api::namespaced(tb.admin_client(), &ns);
            let all = pods.list(&release_labels()).await?.items;
            ensure!(
                all.len() == 2,
                "want the controller and one node pod, have {}",
                all.len()
            );
            for p in &all {
                ensure!(
                    pod_ready(p),
                    "pod {:?} not Ready: {:?}",
                    p.metadata.name,
                    p.status
                );
            }
            eprintln!(
                "e2e_install: helm install: {} pods Ready in {:.1}s",
                all.len(),
                t.elapsed().as_secs_f64()
            );
            provision_attach_mount(tb, &node, &ns, &sc).await?;
            let out = helm(tb, &["test", RELEASE, "-n", &ns, "--timeout", "3m"]).await?;
            ensure!(
                out.contains("Phase:") && out.contains("Succeeded"),
                "helm test:\n{out}"
            );
            // The test's claim is deleted with its hook; its volume must be
            // gone before the provisioner is.
            let t = Instant::now();
            let pvs: Api<PersistentVolume> = Api::all(tb.admin_client());
            poll("the helm test's PV deleted", WAIT, || async {
                let any = pvs
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .any(|pv| {
                        pv.spec
                            .and_then(|s| s.csi)
                            .is_some_and(|csi| csi.driver == DRIVER)
                    });
                Ok((!any).then_some(()))
            })
            .await?;
            eprintln!(
                "e2e_install: the helm test's volume deleted {:.1}s after the test",
                t.elapsed().as_secs_f64()
            );
            anyhow::Ok(())
        }
        .await;
        // Uninstall in any case: the node's teardown cannot outlast the
        // controllers that recreate the chart's pods.
        let uninstalled = helm(
            tb,
            &["uninstall", RELEASE, "-n", &ns, "--wait", "--timeout", "3m"],
        )
        .await;
        result?;
        uninstalled?;
        nothing_left(tb, &node, &ns, &sc).await?;
        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await?;
    eprintln!("e2e_install: whole test {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn values_json(tb: &Testbed, node: &Node<'_>, sc: &str) -> anyhow::Result<serde_json::Value> {
    values(tb, node, sc)
}
