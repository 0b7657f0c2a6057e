{{/* vim: set filetype=mustache: */}}

{{/* Chart name. */}}
{{- define "opswatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: <release>-<chart>, or <release> alone when it already contains the
chart name. Truncated to 63 characters (DNS names); component suffixes are
added after a further trunc in opswatch.componentName.
*/}}
{{- define "opswatch.fullname" -}}
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

{{/* Name of one component's resources: (dict "ctx" $ "component" "ingest"). */}}
{{- define "opswatch.componentName" -}}
{{- $full := include "opswatch.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
{{- printf "%s-%s" $full .component -}}
{{- end -}}

{{- define "opswatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "opswatch.labels" -}}
helm.sh/chart: {{ include "opswatch.chart" . }}
{{ include "opswatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: opswatch
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels (immutable once installed: never add to these). */}}
{{- define "opswatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opswatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "ingest"). */}}
{{- define "opswatch.componentLabels" -}}
{{ include "opswatch.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "ingest"). */}}
{{- define "opswatch.componentSelectorLabels" -}}
{{ include "opswatch.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ServiceAccount name. */}}
{{- define "opswatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "opswatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: repository, then @digest or :tag (default appVersion). */}}
{{- define "opswatch.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the settings ConfigMap (env) and of the alerting config ConfigMap. */}}
{{- define "opswatch.envConfigMapName" -}}
{{- include "opswatch.componentName" (dict "ctx" . "component" "env") -}}
{{- end -}}
{{- define "opswatch.alertingConfigMapName" -}}
{{- include "opswatch.componentName" (dict "ctx" . "component" "alerting-config") -}}
{{- end -}}

{{/*
Kafka security: the settings (in the env ConfigMap), and the Secrets they name,
mounted read-only into every service under /var/run/secrets/opswatch/kafka-*.
*/}}
{{- define "opswatch.kafkaSecretDir" -}}
/var/run/secrets/opswatch
{{- end -}}

{{- define "opswatch.kafkaEnv" -}}
{{- $v := .Values -}}
{{- $s := $v.secrets -}}
{{- $dir := include "opswatch.kafkaSecretDir" . -}}
{{- $protocol := $v.kafkaSecurityProtocol -}}
{{- $sasl := hasPrefix "SASL_" $protocol -}}
{{- $tls := has $protocol (list "SSL" "SASL_SSL") -}}
OPSWATCH_KAFKA_SECURITY_PROTOCOL: {{ $protocol | quote }}
{{- if $sasl }}
OPSWATCH_KAFKA_SASL_MECHANISM: {{ required (printf "kafkaSaslMechanism is required with kafkaSecurityProtocol=%s: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" $protocol) $v.kafkaSaslMechanism | quote }}
{{- $_ := required (printf "secrets.kafkaSasl.name is required with kafkaSecurityProtocol=%s: the existing Secret holding the user (%s) and password (%s)" $protocol $s.kafkaSasl.usernameKey $s.kafkaSasl.passwordKey) $s.kafkaSasl.name }}
OPSWATCH_KAFKA_SASL_USERNAME_FILE: {{ printf "%s/kafka-sasl/%s" $dir $s.kafkaSasl.usernameKey | quote }}
OPSWATCH_KAFKA_SASL_PASSWORD_FILE: {{ printf "%s/kafka-sasl/%s" $dir $s.kafkaSasl.passwordKey | quote }}
{{- else if or $s.kafkaSasl.name $v.kafkaSaslMechanism }}
{{- fail (printf "secrets.kafkaSasl and kafkaSaslMechanism need kafkaSecurityProtocol SASL_SSL or SASL_PLAINTEXT, not %s" $protocol) }}
{{- end }}
{{- if $tls }}
{{- if $s.kafkaCa.name }}
OPSWATCH_KAFKA_SSL_CA_FILE: {{ printf "%s/kafka-ca/%s" $dir $s.kafkaCa.key | quote }}
{{- end }}
{{- if $s.kafkaClientCert.name }}
OPSWATCH_KAFKA_SSL_CERT_FILE: {{ printf "%s/kafka-client-cert/%s" $dir $s.kafkaClientCert.certKey | quote }}
OPSWATCH_KAFKA_SSL_KEY_FILE: {{ printf "%s/kafka-client-cert/%s" $dir $s.kafkaClientCert.keyKey | quote }}
{{- end }}
{{- if not $v.kafkaSslCheckHostname }}
OPSWATCH_KAFKA_SSL_CHECK_HOSTNAME: "false"
{{- end }}
{{- else if or $s.kafkaCa.name $s.kafkaClientCert.name }}
{{- fail (printf "secrets.kafkaCa and secrets.kafkaClientCert need kafkaSecurityProtocol SSL or SASL_SSL, not %s" $protocol) }}
{{- end }}
{{- if $v.kafkaReplicationFactor }}
OPSWATCH_KAFKA_REPLICATION_FACTOR: {{ $v.kafkaReplicationFactor | quote }}
{{- end }}
{{- if $v.kafkaMinInsyncReplicas }}
OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS: {{ $v.kafkaMinInsyncReplicas | quote }}
{{- end }}
{{- end -}}

{{/* The Kafka Secrets' mounts and volumes of every service (none without them). */}}
{{- define "opswatch.kafkaSecrets" -}}
{{- $s := .Values.secrets -}}
{{- $out := list -}}
{{- if and (hasPrefix "SASL_" .Values.kafkaSecurityProtocol) $s.kafkaSasl.name -}}
{{- $out = append $out (dict "volume" "kafka-sasl" "secret" $s.kafkaSasl.name "keys" (list $s.kafkaSasl.usernameKey $s.kafkaSasl.passwordKey)) -}}
{{- end -}}
{{- if has .Values.kafkaSecurityProtocol (list "SSL" "SASL_SSL") -}}
{{- if $s.kafkaCa.name -}}
{{- $out = append $out (dict "volume" "kafka-ca" "secret" $s.kafkaCa.name "keys" (list $s.kafkaCa.key)) -}}
{{- end -}}
{{- if $s.kafkaClientCert.name -}}
{{- $out = append $out (dict "volume" "kafka-client-cert" "secret" $s.kafkaClientCert.name "keys" (list $s.kafkaClientCert.certKey $s.kafkaClientCert.keyKey)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "opswatch.kafkaMounts" -}}
{{- $dir := include "opswatch.kafkaSecretDir" . -}}
{{- range (include "opswatch.kafkaSecrets" . | fromJsonArray) }}
- name: {{ .volume }}
  mountPath: {{ printf "%s/%s" $dir .volume }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "opswatch.kafkaVolumes" -}}
{{- range (include "opswatch.kafkaSecrets" . | fromJsonArray) }}
- name: {{ .volume }}
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      {{- range (.keys | uniq) }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* The Kafka bootstrap, required. */}}
{{- define "opswatch.kafkaBootstrap" -}}
{{- required "kafkaBootstrap is required: set it to your Kafka brokers, e.g. --set kafkaBootstrap=kafka-0.kafka:9092,kafka-1.kafka:9092" .Values.kafkaBootstrap -}}
{{- end -}}

{{/*
Pod annotations shared by all components: the checksum of the rendered
ConfigMaps (a settings or alerting config change rolls the pods), then the
global and the component's own annotations. (dict "ctx" $ "component" "ingest")
*/}}
{{- define "opswatch.podAnnotations" -}}
checksum/config: {{ include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum }}
{{- with .ctx.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with (index .ctx.Values .component).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Pod spec fields shared by all components (everything but containers and
volumes): (dict "ctx" $ "component" "ingest").
*/}}
{{- define "opswatch.podCommon" -}}
{{- $v := .ctx.Values -}}
{{- $c := index $v .component -}}
serviceAccountName: {{ include "opswatch.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with (default $v.nodeSelector $c.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $v.tolerations $c.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $v.affinity $c.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
{{- $constraints := list }}
{{- range . }}
{{- $tsc := deepCopy . }}
{{- if not .labelSelector }}
{{- $_ := set $tsc "labelSelector" (dict "matchLabels" (include "opswatch.componentSelectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $tsc }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container fields shared by all components: image, env, security context. */}}
{{- define "opswatch.containerCommon" -}}
image: {{ include "opswatch.image" .ctx | quote }}
imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
args: ["run", {{ .component | quote }}]
envFrom:
  - configMapRef:
      name: {{ include "opswatch.envConfigMapName" .ctx }}
securityContext:
  {{- toYaml .ctx.Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Resources: drops empty strings (e.g. limits.cpu: "" means no CPU limit). */}}
{{- define "opswatch.resources" -}}
{{- $out := dict -}}
{{- range $kind, $vals := . -}}
{{- $kept := dict -}}
{{- range $name, $q := $vals -}}
{{- if $q }}{{- $_ := set $kept $name $q -}}{{- end -}}
{{- end -}}
{{- if $kept }}{{- $_ := set $out $kind $kept -}}{{- end -}}
{{- end -}}
{{- if $out }}
{{- toYaml $out -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/* An HTTP probe: (dict "probe" .livenessProbe "path" "/healthz" "port" "http"). */}}
{{- define "opswatch.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/* PodDisruptionBudget spec body: minAvailable wins when set. */}}
{{- define "opswatch.pdbSpec" -}}
{{- $pdb := .pdb -}}
{{- if and (ne (toString $pdb.minAvailable) "") (ne (toString $pdb.minAvailable) "<nil>") }}
minAvailable: {{ $pdb.minAvailable }}
{{- else }}
maxUnavailable: {{ $pdb.maxUnavailable }}
{{- end }}
selector:
  matchLabels:
    {{- include "opswatch.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
{{- end -}}

{{/* Names of the environment variables that extraEnvFromSecrets provides. */}}
{{- define "opswatch.providedEnvNames" -}}
{{- range .Values.extraEnvFromSecrets }}{{ .env }},{{ end -}}
{{- range .Values.extraEnv }}{{ .name }},{{ end -}}
{{- end -}}

{{/* The custom metric catalog, when given: where it is mounted, its mount, its volume. */}}
{{- define "opswatch.catalogPath" -}}
/etc/opswatch/catalog/metrics.yaml
{{- end -}}

{{- define "opswatch.catalogMount" -}}
{{- if .Values.metricCatalog }}
- name: catalog
  mountPath: {{ dir (include "opswatch.catalogPath" .) }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "opswatch.catalogVolume" -}}
{{- if .Values.metricCatalog }}
- name: catalog
  configMap:
    name: {{ include "opswatch.componentName" (dict "ctx" . "component" "catalog") }}
{{- end }}
{{- end -}}

{{/* The calendar, when given: mounted beside the catalog, in a ConfigMap of its own. */}}
{{- define "opswatch.calendarPath" -}}
/etc/opswatch/calendar/calendar.yaml
{{- end -}}

{{- define "opswatch.calendarMount" -}}
{{- if .Values.calendar }}
- name: calendar
  mountPath: {{ dir (include "opswatch.calendarPath" .) }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "opswatch.calendarVolume" -}}
{{- if .Values.calendar }}
- name: calendar
  configMap:
    name: {{ include "opswatch.componentName" (dict "ctx" . "component" "calendar") }}
{{- end }}
{{- end -}}
