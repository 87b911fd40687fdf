#!/usr/bin/env bash
# The project's test command.  Run as root on a fresh Debian 12 machine (CI runs it too):
#
#   scripts/test.sh              # everything
#   scripts/test.sh -k poller    # extra arguments go to both pytest runs
#
# Steps: install-deps.sh; bring up the local Slurm cluster with MULTINODE=2 unless a healthy one
# is running; then ruff check, ruff format --check, pytest (JupyterHub 6.1.1: every test), the
# unit tests and the real-cluster tests marked `jupyterhub_floor` (what JupyterHub itself does
# with the spawner and the authenticator: spawn page, REST API, callback, login, restart, stop)
# again under the lowest JupyterHub pyproject.toml allows (.venv/jh5: install-deps.sh installs
# exactly that version), and the Sphinx docs (if docs/conf.py exists).  The Slurm-side tests
# (drills of the controller and of jobs ending, scheduler load, user files, benchmarks) run once:
# JupyterHub's version changes nothing there, and the unit tests pin the hooks they rely on
# under both versions.  Every step runs even when an earlier one failed; the exit code is
# non-zero if any failed.  Logs of each step and the Slurm logs go to .test-artifacts/.  The
# cluster is stopped at the end only if this script started it (and then exactly the daemons it
# started).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if [ "$(id -u)" != 0 ]; then
  echo "$0: must run as root (installs packages, runs the Slurm cluster, submits jobs as test users)" >&2
  exit 1
fi
ART=$REPO/.test-artifacts
mkdir -p "$ART"
CLUSTER=$REPO/scripts/cluster # absolute paths: the EXIT trap must work from any directory
T0=$SECONDS
say() { printf '\n=== [test.sh %4ds] %s\n' $((SECONDS - T0)) "$*"; }

say "install-deps"
"$REPO/scripts/install-deps.sh" 2>&1 | tee "$ART/install-deps.log"

# ---------------------------------------------------------------- cluster
# Install and cluster failures abort: every Slurm test would fail anyway, less clearly.
# shellcheck source=scripts/cluster/lib.sh
source "$CLUSTER/lib.sh" # pid_of
STARTED_CLUSTER=""
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  mkdir -p "$ART/slurm"
  cp /var/log/slurm/*.log "$ART/slurm/" 2>/dev/null || true
  if [ -n "$STARTED_CLUSTER" ]; then
    say "stopping the cluster this script started"
    # the login node's sshd belongs to the tests that start it (tests/integration/test_ssh_driver_live.py)
    STOP_MUNGE=$STOP_MUNGE STOP_SLURMRESTD=$STOP_SLURMRESTD STOP_MARIADB=$STOP_MARIADB STOP_SSHD=0 \
      "$CLUSTER/stop.sh" || true
    [ -n "$had_netns" ] || "$CLUSTER/teardown-multinode.sh" || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
say "cluster"
if MULTINODE=2 QUIET=1 READY_TIMEOUT=15 "$CLUSTER/health.sh"; then
  echo "a healthy cluster (MULTINODE=2) is already running: using it, and leaving it running"
else
  # Note what ran before, so that the EXIT trap stops exactly what this script started.  A
  # controller that was already running (e.g. a single-node cluster) gets reconfigured by
  # setup.sh but is left running at the end.
  if ! pid_of "$SLURMCTLD_PID" slurmctld >/dev/null; then STARTED_CLUSTER=1; fi
  STOP_MUNGE=1; munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && STOP_MUNGE=""
  STOP_SLURMRESTD=1; pid_of "$SLURMRESTD_PID" slurmrestd >/dev/null && STOP_SLURMRESTD=0
  # the MariaDB of start-accounting.sh, if it starts one (never a system MariaDB: no pid file)
  STOP_MARIADB=1; pid_of "$MARIADB_PID" mariadbd >/dev/null && STOP_MARIADB=""
  had_netns=""; [ -e /run/netns/sln1 ] && had_netns=1
  echo "starting it: MULTINODE=2 $CLUSTER/setup.sh"
  MULTINODE=2 "$CLUSTER/setup.sh" 2>&1 | tee "$ART/cluster-setup.log"
fi

# ---------------------------------------------------------------- test steps
export PATH=$REPO/node_modules/.bin:$PATH # MockHub runs `configurable-http-proxy` from PATH
[ -d "$REPO/.venv/node-bin" ] && export PATH=$REPO/.venv/node-bin:$PATH # Node.js from PyPI (install-deps.sh)
export HPCSPAWNER_SINGLEUSER_VENV=/opt/hpcspawner-dev/singleuser
JH6=$REPO/.venv/jh6/bin
JH5=$REPO/.venv/jh5/bin
RESULTS=()
FAILED=0
# step NAME CMD...: run CMD, log to .test-artifacts/NAME.log, record the result, never abort.
step() {
  local name=$1 t=$SECONDS rc; shift
  say "$name: $*"
  set +e
  "$@" 2>&1 | tee "$ART/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  # pytest exits 5 when it collected no test.  A suite that ran nothing is a failure, except
  # when the caller's own -k/-m selection left nothing for the JupyterHub floor run.
  if [ "$rc" = 5 ] && [ "$name" = pytest-jh5 ] && [ ${#PYTEST_ARGS[@]} -gt 0 ]; then
    RESULTS+=("$(printf '%-14s %s (%ds)' "$name" "no tests selected" $((SECONDS - t)))")
    return 0
  fi
  [ "$rc" = 0 ] || FAILED=1
  RESULTS+=("$(printf '%-14s %s (%ds)' "$name" "$([ "$rc" = 0 ] && echo ok || echo "FAILED rc=$rc")" $((SECONDS - t)))")
}
PYTEST_ARGS=("$@")

step ruff-check "$JH6/ruff" check .
step ruff-format "$JH6/ruff" format --check .
# Every test, with slurmdbd: the cluster above runs accounting (setup.sh's ACCOUNTING=1 default),
# and the tests marked accounting share its one slurmdbd start.
step pytest-jh6 "$JH6/pytest" -rs --durations=25 --junitxml="$ART/pytest-jh6.xml" tests "${PYTEST_ARGS[@]}"
# The JupyterHub floor (pyproject.toml's `jupyterhub>=X`, installed as ==X): the unit tests pin
# JupyterHub's hooks, the real-cluster tests marked jupyterhub_floor the behaviour.  A caller's
# own -m replaces this selection (pytest keeps the last -m).  The drivers are JupyterHub's
# business nowhere, and the run above took each of them through every test: here the
# lifecycle and spawn-page tests run with the local driver only, unless the caller's own
# HPCSPAWNER_TEST_DRIVERS says otherwise (tests/integration/offcluster.py).
say "the JupyterHub floor run uses JupyterHub $("$JH5/python" -c 'import jupyterhub; print(jupyterhub.__version__)' 2>&1 || true)"
HPCSPAWNER_TEST_DRIVERS=${HPCSPAWNER_TEST_DRIVERS:-local} \
  step pytest-jh5 "$JH5/pytest" -rs --durations=10 --junitxml="$ART/pytest-jh5.xml" -m "not slurm or jupyterhub_floor" \
  tests "${PYTEST_ARGS[@]}"
if [ -f docs/conf.py ]; then
  step sphinx "$JH6/sphinx-build" -W --keep-going -b html docs docs/_build/html
else
  RESULTS+=("$(printf '%-14s %s' sphinx "skipped (no docs/conf.py)")")
fi

say "summary"
printf '  %s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then
  echo "test.sh: all steps ok"
else
  echo "test.sh: FAILED (see above and .test-artifacts/)"
fi
exit "$FAILED"
