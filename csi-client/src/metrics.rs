//! `csi_sidecar_operations_seconds`, the per-RPC latency histogram of
//! csi-lib-utils `metrics` (CSIMetricsManager).
//!
//! # The `migrated` label
//!
//! Sidecars serving a CSI-migration target driver (one that replaced an
//! in-tree plugin, e.g. `ebs.csi.aws.com`) label every call with a fourth
//! label, `migrated`: `"true"` when the call was made for an in-tree volume
//! or StorageClass translated to CSI, `"false"` otherwise. Other drivers'
//! series carry only `driver_name`, `grpc_status_code` and `method_name`.
//!
//! Upstream decides this when it learns the driver name: it replaces its
//! metrics manager with one created `WithMigration()`, so the calls recorded
//! before (the first Probe and GetPluginInfo) are no longer served. Here the
//! histogram is registered once; [`CsiMetrics::enable_migration_label`]
//! switches it to the four-label form and drops the series recorded so far,
//! which serves the same series as upstream. Which calls are "migrated" is
//! said per connection handle: see
//! [`Connection::for_migrated`](crate::Connection::for_migrated).

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Name of the label that says whether a call was made for a migrated
/// (translated in-tree) volume, csi-lib-utils' `metrics.LabelMigrated`.
pub const MIGRATED_LABEL: &str = "migrated";

/// Label set of one histogram series; rendered in alphabetical order, as
/// upstream (client_golang sorts label pairs) exposes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct OperationLabels {
    /// CSI driver name, or [`UNKNOWN_DRIVER`].
    pub driver_name: String,
    /// Go `codes.Code.String()` of the result (see [`code_name`]).
    pub grpc_status_code: String,
    /// Full gRPC method, e.g. `/csi.v1.Controller/CreateVolume`.
    pub method_name: String,
    /// The [`MIGRATED_LABEL`] value (`"true"`/`"false"`) when the histogram
    /// carries that label (migration drivers); `None` renders no label at all.
    pub migrated: Option<&'static str>,
}

impl EncodeLabelSet for OperationLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let pairs = [
            ("driver_name", Some(self.driver_name.as_str())),
            ("grpc_status_code", Some(self.grpc_status_code.as_str())),
            ("method_name", Some(self.method_name.as_str())),
            (MIGRATED_LABEL, self.migrated),
        ];
        for (key, value) in pairs {
            if let Some(value) = value {
                EncodeLabel::encode(&(key, value), encoder.encode_label())?;
            }
        }
        Ok(())
    }
}

type OperationsFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

/// Handle on the registered operations histogram; cheap to clone (shared
/// storage, shared [`migrated`](MIGRATED_LABEL) setting), so one instance can
/// be given to several connections.
#[derive(Clone, Debug)]
pub struct CsiMetrics {
    operations: OperationsFamily,
    with_migrated_label: Arc<AtomicBool>,
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
        CsiMetrics {
            operations,
            with_migrated_label: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Gives every series from now on the [`MIGRATED_LABEL`] label, as
    /// csi-lib-utils' `WithMigration()` option, and forgets the series
    /// recorded so far (upstream stops serving them when it swaps in its
    /// migration-aware metrics manager). Call it once the driver is known to
    /// be a migration target, before the calls that should be served.
    /// Affects every clone of this handle and every connection using one.
    pub fn enable_migration_label(&self) {
        self.with_migrated_label.store(true, Ordering::SeqCst);
        self.operations.clear();
    }

    /// Whether series carry the [`MIGRATED_LABEL`] label (see
    /// [`enable_migration_label`](Self::enable_migration_label)).
    pub fn has_migration_label(&self) -> bool {
        self.with_migrated_label.load(Ordering::SeqCst)
    }

    /// Records one finished RPC: `elapsed` wall time, `method` the full gRPC
    /// path, `status_code` a label value from [`code_name`] or
    /// [`UNKNOWN_NON_GRPC`]. An empty `driver_name` is recorded as
    /// [`UNKNOWN_DRIVER`]. With the migration label on, the call counts as
    /// not migrated (`migrated="false"`), upstream's default.
    pub fn record(&self, driver_name: &str, method: &str, status_code: &str, elapsed: Duration) {
        self.record_call(driver_name, method, status_code, elapsed, false);
    }

    /// [`record`](Self::record) for a call that was (`migrated = true`) or
    /// was not made for a translated in-tree volume. `migrated` only shows
    /// when the migration label is on; otherwise it is ignored, as upstream
    /// ignores the context value without `WithMigration()`.
    pub fn record_call(
        &self,
        driver_name: &str,
        method: &str,
        status_code: &str,
        elapsed: Duration,
        migrated: bool,
    ) {
        let driver_name = if driver_name.is_empty() {
            UNKNOWN_DRIVER
        } else {
            driver_name
        };
        let labels = OperationLabels {
            driver_name: driver_name.to_owned(),
            grpc_status_code: status_code.to_owned(),
            method_name: method.to_owned(),
            migrated: self
                .has_migration_label()
                .then_some(if migrated { "true" } else { "false" }),
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
        assert!(
            !text.contains("migrated="),
            "only migration drivers get the migrated label:\n{text}"
        );
        for le in ["0.1", "0.25", "120.0", "600.0", "+Inf"] {
            assert!(text.contains(&format!("le=\"{le}\"")), "missing le={le}");
        }
    }

    fn count_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("csi_sidecar_operations_seconds_count{"))
            .collect()
    }

    #[test]
    fn migration_label_is_fourth_and_alphabetical() {
        let mut registry = Registry::default();
        let metrics = CsiMetrics::register(&mut registry, SIDECAR_SUBSYSTEM);
        // What upstream's first metrics manager saw before the driver name
        // was known: gone once the migration label is switched on.
        metrics.record("", "/csi.v1.Identity/GetPluginInfo", "OK", Duration::ZERO);
        assert!(!metrics.has_migration_label());
        metrics.enable_migration_label();
        assert!(metrics.has_migration_label());
        let clone = metrics.clone();
        clone.record(
            "ebs.csi.aws.com",
            "/csi.v1.Identity/Probe",
            "OK",
            Duration::ZERO,
        );
        clone.record_call(
            "ebs.csi.aws.com",
            "/csi.v1.Controller/CreateVolume",
            "OK",
            Duration::ZERO,
            true,
        );
        clone.record_call(
            "ebs.csi.aws.com",
            "/csi.v1.Controller/CreateVolume",
            "OK",
            Duration::ZERO,
            false,
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let counts = count_lines(&text);
        assert_eq!(counts.len(), 3, "{text}");
        assert!(!text.contains("GetPluginInfo"), "old series kept:\n{text}");
        for want in [
            r#"{driver_name="ebs.csi.aws.com",grpc_status_code="OK",method_name="/csi.v1.Identity/Probe",migrated="false"} 1"#,
            r#"{driver_name="ebs.csi.aws.com",grpc_status_code="OK",method_name="/csi.v1.Controller/CreateVolume",migrated="true"} 1"#,
            r#"{driver_name="ebs.csi.aws.com",grpc_status_code="OK",method_name="/csi.v1.Controller/CreateVolume",migrated="false"} 1"#,
        ] {
            assert!(
                counts.iter().any(|l| l.ends_with(want)),
                "no {want} in:\n{text}"
            );
        }
    }

    #[test]
    fn migrated_flag_is_ignored_without_the_label() {
        let mut registry = Registry::default();
        let metrics = CsiMetrics::register(&mut registry, SIDECAR_SUBSYSTEM);
        metrics.record_call(
            "hostpath.csi.k8s.io",
            "/csi.v1.Controller/DeleteVolume",
            "NotFound",
            Duration::ZERO,
            true,
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert_eq!(
            count_lines(&text),
            vec![
                r#"csi_sidecar_operations_seconds_count{driver_name="hostpath.csi.k8s.io",grpc_status_code="NotFound",method_name="/csi.v1.Controller/DeleteVolume"} 1"#
            ],
            "{text}"
        );
    }

    #[test]
    fn code_names_match_go() {
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::DeadlineExceeded), "DeadlineExceeded");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
