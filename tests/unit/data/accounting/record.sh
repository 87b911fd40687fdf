#!/usr/bin/env bash
# Record Slurm accounting's answers (sacctmgr, sacct, sshare, sreport, slurmrestd's dbv0.0.38)
# from the local cluster with slurmdbd: `MULTINODE=2 scripts/cluster/setup.sh` (ACCOUNTING=1,
# the site of scripts/cluster/make-site.sh).  Root.  Takes ~2 min (a job runs into its time
# limit).  Submits a few small jobs as alice and bob; stops and restarts slurmdbd (and, for the
# REST answers, slurmrestd with the dbv0.0.38 plugin) at the end.  Writes into this directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
REPO=$(cd ../../../.. && pwd)
sub() { local u=$1; shift; runuser -u "$u" -- sbatch --parsable --chdir=/tmp --output=/dev/null "$@"; }
wait_gone() { for _ in $(seq 600); do [ -z "$(squeue -h -j "$1" -o %T 2>/dev/null)" ] && return 0; sleep 0.2; done; return 1; }
wait_state() { for _ in $(seq 300); do [ "$(squeue -h -j "$1" -o %T)" = "$2" ] && return 0; sleep 0.2; done; return 1; }
# sacct knows a job's end only once slurmctld has sent it to slurmdbd (within seconds)
wait_sacct_end() { for _ in $(seq 150); do [ -n "$(sacct -nP -X -j "$1" -o End | grep -v Unknown)" ] && return 0; sleep 0.2; done; return 1; }

ASSOC_FIELDS=user,account,qos,defaultqos,partition,grptres,grpjobs,grpsubmit,maxtres,maxtrespernode,maxwall,maxjobs,maxsubmit,priority,fairshare,parentname
QOS_FIELDS=name,priority,maxwall,maxtresperjob,maxtrespernode,maxtrespu,maxjobspu,maxsubmitpu,grptres,mintresperjob,flags,description
SACCT_FIELDS=JobID,JobName,User,Account,QOS,Partition,State,ExitCode,DerivedExitCode,Reason,Submit,Start,End,Elapsed,Timelimit,NodeList,AllocTRES,Comment
for u in alice bob carol; do
  sacctmgr --noheader --parsable2 show assoc where user="$u" format=user,account,qos,defaultqos,partition >"sacctmgr_assoc_$u.txt"
  sacctmgr --noheader --parsable2 show assoc where user="$u" format="$ASSOC_FIELDS" >"sacctmgr_assoc_limits_$u.txt"
  sacctmgr --noheader --parsable2 show user "$u" withassoc format=user,defaultaccount,account,qos >"sacctmgr_user_$u.txt"
done
sacctmgr --noheader --parsable2 show assoc tree format="$ASSOC_FIELDS" >sacctmgr_assoc_tree.txt
# the accounts' own rows (users= empty), level by level up the tree, as the hub walks it
sacctmgr --noheader --parsable2 show assoc where accounts=chemistry,physics users= format="$ASSOC_FIELDS" >sacctmgr_account_rows_chemistry_physics.txt
sacctmgr --noheader --parsable2 show assoc where accounts=root users= format="$ASSOC_FIELDS" >sacctmgr_account_rows_root.txt
sacctmgr --noheader --parsable2 show qos format="$QOS_FIELDS" >sacctmgr_qos.txt
runuser -u alice -- sacctmgr --noheader --parsable2 show qos format="$QOS_FIELDS" >sacctmgr_qos_as_alice.txt
scontrol --oneliner show reservation >scontrol_reservations.txt

# jobs that end in the ways users ask about
ok=$(sub alice -A physics -p debug -t 1 --wrap true)
failed=$(sub alice -A chemistry -p debug -t 1 --wrap 'exit 3')
by_user=$(sub alice -p debug -t 5 --wrap 'sleep 300'); wait_state "$by_user" RUNNING
runuser -u alice -- scancel "$by_user"
by_admin=$(sub bob -p remote -t 5 --wrap 'sleep 300'); wait_state "$by_admin" RUNNING
scancel "$by_admin"
pending_cancelled=$(sub bob -p remote -t 5 --begin=now+1hour --wrap true)
scancel "$pending_cancelled"
timeout_job=$(sub carol -p remote -t 1 --wrap 'sleep 300')
# refusals at submit time, as the user sees them (stderr)
runuser -u bob -- sbatch --chdir=/tmp -A physics -p debug -t 1 --wrap true >/dev/null 2>sbatch_reject_account.stderr || true
runuser -u alice -- sbatch --chdir=/tmp -q short -p compute -t 3:00:00 --wrap true >/dev/null 2>sbatch_reject_qos_time.stderr || true
runuser -u alice -- sbatch --chdir=/tmp -q short -p debug -c 2 --mem=5G -t 10 --wrap true >/dev/null 2>sbatch_reject_qos_mem.stderr || true
runuser -u bob -- sbatch --chdir=/tmp -q long -p debug -t 10 --wrap true >/dev/null 2>sbatch_reject_qos_not_allowed.stderr || true
for id in "$ok" "$failed" "$by_user" "$by_admin" "$pending_cancelled"; do wait_gone "$id"; wait_sacct_end "$id"; done
echo "waiting for job $timeout_job to reach its time limit (1 min)" >&2
wait_gone "$timeout_job"; wait_sacct_end "$timeout_job"
declare -A NAMES=([$ok]=completed [$failed]=failed [$by_user]=cancelled_by_user [$by_admin]=cancelled_by_root
  [$pending_cancelled]=cancelled_pending [$timeout_job]=timeout)
for id in "${!NAMES[@]}"; do
  sacct --noheader --parsable2 -X --jobs="$id" --format="$SACCT_FIELDS" >"sacct_${NAMES[$id]}.txt"
done
sacct --noheader --parsable2 -X --jobs="$ok,$failed,$by_user,$timeout_job" --format="$SACCT_FIELDS" >sacct_several.txt
runuser -u bob -- sacct --noheader --parsable2 -X --jobs="$ok" --format="$SACCT_FIELDS" >sacct_other_users_job_as_bob.txt
sacct --noheader --parsable2 -X --jobs=999999 --format="$SACCT_FIELDS" >sacct_unknown.txt
for u in alice bob; do
  runuser -u "$u" -- sshare --noheader --parsable2 --users="$u" --format=Account,User,RawShares,NormShares,RawUsage,NormUsage,EffectvUsage,FairShare,GrpTRESMins,GrpTRESRaw,TRESRunMins >"sshare_$u.txt"
done
sshare --noheader --parsable2 --all --format=Account,User,RawShares,NormShares,RawUsage,EffectvUsage,FairShare >sshare_all.txt
sreport --noheader --parsable2 cluster AccountUtilizationByUser user=alice start=now-1day end=now+1day -t minutes >sreport_alice.txt || true

# slurmrestd's accounting endpoints (the dbv0.0.38 plugin)
"$REPO/scripts/cluster/start-slurmrestd.sh" >/dev/null
TOK=$(scontrol token username=slurm lifespan=300 | cut -d= -f2)
rest() { curl -s -o "rest_$1.json" -w '%{http_code}\n' -H "X-SLURM-USER-NAME: slurm" -H "X-SLURM-USER-TOKEN: $TOK" "http://127.0.0.1:6820$2" >"rest_$1.status"; }
rest associations_alice "/slurmdb/v0.0.38/associations?user=alice"
rest qos "/slurmdb/v0.0.38/qos"
rest job_timeout "/slurmdb/v0.0.38/job/$timeout_job"
rest job_cancelled_by_user "/slurmdb/v0.0.38/job/$by_user"
rest user_alice "/slurmdb/v0.0.38/user/alice"

# slurmdbd down: what the clients say (and how long they take)
pid=$(cat /run/slurmdbd.pid)
kill -TERM "$pid"; for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
# timed NAME CMD...: NAME.stdout, NAME.stderr, NAME.rc ("rc=N seconds=S")
timed() {
  local name=$1 start rc=0
  shift
  start=$(date +%s%N)
  "$@" >"$name.stdout" 2>"$name.stderr" || rc=$?
  echo "rc=$rc seconds=$(( ($(date +%s%N) - start) / 1000000 ))e-3" >"$name.rc"
}
timed sacctmgr_dbd_down sacctmgr --noheader --parsable2 show assoc where user=alice format=user,account,qos,defaultqos,partition
timed sacct_dbd_down sacct --noheader --parsable2 -X --jobs="$ok" --format="$SACCT_FIELDS"
timed sshare_dbd_down runuser -u alice -- sshare --noheader --parsable2 --users=alice --format=Account,User,RawUsage,FairShare
timed sbatch_dbd_down runuser -u alice -- sbatch --parsable --chdir=/tmp -p debug -t 1 --output=/dev/null --wrap true
rest associations_dbd_down "/slurmdb/v0.0.38/associations?user=alice"
/usr/sbin/slurmdbd
for _ in $(seq 100); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.1; done
echo "jobs: ok=$ok failed=$failed by_user=$by_user by_admin=$by_admin pending_cancelled=$pending_cancelled timeout=$timeout_job" >&2
