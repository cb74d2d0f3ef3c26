{{- define "onwapp.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "onwapp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "onwapp.peers" -}}
{{- printf "%s-peers" (include "onwapp.fullname" .) -}}
{{- end -}}

{{- define "onwapp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onwapp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "onwapp.labels" -}}
{{ include "onwapp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* A cluster needs Postgres: without a database the chart runs one node on SQLite. */}}
{{- define "onwapp.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "onwapp.replicas" -}}
{{- if include "onwapp.hasDatabase" . -}}{{ int .Values.replicaCount }}{{- else -}}1{{- end -}}
{{- end -}}

{{/* The Raft voters are fixed at install: changing them later would let new voters form a
group of their own. A cluster needs at least as many nodes as voters, and an odd number of
voters (an even one tolerates no more failures than one fewer). */}}
{{- define "onwapp.voters" -}}
{{- if include "onwapp.hasDatabase" . -}}
{{- $voters := int .Values.cluster.voters -}}
{{- if lt $voters 1 -}}{{- fail "cluster.voters must be at least 1" -}}{{- end -}}
{{- if eq (mod $voters 2) 0 -}}{{- fail (printf "cluster.voters=%d: use an odd number (3 or 5)" $voters) -}}{{- end -}}
{{- if lt (int .Values.replicaCount) $voters -}}{{- fail (printf "replicaCount=%d is below cluster.voters=%d: a cluster needs at least as many nodes as Raft voters" (int .Values.replicaCount) $voters) -}}{{- end -}}
{{- $voters -}}
{{- else -}}1{{- end -}}
{{- end -}}

{{/* Long enough for the drain, its client's margin and the shutdown after it. */}}
{{- define "onwapp.terminationGrace" -}}
{{- $least := add (int .Values.drain.timeoutSeconds) (int .Values.shutdownTimeoutSeconds) 20 -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) $least -}}
{{- fail (printf "terminationGracePeriodSeconds=%d is below drain.timeoutSeconds + shutdownTimeoutSeconds + 20 = %d: the pod would be killed mid-drain" (int .Values.terminationGracePeriodSeconds) $least) -}}
{{- end -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- else -}}{{- $least -}}{{- end -}}
{{- end -}}

{{/* The voters, 1=http://<pod>.<peers>.<ns>.svc.<domain>:<port>,2=... (node ids are ordinals
plus one). Only the voters: more nodes join through them as learners, so scaling the replicas
changes no pod's environment and restarts none. */}}
{{- define "onwapp.clusterPeers" -}}
{{- $full := include "onwapp.fullname" . -}}
{{- $peers := include "onwapp.peers" . -}}
{{- $out := list -}}
{{- range $i := until (int (include "onwapp.voters" .)) -}}
{{- $out = append $out (printf "%d=%s://%s-%d.%s.%s.svc.%s:%d" (add1 $i) (include "onwapp.memberScheme" $) $full $i $peers $.Release.Namespace $.Values.cluster.clusterDomain (int $.Values.containerPort)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* A value kept in the chart's Secret: the given one, else the one already stored, else new. */}}
{{- define "onwapp.secretValue" -}}
{{- $given := index . 0 -}}
{{- $ctx := index . 1 -}}
{{- $key := index . 2 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (include "onwapp.fullname" $ctx) -}}
{{- if and $existing (index ($existing.data | default dict) $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "onwapp.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* How members reach each other: https with TLS between nodes. */}}
{{- define "onwapp.memberScheme" -}}
{{- if .Values.cluster.tls.existingSecret }}https{{ else }}http{{ end -}}
{{- end -}}
