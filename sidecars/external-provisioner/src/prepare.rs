//! Everything CreateVolume needs that is read from the cluster, gathered
//! before the request is sent: the content source of a clone or restore,
//! the accessibility requirements, the provisioner secret and the
//! VolumeAttributesClass's parameters, in the order of external-provisioner's
//! `prepareProvision` (pkg/controller/controller.go).
//!
//! The claim controller records the creation intent ([`crate::intents`])
//! only after this succeeded, so a claim whose reads fail (a Secret that is
//! missing or that RBAC forbids, a missing VolumeAttributesClass, a data
//! source not ready yet) is never recorded: nothing is left to undo for a
//! CreateVolume that was never sent.

use std::collections::BTreeMap;

use csi_client::csi::v1::{CreateVolumeRequest, TopologyRequirement, VolumeContentSource};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::debug;

use crate::annotations::{ALPHA_SELECTED_NODE, CLONE_FINALIZER, SELECTED_NODE};
use crate::claims::{Urgency, update_claim};
use crate::controller::{Context, read_secret};
use crate::datasource::{DataSource, clone_source};
use crate::error::Error;
use crate::provision::ProvisionPlan;
use crate::snapshot::{
    VolumeSnapshot, VolumeSnapshotContent, add_source_finalizer, snapshot_source,
};
use crate::topology::{TopologyError, TopologyInputs, accessibility_requirements};

/// Why the request is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A provisioning attempt: every read must succeed, and a clone's or
    /// restore's source is protected with its finalizer (as upstream's
    /// `setCloneFinalizer`/`setSnapshotFinalizer`).
    Provision,
    /// Repeating CreateVolume for a claim deleted mid-provisioning, only to
    /// learn the volume's ID: nothing is written, and a source or class that
    /// is gone by now is left out (drivers look volumes up by name). The
    /// secret is still required: the driver may need it to answer at all.
    Undo,
}

/// The outcome of [`prepare_create`].
#[derive(Debug)]
pub(crate) enum Prepared {
    /// The full request, secrets included: never log it.
    Ready(Box<CreateVolumeRequest>),
    /// The selected node's CSINode is gone: upstream's
    /// `ProvisioningReschedule`. The error's text is the event's.
    Reschedule(Error),
}

/// Builds the CreateVolume request of `plan` for `pvc`, reading what the
/// cluster holds. Direct GETs: the VolumeSnapshot and its content (restore),
/// the provisioner Secret, the VolumeAttributesClass.
///
/// Errors: the failed read, retried with backoff (upstream's
/// `ProvisioningNoChange`), or a final error of the data source or class
/// checks.
pub(crate) async fn prepare_create(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
    purpose: Purpose,
) -> Result<Prepared, Error> {
    let mut request = plan.request.clone();
    let protect = purpose == Purpose::Provision;
    request.volume_content_source = match content_source(ctx, pvc, plan, protect).await {
        Ok(source) => source,
        Err(_) if purpose == Purpose::Undo => None,
        Err(e) => return Err(e),
    };
    request.accessibility_requirements = match topology_requirements(ctx, pvc, plan) {
        Ok(requirements) => requirements,
        Err(_) if purpose == Purpose::Undo => None,
        Err(e) if e.is_reschedule() => return Ok(Prepared::Reschedule(e.into())),
        Err(e) => return Err(e.into()),
    };
    if let Some(s) = &plan.provisioner_secret {
        request.secrets = read_secret(&ctx.client, s).await?.into_iter().collect();
    }
    if let Some(name) = &plan.volume_attributes_class {
        request.mutable_parameters = match mutable_parameters(ctx, name).await {
            Ok(parameters) => parameters.into_iter().collect(),
            Err(_) if purpose == Purpose::Undo => Default::default(),
            Err(e) => return Err(e),
        };
    }
    Ok(Prepared::Ready(Box::new(request)))
}

/// Accessibility requirements for CreateVolume, frozen per claim in the
/// topology cache so retries send the same ones.
fn topology_requirements(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
) -> Result<Option<TopologyRequirement>, TopologyError> {
    let (true, Some(nodes), Some(csinodes)) = (plan.topology, &ctx.nodes, &ctx.csinodes) else {
        return Ok(None);
    };
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    let selected = annotations
        .get(SELECTED_NODE)
        .or_else(|| annotations.get(ALPHA_SELECTED_NODE))
        .map(String::as_str)
        .filter(|n| !n.is_empty());
    let (nodes, csinodes) = (nodes.state(), csinodes.state());
    let name = pvc.name_any();
    let inputs = TopologyInputs {
        driver: &ctx.cfg.driver_name,
        pvc_name: &name,
        allowed_topologies: &plan.allowed_topologies,
        selected_node: selected,
        strict_topology: ctx.cfg.strict_topology,
        immediate_topology: ctx.cfg.immediate_topology,
        csi_nodes: &csinodes,
        nodes: &nodes,
    };
    ctx.topology_cache
        .get_or_compute(&pvc.uid().unwrap_or_default(), selected, || {
            accessibility_requirements(&inputs)
        })
}

/// The VolumeAttributesClass's parameters, sent as `mutable_parameters`
/// (a direct GET, as upstream; its RBAC needs `get` on
/// volumeattributesclasses).
async fn mutable_parameters(ctx: &Context, name: &str) -> Result<BTreeMap<String, String>, Error> {
    let class = Api::<VolumeAttributesClass>::all(ctx.client.clone())
        .get(name)
        .await
        .map_err(Error::api)?;
    if class.driver_name != ctx.cfg.driver_name {
        return Err(Error::InvalidParameter(format!(
            "VAC {name} referenced in PVC is for driver {} which does not match driver name {}",
            class.driver_name, ctx.cfg.driver_name
        )));
    }
    Ok(class.parameters.unwrap_or_default())
}

/// The CSI content source for a clone or a restore, after checking the
/// source and, with `protect`, protecting it with its finalizer; `None` for
/// empty volumes.
async fn content_source(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    plan: &ProvisionPlan,
    protect: bool,
) -> Result<Option<VolumeContentSource>, Error> {
    let ns = pvc.namespace().unwrap_or_default();
    match &plan.data_source {
        DataSource::Claim(name) => {
            clone_content(ctx, pvc, &ns, name, &plan.class_provisioner, protect)
                .await
                .map(Some)
        }
        DataSource::Snapshot(name) => {
            snapshot_content(ctx, pvc, &ns, name, &plan.class_provisioner, protect)
                .await
                .map(Some)
        }
        DataSource::None | DataSource::Populator { .. } => Ok(None),
    }
}

/// `provisioner` is the (translated) StorageClass's, which the source volume
/// must belong to.
async fn clone_content(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    ns: &str,
    name: &str,
    provisioner: &str,
    protect: bool,
) -> Result<VolumeContentSource, Error> {
    let source = ctx.claims.get(&ObjectRef::new(name).within(ns));
    let source_pv = source
        .as_ref()
        .and_then(|s| s.spec.as_ref().and_then(|sp| sp.volume_name.clone()))
        .and_then(|v| ctx.volumes.get(&ObjectRef::new(&v)));
    let cs = clone_source(
        pvc,
        name,
        source.as_deref(),
        source_pv.as_deref(),
        provisioner,
    )?;
    if let (true, Some(source)) = (protect, source) {
        update_claim(ctx, &source, "protect clone source", Urgency::Now, |c| {
            sidecar_runtime::finalizers::add(c, CLONE_FINALIZER)
        })
        .await?;
    }
    Ok(cs)
}

/// Reads the VolumeSnapshot and its content (direct GETs, as upstream),
/// checks them, and with `protect` protects the snapshot with
/// [`crate::snapshot::SNAPSHOT_SOURCE_FINALIZER`] while the restore runs.
/// `provisioner` is the (translated) StorageClass's, which the snapshot must
/// belong to.
async fn snapshot_content(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    ns: &str,
    name: &str,
    provisioner: &str,
    protect: bool,
) -> Result<VolumeContentSource, Error> {
    let snapshots = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), ns);
    let snapshot = snapshots
        .get_opt(name)
        .await
        .map_err(|e| crate::snapshot::snapshot_get_error(name, &e))?
        .ok_or_else(|| crate::snapshot::snapshot_not_found(name))?;
    let content_name = snapshot
        .status
        .as_ref()
        .and_then(|s| s.bound_volume_snapshot_content_name.clone());
    let content = match content_name {
        Some(c) => Api::<VolumeSnapshotContent>::all(ctx.client.clone())
            .get_opt(&c)
            .await
            // Any failure reads as upstream's "error getting
            // snapshotcontent", which `snapshot_source` reports.
            .ok()
            .flatten(),
        None => None,
    };
    let cs = snapshot_source(
        pvc,
        &snapshot,
        content.as_ref(),
        provisioner,
        ctx.cfg.prevent_volume_mode_conversion,
    )?;
    let mut protected = snapshot.clone();
    if protect && add_source_finalizer(&mut protected) {
        match snapshots
            .replace(name, &PostParams::default(), &protected)
            .await
        {
            Ok(_) => {}
            // As upstream's setSnapshotFinalizer: without RBAC for the
            // Update, the restore goes on unprotected.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                debug!(snapshot = %format!("{ns}/{name}"), "no permission to protect the snapshot; restoring without");
            }
            Err(e) => return Err(Error::api(e)),
        }
    }
    Ok(cs)
}
