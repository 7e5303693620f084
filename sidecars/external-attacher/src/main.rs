//! csi-attacher: its flags and its controllers; the start-up every sidecar
//! shares is [`sidecar_runtime::app`].

use csi_client::csi::v1::controller_service_capability::rpc::Type as Rpc;
use csi_client::csi::v1::plugin_capability::service::Type as PluginService;
use external_attacher::args::AttacherArgs;
use external_attacher::controller::{self, BacklogMetrics, QUEUES, Settings, Setup};
use external_attacher::decide::Capabilities;
use external_attacher::{features, names};
use sidecar_runtime::app::{self, Serve, Sidecar};
use sidecar_runtime::backoff::PerObjectBackoff;
use sidecar_runtime::events::{EventQueue, EventRecorder};
use sidecar_runtime::workqueue::QueueMetrics;
use tracing::info;

fn main() -> std::process::ExitCode {
    app::main(|args: AttacherArgs| async move {
        // Upstream: a bad gate is logged and the process exits 1.
        let gates = features::resolve(&args.feature_gates).map_err(anyhow::Error::msg)?;
        let mut sidecar = Sidecar::start_with_log_cap(
            &args.common,
            "",
            "csi-attacher",
            args.timeout,
            csi_client::max_log_length(args.max_grpc_log_length),
        )
        .await?;
        let migration = csi_translation::is_migratable_driver(&sidecar.driver);
        if migration {
            sidecar.csi_metrics.enable_migration_label();
            csi_client::rpc::probe_forever(&sidecar.csi, args.timeout).await?;
        }
        let (p, c) = (&sidecar.plugin, &sidecar.controller);
        let caps = Capabilities::from_driver(
            p.has(PluginService::ControllerService),
            c.has(Rpc::PublishUnpublishVolume),
            c.has(Rpc::PublishReadonly),
            c.has(Rpc::ListVolumes),
            c.has(Rpc::ListVolumesPublishedNodes),
            c.has(Rpc::SingleNodeMultiWriter),
        );
        info!(driver = %sidecar.driver, ?caps, "driver capabilities");
        let settings = Settings {
            driver: sidecar.driver.clone(),
            caps,
            timeout: args.timeout,
            default_fstype: args.default_fstype.clone(),
            max_entries: args.max_entries,
            error_codes: gates.mutable_csi_node_allocatable_count,
            workers: args.worker_threads.get(),
            reconcile_sync: args.reconcile_sync,
            resync: args.resync,
            migration,
        };
        let recorder = EventQueue::start_spare(
            EventRecorder::new(sidecar.prepaid.client.clone(), "csi-attacher"),
            sidecar.prepaid.budget.clone(),
        );
        let setup = Setup {
            client: sidecar.client.clone(),
            csi: sidecar.csi.clone(),
            settings,
            recorder,
            backoff: PerObjectBackoff::from_args(&args.retry),
            queues: QueueMetrics::register(&mut sidecar.registry, &QUEUES),
            metrics: BacklogMetrics::register(&mut sidecar.registry),
        };
        let lease = names::lease_name(&sidecar.driver);
        let leader =
            app::leader_config(&args.common, &lease, gates.release_leader_election_on_exit)?;
        let serve = Serve {
            registry: sidecar.registry,
            kube_config: sidecar.kube_config,
            common: &args.common,
            component: "csi-attacher",
            leader,
        };
        app::serve_and_run(serve, move || {
            controller::run(setup, sidecar_runtime::shutdown::signal())
        })
        .await?;
        Ok::<(), anyhow::Error>(())
    })
}
