{{/* Names and labels. */}}
{{- define "tether.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tether.labels" -}}
{{ include "tether.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tether.adminSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin" (include "tether.fullname" .)) -}}
{{- end -}}

{{/* The names values.env sets, as a dict (for hasKey). */}}
{{- define "tether.envNames" -}}
{{- $names := dict -}}
{{- range .Values.env -}}
{{- $_ := set $names .name true -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}

{{/*
"true" when tether serves HTTPS: tls.existingSecret, or server.tls_cert set through
values.config or values.env. Probes and the ServiceMonitor then speak HTTPS.
*/}}
{{- define "tether.https" -}}
{{- $env := include "tether.envNames" . | fromYaml -}}
{{- if or .Values.tls.existingSecret (dig "server" "tls_cert" "" .Values.config) (hasKey $env "TETHER_SERVER_TLS_CERT") -}}
true
{{- end -}}
{{- end -}}

{{/*
The embedded engine's threads (engine.n_threads), as the container's env entry: the pod's
CPU request by the downward API (Kubernetes rounds it up to whole CPUs), or the number in
values.engineThreads. Nothing where the values set them elsewhere (config.engine.n_threads,
TETHER_ENGINE_N_THREADS in env), in gateway mode, for engineThreads 0, or for "auto"
without a CPU request or limit (the downward API would then give 0, which tether refuses).
*/}}
{{- define "tether.threadsEnv" -}}
{{- $env := include "tether.envNames" . | fromYaml -}}
{{- $elsewhere := or (hasKey (dig "engine" dict .Values.config) "n_threads") (hasKey $env "TETHER_ENGINE_N_THREADS") -}}
{{- if and (eq .Values.mode "embedded") (not $elsewhere) -}}
{{- if eq (toString .Values.engineThreads) "auto" -}}
{{- if or (dig "requests" "cpu" "" .Values.resources) (dig "limits" "cpu" "" .Values.resources) }}
- name: TETHER_ENGINE_N_THREADS
  valueFrom:
    resourceFieldRef:
      containerName: tether
      resource: requests.cpu
      divisor: "1"
{{- end -}}
{{- else if gt (int .Values.engineThreads) 0 }}
- name: TETHER_ENGINE_N_THREADS
  value: {{ .Values.engineThreads | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"true" when records leave the pod for a shared sink: audit.webhookUrl, audit.webhookSecret,
or TETHER_AUDIT_WEBHOOK_URL in env (e.g. from a Secret of the user's own).
*/}}
{{- define "tether.auditSink" -}}
{{- $env := include "tether.envNames" . | fromYaml -}}
{{- if or .Values.audit.webhookUrl .Values.audit.webhookSecret (hasKey $env "TETHER_AUDIT_WEBHOOK_URL") -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when tether reports to Sentry (audit.sentry_dsn): TETHER_AUDIT_SENTRY_DSN in env
from a Secret (a plain value is refused, an empty one is none). Sentry holds checkpoints
and violations, not the records: not a shared audit sink, but an address tether connects to.
*/}}
{{- define "tether.sentry" -}}
{{- range .Values.env -}}
{{- if and (eq .name "TETHER_AUDIT_SENTRY_DSN") (or .valueFrom .value) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The most replicas that can run at once: the fixed count, or the autoscaler's maximum. */}}
{{- define "tether.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- max .Values.autoscaling.maxReplicas .Values.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
Refuse values that would lose or fork audit records, or cannot serve, with what to do.
Each replica keeps its own audit log, traces, usage ledger and store in SQLite files
under its data volume; those files must never be shared between pods.
*/}}
{{- define "tether.validate" -}}
{{- $replicas := include "tether.maxReplicas" . | int -}}
{{- $sink := include "tether.auditSink" . -}}
{{- if and .Values.audit.webhookUrl .Values.audit.webhookSecret -}}
{{- fail "audit.webhookUrl and audit.webhookSecret both name the audit sink: set one of them (webhookSecret when its URL holds a credential)" -}}
{{- end -}}
{{- if and (gt $replicas 1) (not $sink) -}}
{{- fail (printf "%d replicas would each keep a separate audit log that no one collects: set audit.webhookUrl (or audit.webhookSecret) to a shared audit sink, or run one replica" $replicas) -}}
{{- end -}}
{{- if and (gt $replicas 1) .Values.persistence.existingClaim -}}
{{- fail "persistence.existingClaim gives every replica the same volume, and so the same SQLite audit and usage files, which would fork and corrupt them: leave existingClaim empty (each replica gets its own volume) or run one replica" -}}
{{- end -}}
{{- if and (not .Values.persistence.enabled) (not $sink) -}}
{{- fail "persistence.enabled=false keeps the audit log in an emptyDir, lost when the pod moves: enable persistence, or set audit.webhookUrl (or audit.webhookSecret) so records leave the pod" -}}
{{- end -}}
{{- if and (gt $replicas 1) (not .Values.persistence.enabled) -}}
{{- fail "several replicas without persistence would lose the audit records still waiting in a pod's spool for the audit webhook when it moves: enable persistence (one volume per replica)" -}}
{{- end -}}
{{- if and (eq .Values.mode "gateway") (not .Values.gateway.upstreams) -}}
{{- fail "mode=gateway needs gateway.upstreams: the OpenAI-compatible base URLs (ending in /v1) of the engines, e.g. the vLLM Service" -}}
{{- end -}}
{{- $env := include "tether.envNames" . | fromYaml -}}
{{- $modelElsewhere := or (dig "upstream" "model" "" .Values.config) (hasKey $env "TETHER_UPSTREAM_MODEL") -}}
{{- if and (eq .Values.mode "gateway") (not .Values.gateway.model) (not $modelElsewhere) -}}
{{- fail "mode=gateway needs gateway.model, the model name the upstreams serve: without it tether learns the name from them at start and exits while they are still loading (a crash loop until they answer)" -}}
{{- end -}}
{{- $chartSets := dict "TETHER_CONFIG" "config" "TETHER_SERVER_HOST" "(the pod listens on every address)" "TETHER_SERVER_PORT" "(8421, which the probes and Services use)" "TETHER_SERVER_TOKEN_FILE" "adminToken" "TETHER_SERVER_TOKEN" "adminToken (a token file, which tether refuses beside a token)" "TETHER_SERVER_SHUTDOWN_GRACE_S" "shutdownGraceSeconds" -}}
{{- if eq .Values.mode "gateway" -}}
{{- $_ := set $chartSets "TETHER_ENGINE_KIND" "mode" -}}
{{- $_ := set $chartSets "TETHER_UPSTREAM_BASE_URLS" "gateway.upstreams" -}}
{{- if .Values.gateway.model }}{{ $_ := set $chartSets "TETHER_UPSTREAM_MODEL" "gateway.model" }}{{ end -}}
{{- if .Values.gateway.apiKeySecret }}{{ $_ := set $chartSets "TETHER_UPSTREAM_API_KEY" "gateway.apiKeySecret" }}{{ end -}}
{{- end -}}
{{- if .Values.audit.webhookUrl }}{{ $_ := set $chartSets "TETHER_AUDIT_WEBHOOK_URL" "audit.webhookUrl" }}{{ end -}}
{{- if .Values.audit.webhookSecret }}{{ $_ := set $chartSets "TETHER_AUDIT_WEBHOOK_URL" "audit.webhookSecret" }}{{ end -}}
{{- if .Values.tls.existingSecret -}}
{{- $_ := set $chartSets "TETHER_SERVER_TLS_CERT" "tls.existingSecret" -}}
{{- $_ := set $chartSets "TETHER_SERVER_TLS_KEY" "tls.existingSecret" -}}
{{- end -}}
{{- range $name, $from := $chartSets -}}
{{- if hasKey $env $name -}}
{{- fail (printf "env sets %s, which the chart sets from %s: set one of them (a second entry of one name is applied last by the kubelet and refused by server-side apply)" $name $from) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "host" "port" "token_file" "shutdown_grace_s" -}}
{{- if hasKey (dig "server" dict $.Values.config) $key -}}
{{- fail (printf "config.server.%s is set by the chart's environment, which would override it: leave it out (shutdownGraceSeconds and adminToken set the grace and the token)" $key) -}}
{{- end -}}
{{- end -}}
{{- /* The data folder: on the pod's volume (/data), or the audit log is lost on restart. */ -}}
{{- $homes := dict -}}
{{- with (dig "data" "home" "" .Values.config) }}{{ $_ := set $homes "config.data.home" (toString .) }}{{ end -}}
{{- range .Values.env -}}
{{- if and (has .name (list "TETHER_HOME" "TETHER_DATA_HOME")) (hasKey . "value") -}}
{{- $_ := set $homes (printf "env %s" .name) (toString .value) -}}
{{- end -}}
{{- end -}}
{{- range $where, $home := $homes -}}
{{- if or (not (or (eq (trimSuffix "/" $home) "/data") (hasPrefix "/data/" $home))) (contains ".." $home) -}}
{{- fail (printf "%s %s would move the audit log, traces and store off the pod's volume (/data), to a place lost on restart or not writable: leave it out, or name a folder under /data" $where $home) -}}
{{- end -}}
{{- end -}}
{{- if .Values.audit.webhookUrl -}}
{{- if regexMatch "^[a-z]+://[^/?#]*@|[?]" .Values.audit.webhookUrl -}}
{{- fail "audit.webhookUrl holds a credential (a user name or password, or a query), which would be in the pod's spec: put the URL in a Secret and name it in audit.webhookSecret" -}}
{{- end -}}
{{- end -}}
{{- range concat .Values.gateway.upstreams (dig "upstream" "base_urls" list .Values.config) -}}
{{- if regexMatch "^[a-zA-Z]+://[^/?#]*@" (toString .) -}}
{{- fail "gateway.upstreams or config.upstream.base_urls: a URL holds a user name or password, which would be in the pod's spec or its ConfigMap: put the key in a Secret named in gateway.apiKeySecret" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.existingSecret (or (hasKey (dig "server" dict .Values.config) "tls_cert") (hasKey (dig "server" dict .Values.config) "tls_key")) -}}
{{- fail "config.server.tls_cert or tls_key is set by tls.existingSecret, which would override it: set one of them" -}}
{{- end -}}
{{- /* Secrets: the ConfigMap and a plain env value are readable by whoever can read the pod's spec. */ -}}
{{- $secrets := dict "server.token" "adminToken.existingSecret" "upstream.api_key" "gateway.apiKeySecret" "audit.webhook_url" "audit.webhookSecret (or audit.webhookUrl when the URL holds no credential)" "audit.sentry_dsn" "an env entry TETHER_AUDIT_SENTRY_DSN with valueFrom.secretKeyRef" -}}
{{- range $dotted, $instead := $secrets -}}
{{- $parts := splitList "." $dotted -}}
{{- if get (dig (first $parts) dict $.Values.config) (last $parts) -}}
{{- fail (printf "config.%s would be kept in plain text in a ConfigMap: leave it out and use %s" $dotted $instead) -}}
{{- end -}}
{{- end -}}
{{- range .Values.env -}}
{{- if and (has .name (list "TETHER_UPSTREAM_API_KEY" "TETHER_AUDIT_WEBHOOK_URL" "TETHER_AUDIT_SENTRY_DSN")) .value -}}
{{- fail (printf "env %s has a plain value, readable in the pod's spec: take it from a Secret (valueFrom.secretKeyRef)" .name) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.mode "gateway" -}}
{{- if hasKey (dig "engine" dict .Values.config) "kind" -}}
{{- fail "config.engine.kind is set by mode=gateway, which would override it: leave it out" -}}
{{- end -}}
{{- if hasKey (dig "upstream" dict .Values.config) "base_urls" -}}
{{- fail "config.upstream.base_urls is set by gateway.upstreams, which would override it: set that instead" -}}
{{- end -}}
{{- if and .Values.gateway.model (hasKey (dig "upstream" dict .Values.config) "model") -}}
{{- fail "config.upstream.model is set by gateway.model, which would override it: set one of them" -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraVolumes -}}
{{- if has .name (list "data" "tmp" "config" "admin-token" "tls") -}}
{{- fail (printf "extraVolumes: %q is the name of a volume the chart mounts; give yours another name" .name) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.mode "embedded") .Values.gateway.upstreams -}}
{{- fail "gateway.upstreams is set but mode is embedded: set mode=gateway to use them" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/*
Whole numbers in a copy of values.config made integers again, in place: Helm reads every
number in values as a float, and toToml would write "n_parallel = 4.0". Takes a dict;
walks its maps and lists at any depth.
*/}}
{{- define "tether.wholeNumbers" -}}
{{- range $key, $value := . -}}
{{- if kindIs "map" $value -}}
{{- include "tether.wholeNumbers" $value -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $value -}}
{{- $box := dict "item" . -}}
{{- include "tether.wholeNumbers" $box -}}
{{- $items = append $items $box.item -}}
{{- end -}}
{{- $_ := set $ $key $items -}}
{{- else if and (kindIs "float64" $value) (eq $value (floor $value)) (lt $value 9007199254740992.0) (gt $value -9007199254740992.0) -}}
{{- $_ := set $ $key (int64 $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
