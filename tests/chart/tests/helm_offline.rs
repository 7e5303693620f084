//! The chart without a cluster: the generated schema is current, values.yaml
//! matches the values struct, `helm lint --strict` passes for the three
//! driver profiles, `helm template` renders what each profile asks for
//! (containers, RBAC rules equal to upstream's, restricted security
//! contexts), and bad values are refused with a message naming the key.
//!
//! Needs the test bed's helm (`bash tests/testbed/build-chart.sh`, run by
//! the test when missing).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, ensure};
use common::{PROFILES, containers, documents, find, helm, of_kind, prepared_chart, render};
use serde_json::Value;

#[test]
fn schema_file_is_generated_from_the_values_struct() -> anyhow::Result<()> {
    let path = chart::chart_dir().join(chart::SCHEMA_FILE);
    let committed = std::fs::read_to_string(&path)?;
    ensure!(
        committed == chart::schema_text(),
        "{} differs from the schema of tests/chart/src/values.rs: run `cargo run -p chart --bin chart-schema`",
        path.display()
    );
    Ok(())
}

#[test]
fn values_yaml_has_exactly_the_fields_of_the_struct() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(chart::chart_dir().join("values.yaml"))?;
    let values: chart::values::Values = serde_yaml::from_str(&text)
        .context("values.yaml does not match tests/chart/src/values.rs")?;
    // Round trip: every key of values.yaml is a field (deny_unknown_fields
    // above) and every field is in values.yaml (no serde defaults).
    let back = serde_json::to_value(&values)?;
    let orig: Value = serde_yaml::from_str(&text)?;
    ensure!(back == orig, "values.yaml and the struct disagree");
    Ok(())
}

#[tokio::test]
async fn lint_strict_passes_for_every_profile() -> anyhow::Result<()> {
    let chart = prepared_chart().await?;
    for profile in PROFILES {
        let values = common::profile_values(profile);
        let out = helm(&[
            "lint",
            "--strict",
            chart.to_str().context("path")?,
            "-f",
            values.to_str().context("path")?,
        ])?;
        ensure!(
            out.ok,
            "helm lint --strict with {profile}:\n{}{}",
            out.stdout,
            out.stderr
        );
        ensure!(out.stdout.contains("0 chart(s) failed"), "{}", out.stdout);
    }
    Ok(())
}

/// `(apiGroup, resource) -> verbs` of a list of rules.
fn rule_set(rules: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut set: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in rules.as_array().into_iter().flatten() {
        let strings = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                set.entry((group.clone(), resource))
                    .or_default()
                    .extend(strings("verbs"));
            }
        }
    }
    set
}

/// The rules of every `kind` object in the test bed's manifest files.
fn manifest_rules(
    files: &[&str],
    kind: &str,
) -> anyhow::Result<BTreeMap<(String, String), BTreeSet<String>>> {
    let mut all: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(testbed::manifest_path(file))?;
        for doc in documents(&text)? {
            if doc["kind"] == kind {
                for (k, v) in rule_set(&doc["rules"]) {
                    all.entry(k).or_default().extend(v);
                }
            }
        }
    }
    Ok(all)
}

#[tokio::test]
async fn hostpath_profile_renders_every_sidecar_with_upstreams_rbac() -> anyhow::Result<()> {
    let chart = prepared_chart().await?;
    let docs = documents(&render(&chart, "hostpath", "csi", &[])?)?;

    let deploy = find(&docs, "Deployment", "-controller")?;
    ensure!(
        containers(deploy)
            == [
                "driver",
                "csi-attacher",
                "csi-provisioner",
                "csi-resizer",
                "csi-snapshotter"
            ],
        "controller containers: {:?}",
        containers(deploy)
    );
    let ds = find(&docs, "DaemonSet", "-node")?;
    ensure!(
        containers(ds) == ["driver", "csi-node-driver-registrar", "livenessprobe"],
        "node containers: {:?}",
        containers(ds)
    );
    let csidriver = find(&docs, "CSIDriver", "hostpath.csi.k8s.io")?;
    ensure!(csidriver["spec"]["attachRequired"] == true);

    // The controller pod meets the restricted profile.
    let pod = &deploy["spec"]["template"]["spec"];
    ensure!(pod["securityContext"]["runAsNonRoot"] == true, "{pod}");
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    for c in pod["containers"].as_array().context("containers")? {
        let sc = &c["securityContext"];
        ensure!(
            sc["allowPrivilegeEscalation"] == false,
            "{}: {sc}",
            c["name"]
        );
        ensure!(
            sc["capabilities"]["drop"] == serde_json::json!(["ALL"]),
            "{}: {sc}",
            c["name"]
        );
    }
    // Sidecar flags as the values say.
    let provisioner = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "csi-provisioner"))
        .context("provisioner")?;
    let args: Vec<&str> = provisioner["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "--csi-address=/csi/csi.sock",
        "--leader-election",
        "--leader-election-namespace=$(POD_NAMESPACE)",
        "--http-endpoint=:8080",
        "--extra-create-metadata",
    ] {
        ensure!(
            args.contains(&want),
            "provisioner args {args:?} lack {want}"
        );
    }

    // RBAC: exactly the rules of the test bed's manifests, which mirror
    // upstream's rbac.yaml (plus the two marked additions, on by default).
    for (sidecar, files) in [
        (
            "csi-provisioner",
            vec!["rbac-csi-provisioner.yaml", "rbac-csi-provisioner-vac.yaml"],
        ),
        (
            "csi-attacher",
            vec!["rbac-csi-attacher.yaml", "rbac-csi-attacher-events.yaml"],
        ),
        ("csi-resizer", vec!["rbac-csi-resizer.yaml"]),
    ] {
        let cr = find(&docs, "ClusterRole", &format!("-{sidecar}"))?;
        let want = manifest_rules(&files, "ClusterRole")?;
        ensure!(
            rule_set(&cr["rules"]) == want,
            "{sidecar} ClusterRole {:?} != upstream's {want:?}",
            rule_set(&cr["rules"])
        );
        let role = find(&docs, "Role", &format!("-{sidecar}"))?;
        let want = manifest_rules(&files, "Role")?;
        ensure!(rule_set(&role["rules"]) == want, "{sidecar} Role");
        let binding = find(&docs, "ClusterRoleBinding", &format!("-{sidecar}"))?;
        ensure!(binding["subjects"][0]["name"] == pod["serviceAccountName"]);
    }
    // Switching the additions off leaves upstream's rules alone.
    let docs = documents(&render(
        &chart,
        "hostpath",
        "csi",
        &[
            "--set",
            "csiProvisioner.vacRBAC=false",
            "--set",
            "csiAttacher.eventsRBAC=false",
        ],
    )?)?;
    for (sidecar, file) in [
        ("csi-provisioner", "rbac-csi-provisioner.yaml"),
        ("csi-attacher", "rbac-csi-attacher.yaml"),
    ] {
        let cr = find(&docs, "ClusterRole", &format!("-{sidecar}"))?;
        ensure!(
            rule_set(&cr["rules"]) == manifest_rules(&[file], "ClusterRole")?,
            "{sidecar}"
        );
    }
    ensure!(of_kind(&docs, "ServiceMonitor").len() == 1);
    ensure!(of_kind(&docs, "PodDisruptionBudget").len() == 1);
    Ok(())
}

#[tokio::test]
async fn node_only_profile_renders_no_controller() -> anyhow::Result<()> {
    let chart = prepared_chart().await?;
    let docs = documents(&render(&chart, "node-only", "csi", &[])?)?;
    ensure!(of_kind(&docs, "Deployment").is_empty());
    ensure!(
        of_kind(&docs, "ClusterRole").is_empty(),
        "a node-only driver needs no RBAC"
    );
    ensure!(of_kind(&docs, "PodDisruptionBudget").is_empty());
    let ds = find(&docs, "DaemonSet", "-node")?;
    ensure!(containers(ds) == ["driver", "csi-node-driver-registrar", "livenessprobe"]);
    ensure!(ds["spec"]["template"]["spec"]["automountServiceAccountToken"] == false);
    let csidriver = find(&docs, "CSIDriver", "inline.csi.example.com")?;
    ensure!(csidriver["spec"]["attachRequired"] == false);
    ensure!(csidriver["spec"]["volumeLifecycleModes"] == serde_json::json!(["Ephemeral"]));
    Ok(())
}

#[tokio::test]
async fn snapshot_profile_renders_the_snapshot_controller_and_crds() -> anyhow::Result<()> {
    let chart = prepared_chart().await?;
    let docs = documents(&render(&chart, "snapshot", "csi", &[])?)?;
    let crds = of_kind(&docs, "CustomResourceDefinition");
    let names: BTreeSet<&str> = crds
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    ensure!(
        names
            == BTreeSet::from([
                "volumesnapshotclasses.snapshot.storage.k8s.io",
                "volumesnapshotcontents.snapshot.storage.k8s.io",
                "volumesnapshots.snapshot.storage.k8s.io",
            ]),
        "{names:?}"
    );
    for crd in crds {
        ensure!(crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep");
    }
    let sc = find(&docs, "Deployment", "-snapshot-controller")?;
    ensure!(containers(sc) == ["snapshot-controller"]);
    ensure!(
        sc["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .is_some_and(|s| s.ends_with("-snapshot-controller"))
    );
    let controller = find(&docs, "Deployment", "-controller")?;
    ensure!(containers(controller).contains(&"csi-snapshotter".to_string()));
    let rules = rule_set(&find(&docs, "ClusterRole", "-snapshot-controller")?["rules"]);
    ensure!(
        rules.get(&(
            "snapshot.storage.k8s.io".into(),
            "volumesnapshotcontents".into()
        )) == Some(&BTreeSet::from(
            [
                "create", "get", "list", "watch", "update", "delete", "patch"
            ]
            .map(String::from)
        ))
    );
    ensure!(of_kind(&docs, "PodDisruptionBudget").len() == 2);

    // csi-snapshotter's and snapshot-controller's rules equal those of
    // upstream's own rbac files in the pinned external-snapshotter module.
    let module = upstream_snapshotter_dir()?;
    for (sidecar, file) in [
        (
            "csi-snapshotter",
            "deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml",
        ),
        (
            "snapshot-controller",
            "deploy/kubernetes/snapshot-controller/rbac-snapshot-controller.yaml",
        ),
    ] {
        let upstream = documents(&std::fs::read_to_string(module.join(file))?)?;
        for kind in ["ClusterRole", "Role"] {
            let want = upstream
                .iter()
                .filter(|d| d["kind"] == kind)
                .map(|d| rule_set(&d["rules"]))
                .next()
                .with_context(|| format!("no {kind} in upstream's {file}"))?;
            let have = rule_set(&find(&docs, kind, &format!("-{sidecar}"))?["rules"]);
            ensure!(
                have == want,
                "{sidecar} {kind}: {have:?} != upstream's {want:?}"
            );
        }
    }
    Ok(())
}

/// external-snapshotter v8's directory in the test bed's module cache
/// (`go list -m` in `tests/testbed/go`, which pins it).
fn upstream_snapshotter_dir() -> anyhow::Result<std::path::PathBuf> {
    let cache = std::env::var_os("CSI_TESTBED_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/csi-testbed")
        });
    let out = std::process::Command::new("go")
        .args([
            "list",
            "-m",
            "-f",
            "{{.Dir}}",
            "github.com/kubernetes-csi/external-snapshotter/v8",
        ])
        .current_dir(testbed::repo_root().join("tests/testbed/go"))
        .env("GOMODCACHE", cache.join("gomod"))
        .env("GOWORK", "off")
        .env("GOFLAGS", "-mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .output()
        .context("run go list (the test bed needs Go on PATH)")?;
    ensure!(
        out.status.success(),
        "go list -m external-snapshotter/v8: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        dir.is_dir(),
        "external-snapshotter/v8 not downloaded: run tests/testbed/build.sh upstream"
    );
    Ok(dir)
}

#[tokio::test]
async fn bad_values_are_refused_naming_the_key() -> anyhow::Result<()> {
    let chart = prepared_chart().await?;
    let chart = chart.to_str().context("path")?;
    let values = common::profile_values("hostpath");
    let values = values.to_str().context("path")?;
    let cases: [(&[&str], &[&str]); 10] = [
        (
            &["--set", "driver.name=Bad_Name"],
            &["/driver/name", "does not match pattern"],
        ),
        (&["--set", "driver.name="], &["/driver/name", "minLength"]),
        (
            &["--set", "controller.replicaz=2"],
            &[
                "/controller",
                "additional properties 'replicaz' not allowed",
            ],
        ),
        (
            &["--set", "csiProvisioner.timeout=soon"],
            &["/csiProvisioner/timeout", "does not match pattern"],
        ),
        (
            &["--set", "csiAttacher.httpPort=70000"],
            &["/csiAttacher/httpPort", "maximum"],
        ),
        (
            &["--set", "driver.fsGroupPolicy=Sometimes"],
            &["/driver/fsGroupPolicy", "value must be one of"],
        ),
        (
            &["--set", "kubeletDir=var/lib/kubelet"],
            &["/kubeletDir", "does not match pattern"],
        ),
        // Rules across keys, from the templates' checks.
        (
            &["--set", "csiAttacher.enabled=false"],
            &["driver.attachRequired is true but csiAttacher.enabled is false"],
        ),
        (
            &["--set", "controller.leaderElection.enabled=false"],
            &["controller.replicas > 1 needs controller.leaderElection.enabled"],
        ),
        (
            &["--set", "controller.driver.image.repository="],
            &["controller.driver.image.repository is empty"],
        ),
    ];
    for (args, wants) in cases {
        let mut all = vec!["template", "rel", chart, "-f", values];
        all.extend_from_slice(args);
        let out = helm(&all)?;
        ensure!(!out.ok, "helm accepted {args:?}");
        for want in wants {
            ensure!(
                out.stderr.contains(want),
                "helm's message for {args:?} lacks {want:?}:\n{}",
                out.stderr
            );
        }
        eprintln!(
            "refused {args:?}: {}",
            out.stderr.lines().last().unwrap_or_default().trim()
        );
    }
    Ok(())
}
