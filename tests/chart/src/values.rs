//! The chart's values (`charts/csi-sidecars/values.yaml`) as Rust types.
//! `values.schema.json` is generated from them ([`crate::schema`]): unknown
//! keys are refused (`deny_unknown_fields` → `additionalProperties: false`),
//! names, paths, durations, ports and enums are checked, so a typo or a bad
//! value stops `helm install` with the path of the offending key.
//! Kubernetes objects passed through as they are (resources, security
//! contexts, env, volumes, affinity, tolerations) are plain JSON objects
//! here; the API server validates them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes object passed through unchanged (checked by the API server).
pub type Object = serde_json::Map<String, serde_json::Value>;

/// A Go duration as the sidecars' flags take it (`15s`, `1m30s`, `500ms`).
const DURATION: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// An absolute path without a trailing slash.
const ABS_PATH: &str = r"^/([^/]+(/[^/]+)*)?$";
/// A CSI driver name as the CSIDriver object needs it: a DNS subdomain of at
/// most 63 characters (upstream's GetPluginInfo rule).
const DRIVER_NAME: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";

/// Every value of the chart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "csi-sidecars chart values")]
pub struct Values {
    /// The CSI driver these sidecars serve.
    pub driver: Driver,
    /// The kubelet's root directory on the nodes (absolute, no trailing slash).
    #[schemars(regex(pattern = ABS_PATH))]
    pub kubelet_dir: String,
    /// Where the driver's socket lives inside the chart's pods.
    pub socket: Socket,
    /// imagePullSecrets of every pod.
    pub image_pull_secrets: Vec<Object>,
    /// Labels added to every object of the chart.
    pub common_labels: BTreeMap<String, String>,
    /// RBAC objects of the sidecars.
    pub rbac: Rbac,
    /// The controller Deployment.
    pub controller: Controller,
    /// The node DaemonSet.
    pub node: NodePlugin,
    /// csi-provisioner in the controller pod.
    pub csi_provisioner: Provisioner,
    /// csi-attacher in the controller pod.
    pub csi_attacher: Attacher,
    /// csi-resizer in the controller pod.
    pub csi_resizer: Resizer,
    /// csi-snapshotter in the controller pod.
    pub csi_snapshotter: Snapshotter,
    /// The cluster's snapshot-controller, a Deployment of its own.
    pub snapshot_controller: SnapshotController,
    /// csi-node-driver-registrar in the node pods.
    pub node_driver_registrar: NodeSidecar,
    /// livenessprobe in the node pods.
    pub liveness_probe: LivenessProbe,
    /// A StorageClass for the driver.
    pub storage_class: StorageClass,
    /// A prometheus-operator ServiceMonitor for the controllers' metrics.
    pub service_monitor: ServiceMonitor,
    /// The `helm test` hook.
    pub tests: Tests,
}

/// The driver and its CSIDriver object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Driver {
    /// The driver's name as GetPluginInfo reports it (e.g.
    /// `hostpath.csi.k8s.io`); required.
    #[schemars(length(min = 1, max = 63), regex(pattern = DRIVER_NAME))]
    pub name: String,
    /// Create the CSIDriver object.
    #[serde(rename = "createCSIDriver")]
    pub create_csi_driver: bool,
    /// CSIDriver spec.attachRequired (the driver has PUBLISH_UNPUBLISH_VOLUME).
    pub attach_required: bool,
    /// CSIDriver spec.podInfoOnMount.
    pub pod_info_on_mount: bool,
    /// CSIDriver spec.fsGroupPolicy.
    pub fs_group_policy: FsGroupPolicy,
    /// CSIDriver spec.volumeLifecycleModes.
    #[schemars(length(min = 1))]
    pub volume_lifecycle_modes: Vec<VolumeLifecycleMode>,
    /// CSIDriver spec.storageCapacity.
    pub storage_capacity: bool,
    /// CSIDriver spec.requiresRepublish.
    pub requires_republish: bool,
    /// CSIDriver spec.seLinuxMount.
    #[serde(rename = "seLinuxMount")]
    pub se_linux_mount: bool,
}

/// CSIDriver spec.fsGroupPolicy.
// Variants carry plain comments: documented variants would make schemars
// write a `oneOf` of constants, whose errors list one line per variant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum FsGroupPolicy {
    // The kubelet changes ownership for RWO volumes with an fsType.
    ReadWriteOnceWithFSType,
    // Always.
    File,
    // Never.
    None,
}

/// CSIDriver spec.volumeLifecycleModes items.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum VolumeLifecycleMode {
    // PersistentVolumes.
    Persistent,
    // CSI in-line ephemeral volumes.
    Ephemeral,
}

/// The socket's place in the pods.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Socket {
    /// Directory of the socket in every pod (absolute).
    #[schemars(regex(pattern = ABS_PATH))]
    pub dir: String,
    /// The socket's file name.
    #[schemars(regex(pattern = r"^[^/]+$"))]
    pub file: String,
}

/// RBAC switch.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rbac {
    /// Create the ClusterRoles, Roles and their bindings.
    pub create: bool,
}

/// An image reference; the tag defaults to the chart's appVersion.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    /// Repository (registry and path).
    pub repository: String,
    /// Tag; empty: the chart's appVersion.
    pub tag: String,
    /// imagePullPolicy.
    pub pull_policy: PullPolicy,
}

/// A sidecar's image: the repository must be set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarImage {
    /// Repository (registry and path).
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Tag; empty: the chart's appVersion.
    pub tag: String,
    /// imagePullPolicy.
    pub pull_policy: PullPolicy,
}

/// imagePullPolicy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum PullPolicy {
    // Always pull.
    Always,
    // Pull when missing.
    IfNotPresent,
    // Never pull.
    Never,
}

/// Leader election of the controller sidecars.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    /// `--leader-election`.
    pub enabled: bool,
    /// `--leader-election-lease-duration` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub lease_duration: String,
    /// `--leader-election-renew-deadline` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub renew_deadline: String,
    /// `--leader-election-retry-period` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub retry_period: String,
}

/// A PodDisruptionBudget.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pdb {
    /// Create it (only with more than one replica).
    pub enabled: bool,
    /// spec.maxUnavailable.
    #[schemars(range(min = 1))]
    pub max_unavailable: u32,
}

/// The driver's container in a pod of the chart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriverContainer {
    /// The driver's image.
    pub image: Image,
    /// The driver's arguments (templated: `{{ .Values.driver.name }}` works;
    /// `$(CSI_ENDPOINT)` and `$(NODE_NAME)` are set).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<Object>,
    /// Container resources.
    pub resources: Object,
    /// Container securityContext.
    pub security_context: Object,
    /// Extra volumeMounts (volumes in extraVolumes).
    pub volume_mounts: Vec<Object>,
}

/// The node driver container: [`DriverContainer`] plus its liveness probe.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDriverContainer {
    /// The driver's image.
    pub image: Image,
    /// The driver's arguments (templated, as the controller's).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<Object>,
    /// Container resources.
    pub resources: Object,
    /// Container securityContext (privileged: it mounts volumes).
    pub security_context: Object,
    /// Extra volumeMounts (volumes in extraVolumes).
    pub volume_mounts: Vec<Object>,
    /// The liveness probe asking livenessprobe's /healthz.
    pub liveness_probe: DriverLivenessProbe,
}

/// The driver container's liveness probe.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriverLivenessProbe {
    /// Probe the driver through livenessprobe.
    pub enabled: bool,
    /// periodSeconds.
    #[schemars(range(min = 1))]
    pub period_seconds: u32,
    /// timeoutSeconds.
    #[schemars(range(min = 1))]
    pub timeout_seconds: u32,
    /// failureThreshold.
    #[schemars(range(min = 1))]
    pub failure_threshold: u32,
}

/// The controller Deployment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Controller {
    /// Deploy it.
    pub enabled: bool,
    /// Replicas (one leads with leader election).
    #[schemars(range(min = 1))]
    pub replicas: u32,
    /// Use the node plugin's socket instead of a driver container.
    pub use_node_socket: bool,
    /// hostNetwork.
    pub host_network: bool,
    /// priorityClassName.
    pub priority_class_name: String,
    /// nodeSelector.
    pub node_selector: BTreeMap<String, String>,
    /// tolerations.
    pub tolerations: Vec<Object>,
    /// affinity.
    pub affinity: Object,
    /// Pod annotations.
    pub pod_annotations: BTreeMap<String, String>,
    /// Pod labels.
    pub pod_labels: BTreeMap<String, String>,
    /// Environment added to every container of the pod.
    pub env: Vec<Object>,
    /// Pod securityContext.
    pub pod_security_context: Object,
    /// securityContext of every sidecar container (and snapshot-controller).
    pub container_security_context: Object,
    /// The PodDisruptionBudget.
    pub pod_disruption_budget: Pdb,
    /// Leader election of the sidecars.
    pub leader_election: LeaderElection,
    /// The driver container.
    pub driver: DriverContainer,
    /// Extra volumes of the pod.
    pub extra_volumes: Vec<Object>,
}

/// The node DaemonSet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePlugin {
    /// Deploy it.
    pub enabled: bool,
    /// hostNetwork.
    pub host_network: bool,
    /// priorityClassName.
    pub priority_class_name: String,
    /// nodeSelector.
    pub node_selector: BTreeMap<String, String>,
    /// tolerations.
    pub tolerations: Vec<Object>,
    /// affinity.
    pub affinity: Object,
    /// Pod annotations.
    pub pod_annotations: BTreeMap<String, String>,
    /// Pod labels.
    pub pod_labels: BTreeMap<String, String>,
    /// Environment added to every container of the pod.
    pub env: Vec<Object>,
    /// The DaemonSet's updateStrategy.
    pub update_strategy: Object,
    /// Pod securityContext.
    pub pod_security_context: Object,
    /// securityContext of the node sidecars.
    pub container_security_context: Object,
    /// The driver container.
    pub driver: NodeDriverContainer,
    /// Extra volumes of the pod.
    pub extra_volumes: Vec<Object>,
}

/// csi-provisioner.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provisioner {
    /// Run it.
    pub enabled: bool,
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// `--timeout` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub timeout: String,
    /// `--worker-threads`.
    #[schemars(range(min = 1, max = 65535))]
    pub worker_threads: u32,
    /// `--extra-create-metadata`.
    pub extra_create_metadata: bool,
    /// `--default-fstype`.
    #[serde(rename = "defaultFSType")]
    pub default_fs_type: String,
    /// `--enable-capacity`.
    pub enable_capacity: bool,
    /// get on volumeattributesclasses (beyond upstream's rbac.yaml).
    #[serde(rename = "vacRBAC")]
    pub vac_rbac: bool,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port (metrics, leader-election health); 0: none.
    pub http_port: u16,
}

/// csi-attacher.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attacher {
    /// Run it.
    pub enabled: bool,
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// `--timeout` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub timeout: String,
    /// `--worker-threads`.
    #[schemars(range(min = 1, max = 65535))]
    pub worker_threads: u32,
    /// create and patch on events (beyond upstream's rbac.yaml).
    #[serde(rename = "eventsRBAC")]
    pub events_rbac: bool,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port; 0: none.
    pub http_port: u16,
}

/// csi-resizer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resizer {
    /// Run it.
    pub enabled: bool,
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// `--timeout` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub timeout: String,
    /// `--workers`.
    #[schemars(range(min = 1, max = 65535))]
    pub workers: u32,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port; 0: none.
    pub http_port: u16,
}

/// csi-snapshotter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshotter {
    /// Run it.
    pub enabled: bool,
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// `--timeout` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub timeout: String,
    /// `--worker-threads`.
    #[schemars(range(min = 1, max = 65535))]
    pub worker_threads: u32,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port; 0: none.
    pub http_port: u16,
}

/// The snapshot-controller Deployment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotController {
    /// Deploy it (one per cluster).
    pub enabled: bool,
    /// Render the vendored snapshot CRDs (kept on uninstall).
    #[serde(rename = "installCRDs")]
    pub install_crds: bool,
    /// Replicas.
    #[schemars(range(min = 1))]
    pub replicas: u32,
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port; 0: none.
    pub http_port: u16,
    /// priorityClassName.
    pub priority_class_name: String,
    /// nodeSelector.
    pub node_selector: BTreeMap<String, String>,
    /// tolerations.
    pub tolerations: Vec<Object>,
    /// Its PodDisruptionBudget.
    pub pod_disruption_budget: Pdb,
}

/// csi-node-driver-registrar.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSidecar {
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port (/healthz); 0: none.
    pub http_port: u16,
}

/// livenessprobe.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LivenessProbe {
    /// Its image.
    pub image: SidecarImage,
    /// `--v`.
    #[schemars(range(min = 0, max = 10))]
    pub log_level: u8,
    /// `--probe-timeout` (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub probe_timeout: String,
    /// Extra arguments (Go flag syntax).
    pub extra_args: Vec<String>,
    /// Container resources.
    pub resources: Object,
    /// `--http-endpoint` port, which the driver's liveness probe asks.
    #[schemars(range(min = 1))]
    pub http_port: u16,
}

/// The StorageClass.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageClass {
    /// Create it.
    pub create: bool,
    /// Its name; empty: `<namespace>-<release fullname>`.
    pub name: String,
    /// Mark it the cluster's default.
    pub is_default: bool,
    /// parameters passed to CreateVolume.
    pub parameters: BTreeMap<String, String>,
    /// reclaimPolicy.
    pub reclaim_policy: ReclaimPolicy,
    /// volumeBindingMode.
    pub volume_binding_mode: VolumeBindingMode,
    /// allowVolumeExpansion.
    pub allow_volume_expansion: bool,
}

/// StorageClass reclaimPolicy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum ReclaimPolicy {
    // Delete the volume with its claim.
    Delete,
    // Keep it.
    Retain,
}

/// StorageClass volumeBindingMode.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum VolumeBindingMode {
    // Provision at once.
    Immediate,
    // Provision when a Pod is scheduled.
    WaitForFirstConsumer,
}

/// The ServiceMonitor.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitor {
    /// Create it (and the headless metrics Services).
    pub enabled: bool,
    /// Scrape interval (Go duration).
    #[schemars(regex(pattern = DURATION))]
    pub interval: String,
    /// Its labels (e.g. the Prometheus' selector).
    pub labels: BTreeMap<String, String>,
}

/// The `helm test` hook.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tests {
    /// Render it.
    pub enabled: bool,
    /// StorageClass of its claim; empty: the chart's.
    pub storage_class_name: String,
    /// Size of its claim (a quantity, e.g. `1Mi`).
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// The test Pod's image; empty repository: csi-provisioner's.
    pub image: Image,
    /// The test Pod's command; empty: the image's entrypoint with `--version`.
    pub command: Vec<String>,
}
