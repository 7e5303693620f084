//! One node per machine: the node's address on `lo`, the `cni0` bridge, the
//! iptables chains and the kubepods cgroups are host-global, so node test
//! beds take an exclusive file lock for their whole life.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// The lock file shared by every node test bed on the machine.
pub const NODE_LOCK_PATH: &str = "/tmp/csi-testbed-node.lock";

/// Held while a node runs; the lock is released when this is dropped.
#[derive(Debug)]
pub struct NodeLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl NodeLock {
    /// Takes the lock at [`NODE_LOCK_PATH`], waiting (on a blocking thread)
    /// while another node test holds it, and says so on stderr.
    ///
    /// Errors: [`Error::Io`] if the file cannot be opened or locked.
    pub async fn acquire() -> Result<NodeLock> {
        let path = PathBuf::from(NODE_LOCK_PATH);
        let p = path.clone();
        tokio::task::spawn_blocking(move || Self::acquire_blocking(&p))
            .await
            .map_err(|e| Error::io("node lock thread", std::io::Error::other(e)))?
    }

    fn acquire_blocking(path: &Path) -> Result<NodeLock> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))
        };
        match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                return Ok(NodeLock {
                    _lock: lock,
                    path: path.to_path_buf(),
                });
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
            Err((_, e)) => {
                return Err(Error::io(
                    format!("flock {}", path.display()),
                    std::io::Error::from(e),
                ));
            }
        }
        eprintln!(
            "csi-testbed: another test runs a node; waiting for {}",
            path.display()
        );
        let t0 = Instant::now();
        let lock = Flock::lock(open()?, FlockArg::LockExclusive).map_err(|(_, e)| {
            Error::io(format!("flock {}", path.display()), std::io::Error::from(e))
        })?;
        eprintln!(
            "csi-testbed: got the node lock after {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        Ok(NodeLock {
            _lock: lock,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
