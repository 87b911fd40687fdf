#!/usr/bin/env bash
# Build hpcspawner's JupyterLab extension (labextension/: the job's clock in the status bar)
# into share/jupyter/labextensions/hpcspawner-jupyterlab/, where pyproject.toml's data-files
# take it into the package: `pip install hpcspawner` then installs it as a prebuilt
# (federated) extension, enabled in every JupyterLab of the environment.
#
#   scripts/build-labextension.sh          (scripts/install-deps.sh runs it in step 2)
#
# Everything comes from npm's registry, pinned by labextension/package-lock.json: `npm ci`,
# TypeScript, then @jupyter/builder (rspack) against @jupyterlab/core-meta, the description
# of JupyterLab's shared packages for the JupyterLab version it is built for. No Python and
# no JupyterLab are needed to build it. Needs Node.js >= 20.19 (@rspack/core) and npm.
#
# Idempotent: skipped when the output is there and was built from the same inputs (the
# sources, the lock file and the Node.js version: a stamp in labextension/node_modules/).
# Fails when the build does not produce the extension: a package built without it would
# install no clock (pyproject.toml names the output's files, so pip fails too).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXT=$REPO/labextension
NAME=hpcspawner-jupyterlab
OUT=$REPO/share/jupyter/labextensions/$NAME
T0=$SECONDS
log() { printf '[build-labextension %3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { printf 'build-labextension: %s\n' "$*" >&2; exit 1; }
# Node.js from PyPI, when install-deps.sh had to take it from there
[ -d "$REPO/.venv/node-bin" ] && export PATH=$REPO/.venv/node-bin:$PATH
command -v node >/dev/null && command -v npm >/dev/null ||
  die "node and npm are needed (sudo scripts/install-deps.sh installs them)"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
cd "$EXT"

# the output and the files it names are all there
built() {
  local load
  [ -f "$OUT/package.json" ] && [ -f "$OUT/install.json" ] || return 1
  load=$(node -e 'const p = require(process.argv[1]); console.log(((p.jupyterlab || {})._build || {}).load || "")' "$OUT/package.json")
  [ -n "$load" ] && [ -f "$OUT/$load" ]
}

INPUTS="$(node --version) $(cat package.json package-lock.json tsconfig.json install.json src/* style/* | sha256sum | cut -d' ' -f1)"
if built && [ "$(cat node_modules/.hpcspawner-build-stamp 2>/dev/null)" = "$INPUTS" ]; then
  log "$OUT up to date"
  exit 0
fi

LOCK="$(node --version) $(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.hpcspawner-stamp 2>/dev/null)" != "$LOCK" ]; then
  log "npm ci in labextension/"
  npm ci --loglevel=error
  echo "$LOCK" >node_modules/.hpcspawner-stamp
fi
log "tsc"
rm -rf lib tsconfig.tsbuildinfo
node_modules/.bin/tsc
log "build-labextension (@jupyter/builder $(node -p 'require("@jupyter/builder/package.json").version'), core-meta $(node -p 'require("@jupyterlab/core-meta/package.json").version'))"
# empties $OUT first: no chunk of an earlier build stays behind
node node_modules/@jupyter/builder/lib/build-labextension.js \
  --core-package-file node_modules/@jupyterlab/core-meta/core.package.json . >/dev/null
# install.json: what `jupyter labextension list` says of where the extension comes from
cp install.json "$OUT/install.json"
built || die "the build did not produce $OUT/package.json and the remote entry it names"
echo "$INPUTS" >node_modules/.hpcspawner-build-stamp
log "built $OUT: $(find "$OUT" -type f | wc -l) files, $(du -sk "$OUT" | cut -f1) kB"
