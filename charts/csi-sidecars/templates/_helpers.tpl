{{/* Chart name, truncated to 63 characters. */}}
{{- define "csi-sidecars.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name: the release name, with the chart's name unless it already holds it. */}}
{{- define "csi-sidecars.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the namespace too, so releases in two namespaces do not collide. */}}
{{- define "csi-sidecars.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "csi-sidecars.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "csi-sidecars.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "csi-sidecars.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (controller, node, snapshot-controller). */}}
{{- define "csi-sidecars.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csi-sidecars.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference from {repository, tag}; the tag defaults to the chart's appVersion. */}}
{{- define "csi-sidecars.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}

{{/* The driver's socket path inside the pods. */}}
{{- define "csi-sidecars.socketPath" -}}
{{- printf "%s/%s" .Values.socket.dir .Values.socket.file }}
{{- end }}

{{/* The node plugin's directory on the host. */}}
{{- define "csi-sidecars.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletDir) .Values.driver.name }}
{{- end }}

{{/* Leader election flags of a controller sidecar (context: root). */}}
{{- define "csi-sidecars.leaderElectionArgs" -}}
{{- with .Values.controller.leaderElection }}
{{- if .enabled }}
- --leader-election
- --leader-election-namespace=$(POD_NAMESPACE)
- --leader-election-lease-duration={{ .leaseDuration }}
- --leader-election-renew-deadline={{ .renewDeadline }}
- --leader-election-retry-period={{ .retryPeriod }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment of every controller sidecar: the pod's namespace and name (leader election, capacity owner), plus controller.env. */}}
{{- define "csi-sidecars.controllerEnv" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- with .Values.controller.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Name of the ServiceAccount of a component. */}}
{{- define "csi-sidecars.serviceAccount" -}}
{{- printf "%s-%s" (include "csi-sidecars.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The checks values.schema.json cannot express; each fails with what to set. */}}
{{- define "csi-sidecars.validate" -}}
{{- if and .Values.controller.enabled (not .Values.controller.useNodeSocket) (not .Values.controller.driver.image.repository) }}
{{- fail "controller.driver.image.repository is empty: the controller pod needs the driver's image (or set controller.useNodeSocket=true, or controller.enabled=false)" }}
{{- end }}
{{- if and .Values.node.enabled (not .Values.node.driver.image.repository) }}
{{- fail "node.driver.image.repository is empty: the node DaemonSet needs the driver's image (or set node.enabled=false)" }}
{{- end }}
{{- if and .Values.controller.enabled .Values.driver.attachRequired (not .Values.csiAttacher.enabled) }}
{{- fail "driver.attachRequired is true but csiAttacher.enabled is false: nothing would attach the volumes (set driver.attachRequired=false for a driver without PUBLISH_UNPUBLISH_VOLUME)" }}
{{- end }}
{{- if and .Values.controller.enabled (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection.enabled) }}
{{- fail "controller.replicas > 1 needs controller.leaderElection.enabled: without it every replica would act on every volume" }}
{{- end }}
{{- if and .Values.snapshotController.enabled (gt (int .Values.snapshotController.replicas) 1) (not .Values.controller.leaderElection.enabled) }}
{{- fail "snapshotController.replicas > 1 needs controller.leaderElection.enabled: without it every replica would act on every snapshot" }}
{{- end }}
{{- if and .Values.csiProvisioner.enableCapacity (not .Values.driver.storageCapacity) }}
{{- fail "csiProvisioner.enableCapacity needs driver.storageCapacity=true, else the scheduler ignores the CSIStorageCapacity objects" }}
{{- end }}
{{- if and .Values.tests.enabled (not .Values.tests.storageClassName) (not .Values.storageClass.create) }}
{{- fail "tests.enabled needs a StorageClass for its claim: set storageClass.create=true or tests.storageClassName (or tests.enabled=false)" }}
{{- end }}
{{- end }}
