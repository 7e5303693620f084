//! The node's teardown also runs when a test panics while the node is up:
//! the driver pod and the kubelet are gone afterwards and the host state
//! equals the state before the node (printed by the teardown). It checks
//! the test bed's own node, so it starts a local one even when
//! `$KUBECONFIG` names a cluster.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use testbed::{Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_is_torn_down_when_a_test_panics() -> anyhow::Result<()> {
    let tb = Testbed::start(TestbedOptions {
        force_local: true,
        ..TestbedOptions::with_node()
    })
    .await?;
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let body = {
        let slot = slot.clone();
        let tb = &tb;
        async move {
            tb.create_namespace("node-drop").await.unwrap();
            tb.create_csidriver("hostpath.csi.k8s.io", false)
                .await
                .unwrap();
            let node = tb.start_node().await.unwrap();
            *slot.lock().unwrap() = Some(node.drop_report());
            node.deploy_csi_driver("node-drop", "hostpath.csi.k8s.io")
                .await
                .unwrap();
            panic!("deliberate panic with the node and its driver pod running");
        }
    };
    let caught = AssertUnwindSafe(body).catch_unwind().await;
    anyhow::ensure!(caught.is_err(), "the body was meant to panic");
    let report = slot
        .lock()
        .unwrap()
        .take()
        .ok_or_else(|| anyhow::anyhow!("the node never started"))?;
    let report = report
        .lock()
        .unwrap()
        .take()
        .ok_or_else(|| anyhow::anyhow!("dropping the node left no teardown report"))?;
    anyhow::ensure!(report.is_clean(), "teardown on panic not clean:\n{report}");
    Ok(())
}
