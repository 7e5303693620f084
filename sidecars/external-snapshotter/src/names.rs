//! The strings csi-snapshotter itself names: its Lease, queue, event
//! source and reasons, and the snapshot names it asks the driver for. The
//! strings shared with snapshot-controller are in [`snapshot_api::names`].

/// The Lease: `external-snapshotter-leader-<driver>` with `/` replaced by
/// `-` (external-snapshotter: cmd/csi-snapshotter/main.go), then sanitised
/// as csi-lib-utils `leaderelection` does (every character other than an
/// ASCII letter, digit or `-` becomes `-`), so a Go and a Rust replica
/// contend for the same Lease.
pub fn lease_name(driver: &str) -> String {
    format!("external-snapshotter-leader-{}", driver.replace('/', "-"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The content workqueue's name (`workqueue_*{name=…}`).
pub const CONTENT_QUEUE: &str = "csi-snapshotter-content";

/// The event source component: `csi-snapshotter <driver>`.
pub fn event_component(driver: &str) -> String {
    format!("csi-snapshotter {driver}")
}

/// Event reasons (all Warning), as upstream's `pkg/sidecar-controller`.
pub mod reason {
    /// CreateSnapshot (or what it needs) failed.
    pub const SNAPSHOT_CREATION_FAILED: &str = "SnapshotCreationFailed";
    /// A readiness check (ListSnapshots, or the repeated CreateSnapshot) failed.
    pub const SNAPSHOT_CONTENT_CHECK_AND_UPDATE_FAILED: &str =
        "SnapshotContentCheckandUpdateFailed";
    /// DeleteSnapshot (or what it needs) failed.
    pub const SNAPSHOT_DELETE_ERROR: &str = "SnapshotDeleteError";
}

/// The CreateSnapshot `name`: `<prefix>-<uid>`, or with `uuid_length` ≥ 0
/// the first `uuid_length` characters of the UID without dashes
/// (external-snapshotter: pkg/sidecar-controller/csi_handler.go
/// makeSnapshotName). A length beyond the UID keeps all of it (upstream
/// panics).
///
/// Errors: an empty UID (upstream's "Corrupted snapshot object, it is
/// missing UID").
pub fn snapshot_name(prefix: &str, uid: &str, uuid_length: i64) -> Result<String, String> {
    if uid.is_empty() {
        return Err("Corrupted snapshot object, it is missing UID".into());
    }
    let Ok(n) = usize::try_from(uuid_length) else {
        return Ok(format!("{prefix}-{uid}"));
    };
    let compact: String = uid.chars().filter(|c| *c != '-').take(n).collect();
    Ok(format!("{prefix}-{compact}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_as_upstream() {
        assert_eq!(
            lease_name("hostpath.csi.k8s.io"),
            "external-snapshotter-leader-hostpath-csi-k8s-io"
        );
        assert_eq!(
            lease_name("example.com/driver"),
            "external-snapshotter-leader-example-com-driver"
        );
    }

    #[test]
    fn snapshot_names() {
        let uid = "2a5e1f4c-0b7d-4e0e-9a51-0123456789ab";
        assert_eq!(
            snapshot_name("snapshot", uid, -1).unwrap(),
            format!("snapshot-{uid}")
        );
        assert_eq!(snapshot_name("snap", uid, 8).unwrap(), "snap-2a5e1f4c");
        assert_eq!(snapshot_name("snap", uid, 10).unwrap(), "snap-2a5e1f4c0b");
        assert!(snapshot_name("snap", "", -1).is_err());
    }
}
