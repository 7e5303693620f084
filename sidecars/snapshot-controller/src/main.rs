//! snapshot-controller: its flags, the clients, the CRD wait, metrics,
//! leader election and the two queues.

use std::process::ExitCode;

use prometheus_client::registry::Registry;
use sidecar_runtime::app::{self, Serve};
use sidecar_runtime::events::{EventQueue, EventRecorder};
use sidecar_runtime::{flags, kube_client, logging};
use snapshot_controller::args::ControllerArgs;
use snapshot_controller::controller::{self, Setup};
use snapshot_controller::metrics::OperationMetrics;
use snapshot_controller::{COMPONENT, LEASE_NAME, startup};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let args: ControllerArgs = flags::parse();
    if args.show_version {
        let argv0 = std::env::args_os().next().unwrap_or_default();
        println!("{} {}", argv0.to_string_lossy(), env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&args.logging) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    // Upstream treats a bad gate as fatal (klog.Fatal, exit 255).
    let gates = args.gates().unwrap_or_else(|e| app::fatal(e));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args, gates)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "snapshot-controller failed");
            ExitCode::from(1)
        }
    }
}

async fn run(
    args: ControllerArgs,
    gates: snapshot_controller::args::FeatureGates,
) -> anyhow::Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), "snapshot-controller");
    let common = args.common();
    let kube_config = kube_client::load_config(&common).await?;
    let (client, prepaid) = kube_client::clients_from_config(
        kube_config.clone(),
        args.kube_api_qps,
        args.kube_api_burst,
        COMPONENT,
    )?;
    // Upstream's snapshot clientset has a token bucket of its own.
    let (snapshot_client, _) = kube_client::clients_from_config(
        kube_config.clone(),
        args.kube_api_qps,
        args.kube_api_burst,
        COMPONENT,
    )?;
    startup::wait_for_crds(&snapshot_client, args.retry_crd_interval_max).await?;
    if gates.volume_group_snapshot {
        warn!(
            "CSIVolumeGroupSnapshot is enabled but this snapshot-controller does not handle VolumeGroupSnapshots"
        );
    }
    let mut registry = Registry::default();
    let metrics = OperationMetrics::register(&mut registry);
    let leader = app::leader_config(&common, LEASE_NAME, gates.release_leader_election_on_exit)?;
    let recorder = EventQueue::start_spare(
        EventRecorder::new(prepaid.client.clone(), COMPONENT),
        prepaid.budget.clone(),
    );
    let setup = Setup {
        client,
        snapshot_client,
        prepaid,
        recorder,
        metrics,
        workers: args.worker_threads.get(),
        resync: args.resync_period,
        retry: (args.retry_interval_start, args.retry_interval_max),
        prevent_volume_mode_conversion: args.prevent_volume_mode_conversion,
        distributed_snapshotting: args.enable_distributed_snapshotting,
    };
    let serve = Serve {
        registry,
        kube_config,
        common: &common,
        component: COMPONENT,
        leader,
    };
    app::serve_and_run(serve, move || {
        controller::run(setup, sidecar_runtime::shutdown::signal())
    })
    .await?;
    Ok(())
}
