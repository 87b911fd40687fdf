#!/usr/bin/env bash
# Remove the netns "hosts" made by `MULTINODE=N scripts/cluster/setup.sh`: stop their slurmd (by
# pid file), delete the namespaces, the bridge, the per-node hosts files and the /etc/hosts lines.
# slurm.conf still lists the nodes afterwards: re-run setup.sh (without MULTINODE) for a
# single-node cluster, or the controller marks n1..nN DOWN after SlurmdTimeout.  Idempotent.
set -euo pipefail
LOG_TAG=teardown
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
specs=()
for pf in /run/slurmd-n*.pid; do [ -e "$pf" ] && specs+=("slurmd:$pf"); done
stop_pidfiles "${specs[@]}"
# A job process still running in a namespace keeps it alive after `ip netns del` (the name goes,
# the namespace stays until its last process exits); stop.sh/scancel first if that matters.
for ns in $(ip netns list | awk '/^sln[0-9]+( |$)/{print $1}'); do
  ip netns del "$ns"
  rm -rf "/etc/netns/$ns"
done
ip link del "$BRIDGE" 2>/dev/null || true
sed -i '/^10\.250\.0\.[0-9]* n[0-9]*$/d' /etc/hosts
log "netns nodes removed"
