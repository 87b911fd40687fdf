#!/usr/bin/env bash
# Start slurmrestd with JWT auth (OpenAPI v0.0.38 + v0.0.37, + dbv0.0.38 with slurmdbd) on ${REST_LISTEN:-0.0.0.0:6820}, as
# the unprivileged system user "slurmrest".  Needs a running cluster from setup.sh (its slurm.conf
# has AuthAltTypes=auth/jwt).  Restarts a slurmrestd it started before (pid file).  Run as root.
# Pid: /run/slurmrestd.pid; log: /var/log/slurm/slurmrestd.log; stop.sh stops it.
#
# Client side:  TOK=$(scontrol token username=alice lifespan=3600 | cut -d= -f2)
#   curl -H "X-SLURM-USER-NAME: alice" -H "X-SLURM-USER-TOKEN: $TOK" http://127.0.0.1:6820/slurm/v0.0.38/jobs
set -euo pipefail
LOG_TAG=slurmrestd
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
LISTEN=${REST_LISTEN:-0.0.0.0:6820}
PORT=${LISTEN##*:}
# The accounting endpoints (/slurmdb/v0.0.38/...) need slurmdbd: loaded when slurm.conf has it.
if grep -qx 'AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_CONF_DIR/slurm.conf"; then
  PLUGINS=${REST_PLUGINS:-openapi/v0.0.38,openapi/v0.0.37,openapi/dbv0.0.38}
else
  PLUGINS=${REST_PLUGINS:-openapi/v0.0.38,openapi/v0.0.37}
fi
RESTLOG=$SLURM_LOG/slurmrestd.log
# PITFALL: slurmrestd refuses to run as root ("should not be run as the root user") and as SlurmUser.
id slurmrest >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin slurmrest
stop_pidfiles "slurmrestd:$SLURMRESTD_PID"
touch "$RESTLOG"
chown slurmrest "$RESTLOG"
# slurmrestd has no daemon mode.  setsid detaches it from our session; setpriv switches user and
# then execs, so $! is slurmrestd's own pid (runuser/su would fork and $! would be runuser).
# SLURM_JWT=daemon: slurmrestd does not need a token of its own; it forwards each request's token.
cd /
SLURM_JWT=daemon setsid setpriv --reuid=slurmrest --regid=slurmrest --init-groups \
  /usr/sbin/slurmrestd -a rest_auth/jwt -s "$PLUGINS" "$LISTEN" \
  >>"$RESTLOG" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$SLURMRESTD_PID"
# Ready = a real authenticated request answers without errors (not just an open port).
TOK=$(scontrol token username=alice lifespan=120 | cut -d= -f2)
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  if curl -sf -m 2 -H "X-SLURM-USER-NAME: alice" -H "X-SLURM-USER-TOKEN: $TOK" \
      "http://127.0.0.1:$PORT/slurm/v0.0.38/ping" 2>/dev/null | jq -e '.errors == []' >/dev/null 2>&1; then
    log "slurmrestd pid $pid listening on $LISTEN ($PLUGINS)"
    exit 0
  fi
  sleep 0.1
done
echo "slurmrestd did not answer on $LISTEN" >&2
tail -n 20 "$RESTLOG" >&2
exit 1
