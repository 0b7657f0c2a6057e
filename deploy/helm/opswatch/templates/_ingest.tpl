{{/* The ingest container's env: the shared Idempotency-Keys' database, and extraEnv. */}}
{{- define "opswatch.ingestEnv" -}}
{{- $s := .Values.secrets -}}
{{- if .Values.database.sharedIdempotencyKeys }}
{{- if not $s.database.name }}
{{- fail "database.sharedIdempotencyKeys needs secrets.database.name (the Secret holding the PostgreSQL URL)" }}
{{- end }}
- name: OPSWATCH_INGEST_IDEMPOTENCY
  value: database
- name: OPSWATCH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.database.name }}
      key: {{ $s.database.key }}
{{- if .Values.database.migrationJob }}
- name: OPSWATCH_DATABASE_UPGRADE
  value: "false"
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
