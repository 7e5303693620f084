//! What csi-provisioner's start-up decides from its flags and the driver,
//! after [`sidecar_runtime::app::Sidecar::start`] connected: the checks
//! upstream's `main.go` makes, CSI migration, node deployment, the
//! CSIStorageCapacity loop, and the controllers' context.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use csi_client::csi::v1::NodeGetInfoRequest;
use csi_client::csi::v1::controller_service_capability::rpc::Type as ControllerRpc;
use csi_client::csi::v1::plugin_capability::service::Type as PluginService;
use csi_client::rpc;
use rand::Rng;
use sidecar_runtime::app::Sidecar;
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::Queue;
use sidecar_runtime::events::{EventQueue, EventRecorder};
use sidecar_runtime::workqueue::QueueMetrics;
use sidecar_runtime::write::CachedWriter;
use tracing::{error, info};

use crate::args::ProvisionerArgs;
use crate::controller::{self, CapacitySetup, Context, IntentSetup, RunOptions};
use crate::features::FeatureGates;
use crate::metrics::ProvisionerMetrics;
use crate::node_deployment::NodeInfo;
use crate::provision::ProvisionConfig;
use crate::{capacity, capacity_controller, intent_log, migration};

/// Flag combinations upstream refuses (exit 1), checked before connecting.
pub fn check_flags(args: &ProvisionerArgs, gates: &FeatureGates) -> anyhow::Result<()> {
    if gates.cross_namespace_volume_data_source {
        bail!(
            "the CrossNamespaceVolumeDataSource feature gate is not supported by this csi-provisioner yet"
        );
    }
    if args.node_deployment && std::env::var("NODE_NAME").unwrap_or_default().is_empty() {
        bail!(
            "--node-deployment requires the NODE_NAME environment variable (the node this provisioner runs on)"
        );
    }
    if args.volume_name_prefix.is_empty() {
        bail!("--volume-name-prefix cannot be empty");
    }
    Ok(())
}

/// A migration target driver: claims, classes and PVs of its in-tree
/// plugin are served too, and every CSI call from now on carries the
/// `migrated` label (upstream reconnects with a migration-aware metrics
/// manager and probes again; the series recorded so far are dropped
/// likewise).
pub async fn enable_migration(sidecar: &Sidecar, args: &ProvisionerArgs) -> anyhow::Result<()> {
    if let Some(in_tree) = migration::in_tree_name(&sidecar.driver) {
        info!(driver = %sidecar.driver, in_tree_plugin = %in_tree, "supports migration from in-tree plugin");
        sidecar.csi_metrics.enable_migration_label();
        rpc::probe_forever(&sidecar.csi, args.timeout).await?;
    }
    Ok(())
}

/// Builds the controllers' context from the connected `sidecar` (whose
/// registry gets the provisioner's metrics) and returns the future that runs
/// them until SIGTERM/SIGINT.
pub async fn controllers(
    args: ProvisionerArgs,
    gates: FeatureGates,
    sidecar: &mut Sidecar,
) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let driver = sidecar.driver.clone();
    let caps = sidecar.controller.clone();
    let topology = gates.topology
        && sidecar
            .plugin
            .has(PluginService::VolumeAccessibilityConstraints);
    let can_create_delete = sidecar.plugin.has(PluginService::ControllerService)
        && caps.has(ControllerRpc::CreateDeleteVolume);
    if !can_create_delete {
        // Upstream keeps running and fails each claim; say why once, up front.
        error!(driver = %driver, "the driver reports no CONTROLLER_SERVICE/CREATE_DELETE_VOLUME capability: every provision will fail");
    }
    let node = node_info(&args, sidecar).await?;
    let capacity = capacity_setup(&args, sidecar, node.as_ref()).await?;
    let capacity_trigger = capacity.as_ref().map(|c| c.trigger.clone());
    let wants_nodes = topology || capacity.is_some();
    // Node mode serves this node's Node/CSINode from NodeGetInfo, as upstream.
    let static_node = node
        .as_ref()
        .filter(|_| wants_nodes)
        .map(|n| n.fake_objects(&driver));
    let opts = RunOptions {
        workers: args.worker_threads.get(),
        watch_attachments: caps.has(ControllerRpc::PublishUnpublishVolume),
        watch_topology: wants_nodes && static_node.is_none(),
        capacity,
        // As upstream: the sweep needs the driver's snapshot capability.
        snapshot_sweep: caps
            .has(ControllerRpc::CreateDeleteSnapshot)
            .then_some(args.snapshot_orphan_sweep_interval),
        static_node,
        intents: IntentSetup {
            namespace: sidecar_runtime::leader::resolve_namespace(
                &args.common.leader_election_namespace,
            ),
            names: intent_log::shard_names(
                &crate::names::lease_name(&driver),
                node.as_ref().map(|n| n.name.as_str()),
            ),
            identity: sidecar_runtime::hostname(),
        },
    };
    let cfg = ProvisionConfig {
        driver_name: driver.clone(),
        volume_name_prefix: args.volume_name_prefix.clone(),
        volume_name_uuid_length: args.volume_name_uuid_length,
        default_fstype: args.default_fstype.clone(),
        extra_create_metadata: args.extra_create_metadata,
        controller_publish_readonly: args.controller_publish_readonly,
        controller_service: sidecar.plugin.has(PluginService::ControllerService),
        can_create_delete,
        single_node_multi_writer: caps.has(ControllerRpc::SingleNodeMultiWriter),
        can_clone: caps.has(ControllerRpc::CloneVolume),
        can_modify: caps.has(ControllerRpc::ModifyVolume),
        can_snapshot: caps.has(ControllerRpc::CreateDeleteSnapshot),
        prevent_volume_mode_conversion: args.prevent_volume_mode_conversion,
        volume_attributes_class: gates.volume_attributes_class,
        topology,
        strict_topology: args.strict_topology,
        immediate_topology: args.immediate_topology,
    };
    let metrics = ProvisionerMetrics::register(&mut sidecar.registry);
    let queues = QueueMetrics::register(&mut sidecar.registry, &["claims", "volumes"]);
    // Upstream's event source: `<driver>_<host>_<uuid>`.
    let component = format!(
        "{driver}_{}_{}",
        sidecar_runtime::hostname(),
        uuid::Uuid::new_v4()
    );
    let prepaid = sidecar.prepaid.clone();
    let recorder = EventQueue::start_spare(
        EventRecorder::new(prepaid.client.clone(), &component),
        prepaid.budget.clone(),
    );
    let (client, csi) = (sidecar.client.clone(), sidecar.csi.clone());
    let identity = provisioner_identity(&driver, node.as_ref());
    let make_ctx = move |caches: controller::Caches| Context {
        client: client.clone(),
        csi,
        cfg,
        identity,
        recorder,
        backoff: PerObjectBackoff::from_args(&args.retry),
        metrics,
        claims_queue: Queue::new("claims", queues.clone()),
        volumes_queue: Queue::new("volumes", queues),
        slow_retry: args.retry.retry_interval_max,
        claim_writer: CachedWriter::namespaced(prepaid.clone(), caches.claims.clone()),
        classes: caches.classes,
        volumes: caches.volumes,
        claims: caches.claims,
        attachments: caches.attachments,
        detach_waits: Default::default(),
        own_writes: Default::default(),
        prepaid,
        nodes: caches.nodes,
        csinodes: caches.csinodes,
        topology_cache: Default::default(),
        capacity_trigger,
        node_immediate_binding: args.node_deployment_immediate_binding,
        node_claim_delays: (
            args.node_deployment_base_delay,
            args.node_deployment_max_delay,
        ),
        node_claim_attempts: Default::default(),
        node,
        intents: caches.intents,
    };
    let client = sidecar.client.clone();
    Ok(controller::run(
        client,
        make_ctx,
        opts,
        sidecar_runtime::shutdown::signal(),
    ))
}

/// `storage.kubernetes.io/csiProvisionerIdentity`: `<ms since epoch>-<rand
/// 0..9999>-<driver>`, `-<node>` appended in node mode, as upstream.
fn provisioner_identity(driver: &str, node: Option<&NodeInfo>) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let identity = format!("{millis}-{}-{driver}", rand::rng().random_range(0..10000));
    match node {
        Some(n) => format!("{identity}-{}", n.name),
        None => identity,
    }
}

/// `--node-deployment`: this node's name (`NODE_NAME`) and NodeGetInfo.
async fn node_info(args: &ProvisionerArgs, sidecar: &Sidecar) -> anyhow::Result<Option<NodeInfo>> {
    if !args.node_deployment {
        return Ok(None);
    }
    let name = std::env::var("NODE_NAME").unwrap_or_default();
    let info = sidecar
        .csi
        .node_get_info(NodeGetInfoRequest::default())
        .await
        .context("NodeGetInfo (needed by --node-deployment)")?;
    let segment = info
        .accessible_topology
        .map(|t| t.segments.into_iter().collect())
        .unwrap_or_default();
    info!(node = %name, node_id = %info.node_id, "node deployment: provisioning for this node only");
    Ok(Some(NodeInfo {
        name,
        node_id: info.node_id,
        segment,
    }))
}

/// `--enable-capacity`: the CSIStorageCapacity loop's client (its own
/// `--kube-api-capacity-qps/burst`), owner and settings.
async fn capacity_setup(
    args: &ProvisionerArgs,
    sidecar: &mut Sidecar,
    node: Option<&NodeInfo>,
) -> anyhow::Result<Option<CapacitySetup>> {
    if !args.enable_capacity {
        return Ok(None);
    }
    if !sidecar.controller.has(ControllerRpc::GetCapacity) {
        // Upstream never checks; say it once instead of failing every poll.
        error!(driver = %sidecar.driver, "--enable-capacity is set but the driver does not report the GET_CAPACITY capability: GetCapacity calls will fail");
    }
    let namespace = std::env::var("NAMESPACE").unwrap_or_default();
    if namespace.is_empty() {
        bail!(
            "--enable-capacity requires the NAMESPACE environment variable (the namespace for CSIStorageCapacity objects)"
        );
    }
    let client = sidecar_runtime::kube_client::client_from_config(
        sidecar.kube_config.clone(),
        f64::from(args.kube_api_capacity_qps),
        args.kube_api_capacity_burst,
        "csi-provisioner-capacity",
    )?;
    let pod_name = std::env::var("POD_NAME").ok();
    let owner = capacity_controller::resolve_owner(
        &client,
        &namespace,
        pod_name.as_deref(),
        args.capacity_ownerref_level,
    )
    .await?;
    Ok(Some(CapacitySetup {
        client,
        csi: sidecar.csi.clone(),
        cfg: capacity_controller::CapacityConfig {
            driver: sidecar.driver.clone(),
            namespace,
            managed_by: capacity::managed_by(node.map(|n| n.name.as_str())),
            owner,
            for_immediate_binding: args.capacity_for_immediate_binding,
            poll_interval: args.capacity_poll_interval,
        },
        trigger: Arc::new(tokio::sync::Notify::new()),
        metrics: capacity_controller::CapacityMetrics::register(&mut sidecar.registry),
    }))
}
