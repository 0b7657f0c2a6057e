{{/* The alerting container's env: settings that only it reads, and secrets by reference. */}}
{{- define "opswatch.alertingEnv" -}}
{{- $c := .Values.alerting -}}
{{- $s := .Values.secrets -}}
{{- $secretDir := "/var/run/secrets/opswatch" -}}
{{- if $c.config }}
- name: OPSWATCH_ALERTING_CONFIG
  value: {{ $c.configPath | quote }}
{{- end }}
{{- if $s.database.name }}
- name: OPSWATCH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.database.name }}
      key: {{ $s.database.key }}
{{- else }}
{{- /* no PostgreSQL: SQLite on the pod's writable /tmp, lost with the pod (see NOTES) */}}
- name: OPSWATCH_DATABASE_URL
  value: "sqlite:////tmp/opswatch-alerts.db"
{{- end }}
{{- if .Values.database.migrationJob }}
- name: OPSWATCH_DATABASE_UPGRADE
  value: "false"
{{- end }}
{{- if $s.apiWriteToken.name }}
- name: OPSWATCH_API_WRITE_TOKEN_FILE
  value: {{ printf "%s/api-write-token/%s" $secretDir $s.apiWriteToken.key | quote }}
{{- end }}
{{- if $s.apiReadToken.name }}
- name: OPSWATCH_API_READ_TOKEN_FILE
  value: {{ printf "%s/api-read-token/%s" $secretDir $s.apiReadToken.key | quote }}
{{- end }}
{{- if $s.slackSigningSecret.name }}
- name: OPSWATCH_SLACK_SIGNING_SECRET_FILE
  value: {{ printf "%s/slack-signing-secret/%s" $secretDir $s.slackSigningSecret.key | quote }}
{{- end }}
{{- range .Values.extraEnvFromSecrets }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
