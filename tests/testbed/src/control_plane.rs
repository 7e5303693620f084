//! The local control plane: etcd, kube-apiserver and kube-controller-manager
//! as child processes on loopback, with readiness checks.
//!
//! No scheduler runs, and no kubelet unless the test bed asks for the real
//! node (`TestbedOptions::with_node`): control-plane-only tests create Nodes
//! and CSINodes themselves, set `volume.kubernetes.io/selected-node` by hand
//! for WaitForFirstConsumer, and force-delete pods.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::logs::tail_file;
use crate::pki::Pki;
use crate::process::Managed;

/// Lines of a process log quoted in readiness errors.
const ERROR_TAIL_LINES: usize = 40;

/// The kube-controller-manager controllers the test bed runs: PV binding
/// (sets `volume.kubernetes.io/storage-provisioner` on claims), attach/detach
/// (VolumeAttachments for pods on Nodes), expansion, the PVC/PV protection
/// finalizers, garbage collection and namespace deletion.
pub const CONTROLLERS: &str = "persistentvolume-binder-controller,\
persistentvolume-attach-detach-controller,\
persistentvolume-expander-controller,\
persistentvolumeclaim-protection-controller,\
persistentvolume-protection-controller,\
garbage-collector-controller,\
namespace-controller";

/// The controllers [`TestbedOptions::workloads`](crate::TestbedOptions)
/// adds: ServiceAccounts and the root CA ConfigMap in every namespace (a
/// pod's token volume needs both), Deployments, ReplicaSets, DaemonSets and
/// PodDisruptionBudgets.
pub const WORKLOAD_CONTROLLERS: &str = "serviceaccount-controller,\
root-ca-certificate-publisher-controller,\
deployment-controller,\
replicaset-controller,\
daemonset-controller,\
disruption-controller";

/// Arguments of kube-scheduler, running as admin, no leader election, no
/// serving port.
pub(crate) fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    let kc = kubeconfig.display();
    vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--authentication-skip-lookup=true".into(),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        "--v=2".into(),
    ]
}

/// Ports chosen for one control plane, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

impl Ports {
    /// Picks four free ports by binding 127.0.0.1:0 four times at once (so
    /// they differ) and releasing them.
    pub(crate) fn pick() -> Result<Ports> {
        let listeners = (0..4)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::io("bind 127.0.0.1:0 for a free port", e))?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::io("local_addr of a free port", e))?;
        Ok(Ports {
            etcd_client: ports[0],
            etcd_peer: ports[1],
            apiserver: ports[2],
            controller_manager: ports[3],
        })
    }
}

/// Arguments of etcd: single member, data in `data_dir`, no fsync.
pub(crate) fn etcd_args(ports: &Ports, data_dir: &Path) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=csitb".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=csitb={peer}"),
        "--unsafe-no-fsync=true".into(),
        "--quota-backend-bytes=8589934592".into(),
        "--log-level=warn".into(),
    ]
}

/// Arguments of kube-apiserver: RBAC, client certificates from the test
/// bed's CA, service-account tokens signed with the test bed's key.
pub(crate) fn apiserver_args(ports: &Ports, pki: &Pki, cert_dir: &Path) -> Vec<String> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.apiserver),
        format!("--cert-dir={}", cert_dir.display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        format!(
            "--service-account-issuer=https://127.0.0.1:{}",
            ports.apiserver
        ),
        format!("--service-account-key-file={}", pki.sa_pub.display()),
        format!(
            "--service-account-signing-key-file={}",
            pki.sa_key.display()
        ),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--authorization-mode=RBAC".into(),
        "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition".into(),
        "--allow-privileged=true".into(),
        "--endpoint-reconciler-type=none".into(),
        "--v=1".into(),
    ]
}

/// Arguments of kube-controller-manager, running as admin, no leader
/// election, only [`CONTROLLERS`], serving `/healthz` over HTTPS with the
/// test bed's serving certificate.
pub(crate) fn controller_manager_args(
    ports: &Ports,
    pki: &Pki,
    kubeconfig: &Path,
    cert_dir: &Path,
) -> Vec<String> {
    let kc = kubeconfig.display();
    vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        // Trust our CA directly instead of watching the
        // extension-apiserver-authentication ConfigMap, whose missing
        // request-header CA otherwise fills the log with errors.
        "--authentication-skip-lookup=true".into(),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.controller_manager),
        format!("--cert-dir={}", cert_dir.display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=false".into(),
        format!("--controllers={CONTROLLERS}"),
        "--pvclaimbinder-sync-period=2s".into(),
        "--kube-api-qps=200".into(),
        "--kube-api-burst=400".into(),
        "--v=2".into(),
    ]
}

/// Polls `probe` every 200 ms until it returns `Ok(true)`, `timeout`
/// passes, or `process` exits.
///
/// Errors: [`Error::Exited`] if the process died,
/// [`Error::ReadinessTimeout`] with the last probe error and the log tail.
pub(crate) async fn wait_ready<F, Fut>(
    what: &str,
    process: &Arc<Managed>,
    timeout: Duration,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<bool, String>>,
{
    let start = Instant::now();
    loop {
        if let Some(status) = process.exit_status() {
            return Err(Error::Exited {
                process: process.name().to_string(),
                status: status.to_string(),
                log_tail: tail_file(process.log_path(), ERROR_TAIL_LINES),
            });
        }
        let last_error = match tokio::time::timeout(Duration::from_secs(5), probe()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => "not ready yet".to_string(),
            Ok(Err(e)) => e,
            Err(_) => "probe timed out after 5s".to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(Error::ReadinessTimeout {
                what: what.to_string(),
                waited: start.elapsed(),
                last_error,
                log_tail: tail_file(process.log_path(), ERROR_TAIL_LINES),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One plain-HTTP/1.0 GET to `127.0.0.1:<port><path>`; returns the status
/// code and body.
pub(crate) async fn http_get(port: u16, path: &str) -> std::result::Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    parse_http_response(&String::from_utf8_lossy(&buf))
}

/// Splits a raw HTTP/1.x response into status code and body.
fn parse_http_response(text: &str) -> std::result::Result<(u16, String), String> {
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Probe for etcd: `GET /health` answers 200 with `"health":"true"`.
pub(crate) async fn etcd_healthy(port: u16) -> std::result::Result<bool, String> {
    let (code, body) = http_get(port, "/health").await?;
    if code == 200 && body.replace(' ', "").contains("\"health\":\"true\"") {
        Ok(true)
    } else {
        Err(format!("GET /health: {code} {}", body.trim()))
    }
}

/// Probe for kube-apiserver and kube-controller-manager: `GET <path>` through
/// `client` answers `ok`.
pub(crate) async fn get_ok(client: &kube::Client, path: &str) -> std::result::Result<bool, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(req).await {
        Ok(text) if text.trim() == "ok" => Ok(true),
        Ok(text) => Err(format!("GET {path}: {}", text.trim())),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

/// A client for the HTTPS endpoint on `127.0.0.1:<port>` that trusts only
/// `ca_der` and sends no credentials (for kube-controller-manager's
/// anonymous `/healthz`).
pub(crate) fn anonymous_client(port: u16, ca_der: &[u8]) -> Result<kube::Client> {
    let url = format!("https://127.0.0.1:{port}")
        .parse::<http::Uri>()
        .map_err(|e| Error::Kubeconfig(format!("url for port {port}: {e}")))?;
    let mut cfg = kube::Config::new(url);
    cfg.root_cert = Some(vec![ca_der.to_vec()]);
    kube::Client::try_from(cfg)
        .map_err(|e| Error::Kubeconfig(format!("client for 127.0.0.1:{port}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_response() {
        let (code, body) =
            parse_http_response("HTTP/1.0 200 OK\r\nA: b\r\n\r\n{\"health\":\"true\"}").unwrap();
        assert_eq!(code, 200);
        assert_eq!(body, "{\"health\":\"true\"}");
        assert!(parse_http_response("garbage").is_err());
    }

    #[test]
    fn picks_distinct_ports() {
        let p = Ports::pick().unwrap();
        let mut all = [
            p.etcd_client,
            p.etcd_peer,
            p.apiserver,
            p.controller_manager,
        ];
        all.sort();
        assert!(all.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn flags_carry_ports() {
        let p = Ports {
            etcd_client: 1,
            etcd_peer: 2,
            apiserver: 3,
            controller_manager: 4,
        };
        let a = etcd_args(&p, Path::new("/d"));
        assert!(a.contains(&"--initial-cluster=csitb=http://127.0.0.1:2".to_string()));
        assert!(CONTROLLERS.contains("namespace-controller") && !CONTROLLERS.contains(' '));
    }
}
