{{- define "parley.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "parley.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one role: (dict "root" $ "role" "ws-push") */}}
{{- define "parley.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "parley.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The roles: name, values key, whether it serves HTTP to clients. */}}
{{- define "parley.roles" -}}
- {name: command-api, key: commandApi}
- {name: query-api, key: queryApi}
- {name: projector, key: projector}
- {name: ws-push, key: wsPush}
{{- end -}}

{{- define "parley.secretName" -}}
{{ include "parley.fullname" . }}
{{- end -}}

{{/* The environment every Parley container gets: backend, Kafka, CQL and their secrets. */}}
{{- define "parley.backendEnv" -}}
- name: PARLEY_BACKEND
  value: cluster
- name: PARLEY_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: PARLEY_KAFKA_BROKERS
  value: {{ required "kafka.brokers is required" .Values.kafka.brokers | quote }}
- name: PARLEY_KAFKA_TOPIC
  value: {{ .Values.kafka.topic | quote }}
- name: PARLEY_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: PARLEY_KAFKA_REPLICATION
  value: {{ .Values.kafka.replication | quote }}
- name: PARLEY_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "sasl" .Values.kafka.securityProtocol }}
- name: PARLEY_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: PARLEY_KAFKA_SASL_USERNAME
  value: {{ required "kafka.sasl.username is required with SASL" .Values.kafka.sasl.username | quote }}
- name: PARLEY_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret | default (include "parley.secretName" .) }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: PARLEY_KAFKA_CA_FILE
  value: /etc/parley/kafka-ca/{{ .Values.kafka.tls.caKey }}
{{- end }}
{{- with .Values.kafka.config }}
- name: PARLEY_KAFKA_CONFIG
  value: {{ $props := list }}{{ range $k, $v := . }}{{ $props = append $props (printf "%s=%v" $k $v) }}{{ end }}{{ join ";" $props | quote }}
{{- end }}
- name: PARLEY_SCYLLA_NODES
  value: {{ required "scylla.nodes is required" .Values.scylla.nodes | quote }}
- name: PARLEY_SCYLLA_KEYSPACE
  value: {{ .Values.scylla.keyspace | quote }}
- name: PARLEY_SCYLLA_REPLICATION
  value: {{ .Values.scylla.replication | quote }}
{{- if .Values.scylla.tls.enabled }}
- name: PARLEY_SCYLLA_TLS
  value: "true"
{{- if .Values.scylla.tls.caSecret }}
- name: PARLEY_SCYLLA_CA_FILE
  value: /etc/parley/scylla-ca/{{ .Values.scylla.tls.caKey }}
{{- end }}
{{- if .Values.scylla.tls.clientCertSecret }}
- name: PARLEY_SCYLLA_CERT_FILE
  value: /etc/parley/scylla-client/tls.crt
- name: PARLEY_SCYLLA_KEY_FILE
  value: /etc/parley/scylla-client/tls.key
{{- end }}
{{- end }}
{{- if .Values.scylla.auth.username }}
- name: PARLEY_SCYLLA_USERNAME
  value: {{ .Values.scylla.auth.username | quote }}
- name: PARLEY_SCYLLA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.scylla.auth.existingSecret | default (include "parley.secretName" .) }}
      key: {{ .Values.scylla.auth.passwordKey }}
{{- end }}
{{- range $k, $v := .Values.extraEnv }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Volumes for the CA files and client certificate. */}}
{{- define "parley.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
{{- end }}
{{- if and .Values.scylla.tls.enabled .Values.scylla.tls.caSecret }}
- name: scylla-ca
  secret:
    secretName: {{ .Values.scylla.tls.caSecret }}
{{- end }}
{{- if and .Values.scylla.tls.enabled .Values.scylla.tls.clientCertSecret }}
- name: scylla-client
  secret:
    secretName: {{ .Values.scylla.tls.clientCertSecret }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "parley.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/parley/kafka-ca
  readOnly: true
{{- end }}
{{- if and .Values.scylla.tls.enabled .Values.scylla.tls.caSecret }}
- name: scylla-ca
  mountPath: /etc/parley/scylla-ca
  readOnly: true
{{- end }}
{{- if and .Values.scylla.tls.enabled .Values.scylla.tls.clientCertSecret }}
- name: scylla-client
  mountPath: /etc/parley/scylla-client
  readOnly: true
{{- end }}
{{- end -}}
