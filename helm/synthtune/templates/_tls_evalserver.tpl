{{/* TLS for the synthtune gRPC servers and the vLLM evaluation server: helpers shared by the templates. */}}

{{/* Runners as the controller gets them: with evalServer.enabled, evaluate runs on the evaluator service (it needs no GPU). */}}
{{- define "synthtune.runners" -}}
{{- $runners := deepCopy .Values.runners -}}
{{- if .Values.evalServer.enabled }}{{ $_ := set $runners "evaluate" "grpc" }}{{ end -}}
{{- toJson $runners -}}
{{- end -}}

{{- define "synthtune.validateTlsEvalServer" -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.existingSecret is required with tls.enabled: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt (e.g. from a cert-manager Certificate)" -}}
{{- end -}}
{{- if and .Values.tls.mutual (not .Values.tls.enabled) -}}
{{- fail "tls.mutual needs tls.enabled" -}}
{{- end -}}
{{- with .Values.evalServer -}}
{{- if .enabled -}}
{{- if not $.Values.stages.evaluator.enabled -}}
{{- fail "evalServer.enabled needs stages.evaluator.enabled: the evaluator service loads each adapter into the server and asks it" -}}
{{- end -}}
{{- if not .apiKeySecret -}}
{{- fail "evalServer.apiKeySecret is required: an existing Secret holding the server's API key under evalServer.apiKeySecretKey" -}}
{{- end -}}
{{- if and (hasPrefix "/models" .model) (not .modelsClaim) -}}
{{- fail (printf "evalServer.modelsClaim is required: evalServer.model %q is a folder under /models, where that claim is mounted" .model) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Extra `synthtune serve` arguments, each as `, "arg"` to follow a flow list's items. */}}
{{- define "synthtune.tlsArgs" -}}
{{- if .Values.tls.enabled -}}
, "--tls-cert", "/etc/synthtune-tls/tls.crt", "--tls-key", "/etc/synthtune-tls/tls.key", "--health-port", "{{ .Values.tls.healthPort }}"
{{- if .Values.tls.mutual }}, "--tls-client-ca", "/etc/synthtune-tls/ca.crt"{{ end -}}
{{- end -}}
{{- end -}}

{{/* Client side: the CA (and with mutual TLS the pod's certificate) for calls to synthtune services. */}}
{{- define "synthtune.tlsEnv" -}}
{{- if .Values.tls.enabled }}
- {name: SYNTHTUNE_TLS_CA, value: /etc/synthtune-tls/ca.crt}
{{- if .Values.tls.mutual }}
- {name: SYNTHTUNE_TLS_CERT, value: /etc/synthtune-tls/tls.crt}
- {name: SYNTHTUNE_TLS_KEY, value: /etc/synthtune-tls/tls.key}
{{- end }}
{{- end }}
{{- end -}}

{{/* The evaluator service's share of the evaluation server: its API key and the adapters volume. */}}
{{- define "synthtune.evalServerEnv" -}}
{{- if .Values.evalServer.enabled }}
- name: EVAL_SERVER_API_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.evalServer.apiKeySecret }}, key: {{ .Values.evalServer.apiKeySecretKey }}}}
{{- end }}
{{- end -}}

{{- define "synthtune.adaptersClaim" -}}
{{- .Values.evalServer.adaptersClaim | default (printf "%s-adapters" (include "synthtune.fullname" .)) -}}
{{- end -}}
