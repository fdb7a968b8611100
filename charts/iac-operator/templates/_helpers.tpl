{{/* Names and labels shared by every template. */}}

{{- define "iac-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "iac-operator.fullname" -}}
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

{{- define "iac-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "iac-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iac-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "iac-operator.labels" -}}
helm.sh/chart: {{ include "iac-operator.chart" . }}
{{ include "iac-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: iac-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "iac-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "iac-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "iac-operator.imageRef" -}}
{{- $img := index . 0 }}{{- $appVersion := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $appVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "iac-operator.progressURL" -}}
{{- if .Values.progressURL }}
{{- .Values.progressURL }}
{{- else }}
{{- printf "http://%s.%s.svc:%v/v1/progress" (include "iac-operator.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}

{{- define "iac-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "iac-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}
