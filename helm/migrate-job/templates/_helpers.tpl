{{/*
Named templates of the migrate-job chart. One Job template serves both modes; the container
parts are shared with the await-head init container that other charts include.

Values arrive as JSON numbers (float64), so every count is passed through `int` before it is
printed (`quote` of float64 1000000 would print "1e+06"), and every duration through
"migrate-job.seconds", which keeps a fraction the runner accepts (2.5 stays 2.5).
*/}}

{{/* A number of seconds as the runner reads it: whole numbers without an exponent, others as is. */}}
{{- define "migrate-job.seconds" -}}
{{- if eq (float64 .) (float64 (int .)) }}{{ int . }}{{ else }}{{ toString (float64 .) }}{{ end }}
{{- end }}

{{/* ---------------------------------------------------------------- names and labels */}}

{{- define "migrate-job.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "migrate-job.fullname" -}}
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

{{- define "migrate-job.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "migrate-job.selectorLabels" -}}
app.kubernetes.io/name: {{ include "migrate-job.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "migrate-job.labels" -}}
helm.sh/chart: {{ include "migrate-job.chart" . }}
{{ include "migrate-job.selectorLabels" . }}
app.kubernetes.io/version: {{ include "migrate-job.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: migration
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Hook mode: the release's fullname (before-hook-creation replaces the previous Job).
Plain mode: fullname + 10 hex digits of the sha256 of the rendered Job spec, so that a changed
spec makes a new Job (never "spec.template: field is immutable") and an unchanged spec keeps the
name. Job names end up in a pod label, hence the 63-character limit.
Argument: dict "scope" (the chart scope) "spec" (the rendered Job spec).
*/}}
{{- define "migrate-job.jobName" -}}
{{- $fullname := include "migrate-job.fullname" .scope }}
{{- if .scope.Values.useHelmHooks }}
{{- $fullname }}
{{- else }}
{{- printf "%s-%s" ($fullname | trunc 52 | trimSuffix "-") (.spec | sha256sum | trunc 10) }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- image */}}

{{- define "migrate-job.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "migrate-job.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "migrate-job.imageTag" .) }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- credentials */}}

{{/* The chart-made Secret, rendered only when database.url is set. */}}
{{- define "migrate-job.urlSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "migrate-job.fullname" .) }}
{{- end }}
{{- end }}

{{- define "migrate-job.urlSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
url
{{- end }}
{{- end }}

{{- define "migrate-job.secretsDir" -}}
/var/run/secrets/migrate-job
{{- end }}

{{/*
Ordering of a chart-made Secret: it must exist before the Job's pod starts, or the pod sits in
CreateContainerConfigError. A pre-install hook runs before ordinary resources exist, so the
Secret becomes a hook with a lower weight. Argo CD ignores every Helm hook once any Argo CD hook
annotation is present, and orders by sync wave, so Argo CD annotations of the Job are mirrored
one wave earlier.
*/}}
{{- define "migrate-job.secretAnnotations" -}}
{{- $a := dict }}
{{- if .Values.useHelmHooks }}
{{- $_ := set $a "helm.sh/hook" "pre-install,pre-upgrade" }}
{{- $_ := set $a "helm.sh/hook-weight" (sub (int .Values.hook.weight) 1 | toString) }}
{{- $_ := set $a "helm.sh/hook-delete-policy" .Values.hook.deletePolicy }}
{{- end }}
{{- $job := .Values.jobAnnotations | default dict }}
{{- $argoHook := index $job "argocd.argoproj.io/hook" }}
{{- $argoWave := index $job "argocd.argoproj.io/sync-wave" }}
{{- if $argoHook }}
{{- $_ := set $a "argocd.argoproj.io/hook" $argoHook }}
{{- with index $job "argocd.argoproj.io/hook-delete-policy" }}
{{- $_ := set $a "argocd.argoproj.io/hook-delete-policy" . }}
{{- end }}
{{- end }}
{{- if or $argoHook $argoWave }}
{{- $_ := set $a "argocd.argoproj.io/sync-wave" (sub (int (default "0" $argoWave)) 1 | toString) }}
{{- end }}
{{- if $a }}
{{- toYaml $a }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- validation */}}

{{/*
Checks that the schema cannot express, and the schema's own checks again for renders that skip
it (helm --skip-schema-validation). Each message says what to change.
*/}}
{{- define "migrate-job.validate" -}}
{{- $db := .Values.database }}
{{- if and $db.existingSecret $db.url }}
{{- fail "migrate-job: set either database.existingSecret or database.url, not both" }}
{{- end }}
{{- if .Values.fleet.enabled }}
{{- $fleet := .Values.fleet }}
{{- if and $fleet.targetsSecret.name $fleet.targetsQuery }}
{{- fail "migrate-job: set either fleet.targetsSecret.name (a targets file) or fleet.targetsQuery (a query on the tenant registry), not both" }}
{{- end }}
{{- if not (or $fleet.targetsSecret.name $fleet.targetsQuery) }}
{{- fail "migrate-job: fleet.enabled needs fleet.targetsSecret.name, the Secret holding the targets file, or fleet.targetsQuery, a query on the tenant registry" }}
{{- end }}
{{- if and $fleet.catalogSecret.name (not $fleet.targetsQuery) }}
{{- fail "migrate-job: fleet.catalogSecret names the database fleet.targetsQuery runs on, and fleet.targetsQuery is not set" }}
{{- end }}
{{- if and $fleet.targetsQuery (not (or $fleet.catalogSecret.name $db.existingSecret $db.url)) }}
{{- fail "migrate-job: fleet.targetsQuery needs the database it runs on: set fleet.catalogSecret.name (a Secret holding its URL) or database.*" }}
{{- end }}
{{- $_ := include "migrate-job.args" . }}
{{- else if not (or $db.existingSecret $db.url) }}
{{- fail "migrate-job: no database credentials: set database.existingSecret (recommended) or database.url" }}
{{- end }}
{{- $minimum := add (ceil .Values.runner.waitTimeout | int) (ceil .Values.runner.lockTimeout | int) }}
{{- if not (kindIs "invalid" .Values.activeDeadlineSeconds) }}
{{- if le (int .Values.activeDeadlineSeconds) $minimum }}
{{- fail (printf "migrate-job: activeDeadlineSeconds (%d) must be larger than runner.waitTimeout + runner.lockTimeout (%d), or the Job is killed while the runner still waits" (int .Values.activeDeadlineSeconds) $minimum) }}
{{- end }}
{{- end }}
{{- $managed := list "DATABASE_URL" "DATABASE_URL_FILE" "DATABASE_PASSWORD_FILE" "ALEMBIC_CONFIG" "MIGRATE_WAIT_TIMEOUT" "MIGRATE_CONNECT_TIMEOUT" "MIGRATE_LOCK_TIMEOUT" "MIGRATE_LOCK_NAME" "MIGRATE_LOG_FORMAT" "MIGRATE_LOG_LEVEL" "MIGRATE_DDL_LOCK_TIMEOUT" "MIGRATE_STATEMENT_TIMEOUT" "MIGRATE_DDL_RETRIES" "MIGRATE_TERMINATION_LOG" "MIGRATE_HISTORY" "MIGRATE_VERIFY" "MIGRATE_DATABASE_AHEAD" "MIGRATE_TARGETS_FILE" "MIGRATE_TARGETS_QUERY" "MIGRATE_TARGETS_URL" "MIGRATE_TARGETS_URL_FILE" "MIGRATE_PARALLEL" "MIGRATE_ON_ERROR" "MIGRATE_CANARY" "MIGRATE_SHARD_INDEX" "MIGRATE_SHARD_COUNT" }}
{{- range .Values.extraEnv }}
{{- if has .name $managed }}
{{- fail (printf "migrate-job: extraEnv sets %s, which the chart sets from its own values (see the chart README)" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- Job spec */}}

{{- define "migrate-job.activeDeadlineSeconds" -}}
{{- if kindIs "invalid" .Values.activeDeadlineSeconds }}
{{- add (ceil .Values.runner.waitTimeout | int) (ceil .Values.runner.lockTimeout | int) 600 }}
{{- else }}
{{- int .Values.activeDeadlineSeconds }}
{{- end }}
{{- end }}

{{/*
Non-retryable exit codes fail the Job at once (in fleet mode the index: the other shards go
on); everything else counts against backoffLimit (backoffLimitPerIndex).
The API wants the codes sorted and unique.
*/}}
{{- define "migrate-job.podFailurePolicy" -}}
{{- $codes := list }}
{{- range .Values.podFailurePolicy.failJobExitCodes }}
{{- $codes = append $codes (int .) }}
{{- end }}
{{- $sorted := list }}
{{- range $code := until 256 }}
{{- if has $code $codes }}
{{- $sorted = append $sorted $code }}
{{- end }}
{{- end }}
{{- if or $sorted .Values.podFailurePolicy.ignoreDisruptions }}
rules:
  {{- if $sorted }}
  - action: {{ if .Values.fleet.enabled }}FailIndex{{ else }}FailJob{{ end }}
    onExitCodes:
      containerName: migrate
      operator: In
      values: {{ toJson $sorted }}
  {{- end }}
  {{- if .Values.podFailurePolicy.ignoreDisruptions }}
  - action: Ignore
    onPodConditions:
      - type: DisruptionTarget
        status: "True"
  {{- end }}
{{- end }}
{{- end }}

{{- define "migrate-job.jobAnnotations" -}}
{{- $a := dict }}
{{- if .Values.useHelmHooks }}
{{- $_ := set $a "helm.sh/hook" "pre-install,pre-upgrade" }}
{{- $_ := set $a "helm.sh/hook-weight" (int .Values.hook.weight | toString) }}
{{- $_ := set $a "helm.sh/hook-delete-policy" .Values.hook.deletePolicy }}
{{- end }}
{{- $a = mergeOverwrite $a (.Values.jobAnnotations | default dict) }}
{{- if $a }}
{{- toYaml $a }}
{{- end }}
{{- end }}

{{/* One map, so that a user label may replace a chart label instead of repeating its key. */}}
{{- define "migrate-job.jobLabels" -}}
{{- toYaml (mergeOverwrite (include "migrate-job.labels" . | fromYaml) (.Values.jobLabels | default dict)) }}
{{- end }}

{{- define "migrate-job.podLabels" -}}
{{- $l := include "migrate-job.labels" . | fromYaml }}
{{- if .Values.disableSidecarInjection }}
{{- $_ := set $l "sidecar.istio.io/inject" "false" }}
{{- end }}
{{- toYaml (mergeOverwrite $l (.Values.podLabels | default dict)) }}
{{- end }}

{{- define "migrate-job.podAnnotations" -}}
{{- $a := dict }}
{{- if .Values.disableSidecarInjection }}
{{- $_ := set $a "sidecar.istio.io/inject" "false" }}
{{- $_ := set $a "linkerd.io/inject" "disabled" }}
{{- end }}
{{- $a = mergeOverwrite $a (.Values.podAnnotations | default dict) }}
{{- if $a }}
{{- toYaml $a }}
{{- end }}
{{- end }}

{{/*
The container's args. Fleet mode runs fleet-upgrade: `upgrade REV ...` becomes
`fleet-upgrade REV ...`; any other command is refused (it would migrate one database, or none).
*/}}
{{- define "migrate-job.args" -}}
{{- $args := .Values.args | default list }}
{{- if .Values.fleet.enabled }}
{{- $command := first $args | default "upgrade" }}
{{- if not (has $command (list "upgrade" "fleet-upgrade")) }}
{{- fail (printf "migrate-job: fleet mode runs fleet-upgrade; args starts with %s (use [upgrade, REV] or [fleet-upgrade, REV])" $command) }}
{{- end }}
{{- $args = prepend (rest $args) "fleet-upgrade" }}
{{- end }}
{{- with $args }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The Job spec; its sha256 names the Job in plain mode. In fleet mode an Indexed Job: each index
is one shard, so a retry reruns that shard alone (and only its targets still left do work), and
no default deadline, as a fleet's duration grows with its targets.
*/}}
{{- define "migrate-job.jobSpec" -}}
{{- if .Values.fleet.enabled -}}
completionMode: Indexed
completions: {{ int .Values.fleet.shards }}
parallelism: {{ int .Values.fleet.parallelism }}
backoffLimitPerIndex: {{ int .Values.fleet.backoffLimitPerIndex }}
{{- if not (kindIs "invalid" .Values.fleet.maxFailedIndexes) }}
maxFailedIndexes: {{ int .Values.fleet.maxFailedIndexes }}
{{- end }}
{{- if not (kindIs "invalid" .Values.activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ int .Values.activeDeadlineSeconds }}
{{- end }}
{{- else -}}
backoffLimit: {{ int .Values.backoffLimit }}
activeDeadlineSeconds: {{ include "migrate-job.activeDeadlineSeconds" . }}
{{- end }}
{{- if and (not .Values.useHelmHooks) (not (kindIs "invalid" .Values.ttlSecondsAfterFinished)) }}
ttlSecondsAfterFinished: {{ int .Values.ttlSecondsAfterFinished }}
{{- end }}
{{- with include "migrate-job.podFailurePolicy" . | trim }}
podFailurePolicy:
  {{- . | nindent 2 }}
{{- end }}
template:
  {{- include "migrate-job.podTemplate" . | nindent 2 }}
{{- end }}

{{/* The pod of the migration Job, and of a one-off Job (one-off.yaml, with its own scope). */}}
{{- define "migrate-job.podTemplate" -}}
metadata:
  labels:
    {{- include "migrate-job.podLabels" . | trim | nindent 4 }}
  {{- with include "migrate-job.podAnnotations" . | trim }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with .Values.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: migrate
      {{- include "migrate-job.container" (dict "scope" . "initContainer" false) | nindent 6 }}
      {{- with include "migrate-job.args" . | trim }}
      args:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with include "migrate-job.volumeMounts" . | trim }}
      volumeMounts:
        {{- . | nindent 8 }}
      {{- end }}
  {{- with include "migrate-job.volumes" . | trim }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- container */}}

{{/* An environment variable that is rendered only when its value is set. Argument: list NAME VALUE. */}}
{{- define "migrate-job.optionalEnv" -}}
{{- $value := index . 1 }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
- name: {{ index . 0 }}
  value: {{ if kindIs "string" $value }}{{ $value | quote }}{{ else }}{{ include "migrate-job.seconds" $value | quote }}{{ end }}
{{- end }}
{{- end }}

{{/*
Environment of the runner. The init container runs in another chart's pod, where this chart
cannot add volumes, so it always reads the URL from an environment variable. A fleet names its
databases in the targets file (database.* optional), and leaves MIGRATE_SHARD_INDEX to
JOB_COMPLETION_INDEX, which Kubernetes sets in each pod of an Indexed Job.
Argument: dict "scope" "initContainer".
*/}}
{{- define "migrate-job.env" -}}
{{- $v := .scope.Values }}
{{- $dir := include "migrate-job.secretsDir" .scope }}
{{- if and $v.fleet.enabled (not (or $v.database.existingSecret $v.database.url)) }}
{{- else if and $v.database.urlAsFile (not .initContainer) }}
- name: DATABASE_URL_FILE
  value: {{ printf "%s/database/url" $dir }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "migrate-job.urlSecretName" .scope }}
      key: {{ include "migrate-job.urlSecretKey" .scope }}
{{- end }}
{{- if $v.database.passwordSecret.name }}
- name: DATABASE_PASSWORD_FILE
  value: {{ printf "%s/password/password" $dir }}
{{- end }}
{{- include "migrate-job.optionalEnv" (list "ALEMBIC_CONFIG" $v.runner.alembicConfig) }}
- name: MIGRATE_WAIT_TIMEOUT
  value: {{ include "migrate-job.seconds" $v.runner.waitTimeout | quote }}
- name: MIGRATE_CONNECT_TIMEOUT
  value: {{ include "migrate-job.seconds" $v.runner.connectTimeout | quote }}
- name: MIGRATE_LOCK_TIMEOUT
  value: {{ include "migrate-job.seconds" $v.runner.lockTimeout | quote }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_LOCK_NAME" $v.runner.lockName) }}
- name: MIGRATE_LOG_FORMAT
  value: {{ $v.runner.logFormat | quote }}
- name: MIGRATE_LOG_LEVEL
  value: {{ $v.runner.logLevel | quote }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_DDL_LOCK_TIMEOUT" $v.runner.ddlLockTimeout) }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_STATEMENT_TIMEOUT" $v.runner.statementTimeout) }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_DDL_RETRIES" $v.runner.ddlRetries) }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_TERMINATION_LOG" $v.runner.terminationLog) }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_HISTORY" $v.runner.history) }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_VERIFY" $v.runner.verify) }}
{{- include "migrate-job.optionalEnv" (list "MIGRATE_DATABASE_AHEAD" $v.runner.databaseAhead) }}
{{- if and $v.fleet.enabled (not .initContainer) }}
{{- if $v.fleet.targetsQuery }}
- name: MIGRATE_TARGETS_QUERY
  value: {{ $v.fleet.targetsQuery | quote }}
{{- if $v.fleet.catalogSecret.name }}
- name: MIGRATE_TARGETS_URL_FILE
  value: {{ printf "%s/catalog/url" $dir }}
{{- end }}
{{- else }}
- name: MIGRATE_TARGETS_FILE
  value: {{ printf "%s/targets/%s" $dir (include "migrate-job.targetsFile" $v) }}
{{- end }}
- name: MIGRATE_SHARD_COUNT
  value: {{ int $v.fleet.shards | toString | quote }}
- name: MIGRATE_PARALLEL
  value: {{ int $v.fleet.parallel | toString | quote }}
- name: MIGRATE_ON_ERROR
  value: {{ $v.fleet.onError | quote }}
- name: MIGRATE_CANARY
  value: {{ if kindIs "string" $v.fleet.canary }}{{ $v.fleet.canary | quote }}{{ else }}{{ int $v.fleet.canary | toString | quote }}{{ end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
What the migration container and the await-head init container share: image, command,
environment, resources, security context, termination message. Argument: dict "scope" "initContainer".
*/}}
{{- define "migrate-job.container" -}}
{{- $v := .scope.Values -}}
image: {{ include "migrate-job.image" .scope }}
imagePullPolicy: {{ $v.image.pullPolicy }}
{{- with $v.command }}
command:
  {{- toYaml . | nindent 2 }}
{{- end }}
env:
  {{- include "migrate-job.env" . | trim | nindent 2 }}
{{- with $v.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if hasPrefix "/" $v.runner.terminationLog }}
terminationMessagePath: {{ $v.runner.terminationLog }}
{{- end }}
terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

{{/*
The targets file's name in the pod: the runner reads YAML by the name's suffix, so a key ending
in .yaml or .yml keeps it. Argument: .Values.
*/}}
{{- define "migrate-job.targetsFile" -}}
{{- $key := .fleet.targetsSecret.key | lower }}
{{- if or (hasSuffix ".yaml" $key) (hasSuffix ".yml" $key) }}targets.yaml{{ else }}targets.json{{ end }}
{{- end }}

{{- define "migrate-job.volumeMounts" -}}
{{- $dir := include "migrate-job.secretsDir" . }}
{{- if and .Values.fleet.enabled .Values.fleet.targetsSecret.name }}
- name: fleet-targets
  mountPath: {{ $dir }}/targets
  readOnly: true
{{- end }}
{{- if and .Values.fleet.enabled .Values.fleet.catalogSecret.name }}
- name: fleet-catalog
  mountPath: {{ $dir }}/catalog
  readOnly: true
{{- end }}
{{- if .Values.database.urlAsFile }}
- name: database-url
  mountPath: {{ $dir }}/database
  readOnly: true
{{- end }}
{{- if .Values.database.passwordSecret.name }}
- name: database-password
  mountPath: {{ $dir }}/password
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Secret files are root-owned, group fsGroup (10001) and mode 0440: readable by the runner only. */}}
{{- define "migrate-job.volumes" -}}
{{- if and .Values.fleet.enabled .Values.fleet.targetsSecret.name }}
- name: fleet-targets
  secret:
    secretName: {{ .Values.fleet.targetsSecret.name }}
    defaultMode: 288  # 0440
    items:
      - key: {{ .Values.fleet.targetsSecret.key }}
        path: {{ include "migrate-job.targetsFile" .Values }}
{{- end }}
{{- if and .Values.fleet.enabled .Values.fleet.catalogSecret.name }}
- name: fleet-catalog
  secret:
    secretName: {{ .Values.fleet.catalogSecret.name }}
    defaultMode: 288  # 0440
    items:
      - key: {{ .Values.fleet.catalogSecret.key }}
        path: url
{{- end }}
{{- if .Values.database.urlAsFile }}
- name: database-url
  secret:
    secretName: {{ include "migrate-job.urlSecretName" . }}
    defaultMode: 288  # 0440
    items:
      - key: {{ include "migrate-job.urlSecretKey" . }}
        path: url
{{- end }}
{{- with .Values.database.passwordSecret }}
{{- if .name }}
- name: database-password
  secret:
    secretName: {{ .name }}
    defaultMode: 288  # 0440
    items:
      - key: {{ .key }}
        path: password
{{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- init-container gate */}}

{{/*
An init container that holds an application pod until the database is at this image's head
(`await-head`; it never migrates). From this chart's scope, or from a parent chart:

  initContainers:
    {{- include "migrate-job.awaitHeadInitContainer" . | nindent 4 }}

From a parent chart the values of the dependency "migrate-job" are used; under an alias pass its
scope: include "migrate-job.awaitHeadInitContainer" (index .Subcharts "ALIAS").
*/}}
{{- define "migrate-job.awaitHeadInitContainer" -}}
{{- $scope := . }}
{{- if not (and (hasKey .Values "awaitHead") (hasKey .Values "runner") (hasKey .Values "database")) }}
{{- $scope = index (.Subcharts | default dict) "migrate-job" }}
{{- if not $scope }}
{{- fail "migrate-job.awaitHeadInitContainer: no migrate-job values in this scope; under an alias call it with (index .Subcharts \"ALIAS\")" }}
{{- end }}
{{- end }}
{{- $v := $scope.Values }}
{{- if $v.fleet.enabled }}
{{- fail "migrate-job.awaitHeadInitContainer: await-head gates one database, and fleet mode has many; gate each application on its own database" }}
{{- end }}
{{- include "migrate-job.validate" $scope }}
{{- if and $v.useHelmHooks $v.database.url (contains "hook-succeeded" $v.hook.deletePolicy) }}
{{- fail "migrate-job.awaitHeadInitContainer: with useHelmHooks and database.url the chart-made Secret is a hook resource that Helm deletes after the migration; use database.existingSecret" }}
{{- end }}
{{- if $v.database.passwordSecret.name }}
{{- fail "migrate-job.awaitHeadInitContainer: database.passwordSecret is mounted as a file, which this chart cannot add to another chart's pod; put the password into the URL's Secret" }}
{{- end -}}
- name: {{ $v.awaitHead.containerName }}
  {{- include "migrate-job.container" (dict "scope" $scope "initContainer" true) | nindent 2 }}
  args:
    - await-head
    - --timeout
    - {{ include "migrate-job.seconds" $v.awaitHead.timeout | quote }}
{{- end }}
