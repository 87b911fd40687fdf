#!/usr/bin/env bash
# Re-record the scheduler outputs in this directory from the real local cluster.
# Needs: root, an idle cluster from `MULTINODE=2 scripts/cluster/setup.sh` (nobody else's jobs on
# it), and job records older than MinJobAge (300 s) + 60 s purged for the "purged" cases: run it
# at least ~6 min after the last job finished, or re-run just those lines later.
# Takes ~2-3 min (TIMEOUT needs the 1-min limit to pass; the controller-down squeue takes ~18 s).
# It stops slurmctld once (SIGTERM, never SIGKILL) and restarts it with setup.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
REPO=$(cd ../../.. && pwd)
RECORD_LOG=${RECORD_LOG:-/tmp/hpcspawner-record.log} # exit codes and durations, for the README
FMT='%i|%T|%r|%B|%N|%S|%P|%u|%l|%M|%D' # hpcspawner.slurm.jobstate.SQUEUE_FORMAT
sq() { squeue --noheader --states=all --jobs="$1" --format="$FMT"; }
# sub USER SBATCH-ARGS...: submit as USER from their home, print the job id
sub() { local u=$1; shift; (cd "/home/$u" && runuser -u "$u" -- sbatch --parsable -o /dev/null "$@"); }
MINE=() # jobs to cancel on exit, also after an error
trap '[ ${#MINE[@]} = 0 ] || scancel "${MINE[@]}" 2>/dev/null || true' EXIT
state() { squeue --noheader --states=all --jobs="$1" --format=%T; }
reason() { squeue --noheader --states=all --jobs="$1" --format=%r; }
wait_state() { # ID STATE...: wait (<= 150 s) until the job is in one of STATEs
  local id=$1 s; shift
  for _ in $(seq 750); do s=$(state "$id"); for want in "$@"; do [ "$s" = "$want" ] && return 0; done; sleep 0.2; done
  echo "job $id stuck in $s (wanted $*)" >&2; return 1
}
# capture_err NAME CMD...: stderr to NAME.stderr, exit code and seconds to the log
capture_err() {
  local name=$1 t=$SECONDS rc=0; shift
  "$@" >/dev/null 2>"$name.stderr" || rc=$?
  echo "$name: rc=$rc after $((SECONDS - t)) s" | tee -a "$RECORD_LOG"
}
if [ "${1:-}" = purged ]; then
  # record.sh purged ID...: ids of jobs that finished > MinJobAge + 60 s ago (main run's log)
  shift
  ids=$(IFS=,; echo "$*")
  sq "$ids" >squeue_purged.txt # empty, rc 0: several ids, none known
  capture_err squeue_invalid_id sq "$1" # one id, unknown: rc 1, "Invalid job id specified"
  L=$(sub alice --wrap true)
  wait_state "$L" COMPLETED
  sq "$1,$L" >squeue_mix_purged.txt # a known and a purged id: only the known one, rc 0
  exit 0
fi
: >"$RECORD_LOG"
[ -z "$(squeue --noheader --states=PENDING,RUNNING,COMPLETING)" ] || { echo "cluster not idle" >&2; exit 1; }

sinfo --noheader --format='%P|%a|%l|%D|%c|%m|%G|%C|%t' >sinfo_idle.txt

# sbatch rejections (EnforcePartLimits=ALL rejects at submit time)
capture_err sbatch_reject_partition sub alice -p nosuch --wrap true
capture_err sbatch_reject_time sub alice -p debug -t 2:00:00 --wrap true
capture_err sbatch_reject_cpus sub alice -c 4 -p debug --wrap true

# TIMEOUT first: it takes 1-2 min.  On n2, so that it does not take a CPU of the debug partition.
T=$(sub carol -p remote -w n2 -t 1 --wrap 'sleep 300')
MINE+=("$T")
OK=$(sub alice --wrap true)
BAD=$(sub bob --wrap 'exit 3')
wait_state "$OK" COMPLETED; wait_state "$BAD" FAILED
sq "$OK" >squeue_completed.txt
sq "$BAD" >squeue_failed.txt

# Fill the 2-CPU debug partition: two running, then one pending (Resources), one (Priority)
A=$(sub alice -p debug -t 10 --wrap 'sleep 600')
B=$(sub bob -p debug -t 10 --wrap 'sleep 600')
MINE+=("$A" "$B")
wait_state "$A" RUNNING; wait_state "$B" RUNNING
C=$(sub carol -p debug -t 10 --wrap 'sleep 600')
D=$(sub alice -p debug -t 10 --wrap 'sleep 600')
MINE+=("$C" "$D")
for _ in $(seq 100); do [ "$(reason "$C")" = Resources ] && [ "$(reason "$D")" = Priority ] && break; sleep 0.2; done
E=$(sub bob -p remote -N 2 -t 10 --wrap 'srun sleep 600')
MINE+=("$E")
wait_state "$E" RUNNING
sq "$A" >squeue_running.txt
sq "$C" >squeue_pending_resources.txt
sq "$D" >squeue_pending_priority.txt
sq "$E" >squeue_running_2nodes.txt
sinfo --noheader --format='%P|%a|%l|%D|%c|%m|%G|%C|%t' >sinfo_busy.txt
sq "$A,$B,$C,$D,$E,$OK,$BAD" >squeue_mix.txt

# scancel a running job: COMPLETING for a moment (slurmstepd still cleaning up), then CANCELLED
scancel "$A"
for _ in $(seq 50); do out=$(sq "$A"); case "$out" in *"|COMPLETING|"*) echo "$out" >squeue_completing.txt; break ;; esac; sleep 0.01; done
wait_state "$A" CANCELLED
sq "$A" >squeue_cancelled.txt
# scancel a pending job: straight to CANCELLED, no node
scancel "$D"
wait_state "$D" CANCELLED
sq "$D" >squeue_cancelled_pending.txt

wait_state "$T" TIMEOUT
sq "$T" >squeue_timeout.txt

# Controller down (SIGTERM via its pid file): clients retry, then fail after ~18 s
kill -TERM "$(cat /run/slurmctld.pid)"
while kill -0 "$(cat /run/slurmctld.pid 2>/dev/null || echo 0)" 2>/dev/null; do sleep 0.1; done
capture_err squeue_controller_down sq "$B,$C,$E"
MULTINODE=2 "$REPO/scripts/cluster/setup.sh" >/dev/null # debug is still full: readiness warns

echo "jobs: timeout=$T completed=$OK failed=$BAD running=$A,$B pending=$C,$D remote=$E" | tee -a "$RECORD_LOG"
echo "in ~6 min: $0 purged $OK $BAD" | tee -a "$RECORD_LOG"
