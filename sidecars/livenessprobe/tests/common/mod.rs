//! What the node sidecars' tests share: a fake CSI driver on a Unix
//! socket (Identity and NodeGetInfo, with a switchable Probe answer), a
//! plain HTTP GET and a free port. node-driver-registrar's tests include
//! this file too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi_client::csi::v1 as csi;
use csi_client::csi::v1::identity_server::{Identity, IdentityServer};
use csi_client::csi::v1::node_server::{Node, NodeServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// The fake driver's name.
pub const DRIVER: &str = "fake.csi.driver.io";

/// How the fake driver answers Probe.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeMode {
    /// `ready: true`.
    Ready,
    /// `ready: false`.
    NotReady,
    /// No `ready` field.
    Unset,
    /// A gRPC error.
    Fail(tonic::Code, &'static str),
    /// Answers ready after this long.
    Slow(Duration),
}

#[derive(Clone)]
pub struct FakeDriver {
    pub name: Arc<Mutex<String>>,
    pub node_id: Arc<Mutex<String>>,
    pub probe: Arc<Mutex<ProbeMode>>,
}

impl Default for FakeDriver {
    fn default() -> Self {
        FakeDriver {
            name: Arc::new(Mutex::new(DRIVER.into())),
            node_id: Arc::new(Mutex::new("node-1".into())),
            probe: Arc::new(Mutex::new(ProbeMode::Ready)),
        }
    }
}

#[tonic::async_trait]
impl Identity for FakeDriver {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: self.name.lock().unwrap().clone(),
            vendor_version: "v0.0.1".into(),
            ..Default::default()
        }))
    }

    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        let mode = self.probe.lock().unwrap().clone();
        let ready = match mode {
            ProbeMode::Ready => Some(true),
            ProbeMode::NotReady => Some(false),
            ProbeMode::Unset => None,
            ProbeMode::Fail(code, text) => return Err(Status::new(code, text)),
            ProbeMode::Slow(d) => {
                tokio::time::sleep(d).await;
                Some(true)
            }
        };
        Ok(Response::new(csi::ProbeResponse { ready }))
    }
}

#[tonic::async_trait]
impl Node for FakeDriver {
    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.node_id.lock().unwrap().clone(),
            ..Default::default()
        }))
    }
}

/// A fake driver served on `path` until dropped, on a thread and runtime
/// of its own: stopping it drops every connection at once, as a dying
/// driver process does.
pub struct Served {
    pub driver: FakeDriver,
    pub path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serves `driver` on `path` (removing a leftover socket first).
    pub fn start(driver: FakeDriver, path: &Path) -> Served {
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let served = driver.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = UnixListener::from_std(listener).unwrap();
                let server = tonic::transport::Server::builder()
                    .add_service(IdentityServer::new(served.clone()))
                    .add_service(NodeServer::new(served))
                    .serve_with_incoming(UnixListenerStream::new(listener));
                tokio::select! {
                    _ = server => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops the connection tasks too.
            drop(runtime);
        });
        Served {
            driver,
            path: path.to_owned(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops serving and removes the socket, as a dying driver's restart does.
    pub fn stop(mut self) -> FakeDriver {
        self.halt();
        let _ = std::fs::remove_file(&self.path);
        self.driver.clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: status, lower-cased head, body; `None`
/// when nothing listens.
pub async fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    Some((
        head[9..12].parse().ok()?,
        head.to_lowercase(),
        body.to_owned(),
    ))
}

/// Polls `f` every 50 ms until it returns `Some` or `limit` passes.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (by its pid) when dropped, its stderr kept in a
/// file for failure messages.
pub struct Child {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Child {
    pub fn spawn(bin: &str, args: &[String], log: PathBuf) -> Child {
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Child { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status within `limit`, or `None` if still running.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
