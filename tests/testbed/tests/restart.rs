//! `Testbed::restart_apiserver` and `Testbed::restart_driver`: what was
//! stored survives an API server restart; a restarted driver answers on the
//! same socket and has forgotten its volumes.

use std::time::Duration;

use anyhow::Context as _;
use csi_client::csi::v1::{CreateVolumeRequest, ListVolumesRequest, VolumeCapability};
use csi_client::{ConnectOptions, Connection};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use testbed::{DriverOptions, Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_and_driver_restart() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::local(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            tb.create_namespace("restart-kept").await?;
            let away = tb.restart_apiserver().await.context("restart_apiserver")?;
            eprintln!("kube-apiserver away for {away:.1?}");
            let ns = Api::<Namespace>::all(tb.admin_client())
                .get("restart-kept")
                .await
                .context("namespace after the restart")?;
            assert_eq!(ns.metadata.name.as_deref(), Some("restart-kept"));
            let log = std::fs::read_to_string(tb.logs_dir().join("kube-apiserver.log"))?;
            assert_eq!(
                log.matches("starting kube-apiserver").count(),
                2,
                "one log, two starts"
            );

            let mut driver = tb.start_driver(DriverOptions::default()).await?;
            let conn = Connection::connect(ConnectOptions::new(
                driver.endpoint(),
                Duration::from_secs(10),
            ))
            .await?;
            conn.create_volume(CreateVolumeRequest {
                name: "before-restart".into(),
                volume_capabilities: vec![VolumeCapability::default()],
                ..Default::default()
            })
            .await?;
            let count = async |conn: &Connection| -> anyhow::Result<usize> {
                Ok(conn
                    .list_volumes(ListVolumesRequest::default())
                    .await?
                    .entries
                    .len())
            };
            assert_eq!(count(&conn).await?, 1);
            let old_pid = driver.process().pid();
            tb.restart_driver(&mut driver).await?;
            assert_ne!(driver.process().pid(), old_pid);
            assert!(driver.process().is_running());
            // The connection re-dials the same socket on the next call.
            let mut after = Err(anyhow::anyhow!("not tried"));
            for _ in 0..50 {
                after = count(&conn).await;
                if after.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(after?, 0, "a restarted csi-testdriver forgets its volumes");
            Ok(())
        },
    )
    .await
}
