{{/* The CSI driver name is fixed: StorageClasses and PersistentVolumes carry it. */}}
{{- define "csi-xloud.driverName" -}}
block.csi.xloud.tech
{{- end }}

{{- define "csi-xloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name prefix; short enough for "-controller" and friends to fit in 63. */}}
{{- define "csi-xloud.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := include "csi-xloud.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "csi-xloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csi-xloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "csi-xloud.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "csi-xloud.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: csi-xloud
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "csi-xloud.driverImage" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* A sidecar image reference from {repository, tag}. */}}
{{- define "csi-xloud.sidecarImage" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{- define "csi-xloud.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletDir) (include "csi-xloud.driverName" .) }}
{{- end }}

{{- define "csi-xloud.registrationDir" -}}
{{- printf "%s/plugins_registry" (trimSuffix "/" .Values.kubeletDir) }}
{{- end }}

{{/* Leader election flags shared by every controller sidecar. */}}
{{- define "csi-xloud.leaderElectionArgs" -}}
- --leader-election
- --leader-election-namespace=$(NAMESPACE)
{{- end }}

{{- define "csi-xloud.sidecarEnv" -}}
- name: ADDRESS
  value: /csi/csi.sock
- name: NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{- define "csi-xloud.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* HTTP(S)_PROXY and NO_PROXY for the driver's containers, upper and lower case, when set. */}}
{{- define "csi-xloud.proxyEnv" -}}
{{- range $name, $value := dict "HTTP_PROXY" .Values.proxy.httpProxy "HTTPS_PROXY" .Values.proxy.httpsProxy "NO_PROXY" .Values.proxy.noProxy }}
{{- if $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
- name: {{ lower $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The driver container's env: proxy variables, then the component's extraEnv. Call with (list $ component). */}}
{{- define "csi-xloud.driverEnv" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- include "csi-xloud.proxyEnv" $root }}
{{- with $component.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The emulator's image: the driver image plus the emulator extra, released with the same version. */}}
{{- define "csi-xloud.emulatorImage" -}}
{{- printf "%s:%s" .Values.emulator.image.repository (.Values.emulator.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Where the in-cluster emulator answers: only host-network pods of its node reach it. */}}
{{- define "csi-xloud.emulatorUrl" -}}
{{- printf "http://127.0.0.1:%d" (int .Values.emulator.port) }}
{{- end }}

{{/* The clouds.yaml the emulator writes into its data dir, and where the controller reads it. */}}
{{- define "csi-xloud.emulatorCloudsYaml" -}}
{{- printf "%s/clouds.yaml" (trimSuffix "/" .Values.emulator.dataDir) }}
{{- end }}

{{/* The node's emulated server: named after the Kubernetes node, its disks under the data dir. */}}
{{- define "csi-xloud.emulatorDeviceDir" -}}
{{- printf "%s/servers/$(NODE_NAME)/by-id" (trimSuffix "/" .Values.emulator.dataDir) }}
{{- end }}

{{- define "csi-xloud.nodeNameEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}
