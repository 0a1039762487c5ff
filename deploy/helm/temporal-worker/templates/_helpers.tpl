{{/*
Names and labels.
*/}}
{{- define "temporal-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "temporal-worker.fullname" -}}
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

{{- define "temporal-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "temporal-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "temporal-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "temporal-worker.labels" -}}
helm.sh/chart: {{ include "temporal-worker.chart" . }}
{{ include "temporal-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: alga-psa
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "temporal-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "temporal-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image: repository:tag, or repository:tag@digest when a digest is given.
*/}}
{{- define "temporal-worker.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Ports, from the worker's own settings so probes, Service and NetworkPolicy always agree with it.
*/}}
{{- define "temporal-worker.healthPort" -}}
{{- $p := toString (.Values.config.HEALTH_CHECK_PORT | default "8080") }}
{{- if eq $p "" }}8080{{ else }}{{ $p | int }}{{ end }}
{{- end }}

{{- define "temporal-worker.metricsPort" -}}
{{- $p := .Values.config.METRICS_PORT }}
{{- if or (kindIs "invalid" $p) (eq (toString $p) "") }}9464{{ else }}{{ toString $p | int }}{{ end }}
{{- end }}

{{/*
The secret variables the worker reads (alga_worker.config: secret=True), with the pepper under its
configured name (PASSWORD_PEPPER_VARIABLE). JSON list; the chart's tests compare it with config.py.
*/}}
{{- define "temporal-worker.pepperVariable" -}}
{{- toString (.Values.config.PASSWORD_PEPPER_VARIABLE | default "ALGA_AUTH_KEY") }}
{{- end }}

{{- define "temporal-worker.secretVariables" -}}
{{- $names := list "DATABASE_URL" "DB_PASSWORD_ADMIN" "DB_PASSWORD_SERVER" "INTERNAL_API_SHARED_SECRET" "RESEND_API_KEY" "SMTP_PASSWORD" "STRIPE_SECRET_KEY" "TEMPORAL_API_KEY" "TEMPORAL_WEBHOOK_SECRET" -}}
{{- $names = append $names (include "temporal-worker.pepperVariable" .) -}}
{{- toJson (sortAlpha $names) -}}
{{- end }}

{{/*
Variables delivered by Vault files: JSON {NAME: file}. Fails on a name the worker does not read as a
secret, or one delivered by two files (the later file would silently win).
*/}}
{{- define "temporal-worker.vaultVariables" -}}
{{- $known := include "temporal-worker.secretVariables" . | fromJsonArray -}}
{{- $seen := dict -}}
{{- if .Values.vault.enabled -}}
{{- range $file := .Values.vault.files -}}
{{- range $name, $key := $file.env -}}
{{- if not (has $name $known) -}}
{{- fail (printf "vault.files[%s].env.%s: the worker does not read %s as a secret (it reads: %s)" $file.name $name $name (join ", " $known)) -}}
{{- end -}}
{{- if hasKey $seen $name -}}
{{- fail (printf "vault.files: %s is delivered by both %s and %s" $name (get $seen $name) $file.name) -}}
{{- end -}}
{{- $_ := set $seen $name $file.name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $seen -}}
{{- end }}

{{/*
Secret variables as container env entries: Vault wins (then the variable is not in env at all), then
an existing Kubernetes Secret (`secrets`), then the local-development Secret (`devSecrets`).
*/}}
{{- define "temporal-worker.secretEnv" -}}
{{- $root := . -}}
{{- $known := include "temporal-worker.secretVariables" . | fromJsonArray -}}
{{- $vault := include "temporal-worker.vaultVariables" . | fromJson -}}
{{- $dev := dict -}}
{{- if .Values.devSecrets.create -}}{{- $dev = .Values.devSecrets.values | default dict -}}{{- end -}}
{{- range $name, $ref := .Values.secrets -}}
{{- if and $ref $ref.secretName (not (has $name $known)) -}}
{{- fail (printf "secrets.%s: the worker does not read %s as a secret (it reads: %s)" $name $name (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- range $name, $value := $dev -}}
{{- if not (has $name $known) -}}
{{- fail (printf "devSecrets.values.%s: the worker does not read %s as a secret" $name $name) -}}
{{- end -}}
{{- end -}}
{{- range $name := $known -}}
{{- $ref := get $root.Values.secrets $name -}}
{{- if hasKey $vault $name -}}
{{- else if and $ref $ref.secretName }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName | quote }}
      key: {{ required (printf "secrets.%s.key is required" $name) $ref.key | quote }}
      optional: {{ $ref.optional | default false }}
{{- else if ne (toString (get $dev $name)) "" }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ printf "%s-dev-secrets" (include "temporal-worker.fullname" $root) | quote }}
      key: {{ $name | quote }}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
ConfigMap data: every non-empty `config` entry, as strings. BUILD_ID defaults to the image tag.
*/}}
{{- define "temporal-worker.configData" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if eq (toString ($cfg.BUILD_ID | default "")) "" -}}
{{- $_ := set $cfg "BUILD_ID" (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- $secretNames := include "temporal-worker.secretVariables" . | fromJsonArray -}}
{{- range $name := keys $cfg | sortAlpha -}}
{{- $value := get $cfg $name -}}
{{- if has $name $secretNames -}}
{{- fail (printf "config.%s is a secret: deliver it through vault.files, secrets or devSecrets" $name) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{ $name }}: {{ toString $value | quote }}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
One Vault agent template per file: `export NAME='value'` lines. Single quotes with ' escaped as '\''
so any value (spaces, $, ", \) reads back exactly through shlex in alga_worker.config. `index` plus
replaceAll make a missing key fail the agent (the pod does not start) instead of rendering "<no value>".
*/}}
{{- define "temporal-worker.vaultTemplate" -}}
{{- printf "{{- with secret %q -}}" .path }}
{{- range $name := keys .env | sortAlpha }}
{{ printf `export %s='{{ index .Data.data %q | replaceAll "'" "'\\''" }}'` $name (get $.env $name) }}
{{- end }}
{{ "{{- end }}" }}
{{- end }}

{{/*
Autoscaling mode: keda (ScaledObject on the task-queue backlog), hpa (CPU) or none (replicaCount).
*/}}
{{- define "temporal-worker.autoscalingMode" -}}
{{- $mode := .Values.autoscaling.mode | default "none" | toString -}}
{{- if not (has $mode (list "keda" "hpa" "none")) -}}
{{- fail (printf "autoscaling.mode must be keda, hpa or none, not %q" $mode) -}}
{{- end -}}
{{- if and (ne $mode "none") (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- $mode -}}
{{- end }}

{{/*
Database connection budget. Peak pods: maxReplicas (keda: the ScaledObject's maxReplicaCount; hpa: the
HPA's maxReplicas) or replicaCount (none), plus the rolling update's maxSurge (a number, or a percentage
of the pods rounded up, as Kubernetes does). Each pod holds up to DB_POOL_MAX pool connections plus one
for the readiness probe's schema check. Fails when the peak exceeds database.connectionBudget; renders
the peak otherwise.
*/}}
{{- define "temporal-worker.connectionBudget" -}}
{{- $mode := include "temporal-worker.autoscalingMode" . -}}
{{- $pods := 0 -}}
{{- $source := "" -}}
{{- if eq $mode "none" -}}
{{- $pods = int .Values.replicaCount -}}
{{- $source = printf "replicaCount %d" $pods -}}
{{- else -}}
{{- $pods = int .Values.autoscaling.maxReplicas -}}
{{- $source = printf "autoscaling.maxReplicas %d (%s)" $pods (ternary "the ScaledObject's maxReplicaCount" "the HPA's maxReplicas" (eq $mode "keda")) -}}
{{- end -}}
{{- $surge := 0 -}}
{{- if eq (toString (.Values.strategy.type | default "RollingUpdate")) "RollingUpdate" -}}
{{- $raw := toString (dig "rollingUpdate" "maxSurge" "25%" (.Values.strategy | default dict)) -}}
{{- if hasSuffix "%" $raw -}}
{{- $percent := int (trimSuffix "%" $raw) -}}
{{- $surge = div (add (mul $pods $percent) 99) 100 | int -}}
{{- else -}}
{{- $surge = int $raw -}}
{{- end -}}
{{- end -}}
{{- $poolMax := int (toString (.Values.config.DB_POOL_MAX | default "10")) -}}
{{- $perPod := add $poolMax 1 | int -}}
{{- $peak := mul (add $pods $surge) $perPod | int -}}
{{- $budget := int .Values.database.connectionBudget -}}
{{- if gt $peak $budget -}}
{{- fail (printf "database connections: up to %d pods (%s + %d rollout surge) x (DB_POOL_MAX %d + 1 probe connection) = %d exceeds database.connectionBudget %d. Lower the replicas or config.DB_POOL_MAX, or raise the budget if the database (or PgBouncer pool) allows it (docs/deployment.md)" (add $pods $surge) $source $surge $poolMax $peak $budget) -}}
{{- end -}}
{{- $peak -}}
{{- end }}
