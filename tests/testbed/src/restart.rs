//! [`Testbed::restart_apiserver`]: kube-apiserver stopped and started again
//! with the same flags, port, certificates and etcd, as a control-plane
//! upgrade or a crash-looping API server would do to the sidecars.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::control_plane;
use crate::error::{Error, Result};
use crate::process::{Managed, STOP_GRACE};
use crate::testbed::Testbed;

/// The local kube-apiserver process and how it was started.
#[derive(Debug)]
pub(crate) struct ApiServer {
    process: Mutex<Arc<Managed>>,
    args: Vec<String>,
    ready_timeout: Duration,
}

impl ApiServer {
    pub(crate) fn new(process: Arc<Managed>, args: Vec<String>, ready_timeout: Duration) -> Self {
        ApiServer {
            process: Mutex::new(process),
            args,
            ready_timeout,
        }
    }

    fn current(&self) -> Arc<Managed> {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Testbed {
    /// Stops the local kube-apiserver (SIGTERM, up to [`STOP_GRACE`], then
    /// SIGKILL), starts it again with the same flags (so the same port,
    /// certificates, etcd and extra flags such as an audit log, which it
    /// appends to) and waits for `/readyz`. etcd and kube-controller-manager
    /// keep running; clients see refused connections meanwhile. The log
    /// `kube-apiserver.log` gets a second start header. Returns the time the
    /// API was away (stop to ready).
    ///
    /// Errors: [`Error::Io`] (kind `Unsupported`) in external mode, whose
    /// API server is not ours to restart; [`Error::Start`],
    /// [`Error::Exited`] or [`Error::ReadinessTimeout`] if it does not come
    /// back.
    pub async fn restart_apiserver(&self) -> Result<Duration> {
        let Some(api) = self.local_apiserver() else {
            return Err(Error::io(
                "restart kube-apiserver",
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "external mode: the $KUBECONFIG cluster's API server is not the test bed's",
                ),
            ));
        };
        let t0 = Instant::now();
        let old = api.current();
        tokio::task::spawn_blocking(move || old.terminate(STOP_GRACE))
            .await
            .map_err(|e| Error::io("stop kube-apiserver", std::io::Error::other(e)))?;
        let new = Managed::spawn(
            "kube-apiserver",
            &self.bin("kube-apiserver"),
            api.args.iter(),
            &[],
            &self.logs_dir().join("kube-apiserver.log"),
        )?;
        self.inner.track(new.clone());
        *api.process.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        control_plane::wait_ready(
            "kube-apiserver /readyz after restart",
            &new,
            api.ready_timeout,
            || control_plane::get_ok(&self.client, "/readyz"),
        )
        .await?;
        Ok(t0.elapsed())
    }
}
