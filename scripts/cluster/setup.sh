#!/usr/bin/env bash
# Bring up the local Slurm 22.05 test cluster (Debian 12 packages) without systemd, and prove it
# works by running a real job.  Needs the packages from scripts/install-deps.sh.  Run as root.
#
#   scripts/cluster/setup.sh               # write config, start what is not running, test job
#   FRESH=1 scripts/cluster/setup.sh       # also forget all jobs (job ids restart at 1)
#   MULTINODE=2 scripts/cluster/setup.sh   # + nodes n1,n2: a slurmd each in its own network/UTS
#                                          #   namespace (10.250.0.11-12), partition "remote"
#   NO_START=1 scripts/cluster/setup.sh    # only write the config
#   RESTART=1 scripts/cluster/setup.sh     # restart the Slurm daemons even if the config is unchanged
#   ACCOUNTING=0 scripts/cluster/setup.sh  # no slurmdbd (accounting_storage/none).  The default,
#                                          #   1: MariaDB, slurmdbd and the site of make-site.sh,
#                                          #   enforced (start-accounting.sh, make-site.sh)
#
# Other knobs (slurm.conf): SCHED_PARAMS (default batch_sched_delay=0,bf_interval=5; "" = Slurm's default),
# MIN_JOB_AGE (300), MESSAGE_TIMEOUT (10), SLURMD_TIMEOUT (30), FAKE_CPUS (e.g. 8: node vm
# advertises 8 CPUs on the 2-core machine), MAX_JOB_COUNT (Slurm's 10000: how many jobs the
# controller holds; the controller-cost benchmark queues 10,000 foreign jobs and sets 20000),
# READY_TIMEOUT (30 s for nodes + test jobs).
#
# Idempotent.  A re-run with the same settings keeps running daemons (no restart, ~1 s for the
# test job); a changed slurm.conf/gres.conf restarts slurmctld and every slurmd (~2 s to stop,
# then ~5 s until the restarted controller schedules).  Running jobs survive a restart.
# Logs: /var/log/slurm/{slurmctld,slurmd-<node>}.log, /var/log/munge/munged.log.
set -euo pipefail
LOG_TAG=setup
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

SLURMD_TIMEOUT=${SLURMD_TIMEOUT:-30}   # Slurm's default 300: a dead node would take 5+ min to go DOWN
MIN_JOB_AGE=${MIN_JOB_AGE:-300}        # finished jobs stay visible in squeue -t all this long
MESSAGE_TIMEOUT=${MESSAGE_TIMEOUT:-10} # clients give up on a dead controller after ~9-18 s
SCHED_PARAMS=${SCHED_PARAMS-batch_sched_delay=0,bf_interval=5} # batch_sched_delay: Slurm default (3) => sbatch->RUNNING ~2.2 s; 0 => ~0.6 s. bf_interval=5 (default 30): queued jobs get an expected start time within seconds
FAKE_CPUS=${FAKE_CPUS:-}
MAX_JOB_COUNT=${MAX_JOB_COUNT:-}
MULTINODE=${MULTINODE:-0}
ACCOUNTING=${ACCOUNTING:-1} # slurmdbd + MariaDB + the site of make-site.sh; 0: none
READY_TIMEOUT=${READY_TIMEOUT:-30}
for v in MULTINODE ACCOUNTING SLURMD_TIMEOUT MIN_JOB_AGE MESSAGE_TIMEOUT READY_TIMEOUT ${FAKE_CPUS:+FAKE_CPUS} ${MAX_JOB_COUNT:+MAX_JOB_COUNT}; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$v must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
[ "$MULTINODE" -le 9 ] || { echo "MULTINODE must be <= 9" >&2; exit 2; }
HOST=$CTL_HOST
NETNS_NODES=(); [ "$MULTINODE" -gt 0 ] && mapfile -t NETNS_NODES < <(seq -f 'n%g' 1 "$MULTINODE")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log "start (host $HOST, MULTINODE=$MULTINODE, ACCOUNTING=$ACCOUNTING${FRESH:+, FRESH})"

# ---------------------------------------------------------------- users and directories
# Test users with homes in /home.  Jobs run as them and in their homes.
for u in alice bob carol; do
  id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
done
# Rootless podman (the `container` environment, hpcspawner-podman) maps a user's container ids
# to a range of their own in /etc/subuid and /etc/subgid.  Debian's useradd adds one; an account
# made without one gets the next free range here.
for f in /etc/subuid /etc/subgid; do
  for u in alice bob carol; do
    grep -q "^$u:" "$f" 2>/dev/null && continue
    next=$(awk -F: 'BEGIN { n = 100000 } $2 + $3 > n { n = $2 + $3 } END { print n }' "$f" 2>/dev/null || echo 100000)
    echo "$u:$next:65536" >>"$f"
  done
done
# PITFALL: without systemd-tmpfiles nothing creates /run/munge, and munged fails with
# 'Failed to check socket dir "/run/munge": cannot canonicalize'.  (Re)installing the munge
# package while munged runs also deletes it: munged keeps running without a socket, and every
# Slurm call fails with 'Munge encode failed: Failed to access "/run/munge/munge.socket.2"'.
install -d -o munge -g munge -m 0755 /run/munge "$MUNGED_PID_DIR"
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o slurm -g slurm -m 0755 "$SLURM_STATE" "$SLURM_SPOOL" "$SLURM_LOG"
install -d -m 0755 "$SLURM_CONF_DIR"

# ---------------------------------------------------------------- munge
# The package's postinst normally creates the key; make one if it did not.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  # Stop a munged that cannot serve (e.g. its socket was deleted) and WAIT until it has exited
  # before starting the new one.  PITFALL: a munged exiting unlinks the socket path, which by
  # then may be the new munged's socket; munge is then broken again and nothing says why.
  stop_pidfiles "munged:$MUNGED_PID" "munged:$MUNGED_PID_DEFAULT"
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGED_PID" # forks into the background
  for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
  munge_ok || { echo "munged did not come up" >&2; dump_logs; exit 1; }
fi
log "munged ok"

# ---------------------------------------------------------------- JWT key
# For auth/jwt (slurmrestd, `scontrol token`).  Kept across FRESH.
if [ ! -s "$SLURM_STATE/jwt_hs256.key" ]; then
  (umask 077; dd if=/dev/urandom of="$SLURM_STATE/jwt_hs256.key" bs=32 count=1 status=none)
fi
chown slurm:slurm "$SLURM_STATE/jwt_hs256.key"
chmod 0600 "$SLURM_STATE/jwt_hs256.key"

# ---------------------------------------------------------------- slurm.conf + gres.conf
# Node hardware from `slurmd -C`, minus a 256 MB margin: a configured RealMemory above what
# slurmd detects would put the node in state INVAL.
HW=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
REALMEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
REALMEM=$(( REALMEM - 256 ))
# shellcheck disable=SC2001  # a regex, not a glob
HW=$(sed -e "s/RealMemory=[0-9]*/RealMemory=$REALMEM/" <<<"$HW")
SLURMD_PARAMS=""
if [ "$ACCOUNTING" = 1 ]; then
  # associations: no job without an association (user, account); limits: association and QOS
  # limits hold at submit time; qos: only the QOS an association allows.  gres/gpu: GPUs are
  # counted and limited (QOS MaxTRESPerJob=gres/gpu=N).  job_env,job_script: slurmdbd keeps each
  # job's environment and batch script (sacct --env-vars, --batch-script), as many sites do; the
  # tests check the hub's API token is in neither.
  ACCOUNTING_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HOST
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_env,job_script"
else
  ACCOUNTING_CONF="# ACCOUNTING=0, no slurmdbd: plain sacct fails
AccountingStorageType=accounting_storage/none"
fi
if [ -n "$FAKE_CPUS" ]; then
  # config_overrides: slurmd accepts the configured CPUs instead of the detected 2
  HW="CPUs=$FAKE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$FAKE_CPUS ThreadsPerCore=1 RealMemory=$REALMEM"
  SLURMD_PARAMS="SlurmdParameters=config_overrides"
fi
NEW_CONF=$(mktemp); NEW_GRES=$(mktemp)
trap 'rm -f "$NEW_CONF" "$NEW_GRES"' EXIT
{
  cat <<EOF
# Generated by scripts/cluster/setup.sh; edits are overwritten.
ClusterName=hpcspawner
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$SLURM_STATE/jwt_hs256.key
MpiDefault=none
# No cgroup.conf needed: linuxproc + task/none work without systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
ReturnToService=2
# Reject impossible jobs at submit time instead of leaving them PENDING (PartitionConfig) forever
EnforcePartLimits=ALL
MailProg=/bin/true
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=/run/slurmd-%n.pid
SlurmdSpoolDir=$SLURM_SPOOL/%n
StateSaveLocation=$SLURM_STATE
SchedulerType=sched/backfill
${SCHED_PARAMS:+SchedulerParameters=$SCHED_PARAMS}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job lacking --mem gets the whole node's memory, and a second job pends (Resources)
DefMemPerCPU=512
$SLURMD_PARAMS
$ACCOUNTING_CONF
# Also the job completion log: sacct -c reads it, with or without slurmdbd
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_LOG/jobcomp.log
MessageTimeout=$MESSAGE_TIMEOUT
SlurmdTimeout=$SLURMD_TIMEOUT
MinJobAge=$MIN_JOB_AGE
${MAX_JOB_COUNT:+MaxJobCount=$MAX_JOB_COUNT}
SlurmctldDebug=info
SlurmctldLogFile=$SLURM_LOG/slurmctld.log
SlurmdDebug=info
SlurmdLogFile=$SLURM_LOG/slurmd-%n.log
GresTypes=gpu
NodeName=$HOST $HW Gres=gpu:fake:2 State=UNKNOWN
EOF
  if [ "$MULTINODE" -gt 0 ]; then
    # netns nodes need NodeAddr: their names must not resolve to 127.0.0.1
    echo "NodeName=n[1-$MULTINODE] NodeAddr=$(seq -s, -f '10.250.0.%g' 11 $((10 + MULTINODE))) CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN"
  fi
  cat <<EOF
PartitionName=debug   Nodes=$HOST Default=YES MaxTime=01:00:00   DefaultTime=00:30:00 State=UP
PartitionName=compute Nodes=ALL   MaxTime=1-00:00:00 DefaultTime=01:00:00 State=UP
PartitionName=gpu     Nodes=$HOST MaxTime=04:00:00   DefaultTime=01:00:00 State=UP
EOF
  if [ "$MULTINODE" -gt 0 ]; then
    echo "PartitionName=remote  Nodes=n[1-$MULTINODE] MaxTime=1-00:00:00 DefaultTime=01:00:00 State=UP"
  fi
} >"$NEW_CONF"
# Fake GPUs.  PITFALL: "Name=gpu Count=2" without File= makes slurmd report 0 GPUs and the node
# goes INVAL ("gres/gpu count reported lower than configured (0 < 2)").  Clones of /dev/null
# work as device files; a job with --gres=gpu:1 then gets CUDA_VISIBLE_DEVICES=0.
for i in 0 1; do [ -e /dev/fakegpu$i ] || mknod -m 0666 /dev/fakegpu$i c 1 3; done
echo "NodeName=$HOST Name=gpu Type=fake File=/dev/fakegpu[0-1]" >"$NEW_GRES"
CHANGED=""
for pair in "$NEW_CONF:slurm.conf" "$NEW_GRES:gres.conf"; do
  if ! cmp -s "${pair%%:*}" "$SLURM_CONF_DIR/${pair#*:}"; then
    install -m 0644 "${pair%%:*}" "$SLURM_CONF_DIR/${pair#*:}"
    CHANGED=1
  fi
done
log "config $([ -n "$CHANGED" ] && echo written || echo unchanged) (NodeName=$HOST $HW${NETNS_NODES:+; netns nodes ${NETNS_NODES[*]}})"
[ -n "${NO_START:-}" ] && exit 0

# ---------------------------------------------------------------- netns "hosts" n1..nN
# Each extra node is a slurmd in its own network + UTS namespace, on bridge slbr0.  No default
# route and ip_forward stays 0: nothing inside can reach beyond this machine.
if [ "$MULTINODE" -gt 0 ]; then
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq "$MULTINODE"); do
    ns=sln$i; addr=10.250.0.$((10 + i))
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
      ip link del "vsl$i" 2>/dev/null || true # half-made pair from an interrupted run
      ip link add "vsl$i" type veth peer name eth0 netns "$ns"
    fi
    ip link set "vsl$i" master "$BRIDGE" up
    ip -n "$ns" addr replace "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # Per-node /etc/hosts, bind-mounted over /etc/hosts inside the node.  PITFALL: with the shared
    # file the controller's name resolves to 127.0.0.1, i.e. the namespace's own loopback.
    mkdir -p "/etc/netns/$ns"
    { echo "127.0.0.1 localhost"; echo "$BRIDGE_IP $HOST"
      for j in $(seq "$MULTINODE"); do echo "10.250.0.$((10 + j)) n$j"; done; } >"/etc/netns/$ns/hosts"
    # The root namespace reaches the nodes by name (a server in a job on n1 is http://n1:PORT)
    grep -qx "$addr n$i" /etc/hosts || echo "$addr n$i" >>/etc/hosts
  done
  log "netns nodes ${NETNS_NODES[*]} on $BRIDGE $BRIDGE_IP/24"
fi

# ---------------------------------------------------------------- (re)start the Slurm daemons
why="${CHANGED:+config changed }${RESTART:+RESTART }${FRESH:+FRESH}"
if [ -n "$why" ]; then
  mapfile -t specs < <(slurmd_specs)
  stop_pidfiles "${specs[@]}" "slurmctld:$SLURMCTLD_PID"
  log "daemons stopped (${why% })"
fi
if [ -n "${FRESH:-}" ]; then
  find "$SLURM_STATE" -mindepth 1 ! -name jwt_hs256.key -delete
  rm -rf "${SLURM_SPOOL:?}"/*
  : >"$SLURM_LOG/jobcomp.log"
fi
if [ "$ACCOUNTING" = 1 ]; then
  # slurmdbd before slurmctld, which registers with it at start
  FRESH_DB=${FRESH:-} "$HERE/start-accounting.sh"
fi
cd / # daemons inherit the cwd
if ! pid_of "$SLURMCTLD_PID" slurmctld >/dev/null; then
  touch "$SLURM_LOG/jobcomp.log"
  chown slurm:slurm "$SLURM_LOG/jobcomp.log"
  # Daemonizes by itself (-D would keep it in the foreground) and runs as SlurmUser.
  # Never start it with -c: that discards the saved jobs.
  /usr/sbin/slurmctld || { echo "slurmctld failed to start" >&2; dump_logs; exit 1; }
  log "slurmctld started (pid $(cat "$SLURMCTLD_PID" 2>/dev/null || echo '?'))"
fi
start_slurmd() { # NODE [NETNS]
  local node=$1 ns=${2:-}
  pid_of "$(slurmd_pidfile "$node")" slurmd >/dev/null && return 0
  mkdir -p "$SLURM_SPOOL/$node"
  if [ -z "$ns" ]; then
    /usr/sbin/slurmd || { echo "slurmd failed to start" >&2; dump_logs; exit 1; }
  else
    # PITFALL: `ip netns exec` remounts /sys, /sys/fs/cgroup disappears and slurmd dies with
    # "No filesystem mounted on /sys/fs/cgroup" (even with linuxproc + task/none).  So: enter the
    # netns with nsenter, and take private mount + UTS namespaces with unshare for the hosts file
    # and the hostname (nothing leaks to the host; the namespaces live as long as slurmd).
    nsenter --net="/run/netns/$ns" unshare --mount --uts sh -c \
      "mount --bind /etc/netns/$ns/hosts /etc/hosts && hostname $node && exec /usr/sbin/slurmd -N $node" \
      || { echo "slurmd for $node failed to start" >&2; dump_logs; exit 1; }
  fi
  log "slurmd $node started"
}
start_slurmd "$HOST"
for i in $(seq "$MULTINODE"); do start_slurmd "n$i" "sln$i"; done

# ---------------------------------------------------------------- readiness
NODES=$HOST; [ "$MULTINODE" -gt 0 ] && NODES="$HOST,n[1-$MULTINODE]"
READY_SPECS=(debug:1); [ "$MULTINODE" -gt 0 ] && READY_SPECS+=("remote:$MULTINODE")
deadline=$(( $(date +%s) + READY_TIMEOUT ))
if ! wait_nodes "$NODES" "$READY_TIMEOUT"; then
  echo "CLUSTER NOT READY" >&2; dump_logs; exit 1
fi
# The accounts the readiness jobs (alice) and every test job are charged to
[ "$ACCOUNTING" = 1 ] && "$HERE/make-site.sh"
# PITFALL: `sacct -c` opens JobCompLoc O_WRONLY|O_APPEND even just to read it, so non-root users
# get "Permission denied".  Test-only fix: mode 0666.  It must be set after slurmctld has
# initialised (its jobcomp plugin resets the file to 0644 on every start); it answers sinfo now.
chmod 0666 "$SLURM_LOG/jobcomp.log"
if ! ready_jobs $(( deadline - $(date +%s) > 5 ? deadline - $(date +%s) : 5 )) "${READY_SPECS[@]}"; then
  echo "CLUSTER NOT READY" >&2
  dump_logs
  exit 1
fi
log "cluster ready"
sinfo
