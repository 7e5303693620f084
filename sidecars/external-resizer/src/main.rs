//! csi-resizer: its flags and its controllers; the start-up every sidecar
//! shares is [`sidecar_runtime::app`].

use external_resizer::args::ResizerArgs;
use external_resizer::names::lease_name;
use external_resizer::{features, startup};
use sidecar_runtime::app::{self, Serve, Sidecar};

fn main() -> std::process::ExitCode {
    app::main(|args: ResizerArgs| async move {
        // Upstream treats a bad gate as fatal (klog.Fatal, exit 255).
        let gates = features::resolve(&args.feature_gates).unwrap_or_else(|e| app::fatal(e));
        let mut sidecar =
            Sidecar::start(&args.common, &args.master, "csi-resizer", args.timeout).await?;
        let common = args.common.clone();
        let release = gates.release_leader_election_on_exit;
        let leader = app::leader_config(&common, &lease_name(&sidecar.driver), release)?;
        let controllers = startup::controllers(args, gates, &mut sidecar).await?;
        let serve = Serve {
            registry: sidecar.registry,
            kube_config: sidecar.kube_config,
            common: &common,
            component: "csi-resizer",
            leader,
        };
        app::serve_and_run(serve, move || controllers).await?;
        Ok::<(), anyhow::Error>(())
    })
}
