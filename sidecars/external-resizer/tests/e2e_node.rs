//! Expansion finished on a real kubelet: the driver runs as a node plugin
//! pod that answers `node_expansion_required`, a pod uses the claim, the
//! resizer expands the volume in the controller and hands over with
//! `FileSystemResizePending`/`NodeResizePending`, and the kubelet's
//! NodeExpandVolume completes the claim's `status.capacity`. Runs against
//! upstream with `CSI_E2E_RESIZER_BIN`; `CSI_E2E_RESIZER_REPORT` records
//! the result for a diff.

mod common;

use anyhow::{Context as _, ensure};
use common::{DRIVER, WAIT, poll, save};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::Value;
use testbed::{Testbed, TestbedOptions};

fn storage_of(v: &Value) -> Option<&str> {
    v.get("storage").and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_finishes_the_expansion() -> anyhow::Result<()> {
    let tb = Testbed::start(TestbedOptions::with_node()).await?;
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let ns = format!("e2e-resize-node-{:04x}", std::process::id() as u16);
        tb.create_namespace(&ns).await?;
        tb.create_csidriver(DRIVER, false).await?;
        let node = tb.start_node().await?;
        let driver = node.deploy_csi_driver_with(&ns, DRIVER, true).await?;
        ensure!(
            node.is_local(),
            "the resizer runs on this machine and needs the node plugin's socket {}",
            driver.socket.display()
        );
        let s = common::scenario_on(
            tb,
            "e2e-resize-node",
            common::Source::Existing {
                ns: ns.clone(),
                socket: driver.socket.clone(),
            },
        )
        .await?;
        s.bound_claim("data").await?;
        let pods: Api<Pod> = Api::namespaced(tb.admin_client(), &ns);
        pods.create(
            &PostParams::default(),
            &testbed::workload_pod("app", node.name(), "data"),
        )
        .await?;
        node.wait_pod_running(&pods, "app").await?;

        s.request("data", "2Mi").await?;
        poll("kubelet finished the expansion", WAIT, || async {
            let r = s.record("data").await?;
            Ok((storage_of(&r["claim"]["status"]["capacity"]) == Some("2Mi")).then_some(()))
        })
        .await?;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let r = s.record("data").await?;
        save("node-kubelet", &r)?;
        ensure!(storage_of(&r["pv"]["capacity"]) == Some("2Mi"), "{r:#}");
        ensure!(
            r["claim"]["status"]
                .get("allocatedResourceStatuses")
                .is_none(),
            "{r:#}"
        );
        let reasons: Vec<&str> = r["events"]
            .as_array()
            .context("events")?
            .iter()
            .filter_map(|e| e["reason"].as_str())
            .collect();
        ensure!(reasons.contains(&"FileSystemResizeRequired"), "{r:#}");
        let log = node.container_log(&driver.namespace, &driver.pod, "driver");
        ensure!(
            log.contains("/csi.v1.Node/NodeExpandVolume OK"),
            "the kubelet did not call NodeExpandVolume:\n{log}"
        );
        pods.delete("app", &DeleteParams::default()).await?;
        poll("pod app gone", WAIT, || async {
            Ok(pods.get_opt("app").await?.is_none().then_some(()))
        })
        .await?;
        ensure!(
            s.resizer.is_running(),
            "csi-resizer exited: {}",
            s.resizer.log_tail(40)
        );
        drop(s);
        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await
}
