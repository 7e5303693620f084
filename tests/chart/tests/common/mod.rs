//! What the chart's tests share: running the test bed's helm on the chart
//! and reading what it rendered.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};
use serde::Deserialize as _;
use serde_json::Value;

/// The three driver profiles of `charts/csi-sidecars/ci/`.
pub const PROFILES: [&str; 3] = ["hostpath", "node-only", "snapshot"];

/// `ci/<profile>-values.yaml` in the chart.
pub fn profile_values(profile: &str) -> PathBuf {
    chart::chart_dir()
        .join("ci")
        .join(format!("{profile}-values.yaml"))
}

/// The chart with the snapshot CRDs vendored (the snapshot profile renders
/// them).
pub async fn prepared_chart() -> anyhow::Result<PathBuf> {
    let dir = chart::chart_dir();
    chart::vendor_crds(&dir).await?;
    Ok(dir)
}

/// Output of a helm command.
pub struct Output {
    /// Exit success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs helm with `args`; never fails for helm's own exit status.
pub fn helm(args: &[&str]) -> anyhow::Result<Output> {
    let helm = chart::helm()?;
    helm_at(&helm, args)
}

/// Runs the helm at `helm` with `args` in a scratch helm home.
pub fn helm_at(helm: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let home = std::env::temp_dir().join(format!("chart-helm-home-{}", std::process::id()));
    let out = Command::new(helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .with_context(|| format!("run {}", helm.display()))?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `helm template` of the chart with `profile`'s values and `extra` args
/// into namespace `ns`; the rendered documents.
pub fn render(chart: &Path, profile: &str, ns: &str, extra: &[&str]) -> anyhow::Result<String> {
    let values = profile_values(profile);
    let mut args = vec![
        "template",
        "rel",
        chart.to_str().context("chart path")?,
        "--namespace",
        ns,
        "-f",
        values.to_str().context("values path")?,
    ];
    args.extend_from_slice(extra);
    let out = helm(&args)?;
    ensure!(
        out.ok,
        "helm template with {profile} failed:\n{}",
        out.stderr
    );
    Ok(out.stdout)
}

/// The documents of a multi-document YAML text, as JSON values.
pub fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).context("a rendered document is not YAML")?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Documents of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` whose name ends with `suffix`.
pub fn find<'a>(docs: &'a [Value], kind: &str, suffix: &str) -> anyhow::Result<&'a Value> {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
        .with_context(|| format!("no {kind} named *{suffix}"))
}

/// Names of the containers of a workload's pod template.
pub fn containers(workload: &Value) -> Vec<String> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
