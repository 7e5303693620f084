//! `livenessprobe`: flags, logging, the driver's name, then serving.

use std::process::ExitCode;

use livenessprobe::args::Args;
use livenessprobe::run::{Probe, driver_name, registry, serve};
use sidecar_runtime::{flags, logging};

fn main() -> ExitCode {
    let args: Args = flags::parse();
    if let Err(e) = logging::init(&args.logging) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let listeners = match args.listeners() {
        Ok(listeners) => listeners,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    // One thread: a probe every few seconds.
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
    let result = runtime.block_on(async {
        let (registry, metrics) = registry();
        let driver = driver_name(&args.csi_address, &metrics).await?;
        tracing::info!(driver = %driver, "CSI driver name");
        let probe = Probe {
            address: args.csi_address.clone(),
            timeout: args.probe_timeout,
            driver,
            metrics,
            registry,
            metrics_path: args.metrics_path.clone(),
        };
        serve(probe, &listeners).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            tracing::error!(error = format!("{e:#}"), "livenessprobe failed");
            ExitCode::from(1)
        }
    }
}
