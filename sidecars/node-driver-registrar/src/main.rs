//! `csi-node-driver-registrar`: flags, logging, then [`run`].

use std::process::ExitCode;

use node_driver_registrar::args::{Args, Plan};
use node_driver_registrar::registration::exit_on_failed_registration;
use node_driver_registrar::run::run;
use sidecar_runtime::{flags, logging};

fn main() -> ExitCode {
    let args: Args = flags::parse();
    if args.show_version {
        let argv0 = std::env::args_os().next().unwrap_or_default();
        println!("{} {}", argv0.to_string_lossy(), env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&args.logging) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Version");
    let config = match args.plan() {
        Ok(Plan::Register(config)) => config,
        Ok(Plan::ExitForProbeMode) => {
            tracing::info!("--mode=kubelet-registration-probe has nothing to check; exiting");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    // One thread: the registrar answers a handful of calls a minute.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, exit_on_failed_registration())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            tracing::error!(error = format!("{e:#}"), "csi-node-driver-registrar failed");
            ExitCode::from(1)
        }
    }
}
