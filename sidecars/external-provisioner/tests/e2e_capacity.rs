//! End-to-end CSIStorageCapacity (`--enable-capacity`): an object appears in
//! `$NAMESPACE` for the WaitForFirstConsumer class and the node's segment,
//! with upstream's labels, and its capacity shrinks after a provision.

mod common;

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};
use common::{DRIVER, WAIT, claim, poll, setup_with, storage_class, volumes_of_namespace};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSINode, CSIStorageCapacity, StorageClass};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

const GIB: i64 = 1 << 30;
const KEY: &str = "topology.hostpath.csi/node";

async fn capacity_of(
    api: &Api<CSIStorageCapacity>,
    class: &str,
    node: &str,
) -> anyhow::Result<Option<(String, i64)>> {
    let list = api
        .list(&ListParams::default().labels(&format!("csi.storage.k8s.io/drivername={DRIVER}")))
        .await?;
    for c in list.items {
        let on_node = c
            .node_topology
            .as_ref()
            .and_then(|t| t.match_labels.as_ref())
            .and_then(|l| l.get(KEY))
            .map(String::as_str)
            == Some(node);
        if c.storage_class_name == class
            && on_node
            && let Some(q) = c.capacity.as_ref()
        {
            let bytes = external_provisioner::quantity::to_bytes(&q.0)?;
            return Ok(Some((c.metadata.name.unwrap_or_default(), bytes)));
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_objects_follow_the_driver() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let admin = tb.admin_client();
            let node = format!("e2e-cap-{}", std::process::id());
            let opts = DriverOptions {
                enable_topology: true,
                node_id: node.clone(),
                capacity: 10 * GIB,
                ..DriverOptions::named(DRIVER)
            };
            let setup = setup_with(tb, "e2e-cap", opts).await?;
            let ns = setup.ns.clone();
            tb.create_node_with_csinode(
                &node,
                DRIVER,
                setup.driver.node_id(),
                &[KEY],
                BTreeMap::from([(KEY.to_string(), node.clone())]),
            )
            .await?;
            let provisioner = tb.spawn(
                "csi-provisioner",
                &common::provisioner_binary(),
                [
                    format!("--csi-address={}", setup.driver.socket_path().display()),
                    format!("--kubeconfig={}", setup.kubeconfig),
                    "--v=5".into(),
                    "--enable-capacity".into(),
                    "--capacity-ownerref-level=-1".into(),
                    "--capacity-poll-interval=1m".into(),
                ],
                &[
                    ("KUBECONFIG", setup.kubeconfig.as_str()),
                    ("NAMESPACE", ns.as_str()),
                ],
            )?;

            let class = format!("e2e-cap-{}", setup.suffix);
            let classes: Api<StorageClass> = Api::all(admin.clone());
            let mut wffc = storage_class(&class, &[]);
            wffc.volume_binding_mode = Some("WaitForFirstConsumer".into());
            classes.create(&PostParams::default(), &wffc).await?;

            let capacities: Api<CSIStorageCapacity> = Api::namespaced(admin.clone(), &ns);
            // The poll interval is a minute: the first object comes from the
            // start-up sync or the class appearing in the cache.
            let (name, before) = poll("a CSIStorageCapacity for the class", WAIT, || async {
                Ok(capacity_of(&capacities, &class, &node)
                    .await?
                    .filter(|(_, b)| *b == 10 * GIB))
            })
            .await?;
            let obj = capacities.get(&name).await?;
            let labels = obj.metadata.labels.clone().unwrap_or_default();
            ensure!(
                labels
                    .get("csi.storage.k8s.io/managed-by")
                    .map(String::as_str)
                    == Some("external-provisioner"),
                "labels {labels:?}"
            );
            ensure!(
                obj.metadata.generate_name.as_deref() == Some("csisc-"),
                "generateName {:?}",
                obj.metadata.generate_name
            );
            let segment = obj
                .node_topology
                .and_then(|t| t.match_labels)
                .context("no nodeTopology")?;
            ensure!(segment.get(KEY) == Some(&node), "nodeTopology {segment:?}");

            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
            let mut c = claim("data", &class);
            c.spec
                .as_mut()
                .context("spec")?
                .resources
                .as_mut()
                .context("resources")?
                .requests = Some(BTreeMap::from([(
                "storage".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
            )]));
            c.metadata.annotations = Some(BTreeMap::from([(
                "volume.kubernetes.io/selected-node".to_string(),
                node.clone(),
            )]));
            pvcs.create(&PostParams::default(), &c).await?;
            poll("claim Bound", WAIT, || async {
                Ok((pvcs
                    .get("data")
                    .await?
                    .status
                    .and_then(|s| s.phase)
                    .as_deref()
                    == Some("Bound"))
                .then_some(()))
            })
            .await?;
            // Well inside the one-minute poll: the provision itself triggers a sync.
            let after = poll(
                "capacity reduced after provisioning",
                std::time::Duration::from_secs(30),
                || async {
                    Ok(capacity_of(&capacities, &class, &node)
                        .await?
                        .map(|(_, b)| b)
                        .filter(|b| *b < before))
                },
            )
            .await?;
            ensure!(
                after == 8 * GIB,
                "capacity after a 2Gi volume is {after}, want 8Gi"
            );

            pvcs.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await?;
            let pvs: Api<PersistentVolume> = Api::all(admin.clone());
            poll("PVs of the test gone", WAIT, || async {
                Ok(volumes_of_namespace(&pvs, &ns)
                    .await?
                    .is_empty()
                    .then_some(()))
            })
            .await?;
            classes.delete(&class, &DeleteParams::default()).await?;
            Api::<CSINode>::all(admin.clone())
                .delete(&node, &DeleteParams::default())
                .await?;
            Api::<Node>::all(admin.clone())
                .delete(&node, &DeleteParams::default())
                .await?;
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
