{{/*
Names, labels and the checks that values.schema.json cannot say clearly.
*/}}

{{- define "wharf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wharf.fullname" -}}
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

{{- define "wharf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wharf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wharf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "wharf.labels" -}}
helm.sh/chart: {{ include "wharf.chart" . }}
{{ include "wharf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "wharf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wharf.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace whose stack the controller drives. */}}
{{- define "wharf.targetNamespace" -}}
{{- default .Release.Namespace .Values.targetNamespace }}
{{- end }}

{{- define "wharf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
One credential from either an inline value or an existing Secret: exactly one of the two.
Arguments: (list $ "state" "dsn") — the values key and the name of its inline field.
*/}}
{{- define "wharf.checkOneSource" -}}
{{- $root := index . 0 }}
{{- $key := index . 1 }}
{{- $inline := index . 2 }}
{{- $values := index $root.Values $key }}
{{- $given := index $values $inline }}
{{- if and $given $values.existingSecret }}
{{- fail (printf "%s.%s and %s.existingSecret are both set: give one (inline, kept in a Secret this chart creates) or the other (a Secret you manage)" $key $inline $key) }}
{{- end }}
{{- if not (or $given $values.existingSecret) }}
{{- fail (printf "%s.%s or %s.existingSecret is required (%s)" $key $inline $key (get (include "wharf.sourceMeaning" $root | fromYaml) $key)) }}
{{- end }}
{{- end }}

{{- define "wharf.sourceMeaning" -}}
state: the PostgreSQL DSN the two replicas share, WHARF_STATE_DSN
masterKey: the 64 hex character key to wharf's secret store, WHARF_MASTER_KEY
apiToken: the bearer token of the controller's HTTP API, WHARF_API_TOKEN
{{- end }}

{{/* Every check, run by each template that depends on the values, so none renders alone. */}}
{{- define "wharf.validate" -}}
{{- include "wharf.checkOneSource" (list . "state" "dsn") }}
{{- include "wharf.checkOneSource" (list . "masterKey" "value") }}
{{- include "wharf.checkOneSource" (list . "apiToken" "value") }}
{{- with .Values.state.dsn }}
{{- if not (regexMatch "^postgres(ql)?://." .) }}
{{- fail "state.dsn is not a PostgreSQL DSN: it must start with postgres:// or postgresql:// (the value is not repeated here, it holds a password)" }}
{{- end }}
{{- end }}
{{- with .Values.masterKey.value | trim }}
{{- if not (regexMatch "^[0-9a-fA-F]{64}$" .) }}
{{- fail (printf "masterKey.value must be 64 hex characters (32 bytes); the value given has %d characters%s" (len .) (ternary "" ", not all hex digits" (regexMatch "^[0-9a-fA-F]*$" .))) }}
{{- end }}
{{- end }}
{{- with .Values.apiToken.value }}
{{- if lt (len .) 16 }}
{{- fail (printf "apiToken.value must be at least 16 characters; the value given has %d" (len .)) }}
{{- end }}
{{- end }}
{{- if and .Values.manifest.content .Values.manifest.existingConfigMap }}
{{- fail "manifest.content and manifest.existingConfigMap are both set: give the wharf.yaml text inline or name a ConfigMap, not both" }}
{{- end }}
{{- if not (or .Values.manifest.content .Values.manifest.existingConfigMap) }}
{{- fail "manifest.content or manifest.existingConfigMap is required (the stack's wharf.yaml, mounted at /etc/wharf/wharf.yaml)" }}
{{- end }}
{{- end }}

{{/* True when the chart creates the Secret: at least one credential is given inline. */}}
{{- define "wharf.createsSecret" -}}
{{- if or .Values.state.dsn .Values.masterKey.value .Values.apiToken.value }}true{{ end }}
{{- end }}

{{/* The Secret and key holding one credential: (list $ "state" "dsn" "state-dsn"). */}}
{{- define "wharf.secretKeyRef" -}}
{{- $root := index . 0 }}
{{- $values := index $root.Values (index . 1) }}
{{- if index $values (index . 2) }}
name: {{ include "wharf.fullname" $root }}
key: {{ index . 3 }}
{{- else }}
name: {{ $values.existingSecret }}
key: {{ $values.existingSecretKey }}
{{- end }}
{{- end }}

{{- define "wharf.configMapName" -}}
{{- default (include "wharf.fullname" .) .Values.manifest.existingConfigMap }}
{{- end }}

{{- define "wharf.configMapKey" -}}
{{- if .Values.manifest.existingConfigMap }}{{ .Values.manifest.existingConfigMapKey }}{{ else }}wharf.yaml{{ end }}
{{- end }}
