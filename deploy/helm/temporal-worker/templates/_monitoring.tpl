{{/*
Monitoring objects (values `monitoring`): PodMonitor, PrometheusRule, Grafana dashboard ConfigMap.
The alert rules and the dashboard are files/alerts.yaml and files/dashboard.json, symlinks to the one
copy in deploy/monitoring/ (Helm follows them when it loads or packages the chart).
*/}}

{{/* Labels of every monitoring object: the chart's, plus monitoring.additionalLabels (the Prometheus
Operator's podMonitorSelector / ruleSelector match on these). */}}
{{- define "temporal-worker.monitoringLabels" -}}
{{ include "temporal-worker.labels" . }}
{{- with .Values.monitoring.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A file of files/ that must exist and not be empty. Argument: dict "root" . "path" "files/x". */}}
{{- define "temporal-worker.monitoringFile" -}}
{{- $text := .root.Files.Get .path -}}
{{- if not $text -}}
{{- fail (printf "%s is missing or empty: it is a symlink to deploy/monitoring/ (install or package the chart from a checkout of the repository)" .path) -}}
{{- end -}}
{{- $text -}}
{{- end }}
