//! Restarts sidecars that exit, as kubelet does for a container with
//! `restartPolicy: Always` (with a fixed delay instead of kubelet's
//! exponential back-off from 10 s): both implementations exit on purpose
//! when they lose the CSI driver, and a killed one must come back.

use std::time::{Duration, Instant};

use testbed::ProcessHandle;

use crate::bed::Bed;

/// How long a replica stays down before it is started again.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// One sidecar replica and how to start it again.
pub struct Replica {
    /// Log name.
    pub name: String,
    /// Host name (leader-election identity), if it has its own.
    pub hostname: Option<String>,
    args: Vec<String>,
    /// The running process (or the exited one, until restarted).
    pub process: ProcessHandle,
    down_since: Option<Instant>,
    /// Restarts so far.
    pub restarts: usize,
}

/// The sidecar replicas of one run.
#[derive(Default)]
pub struct Supervisor {
    /// Every replica, in start order.
    pub replicas: Vec<Replica>,
}

impl Supervisor {
    /// Starts a replica and supervises it.
    pub fn start(
        &mut self,
        bed: &Bed,
        name: &str,
        args: Vec<String>,
        hostname: Option<&str>,
    ) -> anyhow::Result<()> {
        let process = bed.spawn(name, &args, hostname)?;
        self.replicas.push(Replica {
            name: name.into(),
            hostname: hostname.map(str::to_string),
            args,
            process,
            down_since: None,
            restarts: 0,
        });
        Ok(())
    }

    /// Restarts every replica that has been down for [`RESTART_DELAY`];
    /// call it often (every wait loop does).
    pub fn tick(&mut self, bed: &Bed) -> anyhow::Result<()> {
        for r in &mut self.replicas {
            if r.process.is_running() {
                continue;
            }
            let since = *r.down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= RESTART_DELAY {
                eprintln!(
                    "compare: {} exited ({}); restarting it",
                    r.name,
                    r.process
                        .exit_status()
                        .map_or("?".into(), |s| s.to_string())
                );
                r.process = bed.spawn(&r.name, &r.args, r.hostname.as_deref())?;
                r.down_since = None;
                r.restarts += 1;
            }
        }
        Ok(())
    }

    /// Restarts of all replicas together.
    pub fn restarts(&self) -> usize {
        self.replicas.iter().map(|r| r.restarts).sum()
    }

    /// The last log lines of every replica.
    pub fn log_tails(&self, lines: usize) -> String {
        self.replicas
            .iter()
            .map(|r| format!("--- {}:\n{}", r.name, r.process.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
