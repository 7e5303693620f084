//! End-to-end topology: WaitForFirstConsumer waits for a selected node; once
//! the scheduler's annotation is set, CreateVolume carries that node's
//! segment (from its CSINode topology keys and Node labels) and the PV gets
//! nodeAffinity from the driver's accessible topology. Immediate binding
//! sends the aggregated cluster topology.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use common::{
    DRIVER, claim, delete_claims, setup_with, spawn_provisioner, storage_class, wait_bound,
};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

/// The segment the CSI test driver service reports for every volume.
const KEY: &str = "io.kubernetes.storage.mock/node";
const VALUE: &str = "some-mock-node";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_follows_the_selected_node() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let admin = tb.admin_client();
            let opts = DriverOptions {
                enable_topology: true,
                ..DriverOptions::named(DRIVER)
            };
            let setup = setup_with(tb, "e2e-topo", opts).await?;
            let ns = setup.ns.clone();
            // A node where the driver registered its topology key, as kubelet and
            // node-driver-registrar would have it; removed at the end.
            let node = format!("e2e-topo-{}", setup.suffix);
            tb.create_node_with_csinode(
                &node,
                DRIVER,
                setup.driver.node_id(),
                &[KEY],
                BTreeMap::from([(KEY.to_string(), VALUE.to_string())]),
            )
            .await?;
            let provisioner = spawn_provisioner(
                tb,
                &setup,
                "csi-provisioner",
                setup.driver.socket_path(),
                &[],
            )?;

            let late = format!("e2e-topo-late-{}", setup.suffix);
            let now = format!("e2e-topo-now-{}", setup.suffix);
            let classes: Api<StorageClass> = Api::all(admin.clone());
            let mut wffc = storage_class(&late, &[]);
            wffc.volume_binding_mode = Some("WaitForFirstConsumer".into());
            classes.create(&PostParams::default(), &wffc).await?;
            classes
                .create(&PostParams::default(), &storage_class(&now, &[]))
                .await?;
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
            let pvs: Api<PersistentVolume> = Api::all(admin.clone());

            // No selected node: nothing happens.
            pvcs.create(&PostParams::default(), &claim("unscheduled", &late))
                .await?;
            let mut placed = claim("placed", &late);
            placed.metadata.annotations = Some(BTreeMap::from([(
                "volume.kubernetes.io/selected-node".to_string(),
                node.clone(),
            )]));
            pvcs.create(&PostParams::default(), &placed).await?;
            pvcs.create(&PostParams::default(), &claim("immediate", &now))
                .await?;

            for name in ["placed", "immediate"] {
                let pv_name = wait_bound(&pvcs, name).await?;
                let pv = pvs.get(&pv_name).await?;
                let terms = pv
                    .spec
                    .and_then(|s| s.node_affinity)
                    .and_then(|a| a.required)
                    .map(|r| r.node_selector_terms)
                    .context("PV without nodeAffinity")?;
                let exprs: Vec<_> = terms
                    .iter()
                    .flat_map(|t| t.match_expressions.clone().unwrap_or_default())
                    .collect();
                ensure!(
                    exprs.iter().any(|e| e.key == KEY
                        && e.operator == "In"
                        && e.values.as_deref() == Some(&[VALUE.to_string()][..])),
                    "{name}: nodeAffinity {exprs:?} lacks {KEY} In [{VALUE}]"
                );
            }
            let unscheduled = pvcs.get("unscheduled").await?;
            ensure!(
                unscheduled.spec.and_then(|s| s.volume_name).is_none(),
                "a WaitForFirstConsumer claim without a selected node was provisioned"
            );

            // The request named the selected node's segment.
            let log = common::logged_requests(provisioner.log_path(), "CreateVolume")?;
            let segment = format!("\"segments\":{{\"{KEY}\":\"{VALUE}\"}}");
            ensure!(
                log.iter()
                    .any(|l| l.contains("accessibility_requirements") && l.contains(&segment)),
                "no CreateVolume request with requisite {segment} in the provisioner log"
            );

            delete_claims(&pvcs, &pvs, &ns).await?;
            Api::<CSINode>::all(admin.clone())
                .delete(&node, &DeleteParams::default())
                .await?;
            Api::<Node>::all(admin.clone())
                .delete(&node, &DeleteParams::default())
                .await?;
            for c in [&late, &now] {
                classes.delete(c, &DeleteParams::default()).await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            ensure!(
                provisioner.is_running(),
                "csi-provisioner exited: {}",
                provisioner.log_tail(40)
            );
            Ok(())
        },
    )
    .await
}
