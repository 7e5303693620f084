//! End-to-end `--node-deployment`: two nodes, each with its own driver
//! instance and its own provisioner. Immediate claims are taken by exactly
//! one node (its provisioner sets `volume.kubernetes.io/selected-node`) and
//! created on that node's driver only; a WaitForFirstConsumer claim goes to
//! its selected node; deletions are done by the node that owns the volume.

mod common;

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};
use common::{DRIVER, WAIT, claim, connect, delete_claims, poll, setup_with, storage_class};
use csi_client::Connection;
use csi_client::csi::v1::ListVolumesRequest;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DriverOptions, ProcessHandle, Testbed, TestbedOptions};

const KEY: &str = "topology.hostpath.csi/node";
const CLAIMS: usize = 4;

/// Names (CreateVolume names = PV names) of the volumes a driver holds.
async fn volume_names(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let list = conn.list_volumes(ListVolumesRequest::default()).await?;
    Ok(list
        .entries
        .iter()
        .filter_map(|e| e.volume.as_ref())
        .filter_map(|v| v.volume_context.get("name").cloned())
        .collect())
}

fn spawn_node_provisioner(
    tb: &Testbed,
    kubeconfig: &str,
    socket: &std::path::Path,
    node: &str,
) -> anyhow::Result<ProcessHandle> {
    Ok(tb.spawn(
        &format!("csi-provisioner-{node}"),
        &common::provisioner_binary(),
        [
            format!("--csi-address={}", socket.display()),
            format!("--kubeconfig={kubeconfig}"),
            "--v=5".into(),
            "--node-deployment".into(),
            "--node-deployment-base-delay=500ms".into(),
            "--node-deployment-max-delay=2s".into(),
        ],
        &[("KUBECONFIG", kubeconfig), ("NODE_NAME", node)],
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_provisions_its_own_volumes() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let admin = tb.admin_client();
            let pid = std::process::id();
            let (node_a, node_b) = (format!("e2e-nd-a-{pid}"), format!("e2e-nd-b-{pid}"));
            let opts = |n: &str| DriverOptions {
                enable_topology: true,
                node_id: n.to_string(),
                ..DriverOptions::named(DRIVER)
            };
            let setup = setup_with(tb, "e2e-nd", opts(&node_a)).await?;
            let driver_b = tb.start_driver(opts(&node_b)).await?;
            let ns = setup.ns.clone();
            for (node, id) in [
                (&node_a, setup.driver.node_id()),
                (&node_b, driver_b.node_id()),
            ] {
                tb.create_node_with_csinode(
                    node,
                    DRIVER,
                    id,
                    &[KEY],
                    BTreeMap::from([(KEY.to_string(), node.clone())]),
                )
                .await?;
            }
            let prov_a =
                spawn_node_provisioner(tb, &setup.kubeconfig, setup.driver.socket_path(), &node_a)?;
            let prov_b =
                spawn_node_provisioner(tb, &setup.kubeconfig, driver_b.socket_path(), &node_b)?;

            let now = format!("e2e-nd-now-{}", setup.suffix);
            let late = format!("e2e-nd-late-{}", setup.suffix);
            let classes: Api<StorageClass> = Api::all(admin.clone());
            classes
                .create(&PostParams::default(), &storage_class(&now, &[]))
                .await?;
            let mut wffc = storage_class(&late, &[]);
            wffc.volume_binding_mode = Some("WaitForFirstConsumer".into());
            classes.create(&PostParams::default(), &wffc).await?;
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
            for i in 0..CLAIMS {
                pvcs.create(&PostParams::default(), &claim(&format!("data-{i}"), &now))
                    .await?;
            }
            let mut placed = claim("placed", &late);
            placed.metadata.annotations = Some(BTreeMap::from([(
                "volume.kubernetes.io/selected-node".to_string(),
                node_b.clone(),
            )]));
            pvcs.create(&PostParams::default(), &placed).await?;

            let bound = poll("every claim Bound", WAIT, || async {
                let items = pvcs.list(&ListParams::default()).await?.items;
                let done: Vec<_> = items
                    .into_iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
                    .collect();
                Ok((done.len() == CLAIMS + 1).then_some(done))
            })
            .await?;

            let conn_a = connect(setup.driver.socket_path()).await?;
            let conn_b = connect(driver_b.socket_path()).await?;
            let (on_a, on_b) = (volume_names(&conn_a).await?, volume_names(&conn_b).await?);
            let pvs: Api<PersistentVolume> = Api::all(admin.clone());
            for pvc in &bound {
                let name = pvc.metadata.name.clone().unwrap_or_default();
                let selected = pvc
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("volume.kubernetes.io/selected-node"))
                    .cloned()
                    .context("bound claim without selected-node")?;
                let pv_name = pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.clone())
                    .context("no volumeName")?;
                let pv = pvs.get(&pv_name).await?;
                let affinity: Vec<String> = pv
                    .spec
                    .and_then(|s| s.node_affinity)
                    .and_then(|a| a.required)
                    .map(|r| r.node_selector_terms)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|t| t.match_expressions.unwrap_or_default())
                    .filter(|e| e.key == KEY)
                    .flat_map(|e| e.values.unwrap_or_default())
                    .collect();
                ensure!(
                    affinity == vec![selected.clone()],
                    "{name}: PV affinity {affinity:?} but selected node {selected}"
                );
                let (mine, other) = if selected == node_a {
                    (&on_a, &on_b)
                } else {
                    (&on_b, &on_a)
                };
                ensure!(
                    mine.contains(&pv_name) && !other.contains(&pv_name),
                    "{name}: volume {pv_name} not only on {selected}'s driver"
                );
                if name == "placed" {
                    ensure!(
                        selected == node_b,
                        "the WaitForFirstConsumer claim moved off its selected node"
                    );
                }
            }
            eprintln!(
                "e2e node deployment: {} volumes on {node_a}, {} on {node_b}",
                on_a.len(),
                on_b.len()
            );

            delete_claims(&pvcs, &pvs, &ns).await?;
            ensure!(
                volume_names(&conn_a).await?.is_empty() && volume_names(&conn_b).await?.is_empty(),
                "driver volumes left"
            );
            ensure!(
                prov_a.is_running() && prov_b.is_running(),
                "a provisioner exited: {}{}",
                prov_a.log_tail(20),
                prov_b.log_tail(20)
            );
            for node in [&node_a, &node_b] {
                Api::<CSINode>::all(admin.clone())
                    .delete(node, &DeleteParams::default())
                    .await?;
                Api::<Node>::all(admin.clone())
                    .delete(node, &DeleteParams::default())
                    .await?;
            }
            for c in [&now, &late] {
                classes.delete(c, &DeleteParams::default()).await?;
            }
            Ok(())
        },
    )
    .await
}
