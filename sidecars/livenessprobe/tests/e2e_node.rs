//! End-to-end on a real kubelet: the driver container's liveness probe asks
//! our livenessprobe (in the driver pod, next to our registrar). While the
//! driver's Probe answers ready=false the kubelet restarts the driver
//! container; once it answers ready again the pod is Ready and stays so.
//!
//! Needs the node set of the test bed (`tests/testbed/build.sh node`);
//! without it the test fails and says what to build. Never skipped.

mod common;
#[path = "common/node.rs"]
mod node_common;

use std::time::{Duration, Instant};

use anyhow::ensure;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use node_common::{DRIVER, WAIT, deploy_ours, log_count, plugin_dir, poll, restarts};
use testbed::{Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restarts_the_driver_when_probe_fails() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let tb = Testbed::start(TestbedOptions::with_node()).await?;
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        let ns = format!("e2e-probe-{:04x}", std::process::id() as u16);
        tb.create_namespace(&ns).await?;
        tb.create_csidriver(DRIVER, false).await?;
        let node = tb.start_node().await?;
        ensure!(
            node.is_local(),
            "this test needs the test bed's own node: it packs our sidecars into images and \
             imports them into its containerd (run without KUBECONFIG)"
        );
        let ours = deploy_ours(&node, &ns, node.name(), false).await?;
        let pods: Api<Pod> = Api::namespaced(tb.admin_client(), &ns);
        node.wait_pod_running(&pods, &ours.driver.pod).await?;

        // Our livenessprobe answers on the node's network.
        let (code, body) = http_get(ours.liveness_port, "/healthz").await?;
        ensure!((code, body.as_str()) == (200, "ok"), "/healthz: {code} {body}");
        let (_, metrics) = http_get(ours.liveness_port, "/metrics").await?;
        let needle = format!(
            "csi_sidecar_operations_seconds_count{{driver_name=\"{DRIVER}\",grpc_status_code=\"OK\",method_name=\"/csi.v1.Identity/Probe\"}}"
        );
        ensure!(metrics.contains(&needle), "{needle} missing:\n{metrics}");
        ensure!(restarts(tb, &ours, "driver").await? == 0, "driver restarted before the test");

        // The driver says it is not ready: the kubelet restarts it.
        let switch = plugin_dir(&node).join("probe-fail");
        std::fs::write(&switch, b"")?;
        let t = Instant::now();
        let (code, body) = http_get(ours.liveness_port, "/healthz").await?;
        ensure!(
            (code, body.as_str()) == (500, "driver responded but is not ready"),
            "/healthz while not ready: {code} {body}"
        );
        poll("the kubelet restarting the driver container", WAIT, || async {
            Ok((restarts(tb, &ours, "driver").await? >= 1).then_some(()))
        })
        .await?;
        eprintln!(
            "e2e_node: Probe ready=false; the kubelet restarted the driver after {:.1}s",
            t.elapsed().as_secs_f64()
        );
        std::fs::remove_file(&switch)?;
        node.wait_pod_running(&pods, &ours.driver.pod).await?;
        let settled = restarts(tb, &ours, "driver").await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        ensure!(
            restarts(tb, &ours, "driver").await? == settled,
            "the driver kept restarting after Probe said ready again"
        );
        ensure!(restarts(tb, &ours, "livenessprobe").await? == 0, "livenessprobe restarted");
        ensure!(restarts(tb, &ours, "registrar").await? == 0, "the registrar restarted");
        ensure!(
            log_count(&node, &ours, "livenessprobe", "driver responded but is not ready") >= 1,
            "livenessprobe's log lacks the failed probes"
        );
        let (code, _) = http_get(ours.liveness_port, "/healthz").await?;
        ensure!(code == 200, "/healthz after recovery: {code}");
        node_common::print_rss(&ours, "in the pod after the kubelet's probes");
        let report = node.teardown().await?;
        ensure!(report.is_clean(), "teardown not clean:\n{report}");
        Ok(())
    })
    .await?;
    eprintln!("e2e_node: whole test {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    common::get(port, path)
        .await
        .map(|(code, _, body)| (code, body))
        .ok_or_else(|| anyhow::anyhow!("nothing answers on port {port}"))
}
