//! Connection-loss detection and the dialer that feeds it.
//!
//! A loss is noticed in two ways, whichever comes first:
//! 1. Proactively: every dialled socket is wrapped so that the end of the
//!    *current* connection (end-of-file or read error, a shutdown after the
//!    driver's GOAWAY, or hyper dropping the socket) reports a loss at once.
//!    hyper's HTTP/2 task always keeps a read pending, so a driver that exits
//!    or closes the socket is seen within milliseconds, even with no RPC in
//!    flight. Nothing on our side closes a healthy connection (no idle
//!    timeout, no keepalive), except dropping the last [`Connection`], which
//!    disarms detection first.
//! 2. As in csi-lib-utils: tonic re-dials only after the established
//!    connection broke, so any dial after the first successful connect is a
//!    loss too (covers a socket that died before detection was armed).
//!
//! The policy runs once per loss; a later successful re-dial re-arms it.
//!
//! [`Connection`]: crate::Connection

use crate::address::Target;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Message logged and written to the termination log by [`LossPolicy::Exit`].
pub const EXIT_MESSAGE: &str = "Lost connection to CSI driver, exiting";

/// Where Kubernetes reads a container's termination message from.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What to do when a connection that was once established breaks.
#[derive(Clone, Default)]
pub enum LossPolicy {
    /// Log `Lost connection` once and let the next RPC re-dial; RPCs fail
    /// with `Unavailable` while the driver is away (csi-lib-utils default,
    /// used by node-driver-registrar).
    #[default]
    Reconnect,
    /// Log `Lost connection to CSI driver, exiting`, write it to
    /// `/dev/termination-log` when that file exists and is writable, and exit
    /// the process with status 1
    /// (csi-lib-utils `ExitOnConnectionLoss`, used by the controller sidecars).
    Exit,
    /// Call this function once per loss, then behave like `Reconnect`. It
    /// runs on the connection's I/O task, so it must not block.
    Callback(Arc<dyn Fn() + Send + Sync>),
}

impl fmt::Debug for LossPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossPolicy::Reconnect => "Reconnect",
            LossPolicy::Exit => "Exit",
            LossPolicy::Callback(_) => "Callback",
        })
    }
}

#[derive(Debug, Default)]
struct LossState {
    /// Set once the initial connect finished; losses before that are retries.
    armed: bool,
    /// Id of the most recently dialled socket, the one the channel uses.
    current: u64,
    lost: bool,
}

/// Shared per-connection loss bookkeeping.
pub(crate) struct LossWatch {
    address: String,
    policy: LossPolicy,
    state: Mutex<LossState>,
}

impl LossWatch {
    pub(crate) fn new(address: String, policy: LossPolicy) -> Self {
        LossWatch {
            address,
            policy,
            state: Mutex::new(LossState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, LossState> {
        // The state is a few flags; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn arm(&self) {
        self.state().armed = true;
    }

    /// Called when the last `Connection` handle goes away: closing our own
    /// socket is not a loss.
    pub(crate) fn disarm(&self) {
        self.state().armed = false;
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.state().lost
    }

    fn before_dial(&self) {
        let fire = {
            let mut s = self.state();
            let fire = s.armed && !s.lost;
            s.lost |= fire;
            fire
        };
        if fire {
            self.fire();
        }
    }

    fn dialled(&self) -> u64 {
        let mut s = self.state();
        s.current += 1;
        s.lost = false;
        s.current
    }

    fn stream_closed(&self, id: u64) {
        let fire = {
            let mut s = self.state();
            let fire = s.armed && s.current == id && !s.lost;
            s.lost |= fire;
            fire
        };
        if fire {
            self.fire();
        }
    }

    fn fire(&self) {
        tracing::error!(address = %self.address, "Lost connection");
        match &self.policy {
            LossPolicy::Reconnect => {}
            LossPolicy::Exit => exit_on_connection_loss(),
            LossPolicy::Callback(f) => f(),
        }
    }
}

fn exit_on_connection_loss() -> ! {
    tracing::error!("{EXIT_MESSAGE}");
    // kubelet bind-mounts the file into containers; outside one, do not
    // create it in /dev.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(TERMINATION_LOG)
        .and_then(|mut file| std::io::Write::write_all(&mut file, EXIT_MESSAGE.as_bytes()));
    if let Err(err) = written {
        tracing::debug!(%err, path = TERMINATION_LOG, "cannot write termination message");
    }
    std::process::exit(1)
}

/// tower `Service<Uri>` that dials the parsed target, ignoring the URI tonic
/// passes (it only carries the `:authority`).
#[derive(Clone)]
pub(crate) struct Dialer {
    pub(crate) target: Arc<Target>,
    pub(crate) loss: Arc<LossWatch>,
}

type DialFuture = Pin<Box<dyn Future<Output = io::Result<TokioIo<WatchedStream>>> + Send>>;

impl tower::Service<http::Uri> for Dialer {
    type Response = TokioIo<WatchedStream>;
    type Error = io::Error;
    type Future = DialFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> DialFuture {
        let target = Arc::clone(&self.target);
        let loss = Arc::clone(&self.loss);
        Box::pin(async move {
            loss.before_dial();
            let inner = match &*target {
                Target::Unix(path) => Socket::Unix(UnixStream::connect(path).await?),
                Target::Tcp(host_port) => {
                    let stream = TcpStream::connect(host_port.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Socket::Tcp(stream)
                }
            };
            let id = loss.dialled();
            Ok(TokioIo::new(WatchedStream {
                inner,
                id,
                loss,
                ended: false,
            }))
        })
    }
}

enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A dialled socket that reports its own end to the [`LossWatch`], which
/// decides whether it counts (armed, and still the current socket).
pub(crate) struct WatchedStream {
    inner: Socket,
    id: u64,
    loss: Arc<LossWatch>,
    ended: bool,
}

impl WatchedStream {
    fn ended(&mut self) {
        if !self.ended {
            self.ended = true;
            self.loss.stream_closed(self.id);
        }
    }
}

impl Drop for WatchedStream {
    fn drop(&mut self) {
        self.ended();
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let result = match &mut this.inner {
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        };
        match &result {
            Poll::Ready(Ok(())) if wanted && buf.filled().len() == before => this.ended(),
            Poll::Ready(Err(_)) => this.ended(),
            _ => {}
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.ended();
        match &mut this.inner {
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
