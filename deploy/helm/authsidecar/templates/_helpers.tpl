{{/* The chart's name, or nameOverride. */}}
{{- define "authsidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "authsidecar.fullname" -}}
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

{{- define "authsidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authsidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "authsidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "authsidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "authsidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "authsidecar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "authsidecar.image" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (.Values.sidecar.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The sidecar's configuration, shared by the Deployment and the `helm test` Pod: the
variables the chart derives from its values, the Secret references, then sidecar.env.
*/}}
{{- define "authsidecar.env" -}}
{{- range $name := list "UPSTREAM_URL" "LISTEN_ADDR" "ADMIN_ADDR" "DATABASE_URL" "REDIS_URL" "ADMIN_TOKEN" }}
{{- if hasKey $.Values.sidecar.env $name }}
{{- fail (printf "sidecar.env.%s: the chart sets %s itself (see values.yaml: app.port, sidecar.port, sidecar.adminPort, sidecar.secret)" $name $name) }}
{{- end }}
{{- end }}
- name: UPSTREAM_URL
  value: {{ printf "http://127.0.0.1:%v" .Values.app.port | quote }}
- name: LISTEN_ADDR
  value: {{ printf ":%v" .Values.sidecar.port | quote }}
- name: ADMIN_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.sidecar.adminPort | quote }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.sidecar.secret.name }}
      key: {{ .Values.sidecar.secret.databaseURLKey }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.sidecar.secret.name }}
      key: {{ .Values.sidecar.secret.redisURLKey }}
      optional: true
- name: ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.sidecar.secret.name }}
      key: {{ .Values.sidecar.secret.adminTokenKey }}
      optional: true
{{- range $name, $value := .Values.sidecar.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}
