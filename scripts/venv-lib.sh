# shellcheck shell=bash
# Helpers for the scripts that build venvs (install-deps.sh, install-hub-env.sh); source it.
# A venv keeps a stamp of the inputs it was built from, so that pip runs only when they change.

# What a job's Python environment holds besides hpcspawner (installed --no-deps): the singleuser
# venv (install-deps.sh step 4) and the job image's venv (build-job-image.sh). batchspawner is
# there for its launcher (the compatibility test and the benchmarks).
JOB_PACKAGES=('jupyterhub==6.1.1' jupyterlab 'batchspawner==1.3.0')
# stamp_ok DIR TEXT: DIR/.hpcspawner-stamp holds TEXT (the venv was built with these inputs)
stamp_ok() { [ "$(cat "$1/.hpcspawner-stamp" 2>/dev/null)" = "$2" ]; }
# pyver PYTHON: one line naming the interpreter's version and build
pyver() { "$1" -c 'import sys; print(" ".join(sys.version.split()))' 2>/dev/null; }
# ensure_venv DIR PYTHON: DIR is a working venv of PYTHON's version; (re)create it otherwise.
ensure_venv() {
  local dir=$1 py=$2
  if [ "$(pyver "$dir/bin/python")" != "$(pyver "$py")" ]; then
    rm -rf "$dir"
    "$py" -m venv "$dir"
    echo "created venv $dir ($("$dir/bin/python" --version))"
  fi
}
# clean_copy SRC DEST: what pip needs to build hpcspawner (pyproject.toml, the package, the
# data files under share/ (the IPython startup file, the Jupyter server config, the built
# JupyterLab extension), its readme), copied from SRC into DEST. Building in the work tree
# would leave build/ and *.egg-info there, and a stale build/lib can pack modules deleted
# since into the wheel. Fails, saying what to run, when the JupyterLab extension is not built.
clean_copy() {
  local src=$1 dest=$2 files=(pyproject.toml hpcspawner share) f
  require_labextension "$src" || return 1
  for f in "$src"/README* "$src"/LICENSE* "$src"/MANIFEST.in; do [ -e "$f" ] && files+=("${f#"$src"/}"); done
  tar -C "$src" --exclude=__pycache__ -cf - "${files[@]}" | tar -C "$dest" -xf -
}
# require_labextension REPO: the JupyterLab extension is built in REPO (pyproject.toml's
# data-files take it from there); say how to build it otherwise.
require_labextension() {
  [ -f "$1/share/jupyter/labextensions/hpcspawner-jupyterlab/package.json" ] && return 0
  echo "hpcspawner: the JupyterLab extension is not built (no $1/share/jupyter/labextensions/hpcspawner-jupyterlab/):" \
    "run $1/scripts/build-labextension.sh first (scripts/install-deps.sh does)" >&2
  return 1
}

# job_extensions_missing JUPYTER...: the command line of an environment's `jupyter` (e.g.
# /opt/x/bin/jupyter, or a wrapper that runs it in an image); prints what the package should
# have enabled there and is not (JupyterLab's clock; the clock's and activity's server
# extensions), nothing if all are.  PITFALL: not `jupyter ... list | grep -q`: under pipefail,
# grep -q exits at the first match and jupyter, still writing, dies of SIGPIPE: a "failure".
job_extensions_missing() {
  local lab server
  lab=$("$@" labextension list 2>&1 || true)
  server=$("$@" server extension list 2>&1 || true)
  grep -q 'hpcspawner-jupyterlab v.*enabled.*OK' <<<"$lab" || echo "the JupyterLab extension hpcspawner-jupyterlab"
  grep -q 'hpcspawner\.job\.clock.*enabled' <<<"$server" || echo "the server extension hpcspawner.job.clock"
  grep -q 'hpcspawner\.job\.activity.*enabled' <<<"$server" || echo "the server extension hpcspawner.job.activity"
  return 0
}
