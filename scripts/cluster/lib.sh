# shellcheck shell=bash disable=SC2034  # constants are used by the scripts that source this
# Helpers shared by the scripts in scripts/cluster/. Source it; it defines functions and constants only.
#
# Daemons are found through their pid files ONLY, never by name (pkill/killall would also hit
# daemons that other people or other test runs own).  Before signalling a pid from a file we check
# /proc/PID/comm, because a stale pid file can name a pid that now belongs to something else.

SLURM_CONF_DIR=/etc/slurm
SLURM_STATE=/var/lib/slurm/slurmctld
SLURM_SPOOL=/var/lib/slurm/slurmd
SLURM_LOG=/var/log/slurm
SLURMCTLD_PID=/run/slurmctld.pid
# munged's pid file is kept OUTSIDE /run/munge: (re)installing the munge package deletes that
# directory while munged runs, and the pid of the now socket-less munged would be lost with it.
MUNGED_PID_DIR=/run/hpcspawner-munge
MUNGED_PID=$MUNGED_PID_DIR/munged.pid
MUNGED_PID_DEFAULT=/run/munge/munged.pid # a munged started by the package's init script
SLURMRESTD_PID=/run/slurmrestd.pid
LOGIN_SSHD_PID=/run/hpcspawner-sshd.pid # the SSH driver's login node (start-sshd.sh)
SLURMDBD_PID=/run/slurmdbd.pid # start-accounting.sh
SLURMDBD_DB=slurm_acct_db
MARIADB_SOCKET=/run/mysqld/mysqld.sock # the Debian package's, which a systemd-started server uses too
MARIADB_PID=/run/hpcspawner-mariadb/mariadbd.pid # only when start-accounting.sh started it
BRIDGE=slbr0
BRIDGE_IP=10.250.0.1 # netns node i gets 10.250.0.(10+i); on-box only, nothing is routed out
CTL_HOST=$(hostname -s)

_T0_US=${EPOCHREALTIME//[!0-9]/} # bash >= 5: wall clock in microseconds (strip the locale's decimal mark)
# log MSG: one line with the seconds since the script started, e.g. "[setup   0.31s] munged ok"
log() {
  local us=$(( ${EPOCHREALTIME//[!0-9]/} - _T0_US ))
  printf '[%s %3d.%02ds] %s\n' "${LOG_TAG:-cluster}" $(( us / 1000000 )) $(( us % 1000000 / 10000 )) "$*"
}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$0: must run as root (it manages munged, slurmctld, slurmd and network namespaces)" >&2
    exit 1
  fi
}

# slurmd pid file of node NAME (SlurmdPidFile=/run/slurmd-%n.pid in slurm.conf)
slurmd_pidfile() { echo "/run/slurmd-$1.pid"; }

# pid_of PIDFILE COMM: print the pid in PIDFILE if that process is alive and is COMM; else fail.
pid_of() {
  local pf=$1 comm=$2 p
  [ -s "$pf" ] || return 1
  p=$(cat "$pf" 2>/dev/null) || return 1
  [[ "$p" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ] || return 1
  echo "$p"
}

# stop_pidfiles COMM:PIDFILE...: SIGTERM every live daemon at once, then wait (<= 20 s) until all
# have exited.  Each Slurm daemon needs ~1.4-2 s to exit on SIGTERM, so signalling in parallel
# matters.  Never SIGKILL slurmctld: a SIGKILL shortly after a submit loses the job record (state
# is saved asynchronously) and the next sbatch reuses the job id.  Fails if one is still alive.
stop_pidfiles() {
  local spec comm pf p i pids=() pidfiles=() alive
  for spec in "$@"; do
    comm=${spec%%:*}; pf=${spec#*:}
    if p=$(pid_of "$pf" "$comm"); then
      kill -TERM "$p" 2>/dev/null || true
      pids+=("$p"); pidfiles+=("$pf"); echo "stopping $comm (pid $p, $pf)"
    else
      rm -f "$pf" # stale: its process is gone
    fi
  done
  for _ in $(seq 200); do
    alive=""
    for i in "${!pids[@]}"; do
      if kill -0 "${pids[$i]}" 2>/dev/null; then alive+=" ${pids[$i]}"; else rm -f "${pidfiles[$i]}"; fi
    done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  # Pid files of survivors stay, so that the next setup.sh does not start a second daemon beside them.
  echo "still alive after 20 s:$alive" >&2
  return 1
}

# All slurmd pid files that exist (node vm and netns nodes n1..nN), as COMM:PIDFILE specs.
slurmd_specs() {
  local pf
  for pf in /run/slurmd-*.pid; do [ -e "$pf" ] && echo "slurmd:$pf"; done
  return 0
}

# netns nodes currently configured in slurm.conf (n1 n2 ...); empty if single-node.
configured_netns_nodes() {
  local range
  range=$(sed -n 's/^NodeName=n\[1-\([0-9]*\)\].*/\1/p' "$SLURM_CONF_DIR/slurm.conf" 2>/dev/null | head -1)
  [ -n "$range" ] && seq -f 'n%g' 1 "$range"
  return 0
}

# Print the last lines of the logs that explain a broken cluster, to stderr.
dump_logs() {
  local f
  {
    echo "----- diagnostics -----"
    for f in "$SLURM_LOG/slurmctld.log" "$SLURM_LOG"/slurmd-*.log /var/log/munge/munged.log; do
      [ -f "$f" ] || continue
      echo "----- tail -n 25 $f"; tail -n 25 "$f"
    done
    echo "----- sinfo -N"; timeout 12 sinfo -N -o '%N %P %t %E' 2>&1 || true
  } >&2
}

# wait_nodes NODES TIMEOUT_S: wait until every node in the Slurm hostlist NODES is idle, mixed or
# allocated, and responding (no '*' suffix).  Fails fast on down/drain/inval (after 3 s grace:
# a node is briefly "down*"/"unk*" while its slurmd registers).
wait_nodes() {
  local nodes=$1 timeout=$2 deadline st="" bad s
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    # sinfo hangs MessageTimeout (10 s) when slurmctld is down: bound every call
    st=$(timeout 12 sinfo -h -N -n "$nodes" -o '%t' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    st=${st% }
    bad=0
    for s in $st; do case "$s" in idle|mix|alloc) ;; *) bad=1 ;; esac; done
    [ -n "$st" ] && [ "$bad" = 0 ] && { log "nodes $nodes: $st"; return 0; }
    sleep 0.2
  done
  echo "nodes $nodes not ready after ${timeout}s (states: '${st:-no answer}')" >&2
  timeout 12 scontrol show node 2>&1 | grep -E 'NodeName|State=|Reason' >&2 || true
  return 1
}

# job_state ID: the job's state from squeue, or from the job completion log when the controller
# has already purged it (possible with a small MinJobAge).  Empty if unknown.
job_state() {
  local s
  s=$(timeout 12 squeue -h -t all -j "$1" -o '%T' 2>/dev/null || true)
  [ -n "$s" ] || s=$(sacct -c -n -j "$1" -o State 2>/dev/null | awk 'NR==1{print $1}' || true)
  echo "$s"
}

# ready_jobs TIMEOUT_S PARTITION:NNODES...: submit one tiny job per spec as alice, from her home
# (a job submitted from /root would run in /tmp: alice may not chdir to /root), and wait until all
# are COMPLETED.  A multi-node job runs `srun hostname` so that every node's slurmd takes part.
# sinfo saying "idle" is not enough: slurmctld starts no job before its first scheduling pass,
# ~3 s after a fresh start and ~5 s after a restart that keeps state.
# A partition that is full of other jobs (the test job pends with reason Resources or Priority,
# which only a scheduling pass sets, while jobs run there) counts as working: the test job is
# cancelled with a warning instead of failing a re-run of setup.sh in the middle of a test run.
ready_jobs() {
  local timeout=$1; shift
  local spec part n id out deadline state running ids=() pending=() busy=()
  local -A part_of=()
  deadline=$(( $(date +%s) + timeout ))
  for spec in "$@"; do
    part=${spec%%:*}; n=${spec#*:}
    out=$(cd /home/alice && runuser -u alice -- sbatch --parsable -J hpcspawner-ready -p "$part" \
          -N "$n" -t 1 --chdir=/home/alice -o /tmp/hpcspawner-ready-%j.out \
          --wrap "$([ "$n" -gt 1 ] && echo 'srun hostname' || echo hostname)" 2>&1) \
      || { echo "readiness sbatch on $part failed: $out" >&2; return 1; }
    id=${out%%;*}; ids+=("$id"); part_of[$id]=$part
    log "readiness job $id submitted (alice, partition $part, $n node(s))"
  done
  while :; do
    pending=()
    for id in "${ids[@]}"; do
      state=$(job_state "$id")
      case "$state" in
        COMPLETED) rm -f "/tmp/hpcspawner-ready-$id.out" ;;
        PENDING)
          case "$(timeout 12 squeue -h -j "$id" -o %r 2>/dev/null)" in
            Resources|Priority)
              running=$(timeout 12 squeue -h -p "${part_of[$id]}" -t RUNNING -o %i 2>/dev/null | tr '\n' ' ')
              if [ -n "$running" ]; then
                echo "WARNING: partition ${part_of[$id]} is full (running: ${running% }); cancelled readiness job $id" >&2
                scancel "$id" 2>/dev/null || true
                busy+=("$id")
              else
                pending+=("$id")
              fi ;;
            *) pending+=("$id") ;;
          esac ;;
        CONFIGURING|RUNNING|COMPLETING|"") pending+=("$id") ;;
        CANCELLED) [[ " ${busy[*]} " == *" $id "* ]] || { echo "readiness job $id was cancelled" >&2; return 1; } ;;
        *) echo "readiness job $id ended $state" >&2; _ready_diag "$id"; return 1 ;;
      esac
    done
    if [ ${#pending[@]} = 0 ]; then
      log "readiness jobs ${ids[*]} completed${busy[*]:+ (except busy ${busy[*]})}"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "readiness jobs ${pending[*]} did not complete within ${timeout}s" >&2
      for id in "${pending[@]}"; do _ready_diag "$id"; scancel "$id" 2>/dev/null || true; done
      return 1
    fi
    sleep 0.2
  done
}

_ready_diag() {
  {
    timeout 12 squeue -h -t all -j "$1" -o 'job %i: %T reason=%r nodes=%N' 2>&1 || true
    [ -f "/tmp/hpcspawner-ready-$1.out" ] && { echo "--- job output:"; cat "/tmp/hpcspawner-ready-$1.out"; }
  } >&2
}
