//! `csi_sidecar_operations_seconds`, the per-RPC latency histogram of
//! csi-lib-utils `metrics` (CSIMetricsManager).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tonic::Code;

/// Subsystem of the sidecars' histogram (`csi_sidecar_operations_seconds`).
pub const SIDECAR_SUBSYSTEM: &str = "csi_sidecar";

/// Subsystem used by drivers that record their own server-side metrics
/// (`csi_plugin_operations_seconds`).
pub const PLUGIN_SUBSYSTEM: &str = "csi_plugin";

/// HELP text of the histogram. prometheus-client appends a final `.` when
/// rendering; upstream (component-base) does not.
pub const OPERATIONS_HELP: &str =
    "[ALPHA] Container Storage Interface operation duration with gRPC error code status total";

/// Histogram bucket upper bounds in seconds, as in csi-lib-utils.
pub const OPERATIONS_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 25.0, 50.0, 120.0, 300.0, 600.0,
];

/// `driver_name` label value used before the driver name is known.
pub const UNKNOWN_DRIVER: &str = "unknown-driver";

/// `grpc_status_code` label value for a failure that carried no gRPC status.
/// tonic turns every failure, transport ones included, into a status
/// (`Unavailable`, as grpc-go does), so [`Connection`](crate::Connection)
/// never records it; it is here for callers timing non-RPC work.
pub const UNKNOWN_NON_GRPC: &str = "unknown-non-grpc";

/// Label set of one histogram series; fields are in alphabetical order, as
/// upstream exposes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// CSI driver name, or [`UNKNOWN_DRIVER`].
    pub driver_name: String,
    /// Go `codes.Code.String()` of the result (see [`code_name`]).
    pub grpc_status_code: String,
    /// Full gRPC method, e.g. `/csi.v1.Controller/CreateVolume`.
    pub method_name: String,
}

type OperationsFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

/// Handle on the registered operations histogram; cheap to clone (shared
/// storage), so one instance can be given to several connections.
#[derive(Clone, Debug)]
pub struct CsiMetrics {
    operations: OperationsFamily,
}

fn new_histogram() -> Histogram {
    Histogram::new(OPERATIONS_BUCKETS)
}

impl CsiMetrics {
    /// Creates the histogram and registers it into `registry` as
    /// `<subsystem>_operations_seconds` (use [`SIDECAR_SUBSYSTEM`] for
    /// sidecars, like csi-lib-utils `NewCSIMetricsManagerForSidecar`).
    pub fn register(registry: &mut Registry, subsystem: &str) -> Self {
        let operations = OperationsFamily::new_with_constructor(new_histogram);
        registry.register(
            format!("{subsystem}_operations_seconds"),
            OPERATIONS_HELP,
            operations.clone(),
        );
        CsiMetrics { operations }
    }

    /// Records one finished RPC: `elapsed` wall time, `method` the full gRPC
    /// path, `status_code` a label value from [`code_name`] or
    /// [`UNKNOWN_NON_GRPC`]. An empty `driver_name` is recorded as
    /// [`UNKNOWN_DRIVER`].
    pub fn record(&self, driver_name: &str, method: &str, status_code: &str, elapsed: Duration) {
        let driver_name = if driver_name.is_empty() {
            UNKNOWN_DRIVER
        } else {
            driver_name
        };
        let labels = OperationLabels {
            driver_name: driver_name.to_owned(),
            grpc_status_code: status_code.to_owned(),
            method_name: method.to_owned(),
        };
        self.operations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The underlying family, for tests and custom collectors.
    pub fn operations(&self) -> &Family<OperationLabels, Histogram, fn() -> Histogram> {
        &self.operations
    }
}

/// Name of a gRPC code exactly as Go's `codes.Code.String()` spells it
/// (note `Canceled` with one `l`, unlike tonic's `Cancelled`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bucket_line_with_all_labels() {
        let mut registry = Registry::default();
        let metrics = CsiMetrics::register(&mut registry, SIDECAR_SUBSYSTEM);
        metrics.record(
            "fake.csi.driver.io",
            "/csi.v1.Controller/ControllerGetCapabilities",
            code_name(Code::Ok),
            Duration::from_millis(20),
        );
        metrics.record("", "/csi.v1.Identity/Probe", "Canceled", Duration::ZERO);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");

        assert!(text.contains(&format!(
            "# HELP csi_sidecar_operations_seconds {OPERATIONS_HELP}"
        )));
        assert!(text.contains("# TYPE csi_sidecar_operations_seconds histogram"));
        let bucket = text
            .lines()
            .find(|l| {
                l.starts_with("csi_sidecar_operations_seconds_bucket{")
                    && l.contains("le=\"25.0\"")
                    && l.contains("driver_name=\"fake.csi.driver.io\"")
                    && l.contains("grpc_status_code=\"OK\"")
                    && l.contains("method_name=\"/csi.v1.Controller/ControllerGetCapabilities\"")
            })
            .unwrap_or_else(|| panic!("no bucket line in:\n{text}"));
        assert!(bucket.ends_with(" 1"), "{bucket}");
        assert!(text.contains("driver_name=\"unknown-driver\""));
        for le in ["0.1", "0.25", "120.0", "600.0", "+Inf"] {
            assert!(text.contains(&format!("le=\"{le}\"")), "missing le={le}");
        }
    }

    #[test]
    fn code_names_match_go() {
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::DeadlineExceeded), "DeadlineExceeded");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
