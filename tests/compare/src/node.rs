//! `compare-node`: start-up time and memory of the node sidecars,
//! csi-node-driver-registrar and livenessprobe, measured on this machine
//! next to an in-process fake CSI driver (Identity and NodeGetInfo answered
//! at once), with this program playing the kubelet. Prints figures; asserts
//! nothing.
//!
//! * start to serving: from `spawn` until the registrar's socket answers
//!   `GetInfo`, or livenessprobe's `/healthz` answers 200 (polled every
//!   millisecond);
//! * idle RSS: `VmRSS` after the kubelet's calls (registrar: GetInfo,
//!   NotifyRegistrationStatus, 20 × /healthz; livenessprobe: 20 × /healthz
//!   and a metrics scrape) and 2 s of quiet; peak is `VmHWM`.
//!
//! Upstream's Go binaries are measured the same way when given
//! (`--upstream-registrar`, `--upstream-livenessprobe`); their modules are
//! not served by the module proxy these machines reach.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use csi_client::csi::v1 as csi;
use csi_client::csi::v1::identity_server::{Identity, IdentityServer};
use csi_client::csi::v1::node_server::{Node, NodeServer};
use csi_client::pluginregistration::registration_client::RegistrationClient;
use csi_client::pluginregistration::{InfoRequest, RegistrationStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

#[derive(Parser, Debug)]
#[command(about = "Start-up time and idle memory of the node sidecars")]
struct Args {
    /// Our csi-node-driver-registrar (a release build).
    #[arg(long)]
    registrar: PathBuf,
    /// Our livenessprobe (a release build).
    #[arg(long)]
    livenessprobe: PathBuf,
    /// Upstream's csi-node-driver-registrar, if one could be built.
    #[arg(long)]
    upstream_registrar: Option<PathBuf>,
    /// Upstream's livenessprobe, if one could be built.
    #[arg(long)]
    upstream_livenessprobe: Option<PathBuf>,
    /// Start-ups measured per binary.
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

const DRIVER: &str = "fake.csi.driver.io";

#[derive(Clone, Copy)]
struct Fake;

#[tonic::async_trait]
impl Identity for Fake {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: DRIVER.into(),
            vendor_version: "1".into(),
            ..Default::default()
        }))
    }
    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl Node for Fake {
    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: "node-1".into(),
            ..Default::default()
        }))
    }
}

/// A child killed by its pid when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

async fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Registrar,
    Livenessprobe,
}

struct Run {
    start: Duration,
    rss_kib: u64,
    hwm_kib: u64,
}

async fn get_info(socket: &Path) -> bool {
    let Ok(channel) = csi_client::dial_once(&socket.to_string_lossy()).await else {
        return false;
    };
    RegistrationClient::new(channel)
        .get_info(InfoRequest {})
        .await
        .is_ok()
}

async fn one_run(
    kind: Kind,
    bin: &Path,
    dir: &Path,
    csi: &Path,
    idle: bool,
) -> anyhow::Result<Run> {
    let port = free_port();
    let registry = dir.join("registry");
    std::fs::create_dir_all(&registry)?;
    let reg_socket = registry.join(format!("{DRIVER}-reg.sock"));
    let _ = std::fs::remove_file(&reg_socket);
    let args: Vec<String> = match kind {
        Kind::Registrar => vec![
            format!("--csi-address={}", csi.display()),
            "--kubelet-registration-path=/var/lib/kubelet/plugins/fake/csi.sock".into(),
            format!("--plugin-registration-path={}", registry.display()),
            format!("--http-endpoint=127.0.0.1:{port}"),
        ],
        Kind::Livenessprobe => vec![
            format!("--csi-address={}", csi.display()),
            format!("--http-endpoint=127.0.0.1:{port}"),
        ],
    };
    let t0 = Instant::now();
    let child = Proc(
        Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?,
    );
    let pid = child.0.id();
    loop {
        let serving = match kind {
            Kind::Registrar => reg_socket.exists() && get_info(&reg_socket).await,
            Kind::Livenessprobe => get(port, "/healthz").await == Some(200),
        };
        if serving {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("{} did not serve within 30 s", bin.display());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = t0.elapsed();
    if !idle {
        return Ok(Run {
            start,
            rss_kib: 0,
            hwm_kib: 0,
        });
    }
    if kind == Kind::Registrar {
        let channel = csi_client::dial_once(&reg_socket.to_string_lossy()).await?;
        RegistrationClient::new(channel)
            .notify_registration_status(RegistrationStatus {
                plugin_registered: true,
                error: String::new(),
            })
            .await?;
    } else {
        get(port, "/metrics").await;
    }
    for _ in 0..20 {
        get(port, "/healthz").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = Run {
        start,
        rss_kib: kib(pid, "VmRSS:")?,
        hwm_kib: kib(pid, "VmHWM:")?,
    };
    drop(child);
    Ok(run)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(
    label: &str,
    kind: Kind,
    bin: &Path,
    dir: &Path,
    csi: &Path,
    runs: usize,
) -> anyhow::Result<String> {
    let mut starts = Vec::new();
    for _ in 0..runs {
        starts.push(one_run(kind, bin, dir, csi, false).await?.start);
    }
    let idle = one_run(kind, bin, dir, csi, true).await?;
    starts.sort();
    let size = std::fs::metadata(bin)?.len();
    Ok(format!(
        "| {label} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} |",
        ms(starts[starts.len() / 2]),
        ms(starts[0]),
        ms(starts[starts.len() - 1]),
        idle.rss_kib as f64 / 1024.0,
        idle.hwm_kib as f64 / 1024.0,
        size as f64 / 1024.0 / 1024.0,
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("compare-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csi = dir.join("csi.sock");
    let listener = tokio::net::UnixListener::bind(&csi)?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(Fake))
            .add_service(NodeServer::new(Fake))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let runs = args.runs.max(1);
    let mut rows = Vec::new();
    let bins: Vec<(&str, Kind, Option<&PathBuf>)> = vec![
        (
            "csi-node-driver-registrar (ours)",
            Kind::Registrar,
            Some(&args.registrar),
        ),
        (
            "csi-node-driver-registrar (upstream)",
            Kind::Registrar,
            args.upstream_registrar.as_ref(),
        ),
        (
            "livenessprobe (ours)",
            Kind::Livenessprobe,
            Some(&args.livenessprobe),
        ),
        (
            "livenessprobe (upstream)",
            Kind::Livenessprobe,
            args.upstream_livenessprobe.as_ref(),
        ),
    ];
    for (label, kind, bin) in bins {
        match bin {
            Some(bin) => rows.push(measure(label, kind, bin, &dir, &csi, runs).await?),
            None => rows.push(format!("| {label} | not built | | | | |")),
        }
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    println!("start to serving: {runs} runs each; RSS after the kubelet's calls and 2 s idle\n");
    println!(
        "| binary | start to serving, median (ms) | min / max (ms) | idle RSS (MiB) | peak RSS (MiB) | binary size (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
