#!/usr/bin/env bash
# Build the hub's image (helm/image/Containerfile) without a container registry, and run
# commands in it.
#
#   helm/image/build.sh                    build unless cached; print the image's name (last line)
#   helm/image/build.sh run [OPT...] -- CMD [ARG...]
#                                          the same, then run CMD in it with `podman run --rm
#                                          OPT...` (and this host's runtime options), without
#                                          network unless OPT names one
#
# Steps, each cached by the hash of its inputs (and only then skipped):
#   1. a Debian 12 root file system made with mmdebstrap from the Debian mirror, kept as
#      $CACHE/base-<hash>.tar and imported into podman as localhost/hpcspawner-base:<hash>;
#   2. `podman build` of the Containerfile FROM that base, with a build context holding only what
#      the Containerfile copies: localhost/hpcspawner-hub:<hash of the base, the Containerfile and
#      those files>. An image of that name in podman's store is the cache; older
#      localhost/hpcspawner-hub tags are removed after a build.
#
# Runs as root (mmdebstrap and rootful podman); needs `apt-get install mmdebstrap podman runc`.
# Environment: CACHE [/var/cache/hpcspawner-image]; MIRROR [http://deb.debian.org/debian];
# PODMAN_RUNTIME [runc on hosts with hybrid cgroups, else podman's default]; PIP_CERT (a CA
# bundle pip must trust: passed to the build, e.g. behind a TLS-inspecting proxy).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${CACHE:-/var/cache/hpcspawner-image}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates
T0=$SECONDS
log() { printf '[build.sh %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

RUN=()
RUN_OPTS=()
case ${1:-} in
  "") ;;
  run)
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do RUN_OPTS+=("$1"); shift; done
    [ $# -gt 1 ] || die "run: use 'run [podman run options] -- CMD [ARG...]'"
    shift
    RUN=("$@")
    ;;
  *) die "unknown argument '$1': use no argument (build) or 'run [OPT...] -- CMD [ARG...]'" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap and podman build the image as root)"
for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install mmdebstrap podman runc"
done

# ---------------------------------------------------------------- this host's container runtime
PODMAN=(podman)
RUNTIME_OPTS=()
# crun refuses hosts with both cgroup v1 controllers and the v2 hierarchy ("cgroups in hybrid
# mode not supported"); runc runs there.
if [ -z "${PODMAN_RUNTIME:-}" ] && [ -d /sys/fs/cgroup/unified ] &&
  [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  PODMAN_RUNTIME=runc
fi
if [ -n "${PODMAN_RUNTIME:-}" ]; then
  command -v "$PODMAN_RUNTIME" >/dev/null || die "$PODMAN_RUNTIME is missing: apt-get install $PODMAN_RUNTIME"
  PODMAN+=(--runtime "$PODMAN_RUNTIME")
fi
# Without CAP_SYS_RESOURCE (some VMs and CI sandboxes take it from root), the runtime cannot
# raise the containers' open-file and process limits to podman's defaults: keep the current hard
# limits (podman 4.3 itself lowers its process limit to 32768, and the runtime inherits that).
cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if (((0x$cap_eff >> 24 & 1) == 0)); then
  nproc=$(ulimit -Hu)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  RUNTIME_OPTS+=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
fi

# ---------------------------------------------------------------- 1. the base
mkdir -p "$CACHE"
base_key=$(printf '%s\n' "$SUITE" "$MIRROR" minbase "$BASE_PACKAGES" "$(mmdebstrap --version)" |
  sha256sum | cut -c1-16)
BASE=localhost/hpcspawner-base:$base_key
if "${PODMAN[@]}" image exists "$BASE"; then
  log "base $BASE: cached in podman's store"
else
  tarball=$CACHE/base-$base_key.tar
  if [ -f "$tarball" ]; then
    log "base: cached in $tarball"
  else
    log "base: mmdebstrap $SUITE ($BASE_PACKAGES) from $MIRROR"
    mmdebstrap --quiet --format=tar --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$tarball.part" "$MIRROR"
    mv "$tarball.part" "$tarball"
  fi
  "${PODMAN[@]}" import --quiet "$tarball" "$BASE" >/dev/null
  log "base: imported as $BASE"
fi

# ---------------------------------------------------------------- 2. the hub's image
# the package ships the built JupyterLab extension (the hub does not use it, but pip needs it)
# shellcheck source=scripts/venv-lib.sh
. "$REPO/scripts/venv-lib.sh"
require_labextension "$REPO" || exit 1
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
# what the Containerfile copies, and nothing else
tar -C "$REPO" --exclude=__pycache__ -cf - pyproject.toml README.md hpcspawner share \
  scripts/install-hub-env.sh scripts/venv-lib.sh | tar -C "$CONTEXT" -xf -
cp "$REPO/helm/image/Containerfile" "$CONTEXT/Containerfile"
hub_key=$({
  echo "$base_key"
  tar -C "$CONTEXT" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .
} | sha256sum | cut -c1-16)
IMAGE=localhost/hpcspawner-hub:$hub_key
if "${PODMAN[@]}" image exists "$IMAGE"; then
  log "image $IMAGE: cached in podman's store (its inputs have not changed)"
else
  BUILD=(--file "$CONTEXT/Containerfile" --tag "$IMAGE" --build-arg "BASE=$BASE" --network=host)
  if [ -n "${PIP_CERT:-}" ]; then
    [ -f "$PIP_CERT" ] || die "PIP_CERT=$PIP_CERT is not a file"
    BUILD+=(--volume "$PIP_CERT:/run/build-ca.pem:ro" --build-arg PIP_CERT=/run/build-ca.pem)
  fi
  log "image: podman build ${BUILD[*]}"
  "${PODMAN[@]}" build --quiet "${BUILD[@]}" "${RUNTIME_OPTS[@]}" "$CONTEXT" >/dev/null
  # the previous builds' images (their layers stay while another image uses them)
  for old in $("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' localhost/hpcspawner-hub); do
    if [ "$old" != "$IMAGE" ] && ! "${PODMAN[@]}" rmi "$old" >/dev/null; then
      log "image: could not remove $old (in use?); left as it is"
    fi
  done
  log "image: built $IMAGE"
fi
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
log "image $IMAGE: $((size / 1000000)) MB"

if [ ${#RUN[@]} -gt 0 ]; then
  network=(--network=none) # unless the options name one
  for opt in "${RUN_OPTS[@]}"; do [[ $opt == --network* ]] && network=(); done
  exec "${PODMAN[@]}" run --rm "${network[@]}" "${RUNTIME_OPTS[@]}" "${RUN_OPTS[@]}" "$IMAGE" "${RUN[@]}"
fi
echo "$IMAGE"
