{{- define "opswatch.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "opswatch.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "opswatch.env" -}}
- name: OPSWATCH_KAFKA_BOOTSTRAP
  value: {{ required "kafkaBootstrap is required" .Values.kafkaBootstrap | quote }}
- name: OPSWATCH_KAFKA_PARTITIONS
  value: {{ .Values.kafkaPartitions | quote }}
- name: OPSWATCH_TOPIC_NAMESPACE
  value: {{ .Values.topicNamespace | quote }}
{{- if .Values.databaseSecret }}
- name: OPSWATCH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.databaseSecret }}
      key: DATABASE_URL
{{- end }}
{{- end -}}
