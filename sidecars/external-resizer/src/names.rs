//! The strings csi-resizer reads and writes, as upstream v2.2.0 spells them
//! (kubernetes-csi/external-resizer:pkg/util/util.go and events.go).

/// PVC annotation naming the resizer of a (migrated) claim; written by
/// kube-controller-manager.
pub const RESIZER_ANNOTATION: &str = "volume.kubernetes.io/storage-resizer";
/// PV annotation with the capacity before a resize that needs the node
/// (gate `AnnotateFsResize`).
pub const PRE_RESIZE_CAPACITY: &str = "volume.alpha.kubernetes.io/pre-resize-capacity";
/// PVC annotation telling kubelet a finished controller expansion needs
/// no NodeExpandVolume.
pub const NODE_EXPANSION_NOT_REQUIRED: &str = "volume.kubernetes.io/node-expansion-not-required";
/// PV annotations naming the ControllerModifyVolume secret.
pub const MODIFY_SECRET_NAME: &str = "volume.kubernetes.io/controller-modify-secret-name";
/// See [`MODIFY_SECRET_NAME`].
pub const MODIFY_SECRET_NAMESPACE: &str = "volume.kubernetes.io/controller-modify-secret-namespace";

/// Condition types.
pub mod condition {
    /// Controller expansion in progress.
    pub const RESIZING: &str = "Resizing";
    /// Controller done; kubelet's NodeExpandVolume pending.
    pub const FS_RESIZE_PENDING: &str = "FileSystemResizePending";
    /// ControllerExpandVolume failed with a final error.
    pub const CONTROLLER_RESIZE_ERROR: &str = "ControllerResizeError";
    /// Written by kubelet; kept or dropped with the other resize conditions.
    pub const NODE_RESIZE_ERROR: &str = "NodeResizeError";
    /// ControllerModifyVolume in progress.
    pub const MODIFYING_VOLUME: &str = "ModifyingVolume";
    /// ControllerModifyVolume failed.
    pub const MODIFY_VOLUME_ERROR: &str = "ModifyVolumeError";
    /// The four types upstream's merge helper treats as resize conditions.
    pub const RESIZE: [&str; 4] = [
        RESIZING,
        FS_RESIZE_PENDING,
        CONTROLLER_RESIZE_ERROR,
        NODE_RESIZE_ERROR,
    ];
}

/// `status.allocatedResourceStatuses["storage"]` values.
pub mod resize_status {
    /// Written before ControllerExpandVolume.
    pub const CONTROLLER_IN_PROGRESS: &str = "ControllerResizeInProgress";
    /// ControllerExpandVolume failed with InvalidArgument/OutOfRange/NotFound.
    pub const CONTROLLER_INFEASIBLE: &str = "ControllerResizeInfeasible";
    /// Controller done, NodeExpandVolume needed.
    pub const NODE_PENDING: &str = "NodeResizePending";
    /// Written by kubelet.
    pub const NODE_IN_PROGRESS: &str = "NodeResizeInProgress";
    /// Written by kubelet.
    pub const NODE_INFEASIBLE: &str = "NodeResizeInfeasible";
}

/// `status.modifyVolumeStatus.status` values.
pub mod modify_status {
    /// The VolumeAttributesClass does not exist (yet).
    pub const PENDING: &str = "Pending";
    /// ControllerModifyVolume running or to be retried.
    pub const IN_PROGRESS: &str = "InProgress";
    /// ControllerModifyVolume answered InvalidArgument.
    pub const INFEASIBLE: &str = "Infeasible";
}

/// Event reasons (object: the PVC).
pub mod reason {
    /// Normal, before each ControllerExpandVolume.
    pub const RESIZING: &str = "Resizing";
    /// Warning.
    pub const RESIZE_FAILED: &str = "VolumeResizeFailed";
    /// Normal, controller-only expansion done.
    pub const RESIZE_SUCCESSFUL: &str = "VolumeResizeSuccessful";
    /// Normal, node expansion needed.
    pub const FS_RESIZE_REQUIRED: &str = "FileSystemResizeRequired";
    /// Normal, modify started.
    pub const MODIFY: &str = "VolumeModify";
    /// Warning.
    pub const MODIFY_FAILED: &str = "VolumeModifyFailed";
    /// Normal.
    pub const MODIFY_SUCCESSFUL: &str = "VolumeModifySuccessful";
    /// Normal, rolled back to no class while modifying.
    pub const MODIFY_CANCELED: &str = "VolumeModifyCanceled";
}

/// The condition message of `FileSystemResizePending`.
pub const FS_RESIZE_PENDING_MESSAGE: &str =
    "Waiting for user to (re-)start a pod to finish file system resize of volume on node.";

/// The Lease upstream's resizer holds for `driver`:
/// `external-resizer-<driver>` with every character outside
/// `[a-zA-Z0-9-]` replaced by `-` and a trailing `-` followed by `X`
/// (kubernetes-csi/external-resizer:pkg/util/util.go `SanitizeName`).
pub fn lease_name(driver: &str) -> String {
    let mut name: String = format!("external-resizer-{driver}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.ends_with('-') {
        name.push('X');
    }
    name
}

/// The workqueue name of both controllers: `<driver>-pvc`
/// (upstream's `NewResizeController` and `NewModifyController`).
pub fn queue_name(driver: &str) -> String {
    format!("{driver}-pvc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_as_upstream() {
        assert_eq!(
            lease_name("ebs.csi.aws.com"),
            "external-resizer-ebs-csi-aws-com"
        );
        assert_eq!(
            lease_name("hostpath.csi.k8s.io"),
            "external-resizer-hostpath-csi-k8s-io"
        );
        assert_eq!(lease_name("odd/"), "external-resizer-odd-X");
    }
}
