#!/usr/bin/env bash
# Install the hub's Python environment into a venv: JupyterHub and hpcspawner (from this
# work tree) with its SSH and REST drivers and the idle culler. The one script for both:
#   - CI and development (scripts/install-deps.sh): .venv/jh6 and .venv/jh5, editable, with the
#     test extras;
#   - the hub's image for the Helm chart (helm/image/Containerfile): non-editable, the drivers and
#     the culler only.
#
#   scripts/install-hub-env.sh VENV [MORE-PIP-REQUIREMENTS...]
#
# Environment (defaults in brackets):
#   PYTHON [python3]               the interpreter the venv is made from
#   JUPYTERHUB_VERSION [6.1.1]     installed exactly (==)
#   HPCSPAWNER_EXTRAS [ssh,rest,cull]  hpcspawner's extras (cull: jupyterhub-idle-culler)
#   HPCSPAWNER_EDITABLE [0]        1: pip install -e (the venv follows the work tree)
#
# Idempotent: the venv keeps a stamp of its inputs (interpreter, these settings, the extra
# requirements, pyproject.toml) and pip runs only when it differs. A non-editable install is
# re-installed on every run (--no-deps), so that the venv has the work tree's code.
set -euo pipefail
if [ $# -lt 1 ] || [[ $1 == -* ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
  exit 2
fi
VENV=$1
shift
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
JUPYTERHUB_VERSION=${JUPYTERHUB_VERSION:-6.1.1}
HPCSPAWNER_EXTRAS=${HPCSPAWNER_EXTRAS:-ssh,rest,cull}
HPCSPAWNER_EDITABLE=${HPCSPAWNER_EDITABLE:-0}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# shellcheck source=scripts/venv-lib.sh
. "$SRC/scripts/venv-lib.sh"
log() { printf '[install-hub-env] %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null; then
  echo "$0: no interpreter $PYTHON (set PYTHON)" >&2
  exit 1
fi
case $HPCSPAWNER_EDITABLE in
  1) PACKAGE=(-e "${SRC}[$HPCSPAWNER_EXTRAS]") ;;
  0)
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    clean_copy "$SRC" "$BUILD"
    PACKAGE=("${BUILD}[$HPCSPAWNER_EXTRAS]")
    ;;
  *) echo "$0: HPCSPAWNER_EDITABLE=$HPCSPAWNER_EDITABLE: use 0 or 1" >&2; exit 2 ;;
esac
# PITFALL: setuptools' editable install maps the top-level package when it is installed: a venv
# built while hpcspawner/__init__.py did not exist yet cannot import it later, so its presence is
# in the stamp.
STAMP="$(pyver "$PYTHON") | jupyterhub==$JUPYTERHUB_VERSION hpcspawner[$HPCSPAWNER_EXTRAS] editable=$HPCSPAWNER_EDITABLE $* | $(sha256sum "$SRC/pyproject.toml" | cut -d' ' -f1) | init=$([ -f "$SRC/hpcspawner/__init__.py" ] && echo 1 || echo 0)"
if ! stamp_ok "$VENV" "$STAMP"; then
  ensure_venv "$VENV" "$PYTHON"
  log "pip install into $VENV: jupyterhub==$JUPYTERHUB_VERSION hpcspawner[$HPCSPAWNER_EXTRAS] (editable=$HPCSPAWNER_EDITABLE) $*"
  "$VENV/bin/pip" install -q "jupyterhub==$JUPYTERHUB_VERSION" "${PACKAGE[@]}" "$@"
  echo "$STAMP" >"$VENV/.hpcspawner-stamp"
elif [ "$HPCSPAWNER_EDITABLE" = 0 ]; then
  # the dependencies are as stamped; the package itself is the work tree's as of now
  "$VENV/bin/pip" install -q --no-deps --force-reinstall "${PACKAGE[@]}"
  log "$VENV: hpcspawner re-installed from $SRC"
else
  log "$VENV up to date"
fi
log "$VENV ready: JupyterHub $("$VENV/bin/jupyterhub" --version 2>/dev/null | tail -1), hpcspawner from $SRC"
