//! Server-side dry-run of the three rendered driver profiles against the
//! real API server of the test bed (or the `$KUBECONFIG` cluster): every
//! object the chart renders, hooks and snapshot CRDs included, passes the
//! API server's validation and admission (`kubectl apply --dry-run=server`).
//! The ServiceMonitor is left out: its CRD comes with prometheus-operator,
//! which the test bed does not run. Then the pods of the controller, the
//! snapshot-controller and the helm test are created (dry-run) in a
//! namespace that enforces the restricted Pod Security profile: the API
//! server's PodSecurity admission accepts them (and refuses the node pod,
//! which cannot meet it).

mod common;

use std::time::Instant;

use anyhow::{Context as _, ensure};
use common::{PROFILES, documents, prepared_chart, render};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use testbed::{Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_passes_server_side_dry_run() -> anyhow::Result<()> {
    let chart = prepared_chart().await?;
    let tb = Testbed::start(TestbedOptions::default()).await?;
    tb.run_test(async |tb: &Testbed| -> anyhow::Result<()> {
        for profile in PROFILES {
            let t = Instant::now();
            let ns = format!("chart-dry-{profile}-{:04x}", std::process::id() as u16);
            tb.create_namespace(&ns).await?;
            let docs = documents(&render(&chart, profile, &ns, &[])?)?;
            let items: Vec<&Value> = docs
                .iter()
                .filter(|d| d["kind"] != "ServiceMonitor")
                .collect();
            let file = tb.run_dir().join(format!("chart-{profile}.json"));
            std::fs::write(
                &file,
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?,
            )?;
            let out = tokio::process::Command::new(tb.bin("kubectl"))
                .arg("--kubeconfig")
                .arg(tb.admin_kubeconfig())
                .args(["apply", "--dry-run=server", "-o", "name", "-f"])
                .arg(&file)
                .output()
                .await
                .context("run kubectl")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success(),
                "kubectl apply --dry-run=server of the {profile} profile failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let applied = stdout.lines().filter(|l| !l.trim().is_empty()).count();
            ensure!(
                applied == items.len(),
                "{profile}: {applied} objects accepted, {} rendered:\n{stdout}",
                items.len()
            );
            eprintln!(
                "dry_run: {profile}: {applied} objects accepted by the API server in {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
        restricted_pods_are_admitted(tb, &chart).await
    })
    .await
}

async fn restricted_pods_are_admitted(tb: &Testbed, chart: &std::path::Path) -> anyhow::Result<()> {
    let ns = format!("chart-restricted-{:04x}", std::process::id() as u16);
    let namespaces: Api<Namespace> = Api::all(tb.admin_client());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": ns,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        }
    }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    let docs = documents(&render(chart, "snapshot", &ns, &[])?)?;
    let mut pods = Vec::new();
    for d in &docs {
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match d["kind"].as_str() {
            Some("Deployment") => {
                let template = &d["spec"]["template"];
                pods.push(json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns, "labels": template["metadata"]["labels"]},
                    "spec": template["spec"],
                }));
            }
            Some("Pod") => pods.push(d.clone()),
            _ => {}
        }
    }
    ensure!(
        pods.len() == 3,
        "want the controller, snapshot-controller and test pods, have {}",
        pods.len()
    );
    let api: Api<Pod> = Api::namespaced(tb.admin_client(), &ns);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    for pod in pods {
        let name = pod["metadata"]["name"].clone();
        let pod: Pod = serde_json::from_value(pod)?;
        api.create(&dry, &pod)
            .await
            .with_context(|| format!("pod {name} refused in a restricted namespace"))?;
        eprintln!("dry_run: pod {name} admitted under the restricted Pod Security profile");
    }
    // The control: the node pod (privileged driver, hostPath) is refused
    // there, so the namespace does enforce the profile.
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .context("no DaemonSet")?;
    let node_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "node", "namespace": ns},
        "spec": ds["spec"]["template"]["spec"],
    }))?;
    let refused = api.create(&dry, &node_pod).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("violates PodSecurity")),
        "the node pod was not refused by PodSecurity: {refused:?}"
    );
    Ok(())
}
