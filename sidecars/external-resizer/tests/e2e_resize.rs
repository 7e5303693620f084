//! End-to-end expansion and modification on the real control plane:
//! controller-only expansion, expansion that needs the node, a driver
//! failure recovered by lowering the request, and a VolumeAttributesClass
//! change. The same test runs against upstream's binary with
//! `CSI_E2E_RESIZER_BIN=<path to csi-resizer>`; with
//! `CSI_E2E_RESIZER_REPORT=<dir>` each scenario's resulting claim, PV and
//! Events are written there for a field-by-field diff of the two runs.

mod common;

use anyhow::ensure;
use common::{DRIVER, WAIT, poll, save, scenario};
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use testbed::{DriverOptions, Testbed, TestbedOptions};

fn storage_of(v: &Value) -> Option<&str> {
    v.get("storage").and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion_failure_recovery_and_modify() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let driver = DriverOptions {
                max_expand_bytes: 4 << 20,
                ..DriverOptions::named(DRIVER)
            };
            let s = scenario(tb, "e2e-resize", driver).await?;

            // 1. Controller-only expansion of a Bound claim.
            s.bound_claim("grow").await?;
            s.request("grow", "2Mi").await?;
            poll("grow expanded", WAIT, || async {
                let r = s.record("grow").await?;
                let done = storage_of(&r["claim"]["status"]["capacity"]) == Some("2Mi")
                    && r["events"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e["reason"] == "VolumeResizeSuccessful"));
                Ok(done.then_some(r))
            })
            .await?;
            // Let late writes or duplicate events show before recording.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let r = s.record("grow").await?;
            save("grow", &r)?;
            ensure!(
                storage_of(&r["pv"]["capacity"]) == Some("2Mi"),
                "PV capacity: {r:#}"
            );
            ensure!(
                r["claim"]["annotations"]["volume.kubernetes.io/node-expansion-not-required"]
                    == "true",
                "{r:#}"
            );
            ensure!(
                storage_of(&r["claim"]["status"]["allocatedResources"]) == Some("2Mi"),
                "{r:#}"
            );
            ensure!(
                r["claim"]["status"]
                    .get("allocatedResourceStatuses")
                    .is_none(),
                "{r:#}"
            );
            ensure!(
                r["claim"]["status"]
                    .get("conditions")
                    .is_none_or(|c| c.as_array().is_some_and(|c| c.is_empty())),
                "{r:#}"
            );
            let reasons: Vec<&str> = r["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["reason"].as_str())
                .collect();
            ensure!(
                reasons.contains(&"Resizing") && reasons.contains(&"VolumeResizeSuccessful"),
                "{r:#}"
            );

            // 2. The driver refuses (OutOfRange above 4Mi); the user lowers the
            //    request to a size it can provide.
            s.bound_claim("toobig").await?;
            s.request("toobig", "8Mi").await?;
            let failed = poll("toobig infeasible", WAIT, || async {
                let r = s.record("toobig").await?;
                let infeasible = r["claim"]["status"]["allocatedResourceStatuses"]["storage"]
                    == "ControllerResizeInfeasible";
                Ok(infeasible.then_some(r))
            })
            .await?;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let failed_now = s.record("toobig").await?;
            save("toobig-failed", &failed_now)?;
            let conds = failed["claim"]["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ensure!(
                conds.iter().any(|c| c["type"] == "ControllerResizeError"
                    && c["message"].as_str().is_some_and(
                        |m| m.starts_with("failed to expand pvc with rpc error: code = OutOfRange")
                    )),
                "{failed:#}"
            );
            ensure!(
                storage_of(&failed["claim"]["status"]["allocatedResources"]) == Some("8Mi"),
                "{failed:#}"
            );
            s.request("toobig", "3Mi").await?;
            poll("toobig recovered", WAIT, || async {
                let r = s.record("toobig").await?;
                Ok((storage_of(&r["claim"]["status"]["capacity"]) == Some("3Mi")).then_some(()))
            })
            .await?;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let r = s.record("toobig").await?;
            save("toobig-recovered", &r)?;
            ensure!(storage_of(&r["pv"]["capacity"]) == Some("3Mi"), "{r:#}");
            ensure!(
                r["claim"]["status"]
                    .get("allocatedResourceStatuses")
                    .is_none(),
                "{r:#}"
            );
            ensure!(
                storage_of(&r["claim"]["status"]["allocatedResources"]) == Some("3Mi"),
                "{r:#}"
            );

            // 3. A VolumeAttributesClass change: ControllerModifyVolume, then
            //    the class recorded on the claim's status and the PV.
            let vac_name = format!("gold-{}", s.suffix);
            let vacs: Api<VolumeAttributesClass> = Api::all(tb.admin_client());
            vacs.create(
                &PostParams::default(),
                &VolumeAttributesClass {
                    metadata: ObjectMeta {
                        name: Some(vac_name.clone()),
                        ..Default::default()
                    },
                    driver_name: DRIVER.into(),
                    parameters: Some([("iops".to_string(), "3000".to_string())].into()),
                },
            )
            .await?;
            s.bound_claim("tier").await?;
            s.pvcs
                .patch(
                    "tier",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"volumeAttributesClassName": vac_name}})),
                )
                .await?;
            poll("tier modified", WAIT, || async {
                let r = s.record("tier").await?;
                Ok(
                    (r["claim"]["status"]["currentVolumeAttributesClassName"] == vac_name.as_str())
                        .then_some(()),
                )
            })
            .await?;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let mut r = s.record("tier").await?;
            ensure!(
                r["pv"]["volumeAttributesClassName"] == vac_name.as_str(),
                "{r:#}"
            );
            ensure!(
                r["claim"]["status"].get("modifyVolumeStatus").is_none(),
                "{r:#}"
            );
            let reasons: Vec<&str> = r["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["reason"].as_str())
                .collect();
            ensure!(
                reasons.contains(&"VolumeModify") && reasons.contains(&"VolumeModifySuccessful"),
                "{r:#}"
            );
            let text = serde_json::to_string(&r)?.replace(&vac_name, "<vac>");
            r = serde_json::from_str(&text)?;
            save("tier", &r)?;

            ensure!(
                s.resizer.is_running(),
                "csi-resizer exited: {}",
                s.resizer.log_tail(40)
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion_that_needs_the_node() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let driver = DriverOptions {
            node_expansion_required: true,
            ..DriverOptions::named(DRIVER)
        };
        let s = scenario(tb, "e2e-resize-node", driver).await?;
        s.bound_claim("fs").await?;
        s.request("fs", "2Mi").await?;
        poll("fs waiting for the node", WAIT, || async {
            let r = s.record("fs").await?;
            Ok((r["claim"]["status"]["allocatedResourceStatuses"]["storage"] == "NodeResizePending").then_some(()))
        })
        .await?;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let r = s.record("fs").await?;
        save("fs", &r)?;
        ensure!(storage_of(&r["pv"]["capacity"]) == Some("2Mi"), "{r:#}");
        ensure!(storage_of(&r["claim"]["status"]["capacity"]) == Some("1Mi"), "{r:#}");
        let conds = r["claim"]["status"]["conditions"].as_array().cloned().unwrap_or_default();
        ensure!(
            conds.iter().any(|c| c["type"] == "FileSystemResizePending"
                && c["message"] == "Waiting for user to (re-)start a pod to finish file system resize of volume on node."),
            "{r:#}"
        );
        let reasons: Vec<&str> = r["events"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
        ensure!(reasons.contains(&"FileSystemResizeRequired"), "{r:#}");
        ensure!(s.resizer.is_running(), "csi-resizer exited: {}", s.resizer.log_tail(40));
        Ok(())
    })
    .await
}

/// The claim is edited (a label) while ControllerExpandVolume is in flight
/// (the driver's answer held back 3 s): the expansion's result still lands
/// on the claim. Upstream's resourceVersion-checked status patch fails
/// then; it sends a Warning `VolumeResizeFailed` and expands again. Ours
/// re-applies the result to the edited claim: one `Resizing`, no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_edited_during_expansion() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let s = common::scenario_via_proxy(tb, "e2e-resize-edit", DriverOptions::named(DRIVER))
                .await?;
            s.bound_claim("edited").await?;
            let proxy = s.proxy.as_ref().expect("proxy");
            proxy.set_delay(std::time::Duration::from_secs(3));
            s.request("edited", "2Mi").await?;
            poll("expansion in flight", WAIT, || async {
                let r = s.record("edited").await?;
                let resizing = r["claim"]["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Resizing"));
                Ok(resizing.then_some(()))
            })
            .await?;
            s.pvcs
                .patch(
                    "edited",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"metadata": {"labels": {"edited": "yes"}}})),
                )
                .await?;
            poll("edited expanded", WAIT, || async {
                let r = s.record("edited").await?;
                Ok((storage_of(&r["claim"]["status"]["capacity"]) == Some("2Mi")).then_some(()))
            })
            .await?;
            proxy.set_delay(std::time::Duration::ZERO);
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            let r = s.record("edited").await?;
            save("edited", &r)?;
            ensure!(storage_of(&r["pv"]["capacity"]) == Some("2Mi"), "{r:#}");
            ensure!(
                r["claim"]["status"]
                    .get("allocatedResourceStatuses")
                    .is_none(),
                "{r:#}"
            );
            if common::testing_ours() {
                let events = r["events"].as_array().cloned().unwrap_or_default();
                ensure!(
                    !events.iter().any(|e| e["reason"] == "VolumeResizeFailed"),
                    "{r:#}"
                );
                ensure!(
                    events
                        .iter()
                        .any(|e| e["reason"] == "Resizing" && e["count"] == 1),
                    "{r:#}"
                );
            }
            ensure!(
                s.resizer.is_running(),
                "csi-resizer exited: {}",
                s.resizer.log_tail(40)
            );
            Ok(())
        },
    )
    .await
}

/// RecoverVolumeExpansionFailure off (upstream's legacy path): the request
/// itself is expanded, nothing goes to `allocatedResources`, and a driver
/// failure is only an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_path_without_recovery() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let driver = DriverOptions {
                max_expand_bytes: 4 << 20,
                ..DriverOptions::named(DRIVER)
            };
            let s = common::scenario_with_args(
                tb,
                "e2e-resize-legacy",
                driver,
                &["--feature-gates=RecoverVolumeExpansionFailure=false"],
            )
            .await?;
            s.bound_claim("grow").await?;
            s.request("grow", "2Mi").await?;
            poll("legacy grow expanded", WAIT, || async {
                let r = s.record("grow").await?;
                Ok((storage_of(&r["claim"]["status"]["capacity"]) == Some("2Mi")).then_some(()))
            })
            .await?;
            s.bound_claim("toobig").await?;
            s.request("toobig", "8Mi").await?;
            poll("legacy failure event", WAIT, || async {
                let r = s.record("toobig").await?;
                let failed = r["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["reason"] == "VolumeResizeFailed"));
                Ok(failed.then_some(()))
            })
            .await?;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let grow = s.record("grow").await?;
            save("legacy-grow", &grow)?;
            ensure!(
                storage_of(&grow["pv"]["capacity"]) == Some("2Mi"),
                "{grow:#}"
            );
            ensure!(
                grow["claim"]["status"].get("allocatedResources").is_none(),
                "{grow:#}"
            );
            let toobig = s.record("toobig").await?;
            let mut toobig_saved = toobig.clone();
            // How often the failure was retried depends on timing.
            for e in toobig_saved["events"].as_array_mut().into_iter().flatten() {
                e["count"] = json!("<n>");
            }
            save("legacy-toobig", &toobig_saved)?;
            ensure!(
                storage_of(&toobig["claim"]["status"]["capacity"]) == Some("1Mi"),
                "{toobig:#}"
            );
            ensure!(
                toobig["claim"]["status"]
                    .get("allocatedResourceStatuses")
                    .is_none(),
                "{toobig:#}"
            );
            ensure!(
                s.resizer.is_running(),
                "csi-resizer exited: {}",
                s.resizer.log_tail(40)
            );
            Ok(())
        },
    )
    .await
}
