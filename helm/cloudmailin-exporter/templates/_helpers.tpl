{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "cloudmailin-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name: release-chart, unless the release name already contains the chart name. */}}
{{- define "cloudmailin-exporter.fullname" -}}
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

{{- define "cloudmailin-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cloudmailin-exporter.labels" -}}
helm.sh/chart: {{ include "cloudmailin-exporter.chart" . }}
{{ include "cloudmailin-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cloudmailin-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudmailin-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cloudmailin-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cloudmailin-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the webhook credentials. */}}
{{- define "cloudmailin-exporter.secretName" -}}
{{- default (include "cloudmailin-exporter.fullname" .) .Values.webhook.auth.existingSecret }}
{{- end }}

{{/* The public webhook base URL, for NOTES. */}}
{{- define "cloudmailin-exporter.publicUrl" -}}
{{- if .Values.webhook.publicUrl }}
{{- .Values.webhook.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- printf "https://%s" (first .Values.ingress.hosts) }}
{{- else }}
{{- "https://YOUR-PUBLIC-HOST" }}
{{- end }}
{{- end }}

{{/* The image reference; a parent chart's global.imageRegistry replaces image.registry. */}}
{{- define "cloudmailin-exporter.image" -}}
{{- $registry := .Values.image.registry }}
{{- with .Values.global }}{{ with .imageRegistry }}{{ $registry = . }}{{ end }}{{ end }}
{{- $reference := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- if $registry }}{{ printf "%s/%s" $registry $reference }}{{ else }}{{ $reference }}{{ end }}
{{- end }}

{{/* imagePullSecrets of the pod: the chart's, then the parent chart's (names or {name: ...}). */}}
{{- define "cloudmailin-exporter.imagePullSecrets" -}}
{{- $secrets := list }}
{{- range .Values.imagePullSecrets }}{{ $secrets = append $secrets (dict "name" .name) }}{{ end }}
{{- with .Values.global }}
{{- range .imagePullSecrets }}
{{- if kindIs "string" . }}{{ $secrets = append $secrets (dict "name" .) }}{{ else }}{{ $secrets = append $secrets (dict "name" .name) }}{{ end }}
{{- end }}
{{- end }}
{{- with $secrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whether the chart's own Secret carries the webhook credentials. */}}
{{- define "cloudmailin-exporter.ownsAuth" -}}
{{- if not .Values.webhook.auth.existingSecret }}true{{ end }}
{{- end }}

{{/* Whether the chart's own Secret carries the Redis URL (given inline in the values). */}}
{{- define "cloudmailin-exporter.ownsStateUrl" -}}
{{- if and (eq .Values.state.store "redis") (not .Values.state.redis.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Refusals the schema cannot word clearly: a schema error could only say "maximum: got 2,
want 1", not why.
*/}}
{{- define "cloudmailin-exporter.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if and (gt $replicas 1) (eq .Values.state.store "sqlite") }}
{{- fail (printf "replicaCount is %d with state.store=sqlite: one SQLite file has one writer (the exporter locks it and a second pod would exit), so run one replica, or set state.store=redis to run several" $replicas) }}
{{- end }}
{{- if and (gt $replicas 1) (eq .Values.state.store "memory") }}
{{- fail (printf "replicaCount is %d with state.store=memory: each pod would keep its own pending registrations, so a delivery received by another pod is never timed; set state.store=redis to run several" $replicas) }}
{{- end }}
{{- end }}
