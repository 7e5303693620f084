//! End-to-end VolumeAttributesClass: the class's parameters reach
//! CreateVolume as `mutable_parameters` and the PV records the class.

mod common;

use anyhow::{Context as _, ensure};
use common::{DRIVER, claim, delete_claims, setup, spawn_provisioner, storage_class, wait_bound};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttributesClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testbed::{Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_attributes_class_parameters_reach_the_driver() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let admin = tb.admin_client();
            let setup = setup(tb, "e2e-vac").await?;
            let ns = setup.ns.clone();
            tb.apply_manifest(
                &testbed::manifest_path("rbac-csi-provisioner-vac.yaml"),
                &[("NAMESPACE", ns.as_str())],
            )
            .await?;
            let provisioner = spawn_provisioner(
                tb,
                &setup,
                "csi-provisioner",
                setup.driver.socket_path(),
                &[],
            )?;

            let vac_name = format!("gold-{}", setup.suffix);
            let vacs: Api<VolumeAttributesClass> = Api::all(admin.clone());
            let vac = VolumeAttributesClass {
                metadata: ObjectMeta {
                    name: Some(vac_name.clone()),
                    ..Default::default()
                },
                driver_name: DRIVER.into(),
                parameters: Some([("iops".to_string(), "3000".to_string())].into()),
            };
            vacs.create(&PostParams::default(), &vac).await?;
            let class = format!("e2e-vac-{}", setup.suffix);
            let classes: Api<StorageClass> = Api::all(admin.clone());
            classes
                .create(&PostParams::default(), &storage_class(&class, &[]))
                .await?;
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
            let mut c = claim("tiered", &class);
            c.spec
                .as_mut()
                .context("claim spec")?
                .volume_attributes_class_name = Some(vac_name.clone());
            pvcs.create(&PostParams::default(), &c).await?;

            let pv_name = wait_bound(&pvcs, "tiered").await?;
            let pvs: Api<PersistentVolume> = Api::all(admin.clone());
            let pv = pvs.get(&pv_name).await?;
            ensure!(
                pv.spec
                    .and_then(|s| s.volume_attributes_class_name)
                    .as_deref()
                    == Some(vac_name.as_str()),
                "PV does not record the VolumeAttributesClass"
            );
            let log = std::fs::read_to_string(provisioner.log_path())?;
            ensure!(
                log.lines().any(|l| l.contains("CreateVolume")
                    && l.contains("\"mutable_parameters\":{\"iops\":\"3000\"}")),
                "no CreateVolume request with the class's mutable_parameters in the provisioner log"
            );

            delete_claims(&pvcs, &pvs, &ns).await?;
            classes.delete(&class, &DeleteParams::default()).await?;
            // The protection finalizer goes once no claim uses the class.
            vacs.delete(&vac_name, &DeleteParams::default()).await?;
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
