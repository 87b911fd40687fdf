#!/usr/bin/env bash
# Build the job image: a Debian 12 root file system for the `container` environment, made with
# mmdebstrap from Debian's packages (no container registry), that a Slurm job runs its server in
# with rootless podman (docs/howto/containers.md).
#
#   scripts/build-job-image.sh [DEST]        DEST [/opt/hpcspawner-dev/job-rootfs]
#
# What it holds:
#   - Debian's python3, ca-certificates, procps, and slurm-client at exactly the host's version
#     (so srun/squeue/sbatch work inside, with the host's /etc/slurm and munge socket bound in);
#   - /opt/jupyter: a venv with the job packages of the singleuser venv (JOB_PACKAGES,
#     scripts/venv-lib.sh) and hpcspawner from a clean copy of this work tree (--no-deps), with
#     the job's clock (its JupyterLab extension must be built: scripts/build-labextension.sh);
#   - /etc/hpcspawner-job-image: what it was built from (a file the host does not have: the
#     tests read it to tell the container's root from the host's);
#   - empty mount points for a read-only root: /etc/slurm, /run/munge, /etc/hosts, ...
# Jobs run it with hpcspawner-podman (hpcspawner/job/podman.py); Apptainer can run the same
# directory (`apptainer exec DIR ...`) or a SIF built from it (`apptainer build x.sif DIR`).
#
# Idempotent: /etc/hpcspawner-job-image is the stamp (suite, mirrors, packages, Slurm version,
# job packages, pyproject.toml); with the same inputs only hpcspawner is re-installed (seconds),
# otherwise the tree is built afresh beside the old one and swapped in.
# Runs as root; needs `apt-get install mmdebstrap`.  Environment: MIRROR
# [http://deb.debian.org/debian], SECURITY_MIRROR [http://deb.debian.org/debian-security],
# PIP_CERT (a CA bundle pip must trust inside the build, e.g. behind a TLS-inspecting proxy;
# default: the host's /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-/opt/hpcspawner-dev/job-rootfs}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
VENV=/opt/jupyter # inside the image
MARKER=etc/hpcspawner-job-image
export PIP_DISABLE_PIP_VERSION_CHECK=1
T0=$SECONDS
log() { printf '[build-job-image %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { printf 'build-job-image.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap, chroot)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
[[ $DEST == /* && $DEST != / ]] || die "DEST must be an absolute path, not '$DEST'"
# shellcheck source=scripts/venv-lib.sh
. "$REPO/scripts/venv-lib.sh"
umask 022 # every user's job reads the tree

# The clients must speak the host's Slurm protocol: the same version as the host's, from the
# same Debian release (bookworm-security carries Slurm's updates).
slurm_version=$(dpkg-query -W -f='${Version}' slurm-client 2>/dev/null) ||
  die "the host has no slurm-client package: install it first (scripts/install-deps.sh)"
PACKAGES="python3,python3-venv,ca-certificates,procps,slurm-client=$slurm_version"
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$CA" ] || die "PIP_CERT=$CA is not a file"

# in_rootfs ROOT CMD...: run CMD chrooted in ROOT with /dev, /proc and the host's DNS, in a mount
# namespace of its own (nothing stays mounted when it ends, whatever happens)
in_rootfs() {
  local root=$1
  shift
  unshare --mount --propagation private -- /bin/sh -euc '
    root=$1; shift
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
    exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/tmp/build-ca.pem "$@"
  ' in_rootfs "$root" "$@"
}

# install_package ROOT: hpcspawner from a clean copy of the work tree into the image's venv
install_package() {
  local root=$1 src
  src=$(mktemp -d "$root/tmp/hpcspawner-src.XXXXXX")
  clean_copy "$REPO" "$src"
  cp "$CA" "$root/tmp/build-ca.pem"
  in_rootfs "$root" "$VENV/bin/pip" install -q --no-deps --force-reinstall --no-build-isolation "/tmp/${src##*/}"
  rm -rf "$src" "$root/tmp/build-ca.pem" "$root/root/.cache"
  # the job's clock and activity are on in the image's Jupyter too, as in the singleuser venv
  local missing
  missing=$(job_extensions_missing in_rootfs "$root" "$VENV/bin/jupyter")
  [ -z "$missing" ] || die "not enabled in the image's $VENV: $missing"
}

key_text=$(printf '%s\n' "suite: $SUITE" "sources: ${SOURCES[*]}" "packages: $PACKAGES" \
  "mmdebstrap: $(mmdebstrap --version)" "venv: $VENV" "job packages: ${JOB_PACKAGES[*]}" \
  "pyproject.toml: $(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)" \
  "script: $(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)")
key=$(sha256sum <<<"$key_text" | cut -c1-16)

# one build at a time (install-deps.sh run twice, by hand and by CI)
mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
flock 9

if [ -f "$DEST/$MARKER" ] && grep -qx "key: $key" "$DEST/$MARKER"; then
  log "$DEST: built from the same inputs (key $key); re-installing hpcspawner only"
  install_package "$DEST"
  log "done: $DEST ($(du -sh "$DEST" | cut -f1))"
  exit 0
fi

NEW=$DEST.new
rm -rf "$NEW"
log "mmdebstrap $SUITE ($PACKAGES) into $NEW"
# In a mount namespace of its own: the /dev, /proc and /sys that mmdebstrap mounts in the tree
# while it installs are never seen outside (a `chmod -R` or `du` of /opt would walk into them).
unshare --mount --propagation private -- \
  mmdebstrap --quiet --mode=root --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$SUITE" "$NEW" "${SOURCES[@]}"
# apt's lists are 50 MB the image never uses (it is read-only where it runs)
rm -rf "$NEW"/var/lib/apt/lists/* "$NEW"/var/cache/apt/*.bin
log "base done ($(du -sh "$NEW" | cut -f1)); venv $VENV: ${JOB_PACKAGES[*]}"

# What podman needs in a read-only image, where it cannot create anything: the mount points
# for its own /etc/resolv.conf, /etc/hosts, /etc/hostname and /run/.containerenv, for the host's
# /etc/slurm (Slurm's config) and /run/munge (munged's socket) that hpcspawner-podman binds,
# and /etc/mtab (podman would make the link).  The homes' parent, /home, comes with Debian.
install -d "$NEW/etc/slurm" "$NEW/run/munge"
for f in etc/resolv.conf etc/hosts etc/hostname run/.containerenv; do
  rm -f "${NEW:?}/$f"
  : >"$NEW/$f"
done
ln -sfn ../proc/self/mounts "$NEW/etc/mtab"
cp "$CA" "$NEW/tmp/build-ca.pem"
in_rootfs "$NEW" /usr/bin/python3 -m venv "$VENV"
# Debian's venv brings setuptools 66; pyproject.toml asks for >= 68 (--no-build-isolation)
in_rootfs "$NEW" "$VENV/bin/pip" install -q 'setuptools>=68' wheel "${JOB_PACKAGES[@]}"
rm -f "$NEW/tmp/build-ca.pem"
install_package "$NEW"
{
  echo "# The hpcspawner job image, built by scripts/build-job-image.sh; do not edit"
  echo "key: $key"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "slurm-client: $slurm_version"
  echo "$key_text"
} >"$NEW/$MARKER"
chmod 0755 "$NEW" # the rest has Debian's modes, the venv umask 022's

if [ -e "$DEST" ]; then
  # a job still running in the old tree keeps its open files; new jobs get the new one
  rm -rf "$DEST.old" # left by a build that was interrupted here
  mv "$DEST" "$DEST.old"
  mv "$NEW" "$DEST"
  rm -rf "$DEST.old"
else
  mv "$NEW" "$DEST"
fi
log "done: $DEST ($(du -sh "$DEST" | cut -f1))"
