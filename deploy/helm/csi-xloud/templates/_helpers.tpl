{{/* The CSI driver name is fixed: StorageClasses and PersistentVolumes carry it. */}}
{{- define "csi-xloud.driverName" -}}
block.csi.xloud.tech
{{- end }}

{{- define "csi-xloud.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name prefix; short enough for "-controller" and friends to fit in 63. */}}
{{- define "csi-xloud.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 45 | trimSuffix "-" }}
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
