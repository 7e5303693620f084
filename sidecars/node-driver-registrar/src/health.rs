//! `/healthz`: is the registration socket there, and does it answer
//! `GetInfo` with our driver's name
//! (node-driver-registrar: cmd/csi-node-driver-registrar/node_register.go
//! `httpServer` and `checkLiveRegistrationSocket`).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_client::error::GoStatus;
use csi_client::pluginregistration::InfoRequest;
use csi_client::pluginregistration::registration_client::RegistrationClient;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sidecar_runtime::plain_http::{self, Body};

/// The body of the 404 answer.
pub const NO_SOCKET: &str = "registration socket does not exist";

/// What `stat` says about the registration socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketState {
    /// A socket is there.
    Socket,
    /// Nothing is there.
    Missing,
    /// Something else is there, or `stat` failed; the text says which.
    Broken(String),
}

/// The answer to a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// 200 `ok`.
    Ok,
    /// 404 [`NO_SOCKET`].
    NoSocket,
    /// 500 with the error text.
    Failed(String),
}

impl Health {
    /// The HTTP status and body upstream answers with.
    pub fn status_and_body(&self) -> (StatusCode, String) {
        match self {
            Health::Ok => (StatusCode::OK, "ok".to_owned()),
            Health::NoSocket => (StatusCode::NOT_FOUND, NO_SOCKET.to_owned()),
            Health::Failed(text) => (StatusCode::INTERNAL_SERVER_ERROR, text.clone()),
        }
    }
}

/// The verdict from the socket's state alone; `None` means "ask it".
pub fn judge_socket(state: &SocketState) -> Option<Health> {
    match state {
        SocketState::Socket => None,
        SocketState::Missing => Some(Health::NoSocket),
        SocketState::Broken(text) => Some(Health::Failed(text.clone())),
    }
}

/// How the self-check's `GetInfo` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfCheck {
    /// The socket could not be dialled in time; the error text.
    ConnectFailed(String),
    /// `GetInfo` failed; the Go-formatted status.
    GetInfoFailed(String),
    /// `GetInfo` answered with this name.
    Answered(String),
}

/// The verdict from the self-check, with upstream's texts.
pub fn judge_self_check(socket: &Path, driver: &str, check: SelfCheck) -> Health {
    match check {
        SelfCheck::ConnectFailed(e) => Health::Failed(format!(
            "error connecting to node-registrar socket {}: {e}",
            socket.display()
        )),
        SelfCheck::GetInfoFailed(e) => Health::Failed(format!(
            "error getting info from node-registrar socket: {e}"
        )),
        SelfCheck::Answered(name) if name == driver => Health::Ok,
        SelfCheck::Answered(name) => Health::Failed(format!("invalid driver name {name}")),
    }
}

/// `stat` of the registration socket.
pub fn socket_state(path: &Path) -> SocketState {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => SocketState::Socket,
        Ok(_) => SocketState::Broken(format!("{} is not a socket", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SocketState::Missing,
        Err(e) => SocketState::Broken(format!("stat {}: {e}", path.display())),
    }
}

/// Dials the registration socket and asks `GetInfo`, the dial and the call
/// each bounded by `timeout` (upstream's dial waits up to 30 s whatever
/// the probe's timeout; a local socket either answers at once or is wedged).
pub async fn self_check(path: &Path, timeout: Duration) -> SelfCheck {
    let address = path.to_string_lossy();
    let channel = match tokio::time::timeout(timeout, csi_client::dial_once(&address)).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return SelfCheck::ConnectFailed(e.to_string()),
        Err(_) => return SelfCheck::ConnectFailed("context deadline exceeded".into()),
    };
    let mut request = tonic::Request::new(InfoRequest {});
    request.set_timeout(timeout);
    let mut client = RegistrationClient::new(channel);
    let call = client.get_info(request);
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(info)) => SelfCheck::Answered(info.into_inner().name),
        Ok(Err(status)) => SelfCheck::GetInfoFailed(GoStatus(&status).to_string()),
        Err(_) => SelfCheck::GetInfoFailed(
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded".into(),
        ),
    }
}

/// Runs the whole check.
pub async fn check(path: &Path, driver: &str, timeout: Duration) -> Health {
    if let Some(verdict) = judge_socket(&socket_state(path)) {
        return verdict;
    }
    judge_self_check(path, driver, self_check(path, timeout).await)
}

/// The HTTP handler: `/healthz` (any method) runs [`check`]; every other
/// path is Go's 404. Failures are logged at error, successes at V(5).
pub fn handler(
    path: PathBuf,
    driver: String,
    timeout: Duration,
) -> impl Fn(Request<Incoming>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    let shared = Arc::new((path, driver));
    move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        Box::pin(async move {
            if request.uri().path() != "/healthz" {
                return plain_http::not_found();
            }
            let (path, driver) = &*shared;
            let health = check(path, driver, timeout).await;
            match &health {
                Health::Ok => tracing::trace!("health check succeeded"),
                Health::NoSocket => {
                    tracing::error!("health check failed, registration socket does not exist")
                }
                Health::Failed(e) => tracing::error!(error = %e, "health check failed"),
            }
            let (status, body) = health.status_and_body();
            plain_http::text(status, body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_state_decides_first() {
        assert_eq!(judge_socket(&SocketState::Socket), None);
        assert_eq!(judge_socket(&SocketState::Missing), Some(Health::NoSocket));
        assert_eq!(
            judge_socket(&SocketState::Broken("x is not a socket".into())),
            Some(Health::Failed("x is not a socket".into()))
        );
        assert_eq!(
            Health::NoSocket.status_and_body(),
            (StatusCode::NOT_FOUND, NO_SOCKET.to_owned())
        );
    }

    #[test]
    fn self_check_texts() {
        let p = Path::new("/registration/d-reg.sock");
        assert_eq!(
            judge_self_check(p, "d", SelfCheck::Answered("d".into())),
            Health::Ok
        );
        assert_eq!(
            judge_self_check(p, "d", SelfCheck::Answered("e".into())).status_and_body(),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid driver name e".into()
            )
        );
        assert_eq!(
            judge_self_check(p, "d", SelfCheck::GetInfoFailed("rpc error: x".into())),
            Health::Failed("error getting info from node-registrar socket: rpc error: x".into())
        );
        assert_eq!(
            judge_self_check(p, "d", SelfCheck::ConnectFailed("refused".into())),
            Health::Failed(
                "error connecting to node-registrar socket /registration/d-reg.sock: refused"
                    .into()
            )
        );
        assert_eq!(Health::Ok.status_and_body(), (StatusCode::OK, "ok".into()));
    }

    #[tokio::test]
    async fn stat_cases() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("m.sock");
        assert_eq!(socket_state(&missing), SocketState::Missing);
        let file = dir.path().join("f.sock");
        std::fs::write(&file, b"").unwrap();
        assert!(
            matches!(socket_state(&file), SocketState::Broken(t) if t.contains("not a socket"))
        );
        let _l = tokio::net::UnixListener::bind(&missing).unwrap();
        assert_eq!(socket_state(&missing), SocketState::Socket);
    }
}
