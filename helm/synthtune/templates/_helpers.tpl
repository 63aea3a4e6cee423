{{- define "synthtune.fullname" -}}
{{- printf "%s-synthtune" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "synthtune.labels" -}}
app.kubernetes.io/name: synthtune
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "synthtune.image" -}}
{{- printf "%s/synthtune-%s:%s" .root.Values.image.repository .name (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "synthtune.serviceAccount" -}}
{{- default (include "synthtune.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Fail at install, not at runtime, when the store or secrets are missing. */}}
{{- define "synthtune.validate" -}}
{{- $uri := required "store.uri is required (s3://bucket/prefix)" .Values.store.uri -}}
{{- if not (hasPrefix "s3://" $uri) -}}
{{- fail (printf "store.uri must be an s3:// URI, got %q" $uri) -}}
{{- end -}}
{{- if not .Values.minio.enabled -}}
{{- $_ := required "store.s3.endpoint is required (or enable minio for a dev cluster)" .Values.store.s3.endpoint -}}
{{- end -}}
{{- $_ := required "store.s3.existingSecret is required: a Secret with the S3 access key id and secret" .Values.store.s3.existingSecret -}}
{{- $_ := required "auth.existingSecret is required: a Secret with SYNTHTUNE_AUTH_TOKEN" .Values.auth.existingSecret -}}
{{- end -}}

{{- define "synthtune.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s-minio:9000" (include "synthtune.fullname" .) -}}
{{- else -}}
{{- .Values.store.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{- define "synthtune.env" -}}
- name: SYNTHTUNE_STORE
  value: {{ .Values.store.uri | quote }}
- name: SYNTHTUNE_S3_ENDPOINT
  value: {{ include "synthtune.s3Endpoint" . | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.store.s3.existingSecret }}, key: {{ .Values.store.s3.accessKeyIdKey }}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.store.s3.existingSecret }}, key: {{ .Values.store.s3.secretAccessKeyKey }}}
{{- with .Values.store.s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
- name: SYNTHTUNE_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .Values.auth.existingSecret }}, key: {{ .Values.auth.tokenKey }}}
{{- if .Values.teacher.existingSecret }}
- name: {{ .Values.teacher.envName }}
  valueFrom:
    secretKeyRef: {name: {{ .Values.teacher.existingSecret }}, key: {{ .Values.teacher.apiKeyKey }}}
{{- end }}
- name: SYNTHTUNE_CACHE
  value: /cache
- name: HF_HUB_OFFLINE
  value: "1"
{{- end -}}

{{- define "synthtune.probes" -}}
startupProbe:
  grpc: {port: {{ .Values.ports.grpc }}}
  periodSeconds: 5
  failureThreshold: 24
readinessProbe:
  grpc: {port: {{ .Values.ports.grpc }}}
  periodSeconds: 10
livenessProbe:
  grpc: {port: {{ .Values.ports.grpc }}}
  periodSeconds: 20
  failureThreshold: 3
{{- end -}}
