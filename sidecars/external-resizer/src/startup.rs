//! What csi-resizer's start-up decides after
//! [`sidecar_runtime::app::Sidecar::start`] connected: which controllers
//! run for the driver's capabilities, the VolumeAttributesClass discovery
//! probe, CSI migration, and the controllers' setup
//! (kubernetes-csi/external-resizer:cmd/csi-resizer/main.go).

use anyhow::bail;
use csi_client::csi::v1::controller_service_capability::rpc::Type as ControllerRpc;
use csi_client::csi::v1::node_service_capability::rpc::Type as NodeRpc;
use csi_client::csi::v1::plugin_capability::service::Type as PluginService;
use csi_client::rpc;
use sidecar_runtime::app::Sidecar;
use sidecar_runtime::controller::Queue;
use sidecar_runtime::events::{EventQueue, EventRecorder};
use sidecar_runtime::workqueue::QueueMetrics;
use tracing::{error, info, warn};

use crate::args::ResizerArgs;
use crate::controller::{self, Setup};
use crate::features::FeatureGates;
use crate::names::queue_name;
use crate::resize::DriverInfo;

/// Whether the API server serves `storage.k8s.io/v1`
/// VolumeAttributesClass (upstream `IsVolumeAttributesClassV1Enabled`).
async fn vac_v1_served(client: &kube::Client) -> anyhow::Result<bool> {
    match client.list_api_group_resources("storage.k8s.io/v1").await {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.kind == "VolumeAttributesClass")),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Builds the controllers from the connected `sidecar` and returns the
/// future that runs them until SIGTERM/SIGINT.
pub async fn controllers(
    args: ResizerArgs,
    mut gates: FeatureGates,
    sidecar: &mut Sidecar,
) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let driver = sidecar.driver.clone();
    if gates.volume_attributes_class && !gates.volume_attributes_class_explicit {
        let served = vac_v1_served(&sidecar.client).await?;
        if !served {
            info!(
                "storage.k8s.io/v1 VolumeAttributesClass is not served: disabling the VolumeAttributesClass feature gate"
            );
            gates.volume_attributes_class = false;
        }
    }
    let migrated = csi_translation::is_migratable_driver(&driver);
    if migrated {
        info!(driver = %driver, "supports migration from an in-tree plugin");
        sidecar.csi_metrics.enable_migration_label();
    }
    if !sidecar.plugin.has(PluginService::ControllerService) {
        bail!(
            "failed to create resizer: CSI driver {driver} does not support the CONTROLLER_SERVICE plugin capability"
        );
    }
    let caps = sidecar.controller.clone();
    let controller_expand = caps.has(ControllerRpc::ExpandVolume);
    let node_expand = if controller_expand {
        false
    } else {
        match rpc::node_capabilities(&sidecar.csi).await {
            Ok(n) => n.has(NodeRpc::ExpandVolume),
            Err(e) => {
                warn!(error = %e, "NodeGetCapabilities failed");
                false
            }
        }
    };
    let resize = controller_expand || node_expand;
    if !resize {
        error!(driver = %driver, "CSI driver does not support controller or node expansion: the resize controller is off");
    }
    let modify = gates.volume_attributes_class && caps.has(ControllerRpc::ModifyVolume);
    if !resize && !modify {
        sidecar_runtime::app::fatal("CSI driver does not support resize nor modify");
    }
    let name: &'static str = Box::leak(queue_name(&driver).into_boxed_str());
    let queue = Queue::new(name, QueueMetrics::register(&mut sidecar.registry, &[name]));
    let recorder = EventQueue::start_spare(
        EventRecorder::new(
            sidecar.prepaid.client.clone(),
            &format!("external-resizer {driver}"),
        ),
        sidecar.prepaid.budget.clone(),
    );
    let setup = Setup {
        client: sidecar.client.clone(),
        csi: sidecar.csi.clone(),
        driver: DriverInfo {
            name: driver,
            migrated,
            controller_expand,
        },
        single_node_multi_writer: caps.has(ControllerRpc::SingleNodeMultiWriter),
        gates,
        resize,
        modify,
        watch_pods: args.handle_volume_inuse_error,
        extra_modify_metadata: args.extra_modify_metadata,
        workers: args.workers.get(),
        resync: args.resync_period,
        retry: args.retry.clone(),
        recorder,
        queue,
    };
    Ok(controller::run(setup, sidecar_runtime::shutdown::signal()))
}
