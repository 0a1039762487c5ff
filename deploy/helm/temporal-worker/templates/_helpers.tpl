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
The pod template, shared by the main Deployment and the draining ones (versioning.draining).
Argument: dict "root" (the chart context) "buildId" ("" for the main Deployment; for a draining
Deployment the earlier build it runs: image tag and BUILD_ID). Placed under `template:`.
*/}}
{{- define "temporal-worker.podTemplate" -}}
{{- $root := .root -}}
{{- $buildId := .buildId | default "" | toString -}}
{{- $fullname := include "temporal-worker.fullname" $root -}}
{{- $healthPort := include "temporal-worker.healthPort" $root | int -}}
{{- $metricsPort := include "temporal-worker.metricsPort" $root | int -}}
{{- $secretsDir := toString ($root.Values.config.SECRETS_DIR | default "/vault/secrets") -}}
{{- $selector := include "temporal-worker.selectorLabels" $root -}}
{{- $podLabels := include "temporal-worker.labels" $root -}}
{{- $image := include "temporal-worker.image" $root -}}
{{- if $buildId -}}
{{- $selector = include "temporal-worker.drainingSelectorLabels" (dict "root" $root "buildId" $buildId) -}}
{{- $podLabels = include "temporal-worker.drainingLabels" (dict "root" $root "buildId" $buildId) -}}
{{- $image = printf "%s:%s" $root.Values.image.repository $buildId -}}
{{- end }}
    metadata:
      labels:
        {{- $podLabels | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A changed setting rolls the pods (env from a ConfigMap is read only at container start).
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if $root.Values.devSecrets.create }}
        checksum/dev-secrets: {{ include (print $root.Template.BasePath "/secrets.yaml") $root | sha256sum }}
        {{- end }}
        {{- if and $root.Values.metrics.podAnnotations (gt $metricsPort 0) }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $metricsPort | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- if $root.Values.vault.enabled }}
        vault.hashicorp.com/agent-inject: "true"
        vault.hashicorp.com/role: {{ $root.Values.vault.role | quote }}
        vault.hashicorp.com/agent-pre-populate-only: {{ $root.Values.vault.prePopulateOnly | quote }}
        vault.hashicorp.com/agent-run-as-same-user: "true"
        vault.hashicorp.com/secret-volume-path: {{ $secretsDir | quote }}
        vault.hashicorp.com/agent-service-account-token-volume-name: vault-token
        vault.hashicorp.com/agent-requests-cpu: {{ $root.Values.vault.agentResources.requests.cpu | quote }}
        vault.hashicorp.com/agent-requests-mem: {{ $root.Values.vault.agentResources.requests.memory | quote }}
        vault.hashicorp.com/agent-limits-cpu: {{ $root.Values.vault.agentResources.limits.cpu | quote }}
        vault.hashicorp.com/agent-limits-mem: {{ $root.Values.vault.agentResources.limits.memory | quote }}
        {{- $_ := include "temporal-worker.vaultVariables" $root }}
        {{- range $file := $root.Values.vault.files }}
        vault.hashicorp.com/agent-inject-secret-{{ $file.name }}: {{ $file.path | quote }}
        vault.hashicorp.com/agent-inject-perms-{{ $file.name }}: "0400"
        vault.hashicorp.com/agent-inject-template-{{ $file.name }}: |
          {{- include "temporal-worker.vaultTemplate" $file | nindent 10 }}
        {{- end }}
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "temporal-worker.serviceAccountName" $root }}
      # The worker needs no Kubernetes API access; only the Vault agent gets a (projected) token.
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      containers:
        - name: worker
          image: {{ $image | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # The image's ENTRYPOINT is `alga-worker`: the worker is PID 1, gets SIGTERM and drains.
          args: ["run"]
          ports:
            - name: health
              containerPort: {{ $healthPort }}
              protocol: TCP
            {{- if gt $metricsPort 0 }}
            - name: metrics
              containerPort: {{ $metricsPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}
          {{- $secretEnv := include "temporal-worker.secretEnv" $root }}
          {{- if or $secretEnv $buildId }}
          env:
            {{- if $buildId }}
            # A draining Deployment runs an earlier build: its version is that build, not the
            # ConfigMap's BUILD_ID (env wins over envFrom).
            - name: BUILD_ID
              value: {{ $buildId | quote }}
            {{- end }}
            {{- with $secretEnv }}
            {{- . | trim | nindent 12 }}
            {{- end }}
          {{- end }}
          startupProbe:
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $root.Values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with $root.Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.tmpVolume.sizeLimit }}
        {{- if $root.Values.vault.enabled }}
        - name: vault-token
          projected:
            sources:
              - serviceAccountToken:
                  path: token
                  expirationSeconds: {{ $root.Values.vault.tokenExpirationSeconds }}
                  {{- with $root.Values.vault.tokenAudience }}
                  audience: {{ . | quote }}
                  {{- end }}
        {{- end }}
        {{- with $root.Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if $root.Values.affinity }}
      affinity:
        {{- toYaml $root.Values.affinity | nindent 8 }}
      {{- else if $root.Values.podAntiAffinity.type }}
      affinity:
        podAntiAffinity:
          {{- if eq $root.Values.podAntiAffinity.type "required" }}
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: {{ $root.Values.podAntiAffinity.topologyKey }}
              labelSelector:
                matchLabels:
                  {{- $selector | nindent 18 }}
          {{- else }}
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: {{ $root.Values.podAntiAffinity.weight }}
              podAffinityTerm:
                topologyKey: {{ $root.Values.podAntiAffinity.topologyKey }}
                labelSelector:
                  matchLabels:
                    {{- $selector | nindent 20 }}
          {{- end }}
      {{- end }}
      {{- with $root.Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{ toYaml . | nindent 10 | trim }}
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
        {{- end }}
      {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
Draining Deployments (versioning.draining): one per earlier build, so workflows pinned to it can
finish. Their pods carry app.kubernetes.io/name <name>-draining, so neither the main Deployment's
selector (name + instance, immutable) nor the Service, PDB or autoscaler select them.
*/}}
{{- define "temporal-worker.drainingName" -}}
{{- printf "%s-draining" (include "temporal-worker.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "temporal-worker.drainingDeploymentName" -}}
{{- $id := .buildId | toString | lower | replace "_" "-" | replace "." "-" | trunc 12 | trimSuffix "-" -}}
{{- printf "%s-drain-%s" (include "temporal-worker.fullname" .root | trunc 44 | trimSuffix "-") $id }}
{{- end }}

{{- define "temporal-worker.drainingSelectorLabels" -}}
app.kubernetes.io/name: {{ include "temporal-worker.drainingName" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
temporal-worker.nineminds.com/build-id: {{ .buildId | toString | quote }}
{{- end }}

{{- define "temporal-worker.drainingLabels" -}}
helm.sh/chart: {{ include "temporal-worker.chart" .root }}
{{ include "temporal-worker.drainingSelectorLabels" . }}
app.kubernetes.io/version: {{ .buildId | toString | trunc 63 | quote }}
app.kubernetes.io/component: draining-worker
app.kubernetes.io/part-of: alga-psa
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/*
The draining build ids (versioning.draining), as a JSON list. Fails on an id that is the image being
deployed, on two ids that would give one Deployment name, and when versioning is off.
*/}}
{{- define "temporal-worker.drainingIds" -}}
{{- $ids := list -}}
{{- $names := dict -}}
{{- $current := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- $versioning := .Values.versioning | default dict -}}
{{- range $raw := ($versioning.draining | default list) -}}
{{- $id := toString $raw -}}
{{- if eq $id $current -}}
{{- fail (printf "versioning.draining: %s is the image being deployed (image.tag); list only earlier builds" $id) -}}
{{- end -}}
{{- $name := include "temporal-worker.drainingDeploymentName" (dict "root" $ "buildId" $id) -}}
{{- if hasKey $names $name -}}
{{- fail (printf "versioning.draining: %s and %s give the same Deployment name %s" (get $names $name) $id $name) -}}
{{- end -}}
{{- $_ := set $names $name $id -}}
{{- $ids = append $ids $id -}}
{{- end -}}
{{- if and $ids (eq (toString ($.Values.config.TEMPORAL_WORKER_DEPLOYMENT_NAME | default "")) "") -}}
{{- fail "versioning.draining needs worker versioning (config.TEMPORAL_WORKER_DEPLOYMENT_NAME): without it no workflow is pinned to a build" -}}
{{- end -}}
{{- toJson $ids -}}
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
{{- $names := list "DATABASE_URL" "DB_PASSWORD_ADMIN" "DB_PASSWORD_SERVER" "INTERNAL_API_SHARED_SECRET" "RESEND_API_KEY" "SMTP_PASSWORD" "STRIPE_SECRET_KEY" "TEMPORAL_API_KEY" "TEMPORAL_WEBHOOK_SECRET" "OTEL_EXPORTER_OTLP_HEADERS" "EXPORT_S3_ACCESS_KEY_ID" "EXPORT_S3_SECRET_ACCESS_KEY" "PAYLOAD_KEYS" -}}
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
of the pods rounded up, as Kubernetes does), plus drainingReplicas per draining build (no surge). Each pod holds up to DB_POOL_MAX pool connections plus one
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
{{- $versioning := .Values.versioning | default dict -}}
{{- $drainingPods := mul (len ($versioning.draining | default list)) (int ($versioning.drainingReplicas | default 0)) | int -}}
{{- $peak := mul (add $pods $surge $drainingPods) $perPod | int -}}
{{- $budget := int .Values.database.connectionBudget -}}
{{- if gt $peak $budget -}}
{{- fail (printf "database connections: up to %d pods (%s + %d rollout surge + %d draining, versioning.draining x drainingReplicas) x (DB_POOL_MAX %d + 1 probe connection) = %d exceeds database.connectionBudget %d. Lower the replicas or config.DB_POOL_MAX, or raise the budget if the database (or PgBouncer pool) allows it (docs/deployment.md)" (add $pods $surge $drainingPods) $source $surge $drainingPods $poolMax $peak $budget) -}}
{{- end -}}
{{- $peak -}}
{{- end }}
