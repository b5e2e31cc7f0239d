{{/*
The chart name, cut to the 63 characters a label value may hold.
*/}}
{{- define "spotwise.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, prefixed with the chart name
unless it already contains it.
*/}}
{{- define "spotwise.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "spotwise.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spotwise.labels" -}}
helm.sh/chart: {{ include "spotwise.chart" . }}
{{ include "spotwise.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spotwise
{{- end }}

{{- define "spotwise.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spotwise.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spotwise.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spotwise.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spotwise.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Operator replicas: as given, else 2 peered or 1 standalone.
*/}}
{{- define "spotwise.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- ternary 1 2 .Values.standalone }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
The served namespaces, each once, in the order given.
*/}}
{{- define "spotwise.namespaces" -}}
{{- uniq .Values.watchNamespaces | toJson }}
{{- end }}

{{/*
Settings that contradict each other fail the render with one line.
*/}}
{{- define "spotwise.validate" -}}
{{- if and .Values.standalone (gt (int (include "spotwise.replicas" .)) 1) }}
{{- fail (printf "standalone: true runs without peering, so replicaCount must be 0 or 1 (got %s): two standalone operators would both scale the same workloads" (include "spotwise.replicas" .)) }}
{{- end }}
{{- if and .Values.livenessProbe.enabled (eq (int .Values.livenessProbe.port) (int .Values.metrics.port)) }}
{{- fail (printf "livenessProbe.port and metrics.port are both %d: the operator serves them on separate ports" (int .Values.metrics.port)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (eq (int .Values.metrics.port) 0) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics: metrics.port is 0" }}
{{- end }}
{{- end }}

{{/*
`spotwise run` arguments (docs/operator.md#running-it).
*/}}
{{- define "spotwise.args" -}}
- run
{{- $namespaces := include "spotwise.namespaces" . | fromJsonArray }}
{{- if $namespaces }}
{{- range $namespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
{{- if .Values.standalone }}
- --standalone
{{- end }}
{{- if .Values.livenessProbe.enabled }}
- {{ printf "--liveness=http://0.0.0.0:%d/healthz" (int .Values.livenessProbe.port) | quote }}
{{- end }}
- {{ printf "--metrics-port=%d" (int .Values.metrics.port) | quote }}
{{- if .Values.verbose }}
- --verbose
{{- end }}
{{- end }}
