//! Process termination signals.

/// Resolves when the process receives SIGTERM or SIGINT, the two signals the
/// upstream sidecars treat as "shut down" (kubelet sends SIGTERM; Ctrl-C sends SIGINT).
///
/// If a signal handler cannot be installed (which only happens when the
/// process is not running inside a Tokio runtime with signal support), the
/// corresponding branch never resolves rather than resolving spuriously,
/// so a sidecar does not shut down by mistake; the failure is logged.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot install SIGTERM handler");
                    std::future::pending::<()>().await;
                }
            }
        };
        let int = async {
            match signal(SignalKind::interrupt()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot install SIGINT handler");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = term => tracing::info!("received SIGTERM"),
            () = int => tracing::info!("received SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot install Ctrl-C handler");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn does_not_resolve_without_a_signal() {
        let r = tokio::time::timeout(Duration::from_millis(50), super::signal()).await;
        assert!(r.is_err());
    }
}
