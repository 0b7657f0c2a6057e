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
