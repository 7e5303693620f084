//! Our types against the CRDs of external-snapshotter v8.6.0: same group,
//! kind, plural and scope, and the same property tree (names, JSON types,
//! required lists) as upstream's `openAPIV3Schema` for the version we
//! model. Printer columns, short names, descriptions and CEL rules are not
//! compared: clusters get upstream's CRDs unchanged, never ours.
//!
//! The manifests are read from the Go module cache through the test bed
//! (`testbed::snapshot_client_module_dir`, needs `go`); the test fails,
//! never skips, when they cannot be found.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kube::CustomResourceExt;
use serde_json::Value;
use snapshot_api::groupsnapshot::{v1 as group_v1, v1beta2 as group_v1beta2};
use snapshot_api::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};

/// One of our types, the upstream manifest it models and the version.
struct Case {
    file: &'static str,
    version: &'static str,
    ours: Value,
}

fn cases() -> Vec<Case> {
    let crd = |c: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        serde_json::to_value(c).expect("our CRD serialises")
    };
    vec![
        Case {
            file: "snapshot.storage.k8s.io_volumesnapshots.yaml",
            version: "v1",
            ours: crd(VolumeSnapshot::crd()),
        },
        Case {
            file: "snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
            version: "v1",
            ours: crd(VolumeSnapshotContent::crd()),
        },
        Case {
            file: "snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
            version: "v1",
            ours: crd(VolumeSnapshotClass::crd()),
        },
        Case {
            file: "groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
            version: "v1beta2",
            ours: crd(group_v1beta2::VolumeGroupSnapshot::crd()),
        },
        Case {
            file: "groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
            version: "v1beta2",
            ours: crd(group_v1beta2::VolumeGroupSnapshotContent::crd()),
        },
        Case {
            file: "groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
            version: "v1beta2",
            ours: crd(group_v1beta2::VolumeGroupSnapshotClass::crd()),
        },
        Case {
            file: "groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
            version: "v1",
            ours: crd(group_v1::VolumeGroupSnapshot::crd()),
        },
        Case {
            file: "groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
            version: "v1",
            ours: crd(group_v1::VolumeGroupSnapshotContent::crd()),
        },
        Case {
            file: "groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
            version: "v1",
            ours: crd(group_v1::VolumeGroupSnapshotClass::crd()),
        },
    ]
}

fn crd_dir() -> PathBuf {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let module = rt
        .block_on(testbed::snapshot_client_module_dir())
        .unwrap_or_else(|e| panic!("cannot locate external-snapshotter's CRDs: {e}"));
    module.join("config/crd")
}

fn upstream(file: &str) -> Value {
    let path = crd_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// The `openAPIV3Schema` of version `name` in a CRD as JSON.
fn schema_of<'a>(crd: &'a Value, name: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .expect("spec.versions is a list")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no version {name} in {}", crd["metadata"]["name"]))
        .get("schema")
        .and_then(|s| s.get("openAPIV3Schema"))
        .expect("version has openAPIV3Schema")
}

/// Top-level properties every object has: kube's `Resource` writes them,
/// and the derived schema leaves them out.
const ENVELOPE: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Every difference between the two schemas' property trees, as
/// `"<path>: <what>"` lines. The [`ENVELOPE`] is not compared (the API
/// server owns ObjectMeta's schema; the round-trip tests cover it).
fn differences(path: &str, upstream: &Value, ours: &Value, out: &mut Vec<String>) {
    let int_or_string = |s: &Value| s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string(upstream) || int_or_string(ours) {
        if int_or_string(upstream) != int_or_string(ours) {
            out.push(format!("{path}: int-or-string only on one side"));
        }
    } else if upstream.get("type") != ours.get("type") {
        out.push(format!(
            "{path}: type {} upstream, {} ours",
            upstream.get("type").unwrap_or(&Value::Null),
            ours.get("type").unwrap_or(&Value::Null)
        ));
    }
    if upstream.get("format") != ours.get("format") {
        out.push(format!(
            "{path}: format {:?} upstream, {:?} ours",
            upstream.get("format"),
            ours.get("format")
        ));
    }
    let names = |s: &Value, key: &str| -> BTreeSet<String> {
        let envelope = |name: &str| path.is_empty() && ENVELOPE.contains(&name);
        match s.get(key) {
            Some(Value::Object(m)) => m.keys().filter(|k| !envelope(k)).cloned().collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .filter(|k| !envelope(k))
                .map(String::from)
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let (up_props, our_props) = (names(upstream, "properties"), names(ours, "properties"));
    for missing in up_props.difference(&our_props) {
        out.push(format!("{path}.{missing}: missing in ours"));
    }
    for extra in our_props.difference(&up_props) {
        out.push(format!("{path}.{extra}: not in upstream"));
    }
    for name in up_props.intersection(&our_props) {
        differences(
            &format!("{path}.{name}"),
            &upstream["properties"][name],
            &ours["properties"][name],
            out,
        );
    }
    let (up_req, our_req) = (names(upstream, "required"), names(ours, "required"));
    if up_req != our_req {
        out.push(format!(
            "{path}: required {up_req:?} upstream, {our_req:?} ours"
        ));
    }
    if upstream.get("enum") != ours.get("enum") {
        out.push(format!(
            "{path}: enum {:?} upstream, {:?} ours",
            upstream.get("enum"),
            ours.get("enum")
        ));
    }
    match (upstream.get("items"), ours.get("items")) {
        (Some(u), Some(o)) => differences(&format!("{path}[]"), u, o, out),
        (None, None) => {}
        _ => out.push(format!("{path}: list items only on one side")),
    }
    match (
        upstream.get("additionalProperties"),
        ours.get("additionalProperties"),
    ) {
        (Some(u @ Value::Object(_)), Some(o @ Value::Object(_))) => {
            differences(&format!("{path}{{}}"), u, o, out)
        }
        (None | Some(Value::Bool(_)), None | Some(Value::Bool(_))) => {}
        _ => out.push(format!("{path}: map values only on one side")),
    }
}

#[test]
fn names_and_scope_match_upstream() {
    for case in cases() {
        let up = upstream(case.file);
        for key in ["group", "scope"] {
            assert_eq!(
                case.ours["spec"][key], up["spec"][key],
                "{} {key}",
                case.file
            );
        }
        for key in ["kind", "plural", "singular"] {
            assert_eq!(
                case.ours["spec"]["names"][key], up["spec"]["names"][key],
                "{} names.{key}",
                case.file
            );
        }
        assert_eq!(
            case.ours["metadata"]["name"], up["metadata"]["name"],
            "{}",
            case.file
        );
        assert_eq!(
            case.ours["spec"]["versions"][0]["name"], case.version,
            "{} version",
            case.file
        );
        let served = up["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == case.version && v["served"] == true);
        assert!(served, "{} does not serve {}", case.file, case.version);
    }
}

#[test]
fn every_upstream_property_exists_in_ours_with_its_type() {
    let mut all = Vec::new();
    let mut compared = 0;
    for case in cases() {
        let up = upstream(case.file);
        let mut out = Vec::new();
        differences(
            "",
            schema_of(&up, case.version),
            schema_of(&case.ours, case.version),
            &mut out,
        );
        all.extend(out.into_iter().map(|d| format!("{}: {d}", case.file)));
        compared += 1;
    }
    assert_eq!(compared, 9);
    assert!(all.is_empty(), "schema differences:\n{}", all.join("\n"));
}

/// The comparison itself notices a missing field, a wrong type and a
/// changed required list (so the test above cannot pass by comparing
/// nothing).
#[test]
fn the_comparison_reports_differences() {
    let up = serde_json::json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
        }
    });
    let ours = serde_json::json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "boolean"}}}
        }
    });
    let mut out = Vec::new();
    differences("", &up, &ours, &mut out);
    assert_eq!(
        out,
        [
            ".spec.b: missing in ours",
            ".spec.a: type \"string\" upstream, \"boolean\" ours",
            ": required {\"spec\"} upstream, {} ours",
        ]
    );
}
