{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "warden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "warden.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warden.labels" -}}
{{ include "warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "warden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "warden.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
warden.check refuses values that would deploy something unsafe or broken:
several pods on embedded SQLite (each its own keys, approvals and audit
log), a NetworkPolicy that leaves out the stores the configuration uses
(pods that never become ready), and a server with no allowed host names
(Warden refuses to listen beyond loopback without them).
*/}}
{{- define "warden.check" -}}
{{- $server := default dict .Values.config.server -}}
{{- $state := default dict $server.state -}}
{{- $http := default dict $server.http -}}
{{- if not $http.allowed_hosts -}}
{{- fail "config.server.http.allowed_hosts is required: the host names clients use (DNS-rebinding protection); the first one is also the probes' Host header" -}}
{{- end -}}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not $state.postgres) -}}
{{- fail "config.server.state.postgres is required with more than one replica (replicaCount > 1 or autoscaling.enabled): pods on embedded SQLite would each keep their own API keys, approvals and audit log" -}}
{{- end -}}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (default dict .Values.config.audit).instance -}}
{{- fail "config.audit.instance must be unset with more than one replica: every pod would write the same hash chain, and the chain would fork; unset, each pod names its own" -}}
{{- end -}}
{{- $np := .Values.networkPolicy -}}
{{- if and $np.enabled $state.postgres (not $np.postgres.cidrs) -}}
{{- fail "networkPolicy.postgres.cidrs is required with config.server.state.postgres: the NetworkPolicy lets pods reach only the networks it names (or set networkPolicy.enabled: false)" -}}
{{- end -}}
{{- $redis := false -}}
{{- range $k := list "rate_limits" "cache" "idempotency" -}}
{{- $s := default dict (get $.Values.config $k) -}}
{{- if eq (toString $s.store) "redis" -}}{{- $redis = true -}}{{- end -}}
{{- end -}}
{{- $server := default dict .Values.config.server -}}
{{- if (default dict $server.redis).url -}}{{- $redis = true -}}{{- end -}}
{{- if and $np.enabled $redis (not $np.redis.cidrs) -}}
{{- fail "networkPolicy.redis.cidrs is required when server.redis is set or rate_limits, cache or idempotency use Redis: the NetworkPolicy lets pods reach only the networks it names (or set networkPolicy.enabled: false)" -}}
{{- end -}}
{{- end -}}
