//! Applying multi-document YAML manifests (RBAC, StorageClasses, ...) with
//! `${NAME}` placeholders.

use std::path::Path;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use serde::Deserialize;

use crate::cluster::is_already_exists;
use crate::error::{Error, Result};
use crate::testbed::Testbed;

/// Replaces every `${KEY}` in `text` with its value from `substitutions`
/// (keys given without `${}`; a key already written as `${KEY}` works too).
///
/// Errors (as a message): a `${...}` placeholder left without a value.
pub fn substitute(
    text: &str,
    substitutions: &[(&str, &str)],
) -> std::result::Result<String, String> {
    let mut out = text.to_string();
    for (key, value) in substitutions {
        let placeholder = if key.starts_with("${") {
            key.to_string()
        } else {
            format!("${{{key}}}")
        };
        out = out.replace(&placeholder, value);
    }
    if let Some(start) = out.find("${") {
        let rest = &out[start..];
        let end = rest.find('}').map(|i| i + 1).unwrap_or(rest.len().min(40));
        return Err(format!("no value for placeholder {}", &rest[..end]));
    }
    Ok(out)
}

/// Parses multi-document YAML into objects; empty documents are skipped.
///
/// Errors (as a message): invalid YAML, or a document without
/// `apiVersion`/`kind`.
pub fn parse_documents(text: &str) -> std::result::Result<Vec<DynamicObject>, String> {
    let mut objs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| format!("document {}: {e}", i + 1))?;
        let obj: DynamicObject =
            serde_json::from_value(json).map_err(|e| format!("document {}: {e}", i + 1))?;
        if obj.types.is_none() {
            return Err(format!("document {}: no apiVersion/kind", i + 1));
        }
        objs.push(obj);
    }
    Ok(objs)
}

/// `Kind namespace/name` or `Kind name`, for messages.
fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?");
    let name = obj.metadata.name.as_deref().unwrap_or("<generated>");
    match &obj.metadata.namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

impl Testbed {
    /// Applies the multi-document YAML file at `path` with the admin
    /// client, after replacing `${KEY}` placeholders by `substitutions`
    /// (e.g. `&[("NAMESPACE", "ns1")]`).
    ///
    /// Each object is created through discovery of its apiVersion/kind;
    /// namespaced objects without `metadata.namespace` go to `default`.
    /// When an object already exists it is **replaced** by the manifest's
    /// version (the live resourceVersion is copied over), so applying twice
    /// converges on the file's content.
    ///
    /// Returns the objects as the server answered, in file order.
    ///
    /// Errors: [`Error::Io`] if the file cannot be read, [`Error::Manifest`]
    /// for a missing placeholder value or bad YAML, [`Error::Api`] for an
    /// unknown kind or a rejected object.
    pub async fn apply_manifest(
        &self,
        path: &Path,
        substitutions: &[(&str, &str)],
    ) -> Result<Vec<DynamicObject>> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let manifest_err = |reason: String| Error::Manifest {
            path: path.to_path_buf(),
            reason,
        };
        let text = substitute(&raw, substitutions).map_err(manifest_err)?;
        let objs = parse_documents(&text).map_err(manifest_err)?;
        let client = self.admin_client();
        let mut applied = Vec::with_capacity(objs.len());
        for mut obj in objs {
            let what = describe(&obj);
            let gvk = obj
                .types
                .as_ref()
                .map(GroupVersionKind::try_from)
                .transpose()
                .map_err(|e| manifest_err(format!("{what}: {e}")))?
                .ok_or_else(|| manifest_err(format!("{what}: no apiVersion/kind")))?;
            let (ar, caps) = discovery::pinned_kind(&client, &gvk).await.map_err(|e| {
                Error::api(format!("discover {}/{}", gvk.api_version(), gvk.kind), e)
            })?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let ns = obj
                        .metadata
                        .namespace
                        .get_or_insert_with(|| "default".into())
                        .clone();
                    Api::namespaced_with(client.clone(), &ns, &ar)
                }
                Scope::Cluster => Api::all_with(client.clone(), &ar),
            };
            let done = match api.create(&PostParams::default(), &obj).await {
                Ok(o) => o,
                Err(e) if is_already_exists(&e) => {
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    let live = api
                        .get(&name)
                        .await
                        .map_err(|e| Error::api(format!("get {what}"), e))?;
                    obj.metadata.resource_version = live.metadata.resource_version;
                    api.replace(&name, &PostParams::default(), &obj)
                        .await
                        .map_err(|e| Error::api(format!("replace {what}"), e))?
                }
                Err(e) => return Err(Error::api(format!("create {what}"), e)),
            };
            applied.push(done);
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_rejects_leftovers() {
        let t = "ns: ${NAMESPACE}\nname: ${NAMESPACE}-x\n";
        assert_eq!(
            substitute(t, &[("NAMESPACE", "a")]).unwrap(),
            "ns: a\nname: a-x\n"
        );
        assert_eq!(
            substitute(t, &[("${NAMESPACE}", "b")]).unwrap(),
            "ns: b\nname: b-x\n"
        );
        let err = substitute("x: ${OTHER}", &[("NAMESPACE", "a")]).unwrap_err();
        assert!(err.contains("${OTHER}"), "{err}");
    }

    #[test]
    fn parses_documents() {
        let objs = parse_documents(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: n}\n---\n\
             # only a comment\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
             metadata: {name: r}\nrules: []\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(describe(&objs[0]), "ServiceAccount n/a");
        assert_eq!(describe(&objs[1]), "ClusterRole r");
        assert!(objs[1].data.get("rules").is_some());
        assert!(parse_documents("metadata: {name: x}\n").is_err());
        assert!(parse_documents("a: [\n").is_err());
    }

    #[test]
    fn rbac_manifest_parses_with_namespace() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rbac-csi-provisioner.yaml");
        let raw = std::fs::read_to_string(path).unwrap();
        let text = substitute(&raw, &[("NAMESPACE", "ns1")]).unwrap();
        let objs = parse_documents(&text).unwrap();
        let kinds: Vec<_> = objs.iter().map(describe).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount ns1/csi-provisioner",
                "ClusterRole ns1-external-provisioner-runner",
                "ClusterRoleBinding ns1-csi-provisioner-role",
                "Role ns1/external-provisioner-cfg",
                "RoleBinding ns1/csi-provisioner-role-cfg",
            ]
        );
    }
}
