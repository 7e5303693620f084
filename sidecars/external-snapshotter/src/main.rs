//! csi-snapshotter: its flags and its controller; the start-up every
//! sidecar shares is [`sidecar_runtime::app`].

use external_snapshotter::args::SnapshotterArgs;
use external_snapshotter::names::lease_name;
use external_snapshotter::{features, startup};
use sidecar_runtime::app::{self, Serve, Sidecar};

fn main() -> std::process::ExitCode {
    app::main(|args: SnapshotterArgs| async move {
        // Upstream treats a bad gate as fatal (klog.Fatal, exit 255).
        let gates = features::resolve(&args.feature_gates).unwrap_or_else(|e| app::fatal(e));
        args.validate(gates.volume_group_snapshot)
            .map_err(anyhow::Error::msg)?;
        let node = if args.node_deployment {
            match std::env::var("NODE_NAME") {
                Ok(n) if !n.is_empty() => Some(n),
                _ => app::fatal(
                    "The NODE_NAME environment variable must be set when using --enable-node-deployment.",
                ),
            }
        } else {
            None
        };
        let mut sidecar = Sidecar::start(&args.common, "", "csi-snapshotter", args.timeout).await?;
        let common = args.common.clone();
        let release = gates.release_leader_election_on_exit;
        let leader = app::leader_config(&common, &lease_name(&sidecar.driver), release)?;
        let controllers = startup::controllers(args, gates, node, &mut sidecar).await?;
        let serve = Serve {
            registry: sidecar.registry,
            kube_config: sidecar.kube_config,
            common: &common,
            component: "csi-snapshotter",
            leader,
        };
        app::serve_and_run(serve, move || controllers).await?;
        Ok::<(), anyhow::Error>(())
    })
}
