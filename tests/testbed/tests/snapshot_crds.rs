//! The snapshot CRDs install on a real API server, twice, and serve
//! `snapshot.storage.k8s.io/v1` objects. Fails (never skips) when the Go
//! binaries or the external-snapshotter client module are missing.

use anyhow::Context as _;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use testbed::{Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_snapshot_crds_twice_and_use_them() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb| -> anyhow::Result<()> {
            tb.install_snapshot_crds().await.context("first install")?;
            tb.install_snapshot_crds().await.context("second install")?;

            let ns = format!("snapcrd-{}", std::process::id());
            tb.create_namespace(&ns).await?;
            let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot");
            let ar = ApiResource::from_gvk_with_plural(&gvk, "volumesnapshots");
            let api: Api<DynamicObject> = Api::namespaced_with(tb.admin_client(), &ns, &ar);
            assert!(api.list(&ListParams::default()).await?.items.is_empty());

            let mut snap = DynamicObject::new("snap-1", &ar).within(&ns);
            snap.data = serde_json::json!({
                "spec": {"source": {"persistentVolumeClaimName": "data"}}
            });
            api.create(&PostParams::default(), &snap).await?;
            let listed = api.list(&ListParams::default()).await?;
            let names: Vec<_> = listed
                .items
                .iter()
                .filter_map(|o| o.metadata.name.as_deref())
                .collect();
            assert_eq!(names, ["snap-1"]);
            assert_eq!(
                listed.items[0].data["spec"]["source"]["persistentVolumeClaimName"],
                "data"
            );

            let contents = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotContent"),
                "volumesnapshotcontents",
            );
            Api::<DynamicObject>::all_with(tb.admin_client(), &contents)
                .list(&ListParams::default())
                .await
                .context("list VolumeSnapshotContents")?;
            Ok(())
        },
    )
    .await
}
