//! End-to-end VolumeAttributesClass: the class's parameters reach
//! CreateVolume as `mutable_parameters` and the PV records the class.

mod common;

use anyhow::{Context as _, ensure};
use common::{DRIVER, claim, scenario, wait_bound};
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testbed::{DriverOptions, Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_attributes_class_parameters_reach_the_driver() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let s = scenario(tb, "e2e-vac", DriverOptions::named(DRIVER), |_| {}).await?;
            let ns = s.setup.ns.clone();
            // Upstream's rbac.yaml lacks this rule too; its users add it the same way.
            tb.apply_manifest(
                &testbed::manifest_path("rbac-csi-provisioner-vac.yaml"),
                &[("NAMESPACE", ns.as_str())],
            )
            .await?;

            let vac_name = format!("gold-{}", s.setup.suffix);
            let vacs: Api<VolumeAttributesClass> = Api::all(tb.admin_client());
            let vac = VolumeAttributesClass {
                metadata: ObjectMeta {
                    name: Some(vac_name.clone()),
                    ..Default::default()
                },
                driver_name: DRIVER.into(),
                parameters: Some([("iops".to_string(), "3000".to_string())].into()),
            };
            vacs.create(&PostParams::default(), &vac).await?;
            let mut c = claim("tiered", &s.class);
            c.spec
                .as_mut()
                .context("claim spec")?
                .volume_attributes_class_name = Some(vac_name.clone());
            s.pvcs.create(&PostParams::default(), &c).await?;

            let pv_name = wait_bound(&s.pvcs, "tiered").await?;
            let pv = s.pvs.get(&pv_name).await?;
            ensure!(
                pv.spec
                    .and_then(|sp| sp.volume_attributes_class_name)
                    .as_deref()
                    == Some(vac_name.as_str()),
                "PV does not record the VolumeAttributesClass"
            );
            let log = common::logged_requests(s.provisioner.log_path(), "CreateVolume")?;
            ensure!(
                log.iter()
                    .any(|l| l.contains("\"mutable_parameters\":{\"iops\":\"3000\"}")),
                "no CreateVolume request with the class's mutable_parameters in the provisioner log"
            );
            s.finish().await?;
            // The class's protection finalizer goes once no claim uses it.
            vacs.delete(&vac_name, &DeleteParams::default()).await?;
            Ok(())
        },
    )
    .await
}
