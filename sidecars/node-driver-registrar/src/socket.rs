//! The registration socket's path, the stale-file decision, and its creation.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::Error;

/// Mode of the registration socket: only the owner (the kubelet runs as
/// root) may connect, as upstream's `umask(0077)` around `listen` gives.
pub const SOCKET_MODE: u32 = 0o700;

/// `<plugin-registration-path>/<driver>-reg.sock`, joined as upstream's
/// `fmt.Sprintf("%s/%s-reg.sock", …)` does
/// (node-driver-registrar: cmd/csi-node-driver-registrar/node_register.go `nodeRegister`).
///
/// # Errors
/// [`Error::BadDriverName`] for a name that would leave the directory or
/// cannot be a file name (`/`, NUL, `.` or `..`); CSI names are domain
/// names, so a real driver never hits this.
pub fn registration_socket_path(dir: &str, driver: &str) -> Result<PathBuf, Error> {
    if driver.is_empty() || driver.contains(['/', '\0']) || driver == "." || driver == ".." {
        return Err(Error::BadDriverName(driver.to_owned()));
    }
    Ok(PathBuf::from(format!("{dir}/{driver}-reg.sock")))
}

/// What sits at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Nothing,
    /// A Unix socket.
    Socket,
    /// A file of another kind.
    Other,
}

/// What to do with what sits at the registration path before listening
/// (node-driver-registrar: cmd/csi-node-driver-registrar/node_register.go
/// `nodeRegister`, its `util.CleanupSocketFile`): a leftover socket is
/// removed, anything else is refused on Linux.
///
/// # Errors
/// [`Error::NotASocket`] when the path holds something else.
pub fn must_remove(existing: Existing, path: &Path) -> Result<bool, Error> {
    match existing {
        Existing::Nothing => Ok(false),
        Existing::Socket => Ok(true),
        Existing::Other => Err(Error::NotASocket(path.to_owned())),
    }
}

/// What sits at `path` (`lstat`; a missing path or a failed `lstat` is
/// [`Existing::Nothing`], `bind` then reports the real problem).
pub fn existing(path: &Path) -> Existing {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Existing::Socket,
        Ok(_) => Existing::Other,
        Err(_) => Existing::Nothing,
    }
}

/// Identity of a file: device and inode. A socket re-created at the same
/// path has a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

/// The identity of the socket at `path`, `None` when there is none (or
/// something else is there).
pub fn socket_id(path: &Path) -> Option<FileId> {
    let m = std::fs::symlink_metadata(path).ok()?;
    m.file_type().is_socket().then(|| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Removes a leftover socket at `path` and listens there with mode 0700.
/// Returns the listener and the new socket's identity.
///
/// # Errors
/// [`Error::NotASocket`], or [`Error::Socket`] for the failed step.
pub fn listen(path: &Path) -> Result<(UnixListener, FileId), Error> {
    let err = |what, source| Error::Socket {
        what,
        path: path.to_owned(),
        source,
    };
    if must_remove(existing(path), path)? {
        tracing::info!(path = %path.display(), "Removing stale registration socket");
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err("removing", e)),
            _ => {}
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| err("listening on", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| err("setting the mode of", e))?;
    let id = socket_id(path).ok_or_else(|| {
        err(
            "reading back",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    Ok((listener, id))
}

/// Removes the registration socket, which deregisters the driver
/// (upstream's SIGTERM handler). A socket already gone is fine.
///
/// # Errors
/// [`Error::Socket`] for any other failure (upstream exits 1 on it).
pub fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Socket {
            what: "removing",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_dir_slash_driver_reg_sock() {
        assert_eq!(
            registration_socket_path("/registration", "ebs.csi.aws.com").unwrap(),
            PathBuf::from("/registration/ebs.csi.aws.com-reg.sock")
        );
        // Sprintf, not a path join: a trailing slash stays doubled.
        assert_eq!(
            registration_socket_path("/r/", "d").unwrap(),
            PathBuf::from("/r//d-reg.sock")
        );
        for bad in ["", "a/b", "..", ".", "a\0b"] {
            assert!(
                matches!(
                    registration_socket_path("/r", bad),
                    Err(Error::BadDriverName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_a_socket_is_removed() {
        let p = Path::new("/r/d-reg.sock");
        assert!(!must_remove(Existing::Nothing, p).unwrap());
        assert!(must_remove(Existing::Socket, p).unwrap());
        let e = must_remove(Existing::Other, p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "file exists in socketPath /r/d-reg.sock but it's not a socket"
        );
    }

    #[tokio::test]
    async fn listen_replaces_a_stale_socket_and_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d-reg.sock");
        let (first, _) = listen(&path).unwrap();
        drop(first);
        assert_eq!(existing(&path), Existing::Socket);
        // (The file system may hand the freed inode to the new socket.)
        let (_second, id2) = listen(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert_eq!(socket_id(&path), Some(id2));

        let file = dir.path().join("f-reg.sock");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(listen(&file), Err(Error::NotASocket(_))));
        assert_eq!(socket_id(&file), None);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(existing(&path), Existing::Nothing);
    }
}
