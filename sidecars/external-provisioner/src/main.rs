//! csi-provisioner: its flags and its controllers; the start-up every
//! sidecar shares is [`sidecar_runtime::app`].

use external_provisioner::args::ProvisionerArgs;
use external_provisioner::names::lease_name;
use external_provisioner::{features, startup};
use sidecar_runtime::app::{self, Serve, Sidecar};

fn main() -> std::process::ExitCode {
    app::main(|args: ProvisionerArgs| async move {
        // Upstream treats a bad gate as fatal (klog.Fatal, exit 255).
        let gates = features::resolve(&args.feature_gates).unwrap_or_else(|e| app::fatal(e));
        startup::check_flags(&args, &gates)?;
        let mut sidecar =
            Sidecar::start(&args.common, &args.master, "csi-provisioner", args.timeout).await?;
        startup::enable_migration(&sidecar, &args).await?;
        let common = args.common.clone();
        let release = gates.release_leader_election_on_exit;
        let leader = app::leader_config(&common, &lease_name(&sidecar.driver), release)?;
        let controllers = startup::controllers(args, gates, &mut sidecar).await?;
        let serve = Serve {
            registry: sidecar.registry,
            kube_config: sidecar.kube_config,
            common: &common,
            component: "csi-provisioner",
            leader,
        };
        app::serve_and_run(serve, move || controllers).await?;
        Ok::<(), anyhow::Error>(())
    })
}
