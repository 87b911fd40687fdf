{{- /*
Names, labels, images, and the fixed ports and paths the hub's config file
(files/jupyterhub_config.py) expects: it finds the chart's values and the mounted Secrets
relative to its own directory, /etc/jupyterhub/config.
*/}}

{{- define "hpcspawner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hpcspawner.fullname" -}}
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

{{- /* "<fullname>-<suffix>": (list $ "hub-api") */}}
{{- define "hpcspawner.nameFor" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%s" (include "hpcspawner.fullname" $ctx | trunc 50 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "hpcspawner.hubSecretName" -}}
{{- .Values.hub.existingSecret | default (include "hpcspawner.nameFor" (list . "hub-secret")) }}
{{- end }}

{{- define "hpcspawner.serviceAccountName" -}}
{{- if .Values.hub.serviceAccount.create }}
{{- .Values.hub.serviceAccount.name | default (include "hpcspawner.nameFor" (list . "hub")) }}
{{- else }}
{{- .Values.hub.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- /* labels on every object: (list $ "hub") */}}
{{- define "hpcspawner.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
{{ include "hpcspawner.selectorLabels" . }}
{{- end }}

{{- /* what Deployments, Services and NetworkPolicies select by: (list $ "hub") */}}
{{- define "hpcspawner.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "hpcspawner.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- /* name:tag, the tag defaulting to the chart's appVersion: (list $ .Values.hub.image) */}}
{{- define "hpcspawner.image" -}}
{{- $ctx := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.name ($image.tag | default $ctx.Chart.AppVersion) }}
{{- end }}

{{- define "hpcspawner.imageFields" -}}
image: {{ include "hpcspawner.image" . | quote }}
{{- with (index . 1).pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{- /* a probe from values: (list .Values.hub.livenessProbe <httpGet dict>) */}}
{{- define "hpcspawner.probe" -}}
{{- $probe := index . 0 -}}
httpGet: {{- toYaml (index . 1) | nindent 2 }}
{{- with omit $probe "enabled" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- /* Fixed ports and paths. */}}
{{- define "hpcspawner.hubPort" }}8081{{ end }}
{{- define "hpcspawner.proxyHttpPort" }}8000{{ end }}
{{- define "hpcspawner.proxyHttpsPort" }}8443{{ end }}
{{- define "hpcspawner.proxyApiPort" }}8001{{ end }}
{{- define "hpcspawner.configDir" }}/etc/jupyterhub/config{{ end }}
{{- define "hpcspawner.secretsDir" }}/etc/jupyterhub/secrets{{ end }}
{{- define "hpcspawner.dataDir" }}/srv/jupyterhub{{ end }}

{{- /* The port of an http(s) URL: its own, or the scheme's. */}}
{{- define "hpcspawner.urlPort" -}}
{{- $url := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- $port | default (eq $url.scheme "https" | ternary "443" "80") }}
{{- end }}

{{- /* The SSH ports of slurm.ssh.hosts ("host", "host:port", "[address]:port"), comma-separated. */}}
{{- define "hpcspawner.sshPorts" -}}
{{- $ports := list }}
{{- range .Values.slurm.ssh.hosts }}
{{- $port := toString $.Values.slurm.ssh.port }}
{{- if hasPrefix "[" . }}
{{- $port = regexFind "\\]:[0-9]+$" . | trimPrefix "]:" | default $port }}
{{- else if eq (len (splitList ":" .)) 2 }}
{{- $port = last (splitList ":" .) }}
{{- end }}
{{- $ports = append $ports $port }}
{{- end }}
{{- $ports | uniq | join "," }}
{{- end }}

{{- /*
Checks across values that the schema cannot express, each failing with what to do.
*/}}
{{- define "hpcspawner.checks" -}}
{{- $v := .Values }}
{{- $_ := required "publicUrl: the address users open, e.g. https://jupyter.uni.example" $v.publicUrl }}
{{- $_ = required "hub.connectUrl: the address the compute nodes reach the hub's API at, e.g. http://k8s-node1.cluster.example.org:30081 (see hub.apiService)" $v.hub.connectUrl }}
{{- $_ = required "auth.oidc.issuer: your OpenID Connect provider's issuer URL" $v.auth.oidc.issuer }}
{{- $_ = required "auth.oidc.clientId: the client registered for this hub at your provider" $v.auth.oidc.clientId }}
{{- if and $v.hub.existingSecret (or $v.hub.cookieSecret $v.hub.cryptKey $v.proxy.secretToken) }}
{{- fail "hub.existingSecret holds cookie-secret, crypt-key and proxy-token: leave hub.cookieSecret, hub.cryptKey and proxy.secretToken empty" }}
{{- end }}
{{- if eq $v.hub.db.type "external" }}
{{- if eq (empty $v.hub.db.url) (empty $v.hub.db.urlSecret) }}
{{- fail "hub.db.type external: give exactly one of hub.db.url (no password) and hub.db.urlSecret (a Secret's key holding the URL)" }}
{{- end }}
{{- else if or $v.hub.db.url $v.hub.db.urlSecret }}
{{- fail (printf "hub.db.url and hub.db.urlSecret are for hub.db.type external, not %s" $v.hub.db.type) }}
{{- end }}
{{- if eq $v.slurm.driver "rest" }}
{{- if eq (empty $v.slurm.rest.jwtKey) (empty $v.slurm.rest.token) }}
{{- fail "slurm.rest: give exactly one of jwtKey (the cluster's JWT key: the hub mints tokens) and token (a token you rotate in its Secret)" }}
{{- end }}
{{- if eq $v.spawner.tokenDelivery "file" }}
{{- fail "spawner.tokenDelivery file: slurmrestd cannot write the user's files; leave it empty or set environment" }}
{{- end }}
{{- end }}
{{- if and $v.ingress.enabled $v.proxy.tls.secretName }}
{{- fail "TLS at the Ingress (ingress.tls) or at the proxy (proxy.tls.secretName), not both" }}
{{- end }}
{{- $low := index $v.spawner.portRange 0 | int }}
{{- $high := index $v.spawner.portRange 1 | int }}
{{- if and (ne $low 0) (or (lt $low 1024) (gt $low $high)) }}
{{- fail (printf "spawner.portRange [%d, %d]: use [low, high] with 1024 <= low <= high" $low $high) }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
{{- if not $v.networkPolicy.computeNodes.cidrs }}
{{- fail "networkPolicy.computeNodes.cidrs: name the compute nodes' networks (their jobs call the hub's API, the proxy reaches their servers), or set networkPolicy.enabled=false" }}
{{- end }}
{{- if eq $low 0 }}
{{- fail "spawner.portRange [0, 0] (any port) with networkPolicy.enabled: the policies open the servers' ports only; set the range the launcher uses, e.g. [40000, 49999]" }}
{{- end }}
{{- end }}
{{- end }}

{{- /*
The hub's projected "secrets" volume's sources: the hub's Secret, then each secretKeyRef
that is set, as (list $ref "dir/file"). The paths are what files/jupyterhub_config.py reads.
*/}}
{{- define "hpcspawner.secretSources" -}}
{{- $v := .Values }}
{{- $hub := list }}
{{- range list "cookie-secret" "crypt-key" "proxy-token" }}
{{- $hub = append $hub (dict "key" . "path" (printf "hub/%s" .)) }}
{{- end }}
{{- $sources := list (dict "secret" (dict "name" (include "hpcspawner.hubSecretName" .) "items" $hub)) }}
{{- $refs := list (list $v.auth.oidc.clientSecret "oidc/client-secret") }}
{{- if eq $v.hub.db.type "external" }}
{{- $refs = append $refs (list $v.hub.db.urlSecret "db/url") }}
{{- end }}
{{- if eq $v.slurm.driver "ssh" }}
{{- $refs = concat $refs (list (list $v.slurm.ssh.privateKey "ssh/id_key") (list $v.slurm.ssh.certificate "ssh/id_key-cert.pub") (list $v.slurm.ssh.knownHosts "ssh/known_hosts")) }}
{{- else if eq $v.slurm.driver "rest" }}
{{- $refs = concat $refs (list (list $v.slurm.rest.jwtKey "slurmrestd/jwt.key") (list $v.slurm.rest.token "slurmrestd/token") (list $v.slurm.rest.ca "slurmrestd/ca.pem")) }}
{{- end }}
{{- range $refs }}
{{- $ref := index . 0 }}
{{- if $ref }}
{{- $item := dict "key" $ref.key "path" (index . 1) }}
{{- $sources = append $sources (dict "secret" (dict "name" $ref.name "items" (list $item))) }}
{{- end }}
{{- end }}
{{- toYaml $sources }}
{{- end }}
