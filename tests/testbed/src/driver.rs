//! The CSI driver under test: `csi-testdriver` (Kubernetes' e2e mock CSI
//! service, volumes in memory) on a unix socket in the run directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::logs::tail_file;
use crate::process::ProcessHandle;
use crate::testbed::Testbed;

/// Driver name used by default, the same as csi-driver-host-path's.
pub const DEFAULT_DRIVER_NAME: &str = "hostpath.csi.k8s.io";

/// How long [`Testbed::start_driver`] waits for the socket to accept connections.
pub const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of one `csi-testdriver` process.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Name reported by GetPluginInfo (`--drivername`); also the driver's
    /// CSI node ID. Default [`DEFAULT_DRIVER_NAME`].
    pub name: String,
    /// Advertise the PUBLISH_UNPUBLISH_VOLUME controller capability
    /// (`--enable-attach`), so volumes need a VolumeAttachment. Default false.
    pub enable_attach: bool,
    /// Advertise VOLUME_ACCESSIBILITY_CONSTRAINTS (`--enable-topology`).
    /// Default false.
    pub enable_topology: bool,
    /// NodeGetInfo `max_volumes_per_node` (`--attach-limit`); 0 means
    /// unlimited. Default 0.
    pub attach_limit: u32,
    /// `--nodeid`: this instance's NodeGetInfo node ID and, with topology,
    /// its `topology.hostpath.csi/node` segment value, as hostpath reports.
    /// Empty (the default) keeps the service's fixed ID and segment.
    pub node_id: String,
    /// `--capacity` in bytes: GetCapacity then reports this minus what the
    /// driver's volumes use. 0 (the default) keeps the service's fixed answer.
    pub capacity: i64,
    /// ControllerExpandVolume answers `node_expansion_required`
    /// (`--node-expansion-required`). Default false: controller-only.
    pub node_expansion_required: bool,
    /// ControllerExpandVolume above this many bytes fails with OutOfRange
    /// (`--max-expand-bytes`). 0 (the default): no limit.
    pub max_expand_bytes: i64,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            name: DEFAULT_DRIVER_NAME.into(),
            enable_attach: false,
            enable_topology: false,
            attach_limit: 0,
            node_id: String::new(),
            capacity: 0,
            node_expansion_required: false,
            max_expand_bytes: 0,
        }
    }
}

impl DriverOptions {
    /// Defaults with the given driver name.
    pub fn named(name: &str) -> Self {
        DriverOptions {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// A running `csi-testdriver`. Dropping it stops the process (the test bed
/// also stops it when dropped).
#[derive(Debug)]
pub struct DriverHandle {
    process: ProcessHandle,
    socket: PathBuf,
    name: String,
    node_id: String,
    /// The flags it was started with, for [`Testbed::restart_driver`].
    args: Vec<String>,
}

impl DriverHandle {
    /// Path of the driver's unix socket, e.g. `/tmp/csitb-ab12cd/d1.sock`.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The socket as a CSI endpoint URL, `unix:///tmp/csitb-ab12cd/d1.sock`
    /// (for `--csi-address` of sidecars, which also accept the bare path).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The driver name given at start.
    pub fn driver_name(&self) -> &str {
        &self.name
    }

    /// The CSI node ID NodeGetInfo reports: [`DriverOptions::node_id`], else
    /// the driver name (the service's own choice). Use it as the CSINode
    /// `nodeID`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The driver process (PID, log, kill9 for crash tests).
    pub fn process(&self) -> &ProcessHandle {
        &self.process
    }
}

impl Testbed {
    /// Starts `csi-testdriver` with `opts` on `<run>/d<N>.sock` (log
    /// `<run>/logs/csi-testdriver-<N>.log`) and waits until the socket
    /// accepts connections.
    ///
    /// Errors: [`Error::MissingBinary`] if `csi-testdriver` is not in the
    /// binary directory, [`Error::Start`], [`Error::Exited`] if it exits
    /// during start, [`Error::ReadinessTimeout`] after
    /// [`DRIVER_READY_TIMEOUT`].
    pub async fn start_driver(&self, opts: DriverOptions) -> Result<DriverHandle> {
        crate::binaries::check_binaries(self.bin_dir(), &["csi-testdriver"])?;
        let n = self.next_seq();
        let socket = self.run_dir().join(format!("d{n}.sock"));
        let args = vec![
            format!("--endpoint=unix://{}", socket.display()),
            format!("--drivername={}", opts.name),
            format!("--enable-attach={}", opts.enable_attach),
            format!("--enable-topology={}", opts.enable_topology),
            format!("--attach-limit={}", opts.attach_limit),
            format!("--nodeid={}", opts.node_id),
            format!("--capacity={}", opts.capacity),
            format!("--node-expansion-required={}", opts.node_expansion_required),
            format!("--max-expand-bytes={}", opts.max_expand_bytes),
            "--log-calls=true".into(),
        ];
        let process = self.spawn(
            &format!("csi-testdriver-{n}"),
            &self.csi_testdriver(),
            &args,
            &[],
        )?;
        wait_for_socket(&process, &socket, DRIVER_READY_TIMEOUT).await?;
        let node_id = if opts.node_id.is_empty() {
            opts.name.clone()
        } else {
            opts.node_id.clone()
        };
        Ok(DriverHandle {
            process,
            socket,
            name: opts.name,
            node_id,
            args,
        })
    }

    /// Crashes `driver` (SIGKILL) and starts it again with the same flags on
    /// the same socket (same log, appended), then waits for the socket. The
    /// service keeps its volumes in memory: the new process has none of the
    /// old one's, and numbers new volumes from the same start, so a new
    /// volume may get the ID of a forgotten one.
    ///
    /// Errors: as [`Testbed::start_driver`], and [`Error::Io`] if the kill fails.
    pub async fn restart_driver(&self, driver: &mut DriverHandle) -> Result<()> {
        driver.process.kill9()?;
        let process = self.spawn(
            driver.process.name(),
            &self.csi_testdriver(),
            &driver.args,
            &[],
        )?;
        wait_for_socket(&process, &driver.socket, DRIVER_READY_TIMEOUT).await?;
        driver.process = process;
        Ok(())
    }
}

/// Waits until `socket` accepts a connection, failing early if `process` exits.
///
/// Errors: [`Error::Exited`], [`Error::ReadinessTimeout`].
pub async fn wait_for_socket(
    process: &ProcessHandle,
    socket: &Path,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut last_error = String::from("socket not created yet");
    loop {
        if let Some(status) = process.exit_status() {
            return Err(Error::Exited {
                process: process.name().to_string(),
                status: status.to_string(),
                log_tail: tail_file(process.log_path(), 40),
            });
        }
        if socket.exists() {
            match tokio::net::UnixStream::connect(socket).await {
                Ok(_) => return Ok(()),
                Err(e) => last_error = format!("connect {}: {e}", socket.display()),
            }
        }
        if start.elapsed() >= timeout {
            return Err(Error::ReadinessTimeout {
                what: format!("{} socket {}", process.name(), socket.display()),
                waited: start.elapsed(),
                last_error,
                log_tail: tail_file(process.log_path(), 40),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
