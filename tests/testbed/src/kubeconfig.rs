//! Writing kubeconfig files (admin, service-account token) and turning them
//! into kube clients.

use std::path::Path;

use kube::config::{
    Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

use crate::error::{Error, Result};
use crate::pki::Pki;

/// Name of the cluster, user and context entries in kubeconfigs the test bed writes.
pub const CONTEXT_NAME: &str = "csi-testbed";

/// The `cluster` entry (server URL and CA) for the local control plane
/// listening on `https://127.0.0.1:<port>`, CA given by file path.
pub(crate) fn local_cluster(port: u16, pki: &Pki) -> Cluster {
    Cluster {
        server: Some(format!("https://127.0.0.1:{port}")),
        certificate_authority: Some(pki.ca_cert.display().to_string()),
        ..Default::default()
    }
}

/// A single-context kubeconfig for `cluster` with a user built from
/// `user` (a JSON object in kubeconfig `user:` form, e.g.
/// `{"token": "..."}` or `{"client-certificate": "...", "client-key": "..."}`)
/// and `namespace` as the context's default namespace when given.
pub(crate) fn single_context(
    cluster: &Cluster,
    user_name: &str,
    user: serde_json::Value,
    namespace: Option<&str>,
) -> Result<Kubeconfig> {
    let auth_info = serde_json::from_value(user)
        .map_err(|e| Error::Kubeconfig(format!("building user entry: {e}")))?;
    Ok(Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: CONTEXT_NAME.into(),
            cluster: Some(cluster.clone()),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user_name.into(),
            auth_info: Some(auth_info),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: CONTEXT_NAME.into(),
            context: Some(Context {
                cluster: CONTEXT_NAME.into(),
                user: Some(user_name.into()),
                namespace: namespace.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(CONTEXT_NAME.into()),
        ..Default::default()
    })
}

/// The admin kubeconfig of the local control plane: client certificate and
/// key by file path.
pub(crate) fn admin_kubeconfig(port: u16, pki: &Pki) -> Result<Kubeconfig> {
    single_context(
        &local_cluster(port, pki),
        "admin",
        serde_json::json!({
            "client-certificate": pki.admin_cert.display().to_string(),
            "client-key": pki.admin_key.display().to_string(),
        }),
        None,
    )
}

/// Writes `config` as YAML to `path` (mode 0600: it may hold a token).
pub(crate) fn write(path: &Path, config: &Kubeconfig) -> Result<()> {
    let yaml = serde_yaml::to_string(config)
        .map_err(|e| Error::Kubeconfig(format!("serializing {}: {e}", path.display())))?;
    std::fs::write(path, yaml).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}

/// The cluster entry of `config`'s current context (or its first context when
/// none is current), with file paths already absolute as
/// [`Kubeconfig::read_from`] leaves them.
///
/// Errors: [`Error::Kubeconfig`] if the context or cluster is missing.
pub(crate) fn current_cluster(config: &Kubeconfig) -> Result<Cluster> {
    let ctx_name = config
        .current_context
        .clone()
        .or_else(|| config.contexts.first().map(|c| c.name.clone()))
        .ok_or_else(|| Error::Kubeconfig("no current-context and no contexts".into()))?;
    let ctx = config
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| Error::Kubeconfig(format!("context {ctx_name:?} not found")))?;
    config
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| {
            Error::Kubeconfig(format!(
                "cluster {:?} of context {ctx_name:?} not found",
                ctx.cluster
            ))
        })
}

/// A kube client for `config`'s current context.
///
/// Errors: [`Error::Kubeconfig`] if the configuration is unusable.
pub(crate) async fn client_for(config: Kubeconfig, what: &str) -> Result<kube::Client> {
    let cfg = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(format!("{what}: {e}")))?;
    kube::Client::try_from(cfg).map_err(|e| Error::Kubeconfig(format!("{what}: client: {e}")))
}

/// Reads the kubeconfig at `path` (file paths inside made absolute).
///
/// Errors: [`Error::Kubeconfig`] if it cannot be read or parsed.
pub fn read(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path)
        .map_err(|e| Error::Kubeconfig(format!("reading {}: {e}", path.display())))
}

/// A kube client for the current context of the kubeconfig file at `path`.
///
/// Errors: [`Error::Kubeconfig`] if the file cannot be read or is unusable.
pub async fn client_from_file(path: &Path) -> Result<kube::Client> {
    client_for(read(path)?, &path.display().to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kubeconfig_round_trips() {
        let cluster = Cluster {
            server: Some("https://127.0.0.1:6443".into()),
            certificate_authority_data: Some("Q0E=".into()),
            ..Default::default()
        };
        let kc = single_context(
            &cluster,
            "sa",
            serde_json::json!({"token": "abc"}),
            Some("ns1"),
        )
        .unwrap();
        let yaml = serde_yaml::to_string(&kc).unwrap();
        assert!(yaml.contains("token: abc"), "{yaml}");
        assert!(yaml.contains("certificate-authority-data: Q0E="), "{yaml}");
        assert!(yaml.contains("current-context: csi-testbed"), "{yaml}");
        let back: Kubeconfig = serde_yaml::from_str(&yaml).unwrap();
        let c = current_cluster(&back).unwrap();
        assert_eq!(c.server.as_deref(), Some("https://127.0.0.1:6443"));
    }

    #[test]
    fn missing_context_is_an_error() {
        let kc = Kubeconfig {
            current_context: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(current_cluster(&kc), Err(Error::Kubeconfig(_))));
    }
}
