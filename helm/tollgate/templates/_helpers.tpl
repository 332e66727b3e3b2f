{{/*
Names, labels, images, secret references and API-version choices shared by every template.
*/}}

{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tollgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-<component>, kept within 63 characters. */}}
{{- define "tollgate.componentName" -}}
{{- printf "%s-%s" (include "tollgate.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tollgate
{{- end -}}

{{/* image: (dict "root" $ "image" .Values.x.image) */}}
{{- define "tollgate.image" -}}
{{- printf "%s%s:%s" .root.Values.imageRegistry .image.repository (default .root.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart generates (and keeps) for every secret not taken from an existing one. */}}
{{- define "tollgate.generatedSecretName" -}}
{{- printf "%s-secrets" (include "tollgate.fullname" .) -}}
{{- end -}}

{{/* Whether anything must be generated. */}}
{{- define "tollgate.needsGeneratedSecret" -}}
{{- $s := .Values.secrets -}}
{{- if or (not $s.adminToken.existingSecret) (not $s.masterKey.existingSecret) (not $s.clusterSecret.existingSecret) (and $s.opsToken.enabled (not $s.opsToken.existingSecret)) .Values.postgresql.enabled -}}
true
{{- end -}}
{{- end -}}

{{/*
secretKeyRef for one secret: (dict "root" $ "name" "adminToken").
An existing Secret when configured, else the generated one under the same key.
*/}}
{{- define "tollgate.secretKeyRef" -}}
{{- $s := index .root.Values.secrets .name -}}
secretKeyRef:
  name: {{ default (include "tollgate.generatedSecretName" .root) $s.existingSecret }}
  key: {{ $s.key }}
{{- end -}}

{{- define "tollgate.databaseKeyRef" -}}
{{- if .Values.postgresql.enabled -}}
secretKeyRef:
  name: {{ include "tollgate.generatedSecretName" . }}
  key: database-url
{{- else -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret is required with an external PostgreSQL: name a Secret holding the libpq URL (or set postgresql.enabled=true to try Tollgate out)" -}}
{{- end -}}
secretKeyRef:
  name: {{ .Values.database.existingSecret }}
  key: {{ .Values.database.key }}
{{- end -}}
{{- end -}}

{{/* The control plane's Service address, as the dataplanes dial it. */}}
{{- define "tollgate.cpHost" -}}
{{- printf "%s.%s.svc" (include "tollgate.componentName" (dict "root" . "component" "controlplane")) .Release.Namespace -}}
{{- end -}}

{{- define "tollgate.pdbApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" -}}policy/v1{{- else -}}policy/v1beta1{{- end -}}
{{- end -}}

{{- define "tollgate.hpaApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2" -}}autoscaling/v2{{- else -}}autoscaling/v2beta2{{- end -}}
{{- end -}}

{{/* Pod-level volumes and mounts every Tollgate container gets: a writable /tmp on a read-only root. */}}
{{- define "tollgate.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* Checks across values that the schema cannot express; included once, by the control plane. */}}
{{- define "tollgate.validate" -}}
{{- $a := .Values.dataplane.autoscaling -}}
{{- if and $a.enabled (lt (int $a.maxReplicas) (int $a.minReplicas)) -}}
{{- fail (printf "dataplane.autoscaling.maxReplicas (%v) must be at least minReplicas (%v)" $a.maxReplicas $a.minReplicas) -}}
{{- end -}}
{{- $p := .Values.controlplane.ports -}}
{{- if or (eq $p.admin $p.pub) (eq $p.admin $p.rep) (eq $p.pub $p.rep) -}}
{{- fail "controlplane.ports.admin, .pub and .rep must be three different ports" -}}
{{- end -}}
{{- end -}}

{{/*
TOLLGATE_OPS_TOKEN for a container's env; include it only when secrets.opsToken.enabled.
*/}}
{{- define "tollgate.opsTokenEnv" -}}
- name: TOLLGATE_OPS_TOKEN
  valueFrom:
    {{- include "tollgate.secretKeyRef" (dict "root" . "name" "opsToken") | nindent 4 }}
{{- end -}}

{{/*
A ServiceMonitor endpoint's credentials: the ops token from its Secret (when secrets.opsToken.enabled).
*/}}
{{- define "tollgate.metricsAuthorization" -}}
authorization:
  type: Bearer
  credentials:
    name: {{ default (include "tollgate.generatedSecretName" .) .Values.secrets.opsToken.existingSecret }}
    key: {{ .Values.secrets.opsToken.key }}
{{- end -}}
