#!/usr/bin/env bash
# The local test cluster's site in Slurm's accounting: QOS, accounts, users, a reservation.
# Called by setup.sh once slurmctld runs (a QOS limit on GPUs needs the gres/gpu TRES, which
# slurmctld registers when it starts).  Idempotent: what exists is kept, limits are set again.
#
#   QOS       normal     Slurm's default QOS, no limits
#             short      MaxWall 2:00:00; per job at most 2 CPUs, 4G, no GPU (DenyOnLimit)
#             long       MaxWall 1-00:00:00; per job at most 4 CPUs, 8G, 1 GPU (DenyOnLimit)
#   accounts  physics    QOS normal, short, long (default normal)
#             chemistry  QOS normal, short (default normal); GrpTRES cpu=6,gres/gpu=1: the
#                        running jobs of all its users together hold at most 6 CPUs and 1 GPU
#   users     alice      physics (default account) and chemistry
#             bob        chemistry
#             carol      physics
#   reservation workshop on node n1 (MULTINODE>=1), for account chemistry, starting in 30 days
#             for 4 hours: visible to the hub (sinfo -T, scontrol show res), in nobody's way
#
# The users' accounts decide which jobs the controller accepts (slurm.conf's
# AccountingStorageEnforce=associations,limits,qos): a user with no association submits nothing.
set -euo pipefail
LOG_TAG=site
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
CLUSTER=hpcspawner

# sacctmgr -i: no confirmation prompt.  Adding what exists fails with "Nothing new added":
# that is fine here; "modify" then sets the limits every time, so an edit below applies.
add() {
  local out
  out=$(timeout 30 sacctmgr -i add "$@" 2>&1) || [[ "$out" == *"Nothing new added"* ]] \
    || { echo "sacctmgr add $*: $out" >&2; return 1; }
}
modify() {
  local out
  out=$(timeout 30 sacctmgr -i modify "$@" 2>&1) || { echo "sacctmgr modify $*: $out" >&2; return 1; }
}

add qos short
add qos long
# DenyOnLimit: a job over a QOS limit is refused at submit time instead of pending forever
modify qos short set MaxWall=02:00:00 MaxTRESPerJob=cpu=2,mem=4G,gres/gpu=0 Flags=DenyOnLimit \
  Description="short interactive sessions"
modify qos long set MaxWall=1-00:00:00 MaxTRESPerJob=cpu=4,mem=8G,gres/gpu=1 Flags=DenyOnLimit \
  Description="long sessions"
add account physics Cluster="$CLUSTER" Description="Physics department" Organization=science
add account chemistry Cluster="$CLUSTER" Description="Chemistry department" Organization=science
modify account where name=physics cluster="$CLUSTER" set QOS=normal,short,long DefaultQOS=normal
modify account where name=chemistry cluster="$CLUSTER" set QOS=normal,short DefaultQOS=normal \
  GrpTRES=cpu=6,gres/gpu=1
user() { # USER DEFAULT_ACCOUNT [MORE_ACCOUNTS...]
  local name=$1 account
  for account in "${@:2}"; do add user "$name" Account="$account" Cluster="$CLUSTER"; done
  modify user where name="$name" cluster="$CLUSTER" set DefaultAccount="$2"
}
user alice physics chemistry
user bob chemistry
user carol physics
log "accounts physics, chemistry; QOS normal, short, long; users alice, bob, carol"

if sinfo -h -n n1 -o %N 2>/dev/null | grep -qx n1; then
  if ! scontrol show reservation workshop >/dev/null 2>&1; then
    scontrol create reservation ReservationName=workshop StartTime=now+30days Duration=04:00:00 \
      Nodes=n1 Accounts=chemistry >/dev/null
  fi
  log "reservation workshop (n1, account chemistry, in 30 days)"
fi
