{{/* Names */}}
{{- define "synthtune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "synthtune.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "synthtune.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "synthtune.serviceAccount" -}}
{{- default (printf "%s-controller" (include "synthtune.fullname" .)) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "synthtune.jobServiceAccount" -}}
{{- printf "%s-job" (include "synthtune.fullname" .) -}}
{{- end -}}

{{/* Labels: the full set on objects, the stable pair (plus component) in selectors. */}}
{{- define "synthtune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "synthtune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "synthtune.labels" -}}
{{ include "synthtune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image of ours: (dict "root" $ "name" "generator"|"trainer"|"evaluator"). */}}
{{- define "synthtune.image" -}}
{{- printf "%s/synthtune-%s:%s" .root.Values.image.repository .name (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* Which image serves each service. */}}
{{- define "synthtune.serviceImage" -}}
{{- $images := dict "controller" "generator" "dataprep" "generator" "generator" "generator" "trainer" "trainer" "evaluator" "evaluator" -}}
{{- get $images . -}}
{{- end -}}

{{/* gRPC service name each server reports healthy (grpc.health.v1), used by probes and helm test. */}}
{{- define "synthtune.healthService" -}}
{{- $names := dict "controller" "synthtune.v1.PipelineService" "dataprep" "synthtune.v1.DataPrepService" "generator" "synthtune.v1.GeneratorService" "trainer" "synthtune.v1.TrainerService" "evaluator" "synthtune.v1.EvaluatorService" -}}
{{- get $names . -}}
{{- end -}}

{{/* Stage kind -> the service that runs it with the grpc runner. */}}
{{- define "synthtune.stageService" -}}
{{- $services := dict "prepare" "dataprep" "generate" "generator" "train" "trainer" "evaluate" "evaluator" -}}
{{- get $services . -}}
{{- end -}}

{{/* Fail at install, not at runtime, when the store, its endpoint or a Secret is missing. */}}
{{- define "synthtune.validate" -}}
{{- $uri := required "store.uri is required: the artifact store, s3://bucket/prefix" .Values.store.uri -}}
{{- if not (regexMatch "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$" $uri) -}}
{{- fail (printf "store.uri must be s3://bucket/prefix with a valid bucket name, got %q" $uri) -}}
{{- end -}}
{{- if .Values.minio.enabled -}}
{{- if not (hasPrefix (printf "s3://%s" .Values.minio.bucket) $uri) -}}
{{- fail (printf "store.uri %q must use the dev MinIO's bucket %q (minio.bucket)" $uri .Values.minio.bucket) -}}
{{- end -}}
{{- else -}}
{{- $endpoint := required "store.s3.endpoint is required: the S3 endpoint URL, e.g. https://s3.eu-central-1.amazonaws.com (or set minio.enabled=true on a dev cluster)" .Values.store.s3.endpoint -}}
{{- if not (regexMatch "^https?://[^/\\s]+" $endpoint) -}}
{{- fail (printf "store.s3.endpoint must be an http(s):// URL, got %q" $endpoint) -}}
{{- end -}}
{{- end -}}
{{- $_ := required "store.s3.existingSecret is required: a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" .Values.store.s3.existingSecret -}}
{{- $_ := required "auth.existingSecret is required: a Secret with SYNTHTUNE_AUTH_TOKEN, the gRPC bearer token" .Values.auth.existingSecret -}}
{{- with .Values.vllmTeacher -}}
{{- $fromStore := or .fromStore (hasPrefix "s3://" .model) -}}
{{- if and .enabled $fromStore (hasPrefix "/" .model) -}}
{{- fail (printf "vllmTeacher.fromStore is true but vllmTeacher.model %q is a folder: name a model pushed with `synthtune models push` (its name in store.uri or its s3:// URI)" .model) -}}
{{- end -}}
{{- if and .enabled (hasPrefix "/models" .model) (not .modelsClaim) -}}
{{- fail (printf "vllmTeacher.modelsClaim is required: vllmTeacher.model %q is a folder under /models, where that claim is mounted" .model) -}}
{{- end -}}
{{- if and .enabled .offline (not $fromStore) (not (hasPrefix "/" .model)) -}}
{{- fail (printf "vllmTeacher.model %q is not a folder but vllmTeacher.offline is true: push it to the store (synthtune models push) and set vllmTeacher.fromStore=true, put the weights on vllmTeacher.modelsClaim, or set offline=false to download" .model) -}}
{{- end -}}
{{- end -}}
{{- include "synthtune.validateEndpoints" . -}}
{{- range $kind, $runner := .Values.runners -}}
{{- if eq $runner "grpc" -}}
{{- $service := include "synthtune.stageService" $kind -}}
{{- if not (index $.Values.stages $service).enabled -}}
{{- fail (printf "runners.%s is grpc but stages.%s.enabled is false: enable the service or pick another runner" $kind $service) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "synthtune.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s-minio:9000" (include "synthtune.fullname" .) -}}
{{- else -}}
{{- .Values.store.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{/* Writable places under a read-only root filesystem: /tmp and /cache are emptyDirs. */}}
{{- define "synthtune.cacheEnv" -}}
- {name: SYNTHTUNE_CACHE, value: /cache}
- {name: SYNTHTUNE_MODEL_CACHE, value: /cache/models}
- {name: HF_HOME, value: /cache/huggingface}
- {name: XDG_CACHE_HOME, value: /cache}
- {name: MPLCONFIGDIR, value: /tmp/matplotlib}
- {name: HF_HUB_OFFLINE, value: {{ ternary "1" "0" .Values.models.hubOffline | quote }}}
{{- end -}}

{{/* The store and its credentials: every synthtune container that reads or writes it. */}}
{{- define "synthtune.storeEnv" -}}
- {name: SYNTHTUNE_STORE, value: {{ .Values.store.uri | quote }}}
- {name: SYNTHTUNE_S3_ENDPOINT, value: {{ include "synthtune.s3Endpoint" . | quote }}}
{{- with .Values.store.s3.region }}
- {name: AWS_DEFAULT_REGION, value: {{ . | quote }}}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .Values.store.s3.existingSecret }}, key: AWS_ACCESS_KEY_ID}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.store.s3.existingSecret }}, key: AWS_SECRET_ACCESS_KEY}}
{{- end -}}

{{/* Environment of every synthtune service container. */}}
{{- define "synthtune.env" -}}
{{ include "synthtune.storeEnv" . }}
- name: SYNTHTUNE_AUTH_TOKEN
  valueFrom: {secretKeyRef: {name: {{ .Values.auth.existingSecret }}, key: SYNTHTUNE_AUTH_TOKEN}}
{{ include "synthtune.cacheEnv" . }}
{{- end -}}

{{/* Pod annotations: (dict "root" $ "values" COMPONENT_VALUES "scrape" true|false). */}}
{{- define "synthtune.podAnnotations" -}}
{{- if and .scrape .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .root.Values.ports.metrics | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with (.values | default dict).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where a component's pods may run, from its values: nodeSelector, tolerations, affinity,
     topologySpreadConstraints, priorityClassName (each only when set). */}}
{{- define "synthtune.podPlacement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* A component's pod labels: its podLabels, then the chart's (which select the pods, so they win). */}}
{{- define "synthtune.podLabels" -}}
{{- $labels := merge (include "synthtune.labels" .root | fromYaml) (dict "app.kubernetes.io/component" .component) -}}
{{- toYaml (merge $labels ((.values | default dict).podLabels | default dict)) -}}
{{- end -}}

{{/* A PodDisruptionBudget for a component with more than one replica: (dict "root" $ "component" NAME "replicas" N). */}}
{{- define "synthtune.pdb" -}}
{{- if and .root.Values.podDisruptionBudget.enabled (gt (int .replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "synthtune.fullname" .root }}-{{ .component }}
  labels:
    {{- include "synthtune.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ .root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "synthtune.selectorLabels" .root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* Native gRPC probes against grpc.health.v1 (Kubernetes >= 1.27): (dict "root" $ "name" "controller"). */}}
{{- define "synthtune.probes" -}}
{{- /* With TLS the probes ask the plaintext health-only port (the kubelet's gRPC probe cannot speak TLS). */}}
{{- $port := ternary .root.Values.tls.healthPort .root.Values.ports.grpc .root.Values.tls.enabled -}}
startupProbe:
  grpc: {port: {{ $port }}, service: {{ include "synthtune.healthService" .name }}}
  periodSeconds: 5
  failureThreshold: 36
readinessProbe:
  grpc: {port: {{ $port }}, service: {{ include "synthtune.healthService" .name }}}
  periodSeconds: 10
  timeoutSeconds: 3
livenessProbe:
  grpc: {port: {{ $port }}}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}


{{/* Private by default: a teacher or judge in pipelineDefaults that is outside the cluster (an API with a
     public host name, or OpenAI's default) needs teacher.allowExternal. In-cluster, as
     synthtune.spec.dataflow.is_external judges it (tests/deploy/test_chart_teacher.py compares the two):
     a private, loopback or link-local IP (10/8, 172.16/12, 192.168/16, 127/8, 169.254/16, [::1],
     [fc00::/7], [fe80::/10]), a host without a dot, or one ending in .svc, .cluster.local, .internal or .local. */}}
{{- define "synthtune.inClusterURL" -}}
{{- $octet := `(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])` -}}
{{- $ipv4 := printf `(10|127)([.]%s){3}|169[.]254([.]%s){2}|172[.](1[6-9]|2[0-9]|3[01])([.]%s){2}|192[.]168([.]%s){2}` $octet $octet $octet $octet -}}
{{- $ipv6 := `\[(::1|(0{1,4}:){7}0{0,3}1|f[cd][0-9a-f]{2}:[0-9a-f:]*|fe[89ab][0-9a-f]:[0-9a-f:]*)(%25[^\]]*)?\]` -}}
{{- $name := `[^/:.?#@\[\]]+|[^/:?#@\[\]]+[.](svc|cluster[.]local|internal|local)` -}}
{{- if regexMatch (printf `(?i)^https?://([^/?#@]*@)?(%s|%s|%s)(:[0-9]+)?([/?#].*)?$` $ipv4 $ipv6 $name) . }}true{{ end -}}
{{- end -}}


{{- define "synthtune.validateEndpoints" -}}
{{- if not .Values.teacher.allowExternal -}}
{{- $d := .Values.pipelineDefaults -}}
{{- $teacher := dig "generate" "teacher" dict $d -}}
{{- if and .Values.vllmTeacher.enabled (not (get $teacher "base_url")) -}}
{{- $teacher = dict -}}
{{- end -}}
{{- $endpoints := dict "pipelineDefaults.generate.teacher" $teacher "pipelineDefaults.evaluate.judge" (dig "evaluate" "judge" dict $d) "pipelineDefaults.evaluate" (dig "evaluate" dict $d) -}}
{{- range $where, $ep := $endpoints -}}
{{- if eq (get $ep "backend" | default "") "openai" -}}
{{- $url := get $ep "base_url" | default "https://api.openai.com/v1" -}}
{{- if not (include "synthtune.inClusterURL" $url) -}}
{{- fail (printf "%s sends the records to %s, outside the cluster: set teacher.allowExternal=true to allow that, or use the in-cluster teacher (vllmTeacher.enabled)" $where $url) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
