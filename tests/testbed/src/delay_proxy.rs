//! A unix-socket proxy between a sidecar and the CSI driver that passes
//! requests through at once and holds every byte of the driver's answers
//! back for a fixed delay: the driver acts (creates the volume) while the
//! sidecar is still waiting, which is what a crash test needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// A running proxy; dropping it stops accepting and closes its connections.
#[derive(Debug)]
pub struct DelayProxy {
    path: PathBuf,
    task: JoinHandle<()>,
    delay_ms: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Listens on `listen` and forwards each connection to the unix socket
    /// `target`, delaying everything `target` sends back by `delay` (see
    /// [`DelayProxy::set_delay`]). Runs on the caller's tokio runtime.
    ///
    /// Errors: [`Error::Io`] if `listen` cannot be bound.
    pub fn start(listen: &Path, target: &Path, delay: Duration) -> Result<DelayProxy> {
        let _ = std::fs::remove_file(listen);
        let listener = UnixListener::bind(listen).map_err(|e| Error::Io {
            what: format!("bind delay proxy on {}", listen.display()),
            source: e,
        })?;
        let target = target.to_path_buf();
        let delay_ms = Arc::new(AtomicU64::new(millis(delay)));
        let shared = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let delay = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = UnixStream::connect(&target).await {
                        relay(client, server, delay).await;
                    }
                });
            }
        });
        Ok(DelayProxy {
            path: listen.to_path_buf(),
            task,
            delay_ms,
        })
    }

    /// Changes the delay for answers that arrive from now on, on every
    /// connection (e.g. zero while a sidecar starts, then long).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(millis(delay), Ordering::Relaxed);
    }

    /// The socket sidecars should dial.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn relay(client: UnixStream, server: UnixStream, delay_ms: Arc<AtomicU64>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
        let _ = server_wr.shutdown().await;
    });
    // Each chunk is stamped when it arrives and released `delay` later, so
    // concurrent answers are each delayed once, not one after another.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match server_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if client_wr.write_all(&chunk).await.is_err() {
            break;
        }
    }
    upstream.abort();
    reader.abort();
}
