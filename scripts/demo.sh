#!/usr/bin/env bash
# The demo: a real local Slurm cluster, a real OpenID Connect provider on loopback with demo
# users, and the hub on https://localhost, as the main job.
#
#   sudo ./scripts/demo.sh            # Ctrl-C stops the hub and the provider, cancels the demo's
#                                     # jobs, and stops the cluster again if this script started it
#   sudo DEMO_PORT=8443 ./scripts/demo.sh        # another port than 443
#   sudo DEMO_OIDC_PORT=9500 ./scripts/demo.sh   # the provider on another port than 9400
#   sudo DRIVER=ssh ./scripts/demo.sh   # the hub reaches Slurm through the login node's sshd
#   sudo DRIVER=rest ./scripts/demo.sh  # ... through slurmrestd (JWT)
#
# (Variables go after sudo: its env_reset drops those set before it.)  DRIVER=local, the
# default, runs Slurm's commands on this host.  DRIVER=ssh starts the login node's sshd on
# 127.0.0.1:2222 (scripts/cluster/start-sshd.sh) and DRIVER=rest slurmrestd on 127.0.0.1:6820
# (scripts/cluster/start-slurmrestd.sh), unless one runs; Ctrl-C stops the one this script
# started, by its pid file.  The hub then reaches Slurm only through them, as a hub off the
# cluster does (on this machine Slurm's clients are still installed; the integration tests run
# the same hub in a mount namespace without them).
#
# Uses the sample jupyterhub_config.py as is: the provider's address, the hub's client
# registration, the auth_state key and the driver (HPCSPAWNER_DEMO_DRIVER) reach it through
# environment variables. The hub's database, cookie secret, certificate and auth_state key
# live in .demo/ (kept between runs; delete it to start afresh), with the provider's log. The
# provider (scripts/demo_oidc_provider.py) keeps nothing: after a restart of the demo, users
# sign in again.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DRIVER=${DRIVER:-local}
case $DRIVER in
  local | ssh | rest) ;;
  *)
    echo "$0: DRIVER=$DRIVER: use local (Slurm's commands on this host, the default)," \
      "ssh (through the login node's sshd) or rest (through slurmrestd)" >&2
    exit 2
    ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "$0: must run as root (installs packages, runs the Slurm cluster, submits jobs as the demo users)" >&2
  exit 1
fi
PORT=${DEMO_PORT:-443}
OIDC_PORT=${DEMO_OIDC_PORT:-9400}
PY=$REPO/.venv/jh6/bin/python
DEMO=$REPO/.demo
# absolute paths: the hub runs in .demo/ (cd below), and the cleanup trap runs from there
CLUSTER=$REPO/scripts/cluster
say() { printf '\n=== [demo] %s\n' "$*"; }

say "installing what the demo needs (quick when already done)"
"$REPO/scripts/install-deps.sh"

# shellcheck source=scripts/cluster/lib.sh
source "$CLUSTER/lib.sh" # pid_of and the daemons' pid files
STARTED_CLUSTER=""
STOP_MUNGE=""
STOP_MARIADB=""
HAD_NETNS=""
HUB_PID=""
PROVIDER_PID=""
STARTED_DAEMON="" # COMM:PIDFILE of the driver's daemon this script started (stop_pidfiles)
# stop_pid PID NAME: SIGTERM, then SIGKILL after 10 s (PID is a child of this script)
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  say "stopping the $2"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$HUB_PID" ] && kill -0 "$HUB_PID" 2>/dev/null; then
    say "stopping the hub"
    kill -TERM "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
  fi
  [ -z "$PROVIDER_PID" ] || stop_pid "$PROVIDER_PID" "identity provider"
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
  if [ -n "$STARTED_DAEMON" ]; then
    say "stopping the ${STARTED_DAEMON%%:*} this script started"
    stop_pidfiles "$STARTED_DAEMON" || true
  fi
  if [ -n "$STARTED_CLUSTER" ]; then
    say "stopping the cluster this script started"
    # a slurmrestd or sshd that ran before the demo is not the demo's to stop
    STOP_MUNGE=$STOP_MUNGE STOP_MARIADB=$STOP_MARIADB STOP_SLURMRESTD=0 STOP_SSHD=0 "$CLUSTER/stop.sh" || true
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
  # start-accounting.sh's own MariaDB, if it starts one (a system MariaDB has no such pid file)
  pid_of "$MARIADB_PID" mariadbd >/dev/null || STOP_MARIADB=1
  [ -e /run/netns/sln1 ] && HAD_NETNS=1
  MULTINODE=2 "$CLUSTER/setup.sh"
fi

# what the sample config reads for the driver's settings (jupyterhub_config.py, "How the hub
# reaches Slurm"); unset, it is "local"
export HPCSPAWNER_DEMO_DRIVER=$DRIVER
# the driver's daemon: COMM PIDFILE START-SCRIPT WHAT LOG
case $DRIVER in
  ssh) daemon=(sshd "$LOGIN_SSHD_PID" start-sshd.sh "the login node's sshd on 127.0.0.1:2222"
    /var/log/hpcspawner-sshd.log) ;;
  rest) daemon=(slurmrestd "$SLURMRESTD_PID" start-slurmrestd.sh "slurmrestd on 127.0.0.1:6820"
    /var/log/slurm/slurmrestd.log) ;;
  *) daemon=() ;;
esac
HOW="Slurm's commands on this host"
if [ ${#daemon[@]} -gt 0 ]; then
  HOW="${daemon[3]} (log: ${daemon[4]})"
  say "the $DRIVER driver: $HOW"
  if p=$(pid_of "${daemon[1]}" "${daemon[0]}"); then
    echo "already running (pid $p): using it, and leaving it running"
  else
    # set first: what runs from the pid file after a failed start is this script's to stop too
    STARTED_DAEMON="${daemon[0]}:${daemon[1]}"
    # loopback only: the hub is its one client here (start-slurmrestd.sh's default is 0.0.0.0)
    REST_LISTEN=127.0.0.1:6820 "$CLUSTER/${daemon[2]}"
  fi
fi

say "checking the SlurmSpawner settings in jupyterhub_config.py (driver: $DRIVER)"
"$REPO/.venv/jh6/bin/hpcspawner-check-config" "$REPO/jupyterhub_config.py"

say "hub state in $DEMO"
install -d -m 0700 "$DEMO"
if [ ! -s "$DEMO/hub.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$DEMO/hub.key" -out "$DEMO/hub.crt" 2>/dev/null
fi
# the key that encrypts auth_state in the hub's database (kept with the database)
if [ ! -s "$DEMO/crypt_key" ]; then
  (umask 077 && openssl rand -hex 32 >"$DEMO/crypt_key")
fi
rm -f "$DEMO/password" # the shared password of earlier versions of the demo

URL="https://localhost$([ "$PORT" = 443 ] || echo ":$PORT")/"
ISSUER="http://127.0.0.1:$OIDC_PORT"

say "identity provider on $ISSUER (oidc-provider-mock with PKCE enforced; log: $DEMO/oidc-provider.log)"
if ss -Hltn "sport = :$OIDC_PORT" | grep -q .; then
  echo "port $OIDC_PORT is in use (see ss -ltnp); choose another with DEMO_OIDC_PORT=..." >&2
  exit 1
fi
# in its own session and process group: Ctrl-C reaches it only through cleanup, in order
setsid "$PY" "$REPO/scripts/demo_oidc_provider.py" --port "$OIDC_PORT" \
  </dev/null >>"$DEMO/oidc-provider.log" 2>&1 &
PROVIDER_PID=$!
for ((i = 0; ; i++)); do
  curl -fsS -o /dev/null "$ISSUER/.well-known/openid-configuration" 2>/dev/null && break
  if ! kill -0 "$PROVIDER_PID" 2>/dev/null || [ "$i" -ge 150 ]; then
    echo "the identity provider did not answer within 30 s:" >&2
    tail -n 30 "$DEMO/oidc-provider.log" >&2
    exit 1
  fi
  sleep 0.2
done
# Register the hub as a client with its callback URL, as an admin does at the site's provider
# (dynamic client registration); the provider accepts no other client and no other redirect URI.
CALLBACK=${URL}hub/oauth_callback
client=$(curl -fsS -H 'Content-Type: application/json' \
  -d "$(jq -cn --arg uri "$CALLBACK" '{redirect_uris: [$uri]}')" "$ISSUER/oauth2/clients")
echo "registered the hub as a client with redirect URI $CALLBACK"

# what the sample config reads from the environment (secrets reach the hub there, never in argv)
export HPCSPAWNER_OIDC_ISSUER=$ISSUER OAUTH_CALLBACK_URL=$CALLBACK
export OAUTH_CLIENT_ID OAUTH_CLIENT_SECRET JUPYTERHUB_CRYPT_KEY
OAUTH_CLIENT_ID=$(jq -r .client_id <<<"$client")
OAUTH_CLIENT_SECRET=$(jq -r .client_secret <<<"$client")
JUPYTERHUB_CRYPT_KEY=$(cat "$DEMO/crypt_key")
unset client
export HPCSPAWNER_BIND_URL="https://0.0.0.0:$PORT"
export HPCSPAWNER_SSL_CERT=$DEMO/hub.crt HPCSPAWNER_SSL_KEY=$DEMO/hub.key
export HPCSPAWNER_SINGLEUSER_VENV=/opt/hpcspawner-dev/singleuser
export HPCSPAWNER_JOB_TAG=demo
[ -d "$REPO/.venv/node-bin" ] && export PATH=$REPO/.venv/node-bin:$PATH # Node.js from PyPI, if installed so

cat <<EOF

  hpcspawner demo
  ---------------
  Open      $URL   (self-signed certificate: accept it, or trust $DEMO/hub.crt)
            in a browser on this machine: the sign-in page is served on $ISSUER
  Click     "Sign in with Uni Example SSO". The demo's provider has no passwords: type one
            of these names into its "sub" field and press Authorize (or click the name
            under "Authenticate predefined users"):
              alice     cluster account; groups hpc-users and hpc-admins (a hub admin)
              bob       cluster account; group hpc-users
              carol     cluster account; group hpc-users
              mallory   group hpc-users, but no cluster account: gets the "No cluster account" page
  Each server is a Slurm job of that user: watch them with  squeue --states=all
  The hub reaches Slurm through the $DRIVER driver (DRIVER=local|ssh|rest):
            $HOW
  Ctrl-C stops the hub and the provider, and cancels the demo's jobs.

EOF
cd "$DEMO"
# the proxy pid file in .demo/, so that cleanup finds the proxy
"$REPO/.venv/jh6/bin/jupyterhub" -f "$REPO/jupyterhub_config.py" \
  --ConfigurableHTTPProxy.pid_file="$DEMO/proxy.pid" &
HUB_PID=$!
wait "$HUB_PID"
