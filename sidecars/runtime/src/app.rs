//! A controller sidecar's start-up and run, the part every upstream
//! sidecar's `main.go` repeats: flags, `--version`, logging, the async
//! runtime, the CSI connection (probe until ready, driver name,
//! capabilities), the Kubernetes clients, `/metrics` and
//! `/healthz/leader-election`, leader election, and the exit codes.
//!
//! A sidecar's `main.rs` is then its own flags and its controllers:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     app::main(|args: MyArgs| async move {
//!         let sidecar = Sidecar::start(&args.common, "", "csi-foo", args.timeout).await?;
//!         // … register metrics, build the controllers' context …
//!         app::serve_and_run(serve, || controllers).await?;
//!         Ok::<(), anyhow::Error>(())
//!     })
//! }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi_client::rpc;
use csi_client::{ConnectOptions, Connection, CsiMetrics, LossPolicy};
use csi_client::{ControllerCapabilitySet, PluginCapabilitySet};
use prometheus_client::registry::Registry;
use tracing::{error, info};

use crate::Error;
use crate::flags::{self, CommonArgs, LoggingArgs};
use crate::kube_client::{self, Prepaid};
use crate::leader::{self, LeaderConfig, LeaderHealth};
use crate::{http, logging, process_metrics, shutdown};

/// How long the first dial of the driver may take before the sidecar gives
/// up, as csi-lib-utils' `Connect` default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A sidecar's command line: its own flags with the shared ones flattened
/// in.
pub trait SidecarArgs: clap::Parser {
    /// The flags every controller sidecar has.
    fn common(&self) -> &CommonArgs;
    /// The component-base logging flags.
    fn logging(&self) -> &LoggingArgs;
}

/// Runs a sidecar: parses `A` from the command line (a bad flag prints the
/// usage and exits 2, as Go's flag package), answers `--version`
/// (`<argv0> <version>`), sets up logging, starts a multi-threaded tokio
/// runtime and runs `run` on it. Exit status 0 when `run` returns `Ok`,
/// else the error is logged with its causes (`{:#}`) and the status is 1,
/// as upstream's `klog.Error` + `os.Exit(1)`.
pub fn main<A, F, Fut, E>(run: F) -> std::process::ExitCode
where
    A: SidecarArgs,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let args: A = flags::parse();
    flags::print_version_and_exit_if_requested(args.common(), env!("CARGO_PKG_VERSION"));
    if let Err(e) = logging::init(args.logging()) {
        eprintln!("{e}");
        return std::process::ExitCode::from(1);
    }
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
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "{} failed", component_name());
            std::process::ExitCode::from(1)
        }
    }
}

/// `klog.Fatal`: logs `message` and exits with status 255, as upstream does
/// for errors it treats as fatal (an unknown feature gate, say).
pub fn fatal(message: impl Display) -> ! {
    error!("{message}");
    std::process::exit(255)
}

fn component_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| {
            std::path::Path::new(&a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default()
}

/// What a controller sidecar has once it is connected: the driver, its
/// capabilities and the API clients. Fields are public so `main` can move
/// them into its controllers' context.
pub struct Sidecar {
    /// The metrics registry, with `csi_sidecar_operations_seconds` and
    /// `process_*` registered; the sidecar adds its own before
    /// [`serve_and_run`].
    pub registry: Registry,
    /// The driver connection (exits the process when the driver's socket
    /// goes away, as csi-lib-utils' `OnConnectionLoss`).
    pub csi: Connection,
    /// The CSI call metrics (a migration target driver switches on their
    /// `migrated` label).
    pub csi_metrics: CsiMetrics,
    /// GetPluginInfo's name.
    pub driver: String,
    /// GetPluginCapabilities.
    pub plugin: PluginCapabilitySet,
    /// ControllerGetCapabilities (empty when the driver has no controller
    /// service).
    pub controller: ControllerCapabilitySet,
    /// The API server configuration (see [`api_config`]).
    pub kube_config: kube::Config,
    /// The client limited by `--kube-api-qps`/`--kube-api-burst`.
    pub client: kube::Client,
    /// Shares `client`'s budget, for writes built after their token is
    /// taken ([`crate::write`]).
    pub prepaid: Prepaid,
}

impl Sidecar {
    /// Connects to the driver at `--csi-address` (waiting up to
    /// [`CONNECT_TIMEOUT`] for the socket), probes it until it is ready
    /// (each Probe bounded by `timeout`, as `rpc.ProbeForever`), reads its
    /// name and capabilities, and builds the API clients with the
    /// `component` user agent. `master` is `--master` where the sidecar has
    /// it ("" otherwise).
    ///
    /// Errors: [`Error::Csi`] for the connection or an RPC,
    /// [`Error::FlagValidation`] for a bad `--master`, and the client
    /// errors of [`kube_client`].
    pub async fn start(
        common: &CommonArgs,
        master: &str,
        component: &'static str,
        timeout: Duration,
    ) -> Result<Self, Error> {
        Self::start_with_log_cap(common, master, component, timeout, None).await
    }

    /// [`Sidecar::start`], with the logged gRPC responses (`-v=5`) capped
    /// at `max_grpc_log_length` bytes, as csi-lib-utils'
    /// `SetMaxGRPCLogLength` (see [`csi_client::max_log_length`] for the
    /// flag's value).
    ///
    /// Errors: as [`Sidecar::start`].
    pub async fn start_with_log_cap(
        common: &CommonArgs,
        master: &str,
        component: &'static str,
        timeout: Duration,
        max_grpc_log_length: Option<usize>,
    ) -> Result<Self, Error> {
        common.validate()?;
        let mut registry = Registry::default();
        let csi_metrics = CsiMetrics::register(&mut registry, "csi_sidecar");
        process_metrics::register(&mut registry);
        let csi = Connection::connect(ConnectOptions {
            address: common.csi_address.clone(),
            timeout,
            connect_timeout: Some(CONNECT_TIMEOUT),
            on_loss: LossPolicy::Exit,
            metrics: Some(csi_metrics.clone()),
            max_grpc_log_length,
        })
        .await
        .map_err(|source| Error::Csi {
            what: "connecting to the CSI driver".into(),
            source,
        })?;
        let rpc_err = |what: &str| {
            let what = what.to_string();
            move |source| Error::Csi { what, source }
        };
        rpc::probe_forever(&csi, timeout)
            .await
            .map_err(rpc_err("Probe"))?;
        let driver = rpc::driver_name(&csi)
            .await
            .map_err(rpc_err("GetPluginInfo"))?;
        csi.set_driver_name(&driver);
        info!(driver = %driver, "detected CSI driver");
        let plugin = rpc::plugin_capabilities(&csi)
            .await
            .map_err(rpc_err("GetPluginCapabilities"))?;
        let controller = rpc::controller_capabilities(&csi)
            .await
            .map_err(rpc_err("ControllerGetCapabilities"))?;
        let kube_config = api_config(common, master).await?;
        let (client, prepaid) = kube_client::clients_from_config(
            kube_config.clone(),
            common.kube_api_qps,
            common.kube_api_burst,
            component,
        )?;
        Ok(Sidecar {
            registry,
            csi,
            csi_metrics,
            driver,
            plugin,
            controller,
            kube_config,
            client,
            prepaid,
        })
    }
}

/// The API server config as upstream's `BuildConfigFromFlags(--master,
/// --kubeconfig)`: `--master` overrides the kubeconfig's server; `--master`
/// alone talks to that URL without credentials; neither means the
/// kubeconfig (`KUBECONFIG` overrides `--kubeconfig`, as upstream) or, with
/// none, in-cluster.
pub async fn api_config(common: &CommonArgs, master: &str) -> Result<kube::Config, Error> {
    if master.is_empty() {
        return kube_client::load_config(common).await;
    }
    let url: ::http::Uri = master
        .parse()
        .map_err(|_| Error::FlagValidation(format!("--master {master:?} is not a URL")))?;
    if common.kubeconfig_path().is_none() {
        return Ok(kube::Config::new(url));
    }
    let mut config = kube_client::load_config(common).await?;
    config.cluster_url = url;
    Ok(config)
}

/// What [`serve_and_run`] needs besides the controllers.
pub struct Serve<'a> {
    /// Every metric the process serves.
    pub registry: Registry,
    /// For the leader-election client, separate from the controllers' one
    /// as upstream, so their throttle cannot starve Lease renewals.
    pub kube_config: kube::Config,
    /// `--http-endpoint`, `--metrics-address`, `--metrics-path`, the
    /// leader-election flags.
    pub common: &'a CommonArgs,
    /// The user agent prefix; the election client is `<component>-leader-election`.
    pub component: &'static str,
    /// The Lease to hold while running, with `--leader-election`
    /// (see [`leader_config`]).
    pub leader: Option<LeaderConfig>,
}

/// The Lease configuration when `--leader-election` is set: `lease` (the
/// sanitised name upstream derives) in `--leader-election-namespace`, with
/// the flags' timings and labels; `release_on_exit` as the
/// `ReleaseLeaderElectionOnExit` gate says.
pub fn leader_config(
    common: &CommonArgs,
    lease: &str,
    release_on_exit: bool,
) -> Result<Option<LeaderConfig>, Error> {
    if !common.leader_election {
        return Ok(None);
    }
    let mut config = LeaderConfig::from_args(lease, common)?;
    config.release_on_exit = release_on_exit;
    Ok(Some(config))
}

/// Serves `/metrics` (and `/healthz/leader-election` with
/// `--http-endpoint` and leader election) from before the election, as
/// upstream's standbys do, then runs `controllers`: at once, or once this
/// replica holds the Lease. Returns when `controllers` returns (after
/// SIGTERM/SIGINT, which the controllers watch); a lost Lease exits the
/// process with status 1 ("Stopped leading"), as upstream. A standby still
/// waiting for the Lease exits 0 on SIGTERM.
pub async fn serve_and_run<F, Fut>(serve: Serve<'_>, controllers: F) -> Result<(), Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let Serve {
        mut registry,
        kube_config,
        common,
        component,
        leader,
    } = serve;
    let health = leader
        .as_ref()
        .map(LeaderHealth::for_config)
        .unwrap_or_else(|| LeaderHealth::new("", common.leader_election_lease_duration));
    if leader.is_some() {
        health.register_metrics(&mut registry);
    }
    let registry: http::SharedRegistry = Arc::new(Mutex::new(registry));
    if let Some((addr, with_health)) = common.http_address() {
        let listener = http::bind(addr).await?;
        let path = common.metrics_path.clone();
        let leader_health = (with_health && leader.is_some()).then(|| health.clone());
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
    match leader {
        Some(config) => {
            let client = kube_client::client_from_config(
                kube_config,
                common.kube_api_qps,
                common.kube_api_burst,
                &format!("{component}-leader-election"),
            )?;
            leader::run_with_leader_election_or_exit(client, config, health, controllers).await?;
        }
        None => controllers().await,
    }
    info!("shut down");
    Ok(())
}
