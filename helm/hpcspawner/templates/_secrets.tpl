{{- /*
The hub's own secrets (cookie secret, auth_state key, proxy token): generated once, then kept.

Each value comes from, in this order:
  1. the values (hub.cookieSecret, hub.cryptKey, proxy.secretToken);
  2. the chart's Secret as it is in the cluster (`lookup`), so that upgrades keep it;
  3. a new random value (64 hex characters: sha256 of 64 random alphanumerics).
With hub.existingSecret the chart renders no Secret and none of this runs.

Step 3 is only safe when the render can see the cluster: `helm template`, Argo CD, and
`helm install --dry-run` (client) get nothing from `lookup`, so every such render would make
new secrets (z2jh#2887). Listing ConfigMaps in the release's namespace answers a list (empty
for a namespace that does not exist yet) from a cluster and nothing offline; without an
answer the render fails and says what to do, unless hub.generateSecretsWithoutCluster.
*/}}

{{- define "hpcspawner.clusterVisible" -}}
{{- if lookup "v1" "ConfigMap" .Release.Namespace "" }}true{{ end }}
{{- end }}

{{- /* (list $ "cookie-secret" "hub.cookieSecret" .Values.hub.cookieSecret) */}}
{{- define "hpcspawner.hubSecretValue" -}}
{{- $ctx := index . 0 }}
{{- $key := index . 1 }}
{{- $given := index . 3 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $found := lookup "v1" "Secret" $ctx.Release.Namespace (include "hpcspawner.hubSecretName" $ctx) }}
{{- $kept := dig "data" $key "" $found }}
{{- if $kept }}
{{- $kept | b64dec }}
{{- else if or (include "hpcspawner.clusterVisible" $ctx) $ctx.Values.hub.generateSecretsWithoutCluster }}
{{- randAlphaNum 64 | sha256sum }}
{{- else }}
{{- fail (printf "%s is empty and this render cannot see the cluster (helm template, Argo CD, --dry-run): a secret generated here would change at every render, logging everybody out and making auth_state unreadable. Name a Secret holding cookie-secret, crypt-key and proxy-token in hub.existingSecret (best with GitOps), or set hub.cookieSecret, hub.cryptKey and proxy.secretToken (openssl rand -hex 32), or set hub.generateSecretsWithoutCluster=true for a throw-away render; see docs/howto/kubernetes.md, Secrets" (index . 2)) }}
{{- end }}
{{- end }}
{{- end }}

{{- /*
A checksum that changes when the values' secrets change, so that the hub and the proxy
restart with them; the same for generated and existing secrets, which only change by hand
(then restart the Deployments, see the how-to).
*/}}
{{- define "hpcspawner.givenSecretsChecksum" -}}
{{- printf "%s/%s/%s" .Values.hub.cookieSecret .Values.hub.cryptKey .Values.proxy.secretToken | sha256sum }}
{{- end }}
