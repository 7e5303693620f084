//! What csi-snapshotter's start-up decides once
//! [`sidecar_runtime::app::Sidecar::start`] has connected (external-snapshotter:
//! cmd/csi-snapshotter/main.go): the CREATE_DELETE_SNAPSHOT check, the
//! node filter, the group snapshot gate, the queue and the event source.

use anyhow::bail;
use csi_client::csi::v1::controller_service_capability::rpc::Type as ControllerRpc;
use sidecar_runtime::app::Sidecar;
use sidecar_runtime::controller::Queue;
use sidecar_runtime::events::{EventQueue, EventRecorder};
use sidecar_runtime::workqueue::QueueMetrics;
use tracing::{info, warn};

use crate::args::SnapshotterArgs;
use crate::controller::{self, Setup};
use crate::features::FeatureGates;
use crate::names::{CONTENT_QUEUE, event_component};
use crate::rules::NameRules;

/// Builds the controller from the connected `sidecar` and returns the
/// future that runs it until SIGTERM/SIGINT.
///
/// Errors (exit 1 as upstream): the driver lacks CREATE_DELETE_SNAPSHOT.
pub async fn controllers(
    args: SnapshotterArgs,
    gates: FeatureGates,
    node: Option<String>,
    sidecar: &mut Sidecar,
) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let driver = sidecar.driver.clone();
    if !sidecar.controller.has(ControllerRpc::CreateDeleteSnapshot) {
        bail!("CSI driver {driver} does not support ControllerCreateSnapshot");
    }
    if gates.volume_group_snapshot {
        // Upstream starts its VolumeGroupSnapshotContent controller here;
        // this version has none, so group contents wait for another
        // snapshotter (said once, not silently).
        warn!(
            "CSIVolumeGroupSnapshot is on, but this csi-snapshotter does not handle VolumeGroupSnapshotContents yet"
        );
    }
    info!(
        driver = %driver,
        timeout = ?args.timeout,
        prefix = %args.snapshot_name_prefix,
        uuid_length = args.snapshot_name_uuid_length,
        "Start NewCSISnapshotSideCarController"
    );
    let queue = Queue::new(
        CONTENT_QUEUE,
        QueueMetrics::register(&mut sidecar.registry, &[CONTENT_QUEUE]),
    );
    let recorder = EventQueue::start_spare(
        EventRecorder::new(sidecar.prepaid.client.clone(), &event_component(&driver)),
        sidecar.prepaid.budget.clone(),
    );
    let setup = Setup {
        client: sidecar.client.clone(),
        csi: sidecar.csi.clone(),
        list_snapshots: sidecar.controller.has(ControllerRpc::ListSnapshots),
        driver,
        rules: NameRules {
            prefix: args.snapshot_name_prefix.clone(),
            uuid_length: args.snapshot_name_uuid_length,
            extra_create_metadata: args.extra_create_metadata,
        },
        node,
        workers: args.worker_threads.get(),
        resync: args.resync_period,
        retry: args.retry.clone(),
        recorder,
        queue,
    };
    Ok(controller::run(setup, sidecar_runtime::shutdown::signal()))
}
