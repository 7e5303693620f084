//! csi-provisioner binary: flags, startup sequence, leader election.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use csi_client::csi::v1::NodeGetInfoRequest;
use csi_client::csi::v1::controller_service_capability::rpc::Type as ControllerRpc;
use csi_client::csi::v1::plugin_capability::service::Type as PluginService;
use csi_client::{ConnectOptions, Connection, CsiMetrics, LossPolicy, rpc};
use external_provisioner::args::ProvisionerArgs;
use external_provisioner::controller::{self, Context};
use external_provisioner::features::{self, FeatureGates};
use external_provisioner::metrics::ProvisionerMetrics;
use external_provisioner::names::lease_name;
use external_provisioner::node_deployment::NodeInfo;
use external_provisioner::provision::ProvisionConfig;
use external_provisioner::{capacity, capacity_controller};
use prometheus_client::registry::Registry;
use rand::Rng;
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::controller::Queue;
use sidecar_runtime::events::EventRecorder;
use sidecar_runtime::{flags, http, kube_client, leader, logging, shutdown};
use tracing::{error, info};

/// How long the first dial may take before the sidecar gives up, as
/// csi-lib-utils' Connect default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> std::process::ExitCode {
    let args: ProvisionerArgs = flags::parse();
    flags::print_version_and_exit_if_requested(&args.common, env!("CARGO_PKG_VERSION"));
    if let Err(e) = logging::init(&args.logging) {
        eprintln!("{e}");
        return std::process::ExitCode::from(1);
    }
    let gates = match features::resolve(&args.feature_gates) {
        Ok(g) => g,
        Err(e) => {
            // Upstream treats this as fatal (klog.Fatal, exit 255).
            error!("{e}");
            return std::process::ExitCode::from(255);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args, gates)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "csi-provisioner failed");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(args: ProvisionerArgs, gates: FeatureGates) -> anyhow::Result<()> {
    args.common.validate()?;
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

    let mut registry = Registry::default();
    let csi_metrics = CsiMetrics::register(&mut registry, "csi_sidecar");
    let conn = Connection::connect(ConnectOptions {
        address: args.common.csi_address.clone(),
        timeout: args.timeout,
        connect_timeout: Some(CONNECT_TIMEOUT),
        on_loss: LossPolicy::Exit,
        metrics: Some(csi_metrics.clone()),
        max_grpc_log_length: None,
    })
    .await
    .context("connecting to the CSI driver")?;
    rpc::probe_forever(&conn, args.timeout).await?;
    let driver = rpc::driver_name(&conn).await?;
    conn.set_driver_name(&driver);
    info!(driver = %driver, "detected CSI driver");
    if let Some(in_tree) = external_provisioner::migration::in_tree_name(&driver) {
        // As upstream: claims, classes and PVs of the in-tree plugin are
        // served too, and every CSI call from now on carries the `migrated`
        // label (upstream reconnects with a migration-aware metrics manager
        // and probes again; the series recorded so far are dropped likewise).
        info!(driver = %driver, in_tree_plugin = %in_tree, "supports migration from in-tree plugin");
        csi_metrics.enable_migration_label();
        rpc::probe_forever(&conn, args.timeout).await?;
    }
    let plugin = rpc::plugin_capabilities(&conn).await?;
    let controller_caps = rpc::controller_capabilities(&conn).await?;
    let topology = gates.topology && plugin.has(PluginService::VolumeAccessibilityConstraints);
    let can_create_delete = plugin.has(PluginService::ControllerService)
        && controller_caps.has(ControllerRpc::CreateDeleteVolume);
    if !can_create_delete {
        // Upstream keeps running and fails each claim; say why once, up front.
        error!(driver = %driver, "the driver reports no CONTROLLER_SERVICE/CREATE_DELETE_VOLUME capability: every provision will fail");
    }

    let config = api_config(&args).await?;
    let (client, prepaid) = kube_client::clients_from_config(
        config.clone(),
        args.common.kube_api_qps,
        args.common.kube_api_burst,
        "csi-provisioner",
    )?;
    let metrics = ProvisionerMetrics::register(&mut registry);
    let queue_metrics =
        sidecar_runtime::workqueue::QueueMetrics::register(&mut registry, &["claims", "volumes"]);
    sidecar_runtime::process_metrics::register(&mut registry);
    let node = if args.node_deployment {
        let name = std::env::var("NODE_NAME").unwrap_or_default();
        let info = conn
            .node_get_info(NodeGetInfoRequest::default())
            .await
            .context("NodeGetInfo (needed by --node-deployment)")?;
        let segment = info
            .accessible_topology
            .map(|t| t.segments.into_iter().collect())
            .unwrap_or_default();
        info!(node = %name, node_id = %info.node_id, "node deployment: provisioning for this node only");
        Some(NodeInfo {
            name,
            node_id: info.node_id,
            segment,
        })
    } else {
        None
    };
    let capacity = if args.enable_capacity {
        if !controller_caps.has(ControllerRpc::GetCapacity) {
            // Upstream never checks; say it once instead of failing every poll.
            error!(driver = %driver, "--enable-capacity is set but the driver does not report the GET_CAPACITY capability: GetCapacity calls will fail");
        }
        let namespace = std::env::var("NAMESPACE").unwrap_or_default();
        if namespace.is_empty() {
            bail!(
                "--enable-capacity requires the NAMESPACE environment variable (the namespace for CSIStorageCapacity objects)"
            );
        }
        let capacity_client = kube_client::client_from_config(
            config.clone(),
            f64::from(args.kube_api_capacity_qps),
            args.kube_api_capacity_burst,
            "csi-provisioner-capacity",
        )?;
        let pod_name = std::env::var("POD_NAME").ok();
        let owner = capacity_controller::resolve_owner(
            &capacity_client,
            &namespace,
            pod_name.as_deref(),
            args.capacity_ownerref_level,
        )
        .await?;
        Some(controller::CapacitySetup {
            client: capacity_client,
            csi: conn.clone(),
            cfg: capacity_controller::CapacityConfig {
                driver: driver.clone(),
                namespace,
                managed_by: capacity::managed_by(node.as_ref().map(|n| n.name.as_str())),
                owner,
                for_immediate_binding: args.capacity_for_immediate_binding,
                poll_interval: args.capacity_poll_interval,
            },
            trigger: Arc::new(tokio::sync::Notify::new()),
            metrics: capacity_controller::CapacityMetrics::register(&mut registry),
        })
    } else {
        None
    };
    let capacity_trigger = capacity.as_ref().map(|c| c.trigger.clone());
    let wants_nodes = topology || capacity.is_some();
    // Node mode serves this node's Node/CSINode from NodeGetInfo, as upstream.
    let static_node = node
        .as_ref()
        .filter(|_| wants_nodes)
        .map(|n| n.fake_objects(&driver));
    let watch_nodes = wants_nodes && static_node.is_none();
    // As upstream: the sweep needs the driver's snapshot capability.
    let snapshot_sweep = controller_caps
        .has(ControllerRpc::CreateDeleteSnapshot)
        .then_some(args.snapshot_orphan_sweep_interval);

    let lease = lease_name(&driver);
    let leader_config = if args.common.leader_election {
        let mut config = leader::LeaderConfig::from_args(&lease, &args.common)?;
        config.release_on_exit = gates.release_leader_election_on_exit;
        Some(config)
    } else {
        None
    };
    let health = leader::LeaderHealth::new(&lease, args.common.leader_election_lease_duration);
    if leader_config.is_some() {
        health.register_metrics(&mut registry);
    }
    let registry: http::SharedRegistry = Arc::new(std::sync::Mutex::new(registry));
    // Standbys serve metrics too, so the server starts before the election.
    if let Some((addr, with_health)) = args.common.http_address() {
        let listener = http::bind(addr).await?;
        let path = args.common.metrics_path.clone();
        let leader_health = (with_health && leader_config.is_some()).then(|| health.clone());
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) =
                http::serve_listener(listener, &path, registry, leader_health, shutdown::signal())
                    .await
            {
                error!(error = %e, "HTTP server failed");
                std::process::exit(1);
            }
        });
    }

    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut identity = format!("{millis}-{}-{driver}", rand::rng().random_range(0..10000));
    if let Some(n) = &node {
        identity = format!("{identity}-{}", n.name);
    }
    let component = format!(
        "{driver}_{}_{}",
        sidecar_runtime::hostname(),
        uuid::Uuid::new_v4()
    );
    let cfg = ProvisionConfig {
        driver_name: driver.clone(),
        volume_name_prefix: args.volume_name_prefix.clone(),
        volume_name_uuid_length: args.volume_name_uuid_length,
        default_fstype: args.default_fstype.clone(),
        extra_create_metadata: args.extra_create_metadata,
        controller_publish_readonly: args.controller_publish_readonly,
        controller_service: plugin.has(PluginService::ControllerService),
        can_create_delete,
        single_node_multi_writer: controller_caps.has(ControllerRpc::SingleNodeMultiWriter),
        can_clone: controller_caps.has(ControllerRpc::CloneVolume),
        can_modify: controller_caps.has(ControllerRpc::ModifyVolume),
        can_snapshot: controller_caps.has(ControllerRpc::CreateDeleteSnapshot),
        prevent_volume_mode_conversion: args.prevent_volume_mode_conversion,
        volume_attributes_class: gates.volume_attributes_class,
        topology,
        strict_topology: args.strict_topology,
        immediate_topology: args.immediate_topology,
    };
    let workers =
        u16::try_from(args.worker_threads).context("--worker-threads must be at most 65535")?;
    let watch_attachments = controller_caps.has(ControllerRpc::PublishUnpublishVolume);
    let slow_retry = args.retry.retry_interval_max;
    let backoff = PerObjectBackoff::new(
        args.retry.retry_interval_start,
        args.retry.retry_interval_max,
    );
    let recorder = sidecar_runtime::events::EventQueue::start_spare(
        EventRecorder::new(prepaid.client.clone(), &component),
        prepaid.budget.clone(),
    );
    let run_controllers = {
        let client = client.clone();
        move || async move {
            controller::run(
                client.clone(),
                move |caches| Context {
                    client,
                    csi: conn,
                    cfg,
                    identity,
                    recorder,
                    backoff,
                    metrics,
                    claims_queue: Queue::new("claims", queue_metrics.clone()),
                    volumes_queue: Queue::new("volumes", queue_metrics),
                    slow_retry,
                    classes: caches.classes,
                    volumes: caches.volumes,
                    claims: caches.claims.clone(),
                    attachments: caches.attachments,
                    detach_waits: Default::default(),
                    own_writes: Default::default(),
                    claim_writer: sidecar_runtime::write::CachedWriter::namespaced(
                        prepaid.clone(),
                        caches.claims.clone(),
                    ),
                    prepaid: prepaid.clone(),
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
                },
                controller::RunOptions {
                    workers,
                    watch_attachments,
                    watch_topology: watch_nodes,
                    capacity,
                    snapshot_sweep,
                    static_node,
                },
                shutdown::signal(),
            )
            .await;
        }
    };

    if let Some(config) = leader_config {
        // A separate client, as upstream: claim traffic must not starve renewals.
        let le_client =
            kube_client::client(&args.common, "csi-provisioner-leader-election").await?;
        leader::run_with_leader_election_or_exit(le_client, config, health, run_controllers)
            .await?;
    } else {
        run_controllers().await;
    }
    info!("shut down");
    Ok(())
}

/// The API server config as upstream's `BuildConfigFromFlags(--master,
/// --kubeconfig)`: `--master` overrides the kubeconfig's server; `--master`
/// alone talks to that URL without credentials; neither means in-cluster.
async fn api_config(args: &ProvisionerArgs) -> anyhow::Result<kube::Config> {
    if args.master.is_empty() {
        return Ok(kube_client::load_config(&args.common).await?);
    }
    let url: ::http::Uri = args
        .master
        .parse()
        .with_context(|| format!("--master {:?} is not a URL", args.master))?;
    if args.common.kubeconfig_path().is_none() {
        return Ok(kube::Config::new(url));
    }
    let mut config = kube_client::load_config(&args.common).await?;
    config.cluster_url = url;
    Ok(config)
}
