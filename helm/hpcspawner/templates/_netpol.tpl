{{- /* Pieces of the NetworkPolicies (hub/netpol.yaml, proxy/netpol.yaml). */}}

{{- /* DNS, for every pod that looks up names (the cluster's resolver, wherever it runs). */}}
{{- define "hpcspawner.netpol.dns" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}

{{- /* The compute nodes' servers: their networks, on spawner.portRange. */}}
{{- define "hpcspawner.netpol.computeServers" -}}
- to:
    {{- range .Values.networkPolicy.computeNodes.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ index .Values.spawner.portRange 0 }}
      endPort: {{ index .Values.spawner.portRange 1 }}
{{- end }}

{{- /* An egress rule to some CIDRs (none: anywhere) on some ports: (list $cidrs "22,2222") */}}
{{- define "hpcspawner.netpol.egressTo" -}}
{{- $ports := list }}
{{- range splitList "," (index . 1) }}
{{- $ports = append $ports (dict "port" (int .) "protocol" "TCP") }}
{{- end }}
{{- $rule := dict "ports" $ports }}
{{- with index . 0 }}
{{- $to := list }}
{{- range . }}
{{- $to = append $to (dict "ipBlock" (dict "cidr" .)) }}
{{- end }}
{{- $_ := set $rule "to" $to }}
{{- end }}
{{- toYaml (list $rule) }}
{{- end }}
