{{/* Chart name, possibly overridden. */}}
{{- define "zoom-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name when it already contains the chart
name (e.g. `helm install zoom-operator`), else "<release>-<chart>".
*/}}
{{- define "zoom-operator.fullname" -}}
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

{{- define "zoom-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zoom-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zoom-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zoom-operator.labels" -}}
helm.sh/chart: {{ include "zoom-operator.chart" . }}
{{ include "zoom-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "zoom-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zoom-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zoom-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
The Ingress the operator derives its public URLs from, as NAMESPACE/NAME, or "" when the URL
is fixed (operator.publicURL) or not configured at all.
*/}}
{{- define "zoom-operator.urlIngress" -}}
{{- if .Values.operator.publicURL }}
{{- else if .Values.operator.ingress }}
{{- .Values.operator.ingress }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s/%s" .Release.Namespace (include "zoom-operator.fullname" .) }}
{{- end }}
{{- end }}

{{/* Splits NAMESPACE/NAME, failing with the value's name when it is malformed. */}}
{{- define "zoom-operator.splitRef" -}}
{{- $parts := splitList "/" .value }}
{{- if or (ne (len $parts) 2) (not (first $parts)) (not (last $parts)) }}
{{- fail (printf "%s must be NAMESPACE/NAME, got %q" .what .value) }}
{{- end }}
{{- toJson $parts }}
{{- end }}

{{/*
RBAC rules for reconciling ZoomConnections in a namespace (all namespaces through the
ClusterRole, or one watched namespace through a Role). Every verb is one the code uses; see
src/controller/mod.rs, src/tokens/store.rs, src/server/oauth.rs and kube-runtime's
events::Recorder.
*/}}
{{- define "zoom-operator.connectionRules" -}}
# ZoomConnections: list/watch feed the controller's cache; get is how the OAuth start and
# redirect handlers (every replica) look a connection up; patch adds and removes the
# zoom-operator.io/revoke finalizer (a merge patch guarded by resourceVersion). No update:
# nothing PUTs a whole ZoomConnection.
- apiGroups: ["zoom-operator.io"]
  resources: ["zoomconnections"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written whole by server-side apply (a PATCH, field manager zoom-operator); it is
# never read or PUT through the subresource. No zoomconnections/finalizers: the token
# Secret's owner reference does not set blockOwnerDeletion, which is what would need it (with
# the OwnerReferencesPermissionEnforcement admission plugin).
- apiGroups: ["zoom-operator.io"]
  resources: ["zoomconnections/status"]
  verbs: ["patch"]
# Secrets. get: the credentials Secret named by spec.credentialsRef and the token Secret, read
# from the API server (never a cache) before each token decision. list/watch: a metadata-only
# watch of Secrets (so an edited credentials Secret re-reconciles its connections; their
# contents are never cached) and a watch of the token Secrets by label
# app.kubernetes.io/managed-by=zoom-operator. create/update: the token Secret, written as a
# compare-and-swap PUT on resourceVersion. No patch (never used) and no delete: the token
# Secret has a controller owner reference to its ZoomConnection, so the garbage collector
# removes it with the connection.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update"]
# Services: get only, to refuse a sink Service of type ExternalName (a DNS alias that can
# point anywhere, src/sink.rs): the reconciler checks it for EventsReady, and the sink
# client's DNS resolver checks it again before it connects. Never list, watch or change.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get"]
# Kubernetes Events on condition changes and revocation, written by kube-runtime's Recorder
# as events.k8s.io/v1 Events (create, then patch to count a repeat). No core/v1 events.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
