#!/usr/bin/env bash
# The demo: a real local Slurm cluster and the hub on https://localhost, as the main job.
#
#   sudo ./scripts/demo.sh            # Ctrl-C stops the hub, cancels the demo's jobs, and stops
#                                     # the cluster again if this script started it
#   DEMO_PORT=8443 sudo ./scripts/demo.sh   # another port than 443
#
# Uses the sample jupyterhub_config.py as is. The hub's database, cookie secret, certificate and
# the demo password live in .demo/ (kept between runs; delete it to start afresh).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if [ "$(id -u)" != 0 ]; then
  echo "$0: must run as root (installs packages, runs the Slurm cluster, submits jobs as the demo users)" >&2
  exit 1
fi
PORT=${DEMO_PORT:-443}
DEMO=$REPO/.demo
CLUSTER=scripts/cluster
say() { printf '\n=== [demo] %s\n' "$*"; }

say "installing what the demo needs (quick when already done)"
scripts/install-deps.sh

# shellcheck source=scripts/cluster/lib.sh
source "$CLUSTER/lib.sh" # pid_of and the daemons' pid files
STARTED_CLUSTER=""
STOP_MUNGE=""
HAD_NETNS=""
HUB_PID=""
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$HUB_PID" ] && kill -0 "$HUB_PID" 2>/dev/null; then
    say "stopping the hub"
    kill -TERM "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
  fi
  # the proxy runs in its own session; the hub stops it, unless the hub died first
  if p=$(pid_of "$DEMO/proxy.pid" node); then kill -TERM "$p" 2>/dev/null || true; fi
  # the demo's jobs carry the comment hpcspawner:demo:<user>:<server>
  local jobs
  jobs=$(squeue --noheader --format='%i|%k' 2>/dev/null | awk -F'|' '$2 ~ /^hpcspawner:demo:/ {print $1}' || true)
  if [ -n "$jobs" ]; then
    say "cancelling the demo's jobs: $(echo "$jobs" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    scancel $jobs || true
  fi
  if [ -n "$STARTED_CLUSTER" ]; then
    say "stopping the cluster this script started"
    STOP_MUNGE=$STOP_MUNGE "$CLUSTER/stop.sh" || true
    [ -n "$HAD_NETNS" ] || "$CLUSTER/teardown-multinode.sh" || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Slurm cluster (nodes vm, n1, n2)"
if MULTINODE=2 QUIET=1 READY_TIMEOUT=15 "$CLUSTER/health.sh"; then
  echo "a healthy cluster is already running: using it, and leaving it running"
else
  pid_of "$SLURMCTLD_PID" slurmctld >/dev/null || STARTED_CLUSTER=1
  pid_of "$MUNGED_PID" munged >/dev/null || STOP_MUNGE=1
  [ -e /run/netns/sln1 ] && HAD_NETNS=1
  MULTINODE=2 "$CLUSTER/setup.sh"
fi

say "checking the SlurmSpawner settings in jupyterhub_config.py"
"$REPO/.venv/jh6/bin/hpcspawner-check-config" "$REPO/jupyterhub_config.py"

say "hub state in $DEMO"
install -d -m 0700 "$DEMO"
if [ ! -s "$DEMO/hub.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$DEMO/hub.key" -out "$DEMO/hub.crt" 2>/dev/null
fi
if [ ! -s "$DEMO/password" ]; then
  (umask 077 && openssl rand -hex 8 >"$DEMO/password")
fi

export HPCSPAWNER_BIND_URL="https://0.0.0.0:$PORT"
export HPCSPAWNER_SSL_CERT=$DEMO/hub.crt HPCSPAWNER_SSL_KEY=$DEMO/hub.key
export HPCSPAWNER_DEMO_PASSWORD
HPCSPAWNER_DEMO_PASSWORD=$(cat "$DEMO/password")
export HPCSPAWNER_SINGLEUSER_VENV=/opt/hpcspawner-dev/singleuser
export HPCSPAWNER_JOB_TAG=demo
[ -d .venv/node-bin ] && export PATH=$REPO/.venv/node-bin:$PATH # Node.js from PyPI, if installed so

URL="https://localhost$([ "$PORT" = 443 ] || echo ":$PORT")/"
cat <<EOF

  hpcspawner demo
  ---------------
  Open      $URL   (self-signed certificate: accept it, or trust $DEMO/hub.crt)
  Log in as alice, bob or carol, password: $HPCSPAWNER_DEMO_PASSWORD
  Each server is a Slurm job of that user: watch them with  squeue --states=all
  Ctrl-C stops the hub and cancels the demo's jobs.

EOF
cd "$DEMO"
# the proxy pid file in .demo/, so that cleanup finds the proxy
"$REPO/.venv/jh6/bin/jupyterhub" -f "$REPO/jupyterhub_config.py" \
  --ConfigurableHTTPProxy.pid_file="$DEMO/proxy.pid" &
HUB_PID=$!
wait "$HUB_PID"
