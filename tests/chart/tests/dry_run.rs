//! Server-side dry-run of the three rendered driver profiles against the
//! real API server of the test bed (or the `$KUBECONFIG` cluster): every
//! object the chart renders, hooks and snapshot CRDs included, passes the
//! API server's validation and admission (`kubectl apply --dry-run=server`).
//! The ServiceMonitor is left out: its CRD comes with prometheus-operator,
//! which the test bed does not run.

mod common;

use std::time::Instant;

use anyhow::{Context as _, ensure};
use common::{PROFILES, documents, prepared_chart, render};
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
        Ok(())
    })
    .await
}
