//! The names the attacher writes into the cluster (upstream's
//! `pkg/controller/util.go` and `cmd/csi-attacher/main.go`), identical
//! to upstream so Go and Rust replicas recognise each other's objects.

/// VolumeAttachment annotation recording the CSI node ID used for
/// ControllerPublish, read back on detach when the CSINode is gone
/// (`kubernetes-csi/external-attacher:pkg/controller/util.go`, `vaNodeIDAnnotation`).
pub const NODE_ID_ANNOTATION: &str = "csi.alpha.kubernetes.io/node-id";

/// PV annotation naming the CSI driver an in-tree PV was migrated to.
pub const MIGRATED_TO_ANNOTATION: &str = "pv.kubernetes.io/migrated-to";

/// Every character outside `[a-zA-Z0-9-]` becomes `-`; a trailing `-` gets
/// an `X` (`kubernetes-csi/external-attacher:pkg/controller/util.go`,
/// `SanitizeDriverName`).
pub fn sanitize_driver_name(driver: &str) -> String {
    sidecar_runtime::leader::sanitize_lease_name(driver)
}

/// `external-attacher/<sanitised driver>`, the finalizer on VolumeAttachments
/// and PersistentVolumes (upstream `GetFinalizerName`).
pub fn finalizer(driver: &str) -> String {
    format!("external-attacher/{}", sanitize_driver_name(driver))
}

/// The Lease: `external-attacher-leader-<driver>` sanitised, as upstream's
/// `main.go` hands it to csi-lib-utils' leader election.
pub fn lease_name(driver: &str) -> String {
    sidecar_runtime::leader::sanitize_lease_name(&format!("external-attacher-leader-{driver}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases of upstream's TestSanitizeDriverName / TestGetFinalizerName.
    #[test]
    fn sanitised_like_upstream() {
        assert_eq!(sanitize_driver_name("test_driver"), "test-driver");
        assert_eq!(sanitize_driver_name("test.csi.driver"), "test-csi-driver");
        assert_eq!(sanitize_driver_name("driver/"), "driver-X");
        assert_eq!(sanitize_driver_name("a-"), "a-X");
        assert_eq!(
            finalizer("csi.vsphere.vmware.com"),
            "external-attacher/csi-vsphere-vmware-com"
        );
        assert_eq!(
            lease_name("ebs.csi.aws.com"),
            "external-attacher-leader-ebs-csi-aws-com"
        );
    }
}
