//! Cluster fixtures made through the admin client: Nodes with CSINodes,
//! CSIDrivers, namespaces, and ServiceAccount kubeconfigs. They work the
//! same against the local control plane and a `$KUBECONFIG` cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSIDriverSpec, CSINode, CSINodeDriver, CSINodeSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

use crate::error::{Error, Result};
use crate::kubeconfig;
use crate::testbed::{Testbed, sanitize};

/// Annotation that tells the attach/detach controller to manage a Node's
/// volumes (kubelet sets it; here the test bed does).
pub const CONTROLLER_MANAGED_ATTACH: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";

/// Lifetime of the tokens in service-account kubeconfigs, in seconds.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// True for a 409 AlreadyExists answer.
pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Creates `obj` through `api`; an AlreadyExists answer counts as success
/// (`Ok(false)`), a fresh object is `Ok(true)`.
async fn create_idempotent<K>(api: &Api<K>, obj: &K, what: &str) -> Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(e) if is_already_exists(&e) => Ok(false),
        Err(e) => Err(Error::api(format!("create {what}"), e)),
    }
}

impl Testbed {
    /// Creates (if absent) a Node `node` with `labels` and the annotation
    /// [`CONTROLLER_MANAGED_ATTACH`]`=true`, and its CSINode listing
    /// `driver` with CSI node ID `node_id` and `topology_keys` (owned by
    /// the Node, as kubelet does it).
    ///
    /// Idempotent: an existing Node gets `labels` and the annotation merged
    /// in; an existing CSINode gets the driver entry added if it lacks one
    /// of that name (an existing entry is left as it is).
    ///
    /// Errors: [`Error::Api`] naming the failed call.
    pub async fn create_node_with_csinode(
        &self,
        node: &str,
        driver: &str,
        node_id: &str,
        topology_keys: &[&str],
        labels: BTreeMap<String, String>,
    ) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.admin_client());
        let annotations = BTreeMap::from([(CONTROLLER_MANAGED_ATTACH.to_string(), "true".into())]);
        let n = Node {
            metadata: ObjectMeta {
                name: Some(node.into()),
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        if !create_idempotent(&nodes, &n, &format!("Node {node}")).await? {
            let patch = serde_json::json!({
                "metadata": { "labels": labels, "annotations": annotations }
            });
            nodes
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::api(format!("patch Node {node}"), e))?;
        }
        let live = nodes
            .get(node)
            .await
            .map_err(|e| Error::api(format!("get Node {node}"), e))?;

        let entry = CSINodeDriver {
            name: driver.into(),
            node_id: node_id.into(),
            topology_keys: Some(topology_keys.iter().map(|k| k.to_string()).collect()),
            ..Default::default()
        };
        let csinodes: Api<CSINode> = Api::all(self.admin_client());
        let c = CSINode {
            metadata: ObjectMeta {
                name: Some(node.into()),
                owner_references: live.metadata.uid.map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node.into(),
                        uid,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: CSINodeSpec {
                drivers: vec![entry.clone()],
            },
        };
        if !create_idempotent(&csinodes, &c, &format!("CSINode {node}")).await? {
            let mut existing = csinodes
                .get(node)
                .await
                .map_err(|e| Error::api(format!("get CSINode {node}"), e))?;
            if !existing.spec.drivers.iter().any(|d| d.name == driver) {
                existing.spec.drivers.push(entry);
                csinodes
                    .replace(node, &PostParams::default(), &existing)
                    .await
                    .map_err(|e| Error::api(format!("add {driver} to CSINode {node}"), e))?;
            }
        }
        Ok(())
    }

    /// Creates a storage.k8s.io/v1 CSIDriver `name` with `attachRequired` as
    /// given, `podInfoOnMount: false` and `volumeLifecycleModes: [Persistent]`.
    ///
    /// Idempotent: an existing CSIDriver with the same `attachRequired` is
    /// kept; one with a different value is deleted and created anew.
    ///
    /// Errors: [`Error::Api`].
    pub async fn create_csidriver(&self, name: &str, attach_required: bool) -> Result<()> {
        let api: Api<CSIDriver> = Api::all(self.admin_client());
        let d = CSIDriver {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: CSIDriverSpec {
                attach_required: Some(attach_required),
                pod_info_on_mount: Some(false),
                volume_lifecycle_modes: Some(vec!["Persistent".into()]),
                ..Default::default()
            },
        };
        if create_idempotent(&api, &d, &format!("CSIDriver {name}")).await? {
            return Ok(());
        }
        let existing = api
            .get(name)
            .await
            .map_err(|e| Error::api(format!("get CSIDriver {name}"), e))?;
        if existing.spec.attach_required.unwrap_or(true) == attach_required {
            return Ok(());
        }
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(|e| Error::api(format!("delete CSIDriver {name}"), e))?;
        // Deletion of a CSIDriver is immediate (no finalizers); retry briefly
        // in case the watch cache lags.
        for _ in 0..50 {
            match api.create(&PostParams::default(), &d).await {
                Ok(_) => return Ok(()),
                Err(e) if is_already_exists(&e) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                Err(e) => return Err(Error::api(format!("re-create CSIDriver {name}"), e)),
            }
        }
        Err(Error::ReadinessTimeout {
            what: format!("deletion of the old CSIDriver {name}"),
            waited: std::time::Duration::from_secs(5),
            last_error: "create still answers AlreadyExists".into(),
            log_tail: String::new(),
        })
    }

    /// Creates namespace `name` if absent.
    ///
    /// Errors: [`Error::Api`].
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.admin_client());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        create_idempotent(&api, &ns, &format!("Namespace {name}")).await?;
        Ok(())
    }

    /// Creates `namespace` and ServiceAccount `sa_name` in it (both if
    /// absent), requests a token for it through the TokenRequest API
    /// (`expirationSeconds` [`TOKEN_EXPIRATION_SECONDS`]) and writes a
    /// kubeconfig with the test bed's cluster (server and CA) and that token
    /// as user, default namespace `namespace`.
    ///
    /// Returns the kubeconfig's path,
    /// `<run>/<namespace>-<sa_name>.kubeconfig`. Sidecars given it run with
    /// exactly the rights RBAC grants the ServiceAccount.
    ///
    /// Errors: [`Error::Api`], [`Error::Kubeconfig`] (no token returned,
    /// write failure).
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        sa_name: &str,
    ) -> Result<PathBuf> {
        self.create_namespace(namespace).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin_client(), namespace);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(sa_name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        create_idempotent(&sas, &sa, &format!("ServiceAccount {namespace}/{sa_name}")).await?;
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                ..Default::default()
            },
            ..Default::default()
        };
        let resp: TokenRequest = sas
            .create_subresource("token", sa_name, &PostParams::default(), &req)
            .await
            .map_err(|e| Error::api(format!("TokenRequest for {namespace}/{sa_name}"), e))?;
        let token = resp
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Kubeconfig(format!("TokenRequest for {namespace}/{sa_name}: no token"))
            })?;
        let user = format!("system:serviceaccount:{namespace}:{sa_name}");
        let config = kubeconfig::single_context(
            &self.cluster,
            &user,
            serde_json::json!({ "token": token }),
            Some(namespace),
        )?;
        let path = self.run_dir().join(format!(
            "{}-{}.kubeconfig",
            sanitize(namespace),
            sanitize(sa_name)
        ));
        kubeconfig::write(&path, &config)?;
        Ok(path)
    }

    /// A kube client for the current context of the kubeconfig at `path`
    /// (e.g. one from [`Testbed::service_account_kubeconfig`]).
    ///
    /// Errors: [`Error::Kubeconfig`].
    pub async fn client_from_kubeconfig(&self, path: &Path) -> Result<kube::Client> {
        kubeconfig::client_from_file(path).await
    }
}
