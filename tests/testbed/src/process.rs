//! Child processes of the test bed: spawned with their output in a log file,
//! stopped with SIGTERM then SIGKILL, never looked up by name.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::logs::tail_file;

/// How long [`ProcessHandle`]'s drop (and the test bed's) waits after SIGTERM
/// before sending SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// One child process and where its output goes. Shared between the
/// [`ProcessHandle`] a test holds and the test bed's own list, so whichever
/// is dropped first stops it.
#[derive(Debug)]
pub(crate) struct Managed {
    name: String,
    pid: u32,
    log_path: PathBuf,
    child: Mutex<Child>,
}

impl Managed {
    /// Starts `program` with `args` and extra `envs` (on top of the inherited
    /// environment), stdin from /dev/null, stdout and stderr appended to
    /// `log_path` after a header line naming the command.
    pub(crate) fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        envs: &[(&str, &str)],
        log_path: &Path,
    ) -> Result<Arc<Managed>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io(format!("open log {}", log_path.display()), e))?;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let header = format!(
            "=== csi-testbed: starting {name} at unix {:.3}: {} {}\n",
            since_epoch.as_secs_f64(),
            program.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        log.write_all(header.as_bytes())
            .map_err(|e| Error::io(format!("write log {}", log_path.display()), e))?;
        let stderr = log
            .try_clone()
            .map_err(|e| Error::io(format!("clone log {}", log_path.display()), e))?;
        let mut cmd = Command::new(program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|source| Error::Start {
            process: format!("{name} ({})", program.display()),
            source,
        })?;
        tracing::debug!(name, pid = child.id(), "started child process");
        Ok(Arc::new(Managed {
            name: name.to_string(),
            pid: child.id(),
            log_path: log_path.to_path_buf(),
            child: Mutex::new(child),
        }))
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        // A poisoned lock only means another thread panicked while holding
        // it; the Child inside is still valid.
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status if the process has exited (reaping it), `None` while
    /// it runs.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        // An error (ECHILD and similar) means nothing is left to wait for.
        self.child().try_wait().unwrap_or_default()
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// Sends `signal` if the process has not been reaped yet. While it is
    /// unreaped its PID cannot be reused, so this never hits a stranger.
    fn signal(child: &mut Child, signal: Signal) {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGKILL and reap. Errors only if the kill itself fails for a process
    /// that is still running.
    pub(crate) fn kill9(&self) -> Result<()> {
        let mut child = self.child();
        if !matches!(child.try_wait(), Ok(None)) {
            return Ok(());
        }
        child
            .kill()
            .map_err(|e| Error::io(format!("SIGKILL {} (pid {})", self.name, self.pid), e))?;
        let _ = child.wait();
        Ok(())
    }

    /// SIGTERM, wait up to `grace` for the exit, then SIGKILL; always reaps.
    /// Blocks the calling thread for at most `grace` plus a few milliseconds.
    pub(crate) fn terminate(&self, grace: Duration) {
        let mut child = self.child();
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        Self::signal(&mut child, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => return,
            }
        }
        tracing::warn!(name = %self.name, pid = self.pid, "no exit after SIGTERM; sending SIGKILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A process started by [`Testbed::spawn`](crate::Testbed::spawn) (a sidecar,
/// a driver, anything a test runs).
///
/// Dropping the handle stops the process (SIGTERM, up to [`STOP_GRACE`],
/// then SIGKILL). The test bed also tracks it and stops it when the test bed
/// is dropped, whichever comes first.
#[derive(Debug)]
pub struct ProcessHandle {
    inner: Arc<Managed>,
}

impl ProcessHandle {
    pub(crate) fn new(inner: Arc<Managed>) -> Self {
        ProcessHandle { inner }
    }

    /// The name given at spawn time (also the log file's stem).
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Operating-system process ID.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// The log file receiving the process's stdout and stderr
    /// (`<run dir>/logs/<name>.log`, appended to on restarts).
    pub fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    /// Whether the process is still running (false once it exited or was killed).
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// The exit status once the process has exited, `None` while it runs.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.exit_status()
    }

    /// Waits up to `timeout` for the process to exit on its own, polling
    /// every 50 ms. Returns its exit status, or `None` if it still runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.inner.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    ///
    /// Errors: [`Error::Io`] if the signal cannot be sent to a running process.
    pub fn kill9(&self) -> Result<()> {
        self.inner.kill9()
    }

    /// Stops the process gracefully: SIGTERM, up to `grace`, then SIGKILL.
    /// Blocks the calling thread meanwhile.
    pub fn stop(&self, grace: Duration) {
        self.inner.terminate(grace)
    }

    /// The last `lines` lines of the process's log file (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(self.inner.log_path(), lines)
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        self.inner.terminate(STOP_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_log(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("csitb-proc-{tag}-{}.log", std::process::id()))
    }

    #[test]
    fn terminate_stops_a_sleeping_child() {
        let log = tmp_log("term");
        let p = Managed::spawn("sleep", Path::new("/bin/sleep"), ["30"], &[], &log).unwrap();
        assert!(p.is_running());
        let t = Instant::now();
        p.terminate(STOP_GRACE);
        assert!(!p.is_running());
        assert!(t.elapsed() < Duration::from_secs(3));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("starting sleep"), "{text}");
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn kill9_and_output_capture() {
        let log = tmp_log("k9");
        let p = Managed::spawn(
            "sh",
            Path::new("/bin/sh"),
            ["-c", "echo out-$X; echo err >&2; exec sleep 30"],
            &[("X", "yes")],
            &log,
        )
        .unwrap();
        let h = ProcessHandle::new(p);
        std::thread::sleep(Duration::from_millis(300));
        h.kill9().unwrap();
        assert!(!h.is_running());
        let status = h.exit_status().unwrap();
        assert!(!status.success());
        let tail = h.log_tail(10);
        assert!(tail.contains("out-yes") && tail.contains("err"), "{tail}");
        drop(h);
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn missing_program_is_a_start_error() {
        let log = tmp_log("missing");
        let err =
            Managed::spawn("nope", Path::new("/nonexistent/bin"), [""; 0], &[], &log).unwrap_err();
        assert!(matches!(err, Error::Start { .. }), "{err}");
        let _ = std::fs::remove_file(log);
    }
}
