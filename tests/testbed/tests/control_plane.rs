//! Smoke test of the test bed: control plane, driver, RBAC under a real
//! ServiceAccount. Fails (never skips) when the Go binaries are missing.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::CSINode;
use kube::Api;
use kube::api::ListParams;
use testbed::{DriverOptions, Testbed, TestbedOptions, manifest_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_driver_and_rbac() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let tb = Testbed::start(TestbedOptions::default())
        .await
        .context("starting the test bed")?;
    eprintln!(
        "test bed up in {:.2}s (local: {}, run dir {})",
        tb.started_in().as_secs_f64(),
        tb.is_local(),
        tb.run_dir().display()
    );

    tb.run_test(async |tb| -> anyhow::Result<()> {
        let driver = tb
            .start_driver(DriverOptions::default())
            .await
            .context("starting csi-testdriver")?;
        assert!(driver.socket_path().exists());
        assert!(driver.socket_path().as_os_str().len() < 108);
        assert!(driver.process().is_running());

        let ns = format!("smoke-{}", std::process::id());
        let kubeconfig = tb
            .service_account_kubeconfig(&ns, "csi-provisioner")
            .await?;
        let applied = tb
            .apply_manifest(
                &manifest_path("rbac-csi-provisioner.yaml"),
                &[("NAMESPACE", ns.as_str())],
            )
            .await?;
        assert_eq!(applied.len(), 5);
        // Applying again replaces instead of failing.
        tb.apply_manifest(
            &manifest_path("rbac-csi-provisioner.yaml"),
            &[("NAMESPACE", ns.as_str())],
        )
        .await?;

        let sa = tb.client_from_kubeconfig(&kubeconfig).await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::all(sa.clone());
        // RBAC changes reach the authorizer through a watch: allow a moment.
        let mut listed = Err(anyhow::anyhow!("not tried"));
        for _ in 0..50 {
            match pvcs.list(&ListParams::default()).await {
                Ok(l) => {
                    listed = Ok(l);
                    break;
                }
                Err(e) => listed = Err(e.into()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        listed.context("ServiceAccount lists PVCs cluster-wide")?;

        let secrets: Api<Secret> = Api::namespaced(sa, &ns);
        match secrets.list(&ListParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => anyhow::bail!("expected 403 Forbidden listing Secrets, got {other:?}"),
        }

        let node = format!("node-{ns}");
        let labels = BTreeMap::from([("topology.hostpath.csi/node".to_string(), node.clone())]);
        tb.create_node_with_csinode(
            &node,
            driver.driver_name(),
            driver.node_id(),
            &["topology.hostpath.csi/node"],
            labels.clone(),
        )
        .await?;
        // Idempotent.
        tb.create_node_with_csinode(
            &node,
            driver.driver_name(),
            driver.node_id(),
            &["topology.hostpath.csi/node"],
            labels,
        )
        .await?;
        tb.create_csidriver(driver.driver_name(), false).await?;
        tb.create_csidriver(driver.driver_name(), false).await?;

        let admin = tb.admin_client();
        let n = Api::<Node>::all(admin.clone()).get(&node).await?;
        assert_eq!(
            n.metadata
                .annotations
                .unwrap_or_default()
                .get("volumes.kubernetes.io/controller-managed-attach-detach")
                .map(String::as_str),
            Some("true")
        );
        let c = Api::<CSINode>::all(admin).get(&node).await?;
        assert_eq!(c.spec.drivers.len(), 1);
        assert_eq!(c.spec.drivers[0].name, "hostpath.csi.k8s.io");
        assert_eq!(c.spec.drivers[0].node_id, "hostpath.csi.k8s.io");
        Ok(())
    })
    .await?;

    eprintln!("smoke test wall time {:.2}s", t0.elapsed().as_secs_f64());
    Ok(())
}
