#!/usr/bin/env bash
# Is the local Slurm test cluster up and healthy?  Exit 0 if munged, slurmctld and every slurmd
# (node vm, plus n1..nN with MULTINODE=N) are alive by pid file, all nodes are idle/mixed/allocated
# and responding, and a real test job completes on the default partition (and one on "remote"
# spanning all netns nodes).  Starts and changes nothing else.
#
#   MULTINODE=2 scripts/cluster/health.sh     # expect nodes n1,n2 and partition remote as well
#   ACCOUNTING=0                              # expect no slurmdbd (default 1: slurmdbd running,
#                                             # slurm.conf storing to it, the site's users known)
#   READY_TIMEOUT=10                          # seconds for nodes + test jobs (default 30)
#   QUIET=1                                   # no diagnostics on failure
set -euo pipefail
LOG_TAG=health
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
MULTINODE=${MULTINODE:-0}
ACCOUNTING=${ACCOUNTING:-1}
READY_TIMEOUT=${READY_TIMEOUT:-30}
exec 3>&2
[ -n "${QUIET:-}" ] && exec >/dev/null 2>&1
fail() {
  echo "cluster not healthy: $*" >&3
  [ -n "${QUIET:-}" ] || dump_logs
  exit 1
}
# Cheap checks first: without a controller every Slurm client hangs for MessageTimeout (~10 s).
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munge round trip fails"
pid_of "$SLURMCTLD_PID" slurmctld >/dev/null || fail "slurmctld not running"
if [ "$ACCOUNTING" = 1 ]; then
  grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_CONF_DIR/slurm.conf" ||
    fail "slurm.conf does not store accounting in slurmdbd (ACCOUNTING=1)"
  pid_of "$SLURMDBD_PID" slurmdbd >/dev/null || fail "slurmdbd not running"
  [ -n "$(timeout 20 sacctmgr -nP show assoc where user=alice format=account 2>/dev/null)" ] ||
    fail "slurmdbd does not answer, or has no association for alice (make-site.sh)"
else
  grep -q '^AccountingStorageType=accounting_storage/none' "$SLURM_CONF_DIR/slurm.conf" ||
    fail "slurm.conf stores accounting somewhere (ACCOUNTING=0 expects none)"
fi
nodes=$CTL_HOST
specs=(debug:1)
if [ "$MULTINODE" -gt 0 ]; then
  nodes="$CTL_HOST,n[1-$MULTINODE]"
  specs+=("remote:$MULTINODE")
  [ "$(configured_netns_nodes | wc -l)" = "$MULTINODE" ] || fail "slurm.conf does not have $MULTINODE netns nodes"
fi
for n in "$CTL_HOST" $(seq -f 'n%g' 1 "$MULTINODE"); do
  pid_of "$(slurmd_pidfile "$n")" slurmd >/dev/null || fail "slurmd $n not running"
done
deadline=$(( $(date +%s) + READY_TIMEOUT ))
wait_nodes "$nodes" "$READY_TIMEOUT" || fail "nodes $nodes not ready"
ready_jobs $(( deadline - $(date +%s) > 5 ? deadline - $(date +%s) : 5 )) "${specs[@]}" ||
  fail "test job did not complete"
log "healthy (nodes $nodes)"
