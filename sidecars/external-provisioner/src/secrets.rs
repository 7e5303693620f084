//! Secret references from StorageClass parameters and their `${…}` templates.
//!
//! Mirrors external-provisioner's `getSecretReference` / `resolveTemplate`
//! (`pkg/controller/controller.go`): seven secret kinds, a default pair, deprecated
//! keys for four kinds, and Go `os.Expand` template syntax.

use std::collections::BTreeMap;

use sidecar_runtime::gofmt::{quote, quote_list};

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

    /// The name upstream's messages use for the kind (`secretParamsMap.name`).
    pub fn upstream_name(self) -> &'static str {
        match self {
            SecretKind::Provisioner => "Provisioner",
            SecretKind::ControllerPublish => "ControllerPublish",
            SecretKind::NodeStage => "NodeStage",
            SecretKind::NodePublish => "NodePublish",
            SecretKind::ControllerExpand => "ControllerExpand",
            SecretKind::NodeExpand => "NodeExpand",
            SecretKind::ControllerModify => "ControllerModify",
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

/// Resolves the secret reference for `kind` from StorageClass parameters,
/// as upstream's `getSecretReference`.
///
/// The kind's templates come from its `csi.storage.k8s.io/` keys or its
/// deprecated keys; with neither, from the default pair. Returns `Ok(None)`
/// when none of these is present.
///
/// Errors ([`Error::InvalidParameter`]), with upstream's texts:
/// * a name or a namespace given by both a new and a deprecated key, only
///   one of name and namespace, or an empty one, prefixed
///   `failed to get name and namespace template from params: ` (for the
///   default pair `failed to get default name and namespace template from
///   params: `);
/// * a token the template may not use: `error resolving value "<template>":
///   invalid tokens: ["<token>" …]`;
/// * a result that is not a DNS-1123 label (namespace) or subdomain (name):
///   `"<template>" resolved to "<result>" which is not a valid namespace
///   name` (or `… secret name`; without the `resolved to` part when the
///   template has no token).
pub fn secret_reference(
    kind: SecretKind,
    params: &BTreeMap<String, String>,
    ctx: &TemplateContext<'_>,
) -> Result<Option<SecretRef>, Error> {
    let own = templates(
        kind.upstream_name(),
        kind.keys(),
        kind.deprecated_keys(),
        params,
    )
    .map_err(|e| {
        Error::InvalidParameter(format!(
            "failed to get name and namespace template from params: {e}"
        ))
    })?;
    let templates = match own {
        Some(t) => t,
        None => match templates("Default", DEFAULT_KEYS, None, params).map_err(|e| {
            Error::InvalidParameter(format!(
                "failed to get default name and namespace template from params: {e}"
            ))
        })? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let (name_t, ns_t) = templates;
    let namespace = resolve(ns_t, "namespace", is_dns1123_label, |token| match token {
        "pv.name" => Some(ctx.pv_name.to_string()),
        "pvc.namespace" => ctx.pvc_namespace.map(str::to_string),
        _ => None,
    })?;
    let name = resolve(
        name_t,
        "secret",
        is_dns1123_subdomain,
        |token| match token {
            "pv.name" => Some(ctx.pv_name.to_string()),
            "pvc.name" => ctx.pvc_name.map(str::to_string),
            "pvc.namespace" => ctx.pvc_namespace.map(str::to_string),
            _ => annotation_key(token)
                .and_then(|key| ctx.pvc_annotations.and_then(|a| a.get(key)).cloned()),
        },
    )?;
    Ok(Some(SecretRef { name, namespace }))
}

/// What a failed Secret GET is reported as (upstream's `getCredentials`),
/// followed by `: <API error>`.
pub fn secret_get_action(s: &SecretRef) -> String {
    format!(
        "error getting secret {} in namespace {}",
        s.name, s.namespace
    )
}

/// The `(name, namespace)` templates of one kind, as upstream's
/// `verifyAndGetSecretNameAndNamespaceTemplate`: name and namespace are
/// counted separately over the deprecated and the new key, so a deprecated
/// name key with a new namespace key is a valid pair. `Ok(None)` when the
/// kind has no key at all.
fn templates<'p>(
    kind: &str,
    keys: (&str, &str),
    deprecated: Option<(&str, &str)>,
    params: &'p BTreeMap<String, String>,
) -> Result<Option<(&'p str, &'p str)>, String> {
    let found = |new: &str, old: Option<&str>| -> Vec<&'p str> {
        old.and_then(|k| params.get(k))
            .into_iter()
            .chain(params.get(new))
            .map(String::as_str)
            .collect()
    };
    let names = found(keys.0, deprecated.map(|d| d.0));
    let namespaces = found(keys.1, deprecated.map(|d| d.1));
    match (names.as_slice(), namespaces.as_slice()) {
        _ if names.len() > 1 || namespaces.len() > 1 => Err(format!(
            "{kind} secrets specified in parameters with both \"csi\" and \"csi.storage.k8s.io/\" keys"
        )),
        ([], []) => Ok(None),
        ([name], [namespace]) if name.is_empty() || namespace.is_empty() => Err(format!(
            "{kind} secrets specified in parameters but value of either namespace or name is empty"
        )),
        ([name], [namespace]) => Ok(Some((name, namespace))),
        _ => Err(format!(
            "either name and namespace for {kind} secrets specified, Both must be specified"
        )),
    }
}

/// Expands `template` and validates the result (`what` names it in the
/// error: "namespace" or "secret").
fn resolve(
    template: &str,
    what: &str,
    valid: fn(&str) -> bool,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let resolved = expand(template, lookup).map_err(|missing| {
        Error::InvalidParameter(format!(
            "error resolving value {}: invalid tokens: {}",
            quote(template),
            quote_list(&missing)
        ))
    })?;
    if valid(&resolved) {
        return Ok(resolved);
    }
    Err(Error::InvalidParameter(if resolved != template {
        format!(
            "{} resolved to {} which is not a valid {what} name",
            quote(template),
            quote(&resolved)
        )
    } else {
        format!("{} is not a valid {what} name", quote(template))
    }))
}

/// `pvc.annotations['KEY']` → `KEY`.
fn annotation_key(token: &str) -> Option<&str> {
    token
        .strip_prefix("pvc.annotations['")
        .and_then(|rest| rest.strip_suffix("']"))
}

/// Go's `os.Expand` with a lookup that may fail: `${name}` (up to the first
/// `}`), `$name` (ASCII letters, digits, `_`), or `$` and one of the shell
/// special characters `*#$@!?-0123456789`. A `$` at the end, or followed by
/// anything else, stays as it is; `${}` and an unterminated `${` are
/// dropped. Tokens the lookup does not know are returned, sorted and
/// de-duplicated, as upstream's `invalid tokens` list.
fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let b = template.as_bytes();
    let mut out = String::new();
    let mut missing = std::collections::BTreeSet::new();
    let mut copied = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&template[copied..j]);
            let (name, width) = shell_name(&template[j + 1..]);
            match name {
                // Bad syntax: the characters are dropped.
                "" if width > 0 => {}
                "" => out.push('$'),
                name => match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        missing.insert(name.to_string());
                    }
                },
            }
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    out.push_str(&template[copied.min(template.len())..]);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing.into_iter().collect())
    }
}

/// Go's `getShellName`: the name after a `$` and how many bytes it takes.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    let special = |c: u8| b"*#$@!?-0123456789".contains(&c);
    if b[0] == b'{' {
        if b.len() > 2 && special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => ("", 2),
            Some(i) => (&s[1..=i], i + 2),
            None => ("", 1),
        };
    }
    if special(b[0]) {
        return (&s[..1], 1);
    }
    let end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .unwrap_or(b.len());
    (&s[..end], end)
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `IsDNS1123Subdomain`: at most 253 characters, dot-separated parts of
/// the DNS-1123 label alphabet (each part has no length limit of its own).
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
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

    /// Every secret error as upstream words it (external-provisioner:
    /// pkg/controller/controller.go getSecretReference,
    /// verifyAndGetSecretNameAndNamespaceTemplate and resolveTemplate).
    #[test]
    fn error_texts_match_upstream() {
        let a = map(&[("team.example.com/key", "Not_A_Name")]);
        let p = |pairs: &[(&str, &str)]| map(pairs);
        type Case<'a> = (SecretKind, BTreeMap<String, String>, &'a str);
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            (
                SecretKind::Provisioner,
                p(&[("csiProvisionerSecretName", "a"), ("csi.storage.k8s.io/provisioner-secret-name", "b"), ("csi.storage.k8s.io/provisioner-secret-namespace", "ns")]),
                "failed to get name and namespace template from params: Provisioner secrets specified in parameters with both \"csi\" and \"csi.storage.k8s.io/\" keys",
            ),
            (
                SecretKind::NodeStage,
                p(&[("csiNodeStageSecretNamespace", "a"), ("csi.storage.k8s.io/node-stage-secret-namespace", "b")]),
                "failed to get name and namespace template from params: NodeStage secrets specified in parameters with both \"csi\" and \"csi.storage.k8s.io/\" keys",
            ),
            (
                SecretKind::NodePublish,
                p(&[("csi.storage.k8s.io/node-publish-secret-name", "s")]),
                "failed to get name and namespace template from params: either name and namespace for NodePublish secrets specified, Both must be specified",
            ),
            (
                SecretKind::ControllerExpand,
                p(&[("csi.storage.k8s.io/controller-expand-secret-name", ""), ("csi.storage.k8s.io/controller-expand-secret-namespace", "ns")]),
                "failed to get name and namespace template from params: ControllerExpand secrets specified in parameters but value of either namespace or name is empty",
            ),
            (
                SecretKind::ControllerPublish,
                p(&[("csi.storage.k8s.io/secret-namespace", "ns")]),
                "failed to get default name and namespace template from params: either name and namespace for Default secrets specified, Both must be specified",
            ),
            (
                SecretKind::NodeExpand,
                p(&[("csi.storage.k8s.io/secret-name", "s"), ("csi.storage.k8s.io/secret-namespace", "")]),
                "failed to get default name and namespace template from params: Default secrets specified in parameters but value of either namespace or name is empty",
            ),
            (
                SecretKind::ControllerModify,
                p(&[("csi.storage.k8s.io/controller-modify-secret-name", "s"), ("csi.storage.k8s.io/controller-modify-secret-namespace", "${pvc.name}-${x}-${pvc.name}")]),
                "error resolving value \"${pvc.name}-${x}-${pvc.name}\": invalid tokens: [\"pvc.name\" \"x\"]",
            ),
            (
                SecretKind::Provisioner,
                p(&[("csi.storage.k8s.io/provisioner-secret-name", "s"), ("csi.storage.k8s.io/provisioner-secret-namespace", "Team_A")]),
                "\"Team_A\" is not a valid namespace name",
            ),
            (
                SecretKind::Provisioner,
                p(&[("csi.storage.k8s.io/provisioner-secret-name", "s"), ("csi.storage.k8s.io/provisioner-secret-namespace", "${pv.name}.x")]),
                "\"${pv.name}.x\" resolved to \"pvc-123.x\" which is not a valid namespace name",
            ),
            (
                SecretKind::Provisioner,
                p(&[("csi.storage.k8s.io/provisioner-secret-name", "Creds"), ("csi.storage.k8s.io/provisioner-secret-namespace", "ns")]),
                "\"Creds\" is not a valid secret name",
            ),
            (
                SecretKind::NodePublish,
                p(&[("csiNodePublishSecretName", "${pvc.annotations['team.example.com/key']}"), ("csiNodePublishSecretNamespace", "ns")]),
                "\"${pvc.annotations['team.example.com/key']}\" resolved to \"Not_A_Name\" which is not a valid secret name",
            ),
        ];
        for (kind, params, want) in cases {
            let err = secret_reference(kind, &params, &ctx(&a)).unwrap_err();
            assert_eq!(err.to_string(), want, "{kind:?}");
        }
    }

    /// Upstream counts names and namespaces separately, so a deprecated name
    /// key and a new namespace key make a valid pair.
    #[test]
    fn deprecated_name_with_new_namespace_is_a_pair() {
        let a = BTreeMap::new();
        let params = map(&[
            ("csiProvisionerSecretName", "s"),
            ("csi.storage.k8s.io/provisioner-secret-namespace", "ns"),
        ]);
        assert_eq!(
            secret_reference(SecretKind::Provisioner, &params, &ctx(&a)).unwrap(),
            Some(SecretRef {
                name: "s".into(),
                namespace: "ns".into()
            })
        );
    }

    /// Go's `os.Expand`, token by token.
    #[test]
    fn expand_follows_go() {
        let known = |t: &str| (t == "a").then(|| "A".to_string());
        let cases: &[(&str, Result<&str, &[&str]>)] = &[
            ("x-$a-${a}", Ok("x-A-A")),
            ("trailing$", Ok("trailing$")),
            ("$%sign", Ok("$%sign")),
            ("${}gone", Ok("gone")),
            ("open${a", Ok("opena")),
            ("$1-$b-${c d}-$b", Err(&["1", "b", "c d"])),
        ];
        for (template, want) in cases {
            let got = expand(template, known);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{template}"),
                Err(w) => assert_eq!(got.unwrap_err(), *w, "{template}"),
            }
        }
    }

    #[test]
    fn secret_get_action_reads_like_upstream() {
        let s = SecretRef {
            name: "creds".into(),
            namespace: "team-a".into(),
        };
        assert_eq!(
            secret_get_action(&s),
            "error getting secret creds in namespace team-a"
        );
    }

    #[test]
    fn dns_rules() {
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("a..b"));
        // A subdomain's parts are not limited to 63 characters.
        assert!(is_dns1123_subdomain(&"a".repeat(100)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
