//! The CSIStorageCapacity loop behind `--enable-capacity`: every
//! `--capacity-poll-interval`, and after each provision or deletion, ask
//! GetCapacity for every (topology segment, StorageClass) pair and bring the
//! CSIStorageCapacity objects in `$NAMESPACE` in line with the answers.
//!
//! The rules live in [`crate::capacity`]; this module does the calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use csi_client::Connection;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::storage::v1::{CSINode, CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::capacity::{
    DRIVER_NAME_LABEL, DesiredEntry, MANAGED_BY_LABEL, WorkItem, get_capacity_request,
    plan_capacity, segments, work_items,
};
use crate::error::Error;

/// Settings of the capacity loop.
#[derive(Clone, Debug)]
pub struct CapacityConfig {
    /// The driver name.
    pub driver: String,
    /// `$NAMESPACE`: where the objects live.
    pub namespace: String,
    /// `csi.storage.k8s.io/managed-by` value.
    pub managed_by: String,
    /// Owner of every object (`--capacity-ownerref-level`), if any.
    pub owner: Option<OwnerReference>,
    /// `--capacity-for-immediate-binding`.
    pub for_immediate_binding: bool,
    /// `--capacity-poll-interval`.
    pub poll_interval: Duration,
}

/// Upstream's `csistoragecapacities_*` gauges.
#[derive(Clone, Default)]
pub struct CapacityMetrics {
    desired_goal: Gauge,
    desired_current: Gauge,
    obsolete: Gauge,
}

impl CapacityMetrics {
    /// Registers `csistoragecapacities_desired_goal`, `…_desired_current` and
    /// `csistoragecapacities_obsolete`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = CapacityMetrics::default();
        registry.register(
            "csistoragecapacities_desired_goal",
            "Number of CSIStorageCapacity objects that are supposed to be managed automatically.",
            m.desired_goal.clone(),
        );
        registry.register(
            "csistoragecapacities_desired_current",
            "Number of CSIStorageCapacity objects that exist and are supposed to be managed automatically.",
            m.desired_current.clone(),
        );
        registry.register(
            "csistoragecapacities_obsolete",
            "Number of CSIStorageCapacity objects that exist and will be deleted automatically.",
            m.obsolete.clone(),
        );
        m
    }
}

/// Caches the loop reads.
pub struct CapacityCaches {
    /// StorageClasses.
    pub classes: Store<StorageClass>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// CSINodes.
    pub csinodes: Store<CSINode>,
}

/// Resolves the owner for `--capacity-ownerref-level`: -1 none; 0 the pod
/// `POD_NAME` in `NAMESPACE`; 1 its controller; 2 that object's controller
/// (e.g. ReplicaSet → Deployment); and so on.
///
/// Errors: [`Error::Kube`] when an object on the way cannot be read;
/// [`Error::InvalidParameter`] when `POD_NAME` is missing or a level has no
/// controller.
pub async fn resolve_owner(
    client: &Client,
    namespace: &str,
    pod_name: Option<&str>,
    level: i32,
) -> Result<Option<OwnerReference>, Error> {
    if level < 0 {
        return Ok(None);
    }
    let pod_name = pod_name.filter(|p| !p.is_empty()).ok_or_else(|| {
        Error::InvalidParameter(
            "--capacity-ownerref-level >= 0 needs the POD_NAME environment variable".into(),
        )
    })?;
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod_name)
        .await
        .map_err(|e| Error::kube(format!("get Pod {namespace}/{pod_name}"), e))?;
    let mut owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    };
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    for _ in 0..level {
        let next = refs
            .iter()
            .find(|r| r.controller == Some(true))
            .cloned()
            .ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "{} {} has no controller for --capacity-ownerref-level",
                    owner.kind, owner.name
                ))
            })?;
        let (group, version) = next
            .api_version
            .split_once('/')
            .unwrap_or(("", next.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &next.kind);
        let resource = ApiResource::from_gvk(&gvk);
        let obj = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .get(&next.name)
            .await
            .map_err(|e| Error::kube(format!("get {} {namespace}/{}", next.kind, next.name), e))?;
        refs = obj.metadata.owner_references.clone().unwrap_or_default();
        owner = OwnerReference {
            controller: Some(true),
            ..next
        };
    }
    Ok(Some(owner))
}

/// Runs the loop until `shutdown` resolves. `trigger` wakes it early (after
/// provisions and deletions).
pub async fn run(
    client: Client,
    csi: Connection,
    caches: CapacityCaches,
    cfg: CapacityConfig,
    trigger: Arc<Notify>,
    metrics: CapacityMetrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let _ = caches.classes.wait_until_ready().await;
    let _ = caches.nodes.wait_until_ready().await;
    let _ = caches.csinodes.wait_until_ready().await;
    info!(namespace = %cfg.namespace, interval = ?cfg.poll_interval, "producing CSIStorageCapacity objects");
    tokio::pin!(shutdown);
    loop {
        if let Err(e) = sync(&client, &csi, &caches, &cfg, &metrics).await {
            warn!(error = %e, "CSIStorageCapacity sync failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll_interval) => {}
            _ = trigger.notified() => {}
            _ = &mut shutdown => return,
        }
    }
}

async fn sync(
    client: &Client,
    csi: &Connection,
    caches: &CapacityCaches,
    cfg: &CapacityConfig,
    metrics: &CapacityMetrics,
) -> Result<(), Error> {
    let (nodes, csinodes, classes) = (
        caches.nodes.state(),
        caches.csinodes.state(),
        caches.classes.state(),
    );
    let segs = segments(&cfg.driver, &csinodes, &nodes);
    let items = work_items(&segs, &classes, &cfg.driver, cfg.for_immediate_binding);
    let mut desired: BTreeMap<WorkItem, DesiredEntry> = BTreeMap::new();
    for item in items {
        let (segment, class_name) = &item;
        let Some(class) = classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
        else {
            continue;
        };
        let capacity = match csi.get_capacity(get_capacity_request(segment, class)).await {
            Ok(resp) => Some(resp),
            Err(status) => {
                // Unknown capacity: no object is created, an existing one stays.
                warn!(class = %class_name, ?segment, code = ?status.code(), "GetCapacity failed");
                None
            }
        };
        desired.insert(item, DesiredEntry { capacity });
    }
    let api = Api::<CSIStorageCapacity>::namespaced(client.clone(), &cfg.namespace);
    let selector = format!(
        "{DRIVER_NAME_LABEL}={},{MANAGED_BY_LABEL}={}",
        cfg.driver, cfg.managed_by
    );
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube("list CSIStorageCapacity", e))?
        .items;
    let plan = plan_capacity(
        &desired,
        &existing,
        &cfg.managed_by,
        &cfg.driver,
        cfg.owner.as_ref(),
    );
    for obj in &plan.create {
        api.create(&PostParams::default(), obj)
            .await
            .map_err(|e| Error::kube("create CSIStorageCapacity", e))?;
    }
    for obj in &plan.update {
        let name = obj.name_any();
        api.replace(&name, &PostParams::default(), obj)
            .await
            .map_err(|e| Error::kube(format!("update CSIStorageCapacity {name}"), e))?;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("delete CSIStorageCapacity {name}"), e)),
        }
    }
    metrics.desired_goal.set(plan.gauges.desired_goal);
    metrics.desired_current.set(plan.gauges.desired_current);
    metrics.obsolete.set(plan.gauges.obsolete);
    debug!(
        created = plan.create.len(),
        updated = plan.update.len(),
        deleted = plan.delete.len(),
        "CSIStorageCapacity synced"
    );
    Ok(())
}
