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
