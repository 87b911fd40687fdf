#!/usr/bin/env bash
# Record slurmrestd's answers (openapi/v0.0.38, Slurm 22.05) for the REST driver's parser tests.
# Needs: root, the cluster from `MULTINODE=2 scripts/cluster/setup.sh`; starts slurmrestd with
# scripts/cluster/start-slurmrestd.sh if none runs (and stops it again only then). Submits two
# small jobs as alice (1 CPU, 100M, <= 2 min) and cancels them. Takes ~5-10 s. Never stops or
# reconfigures a Slurm daemon, so it may run while other tests use the cluster.
# Each answer is saved as NAME.json (the body) and NAME.status (the HTTP status code).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
REPO=$(cd ../../../.. && pwd)
PIDFILE=/run/slurmrestd.pid
URL=http://127.0.0.1:6820
STARTED=""
if ! { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }; then
  "$REPO/scripts/cluster/start-slurmrestd.sh"
  STARTED=1
fi
JOBS=()
cleanup() {
  [ ${#JOBS[@]} = 0 ] || scancel "${JOBS[@]}" 2>/dev/null || true
  if [ -n "$STARTED" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi
}
trap cleanup EXIT
# tokens: the SlurmUser's (may name any user) and alice's own, both short-lived
SLURM_TOKEN=$(scontrol token username=slurm lifespan=300 | cut -d= -f2)
ALICE_TOKEN=$(scontrol token username=alice lifespan=300 | cut -d= -f2)
# get NAME USER TOKEN METHOD PATH [BODY]: one request, saved as NAME.json / NAME.status
get() {
  local name=$1 user=$2 token=$3 method=$4 path=$5 body=${6:-}
  local args=(-s -m 10 -o "$name.json" -w '%{http_code}' -X "$method"
    -H "X-SLURM-USER-NAME: $user" -H "X-SLURM-USER-TOKEN: $token")
  [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
  curl "${args[@]}" "$URL$path" >"$name.status"
  # pretty-printed, keys as slurmrestd sent them: smaller diffs when re-recorded
  jq . "$name.json" >"$name.json.tmp" && mv "$name.json.tmp" "$name.json"
}
get openapi_v3 slurm "$SLURM_TOKEN" GET /openapi/v3
# keep only what the driver reads of the spec (the version paths): the whole spec is ~1 MB
jq '{info, paths: (.paths | keys)}' openapi_v3.json >openapi_v3.json.tmp && mv openapi_v3.json.tmp openapi_v3.json
get ping slurm "$SLURM_TOKEN" GET /slurm/v0.0.38/ping
get partitions slurm "$SLURM_TOKEN" GET /slurm/v0.0.38/partitions
get nodes slurm "$SLURM_TOKEN" GET /slurm/v0.0.38/nodes
SUBMIT=$(jq -n --arg script "$(printf '#!/bin/bash\n#SBATCH --comment=hpcspawner:record:alice:-:abc\nsleep 100\n')" \
  '{script: $script, job: {name: "jupyter-alice", partition: "debug", cpus_per_task: 1,
    memory_per_node: 100, time_limit: 2, current_working_directory: "/tmp",
    standard_output: "/dev/null", environment: {PATH: "/usr/bin:/bin", LANG: "C.UTF-8"}}}')
get submit alice "$SLURM_TOKEN" POST /slurm/v0.0.38/job/submit "$SUBMIT"
JOBS+=("$(jq -r .job_id submit.json)")
# a second job that may not start for an hour: PENDING with the reason BeginTime
PENDING=$(echo "$SUBMIT" | jq '.job.begin_time = "now+1hour" | .job.name = "jupyter-alice-later"')
get submit_pending alice "$SLURM_TOKEN" POST /slurm/v0.0.38/job/submit "$PENDING"
JOBS+=("$(jq -r .job_id submit_pending.json)")
for _ in $(seq 100); do [ "$(squeue --noheader --jobs="${JOBS[0]}" --format=%T)" = RUNNING ] && break; sleep 0.1; done
get jobs slurm "$SLURM_TOKEN" GET /slurm/v0.0.38/jobs
get job_running slurm "$SLURM_TOKEN" GET "/slurm/v0.0.38/job/${JOBS[0]}"
get submit_rejected alice "$SLURM_TOKEN" POST /slurm/v0.0.38/job/submit \
  "$(echo "$SUBMIT" | jq '.job.partition = "nosuchpartition"')"
get cancel alice "$SLURM_TOKEN" DELETE "/slurm/v0.0.38/job/${JOBS[0]}"
get cancel_pending alice "$SLURM_TOKEN" DELETE "/slurm/v0.0.38/job/${JOBS[1]}"
JOBS=()
get cancel_unknown alice "$SLURM_TOKEN" DELETE /slurm/v0.0.38/job/999999
get job_unknown slurm "$SLURM_TOKEN" GET /slurm/v0.0.38/job/999999
get bad_token slurm "not-a-token" GET /slurm/v0.0.38/jobs
get jobs_with_a_users_token alice "$ALICE_TOKEN" GET /slurm/v0.0.38/jobs
# the listings hold every job slurmctld remembers (other tests' too): keep the last five
for f in jobs.json jobs_with_a_users_token.json; do
  jq '.jobs |= .[-5:]' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
done
sed -i "s/$SLURM_TOKEN/<token>/g; s/$ALICE_TOKEN/<token>/g" ./*.json
echo "recorded: $(ls ./*.json | wc -l) answers"
