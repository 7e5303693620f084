//! Secret references from StorageClass parameters and their `${…}` templates.
//!
//! Mirrors external-provisioner's `getSecretReference` / `resolveTemplate`
//! (contract section A3.2): seven secret kinds, a default pair, deprecated
//! keys for four kinds, and Go `os.Expand` template syntax.

use std::collections::BTreeMap;

use crate::error::Error;

/// A secret a CSI call or a later sidecar needs, named by StorageClass
/// parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// CreateVolume / DeleteVolume.
    Provisioner,
    /// ControllerPublishVolume (PV `spec.csi.controllerPublishSecretRef`).
    ControllerPublish,
    /// NodeStageVolume (PV `spec.csi.nodeStageSecretRef`).
    NodeStage,
    /// NodePublishVolume (PV `spec.csi.nodePublishSecretRef`).
    NodePublish,
    /// ControllerExpandVolume (PV `spec.csi.controllerExpandSecretRef`).
    ControllerExpand,
    /// NodeExpandVolume (PV `spec.csi.nodeExpandSecretRef`).
    NodeExpand,
    /// ControllerModifyVolume (PV annotations, read by external-resizer).
    ControllerModify,
}

/// The default pair, used when a kind has no keys of its own.
pub const DEFAULT_KEYS: (&str, &str) = (
    "csi.storage.k8s.io/secret-name",
    "csi.storage.k8s.io/secret-namespace",
);

impl SecretKind {
    /// Every kind, in upstream's order.
    pub const ALL: [SecretKind; 7] = [
        SecretKind::Provisioner,
        SecretKind::ControllerPublish,
        SecretKind::NodeStage,
        SecretKind::NodePublish,
        SecretKind::ControllerExpand,
        SecretKind::NodeExpand,
        SecretKind::ControllerModify,
    ];

    /// `(name key, namespace key)` under `csi.storage.k8s.io/`.
    pub fn keys(self) -> (&'static str, &'static str) {
        match self {
            SecretKind::Provisioner => (
                "csi.storage.k8s.io/provisioner-secret-name",
                "csi.storage.k8s.io/provisioner-secret-namespace",
            ),
            SecretKind::ControllerPublish => (
                "csi.storage.k8s.io/controller-publish-secret-name",
                "csi.storage.k8s.io/controller-publish-secret-namespace",
            ),
            SecretKind::NodeStage => (
                "csi.storage.k8s.io/node-stage-secret-name",
                "csi.storage.k8s.io/node-stage-secret-namespace",
            ),
            SecretKind::NodePublish => (
                "csi.storage.k8s.io/node-publish-secret-name",
                "csi.storage.k8s.io/node-publish-secret-namespace",
            ),
            SecretKind::ControllerExpand => (
                "csi.storage.k8s.io/controller-expand-secret-name",
                "csi.storage.k8s.io/controller-expand-secret-namespace",
            ),
            SecretKind::NodeExpand => (
                "csi.storage.k8s.io/node-expand-secret-name",
                "csi.storage.k8s.io/node-expand-secret-namespace",
            ),
            SecretKind::ControllerModify => (
                "csi.storage.k8s.io/controller-modify-secret-name",
                "csi.storage.k8s.io/controller-modify-secret-namespace",
            ),
        }
    }

    /// The pre-1.0 keys, still honoured (and passed on to the driver).
    pub fn deprecated_keys(self) -> Option<(&'static str, &'static str)> {
        match self {
            SecretKind::Provisioner => {
                Some(("csiProvisionerSecretName", "csiProvisionerSecretNamespace"))
            }
            SecretKind::ControllerPublish => Some((
                "csiControllerPublishSecretName",
                "csiControllerPublishSecretNamespace",
            )),
            SecretKind::NodeStage => {
                Some(("csiNodeStageSecretName", "csiNodeStageSecretNamespace"))
            }
            SecretKind::NodePublish => {
                Some(("csiNodePublishSecretName", "csiNodePublishSecretNamespace"))
            }
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SecretKind::Provisioner => "provisioner",
            SecretKind::ControllerPublish => "controller publish",
            SecretKind::NodeStage => "node stage",
            SecretKind::NodePublish => "node publish",
            SecretKind::ControllerExpand => "controller expand",
            SecretKind::NodeExpand => "node expand",
            SecretKind::ControllerModify => "controller modify",
        }
    }
}

/// A resolved secret reference: where to find the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
    /// Secret namespace.
    pub namespace: String,
}

/// What templates may refer to. At delete time upstream only knows the
/// claim's name and namespace (from `claimRef`), so `annotations` is `None`
/// there and a `${pvc.annotations[…]}` token fails.
#[derive(Clone, Debug, Default)]
pub struct TemplateContext<'a> {
    /// The PV name being created or deleted.
    pub pv_name: &'a str,
    /// Claim name, if known.
    pub pvc_name: Option<&'a str>,
    /// Claim namespace, if known.
    pub pvc_namespace: Option<&'a str>,
    /// Claim annotations (provision time only).
    pub pvc_annotations: Option<&'a BTreeMap<String, String>>,
}

/// Resolves the secret reference for `kind` from StorageClass parameters.
///
/// Returns `Ok(None)` when neither the kind's keys, nor its deprecated keys,
/// nor the default pair are present.
///
/// Errors ([`Error::InvalidParameter`], final): both new and deprecated keys;
/// only one of name/namespace; an empty value; an unknown template token; a
/// result that is not a DNS-1123 label (namespace) or subdomain (name).
pub fn secret_reference(
    kind: SecretKind,
    params: &BTreeMap<String, String>,
    ctx: &TemplateContext<'_>,
) -> Result<Option<SecretRef>, Error> {
    let (name_key, ns_key) = kind.keys();
    let new = (params.get(name_key), params.get(ns_key));
    let old = kind
        .deprecated_keys()
        .map(|(n, s)| (params.get(n), params.get(s)))
        .unwrap_or((None, None));
    let has_new = new.0.is_some() || new.1.is_some();
    let has_old = old.0.is_some() || old.1.is_some();
    if has_new && has_old {
        return Err(Error::InvalidParameter(format!(
            "{} secrets specified in parameters with both \"csi\" and \"csi.storage.k8s.io/\" keys",
            kind.label()
        )));
    }
    let (name_t, ns_t) = if has_new {
        new
    } else if has_old {
        old
    } else {
        (params.get(DEFAULT_KEYS.0), params.get(DEFAULT_KEYS.1))
    };
    let (name_t, ns_t) = match (name_t, ns_t) {
        (None, None) => return Ok(None),
        (Some(n), Some(s)) => (n, s),
        _ => {
            return Err(Error::InvalidParameter(format!(
                "either name and namespace for {} secrets specified, Both must be specified",
                kind.label()
            )));
        }
    };
    if name_t.is_empty() || ns_t.is_empty() {
        return Err(Error::InvalidParameter(format!(
            "{} secret name and namespace must not be empty",
            kind.label()
        )));
    }
    let namespace = expand(ns_t, |token| match token {
        "pv.name" => Some(ctx.pv_name.to_string()),
        "pvc.namespace" => ctx.pvc_namespace.map(str::to_string),
        _ => None,
    })
    .map_err(|e| Error::InvalidParameter(format!("error resolving value {ns_t:?}: {e}")))?;
    if !is_dns1123_label(&namespace) {
        return Err(Error::InvalidParameter(format!(
            "{namespace:?} resolved from {ns_t:?} is not a valid namespace name"
        )));
    }
    let name = expand(name_t, |token| match token {
        "pv.name" => Some(ctx.pv_name.to_string()),
        "pvc.name" => ctx.pvc_name.map(str::to_string),
        "pvc.namespace" => ctx.pvc_namespace.map(str::to_string),
        _ => annotation_key(token)
            .and_then(|key| ctx.pvc_annotations.and_then(|a| a.get(key)).cloned()),
    })
    .map_err(|e| Error::InvalidParameter(format!("error resolving value {name_t:?}: {e}")))?;
    if !is_dns1123_subdomain(&name) {
        return Err(Error::InvalidParameter(format!(
            "{name:?} resolved from {name_t:?} is not a valid secret name"
        )));
    }
    Ok(Some(SecretRef { name, namespace }))
}

/// `pvc.annotations['KEY']` → `KEY`.
fn annotation_key(token: &str) -> Option<&str> {
    token
        .strip_prefix("pvc.annotations['")
        .and_then(|rest| rest.strip_suffix("']"))
}

/// Go `os.Expand`: `${token}` or `$name` (name = `[A-Za-z0-9_]+`). Every token
/// the lookup does not know is collected into one error, as upstream does.
fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut invalid = Vec::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (token, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                // Unterminated: Go treats the rest as a bad token.
                None => (inner, after.len()),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match lookup(token) {
            Some(v) => out.push_str(&v),
            None => invalid.push(token.to_string()),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    if invalid.is_empty() {
        Ok(out)
    } else {
        Err(format!("invalid tokens: {invalid:?}"))
    }
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ctx<'a>(annotations: &'a BTreeMap<String, String>) -> TemplateContext<'a> {
        TemplateContext {
            pv_name: "pvc-123",
            pvc_name: Some("data"),
            pvc_namespace: Some("team-a"),
            pvc_annotations: Some(annotations),
        }
    }

    #[test]
    fn no_keys_means_no_secret() {
        let a = BTreeMap::new();
        assert_eq!(
            secret_reference(SecretKind::Provisioner, &map(&[]), &ctx(&a)).unwrap(),
            None
        );
    }

    #[test]
    fn specific_keys_win_and_default_pair_is_the_fallback() {
        let a = BTreeMap::new();
        let params = map(&[
            ("csi.storage.k8s.io/provisioner-secret-name", "prov"),
            (
                "csi.storage.k8s.io/provisioner-secret-namespace",
                "kube-system",
            ),
            ("csi.storage.k8s.io/secret-name", "default"),
            ("csi.storage.k8s.io/secret-namespace", "other"),
        ]);
        let prov = secret_reference(SecretKind::Provisioner, &params, &ctx(&a)).unwrap();
        assert_eq!(
            prov,
            Some(SecretRef {
                name: "prov".into(),
                namespace: "kube-system".into()
            })
        );
        let stage = secret_reference(SecretKind::NodeStage, &params, &ctx(&a)).unwrap();
        assert_eq!(
            stage,
            Some(SecretRef {
                name: "default".into(),
                namespace: "other".into()
            })
        );
    }

    #[test]
    fn deprecated_keys_work_alone_and_conflict_with_new_ones() {
        let a = BTreeMap::new();
        let old = map(&[
            ("csiProvisionerSecretName", "s"),
            ("csiProvisionerSecretNamespace", "ns"),
        ]);
        assert_eq!(
            secret_reference(SecretKind::Provisioner, &old, &ctx(&a)).unwrap(),
            Some(SecretRef {
                name: "s".into(),
                namespace: "ns".into()
            })
        );
        let mut both = old.clone();
        both.insert(
            "csi.storage.k8s.io/provisioner-secret-name".into(),
            "x".into(),
        );
        let err = secret_reference(SecretKind::Provisioner, &both, &ctx(&a)).unwrap_err();
        assert!(
            err.to_string()
                .contains("both \"csi\" and \"csi.storage.k8s.io/\" keys")
        );
        // Expand secrets have no deprecated keys.
        assert_eq!(SecretKind::ControllerExpand.deprecated_keys(), None);
    }

    #[test]
    fn half_a_pair_or_empty_values_are_errors() {
        let a = BTreeMap::new();
        let half = map(&[("csi.storage.k8s.io/node-publish-secret-name", "s")]);
        assert!(secret_reference(SecretKind::NodePublish, &half, &ctx(&a)).is_err());
        let empty = map(&[
            ("csi.storage.k8s.io/node-publish-secret-name", ""),
            ("csi.storage.k8s.io/node-publish-secret-namespace", "ns"),
        ]);
        assert!(secret_reference(SecretKind::NodePublish, &empty, &ctx(&a)).is_err());
    }

    #[test]
    fn templates_expand_every_token() {
        let a = map(&[("team.example.com/key", "from-annotation")]);
        let params = map(&[
            (
                "csi.storage.k8s.io/provisioner-secret-name",
                "${pvc.name}-${pv.name}",
            ),
            (
                "csi.storage.k8s.io/provisioner-secret-namespace",
                "${pvc.namespace}",
            ),
            (
                "csi.storage.k8s.io/node-stage-secret-name",
                "${pvc.annotations['team.example.com/key']}",
            ),
            (
                "csi.storage.k8s.io/node-stage-secret-namespace",
                "${pv.name}",
            ),
        ]);
        assert_eq!(
            secret_reference(SecretKind::Provisioner, &params, &ctx(&a)).unwrap(),
            Some(SecretRef {
                name: "data-pvc-123".into(),
                namespace: "team-a".into()
            })
        );
        assert_eq!(
            secret_reference(SecretKind::NodeStage, &params, &ctx(&a)).unwrap(),
            Some(SecretRef {
                name: "from-annotation".into(),
                namespace: "pvc-123".into()
            })
        );
    }

    #[test]
    fn namespace_templates_cannot_use_claim_name_or_annotations() {
        let a = BTreeMap::new();
        let params = map(&[
            ("csi.storage.k8s.io/provisioner-secret-name", "s"),
            (
                "csi.storage.k8s.io/provisioner-secret-namespace",
                "${pvc.name}",
            ),
        ]);
        let err = secret_reference(SecretKind::Provisioner, &params, &ctx(&a)).unwrap_err();
        assert!(
            err.to_string().contains("invalid tokens: [\"pvc.name\"]"),
            "{err}"
        );
    }

    #[test]
    fn delete_time_context_rejects_annotation_tokens() {
        let params = map(&[
            (
                "csi.storage.k8s.io/provisioner-secret-name",
                "${pvc.annotations['k']}",
            ),
            ("csi.storage.k8s.io/provisioner-secret-namespace", "ns"),
        ]);
        let at_delete = TemplateContext {
            pv_name: "pvc-1",
            pvc_name: Some("data"),
            pvc_namespace: Some("ns"),
            pvc_annotations: None,
        };
        assert!(secret_reference(SecretKind::Provisioner, &params, &at_delete).is_err());
    }

    #[test]
    fn bare_dollar_tokens_and_invalid_results() {
        let a = BTreeMap::new();
        let bare = map(&[
            ("csi.storage.k8s.io/provisioner-secret-name", "x-$unknown"),
            ("csi.storage.k8s.io/provisioner-secret-namespace", "ns"),
        ]);
        assert!(secret_reference(SecretKind::Provisioner, &bare, &ctx(&a)).is_err());
        let upper = map(&[
            ("csi.storage.k8s.io/provisioner-secret-name", "Not_Valid"),
            ("csi.storage.k8s.io/provisioner-secret-namespace", "ns"),
        ]);
        assert!(secret_reference(SecretKind::Provisioner, &upper, &ctx(&a)).is_err());
    }

    #[test]
    fn dns_rules() {
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("a..b"));
    }
}
