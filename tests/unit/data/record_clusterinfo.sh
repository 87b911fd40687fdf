#!/usr/bin/env bash
# Re-record the cluster-info outputs (scontrol partitions/nodes, sacctmgr) from the local cluster.
# Needs: root, the cluster from `MULTINODE=2 scripts/cluster/setup.sh`, vm's GPUs and one CPU each
# on vm and n1 free. Unlike record.sh it never stops or reconfigures a daemon, so it may run while
# other tests use the cluster; it only submits two small jobs (1 CPU, <= 256M, <= 2 min), which it
# cancels on exit. Takes ~2-5 s. The commands are exactly the driver's (hpcspawner/slurm/local.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PARTITIONS=(scontrol --all --oneliner show partition)
NODES=(scontrol --all --details --oneliner show node)
ASSOC=(sacctmgr --noheader --parsable2 show assoc where user=alice format=user,account,qos,defaultqos,partition)
sub() { local u=$1; shift; runuser -u "$u" -- sbatch --parsable --chdir=/tmp --output=/dev/null "$@"; }
MINE=()
trap '[ ${#MINE[@]} = 0 ] || scancel "${MINE[@]}" 2>/dev/null || true' EXIT
wait_running() { # ID...: wait (<= 60 s) until every job runs
  for id in "$@"; do
    for _ in $(seq 300); do [ "$(squeue --noheader --jobs="$id" --format=%T)" = RUNNING ] && continue 2; sleep 0.2; done
    echo "job $id did not start" >&2; return 1
  done
}

# idle: wait (<= 60 s) for a moment without running jobs (other tests may be using the cluster)
for _ in $(seq 300); do [ -z "$(squeue --noheader --states=RUNNING,COMPLETING)" ] && break; sleep 0.2; done
[ -z "$(squeue --noheader --states=RUNNING,COMPLETING)" ] || { echo "cluster not idle" >&2; exit 1; }
"${PARTITIONS[@]}" >scontrol_partitions.txt
"${NODES[@]}" >scontrol_nodes_idle.txt

# busy: one GPU job on vm (partition gpu), one CPU job on n1 (partition remote)
MINE+=("$(sub alice -p gpu --gres=gpu:1 -c 1 --mem=256M -t 2 --wrap 'sleep 60')")
MINE+=("$(sub bob -p remote -w n1 -c 1 --mem=200M -t 2 --wrap 'sleep 60')")
wait_running "${MINE[@]}"
"${NODES[@]}" >scontrol_nodes_busy.txt
# the same without --details: no GresUsed, so allocated GPUs are unknown
scontrol --all --oneliner show node >scontrol_nodes_busy_nodetails.txt
scancel "${MINE[@]}"
MINE=()

# no slurmdbd (AccountingStorageType=accounting_storage/none): rc 1, message on stderr
rc=0
"${ASSOC[@]}" >sacctmgr_no_dbd.stdout 2>sacctmgr_no_dbd.stderr || rc=$?
echo "sacctmgr rc=$rc (expected 1), stdout $(wc -c <sacctmgr_no_dbd.stdout) bytes"
rm sacctmgr_no_dbd.stdout
