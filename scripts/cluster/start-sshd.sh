#!/usr/bin/env bash
# A login node for the SSH driver: Debian's sshd on ${SSH_LISTEN:-127.0.0.1:2222} with its own
# config, host key and pid file, next to the local cluster's Slurm clients (this host is the login
# node).  Sets up, idempotently, what a site's login node has for the hub:
#   - the service account "hpcspawner-hub" (no password; logs in with the hub's key only);
#   - the hub's client key and a known_hosts with this sshd's host key, in
#     /etc/hpcspawner-dev/ssh/ (root-only: the hub runs as root in the tests and the demo);
#   - /etc/sudoers.d/hpcspawner-login-node: the service account may run sbatch, scancel and the
#     file commands (docs/howto/ssh-driver.md) as members of "jupyter-users" (the test users
#     alice, bob and carol, as tests/integration/hub.py's TEST_USERS), never as root; checked
#     with visudo -c before it is put in place.
# Restarts an sshd it started before (pid file).  Run as root.  stop.sh stops it.
# SSH_NEW_HOST_KEY=1: the host-key drill (tests/integration/test_drills_off_cluster.py): the
# login node's host key changes (the old one is kept as *.before-rotation) and known_hosts stays
# as it was, so the hub must refuse the node.  The next run without it puts the old key back.
# Pid: /run/hpcspawner-sshd.pid; log: /var/log/hpcspawner-sshd.log.
set -euo pipefail
LOG_TAG=sshd
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
LISTEN=${SSH_LISTEN:-127.0.0.1:2222}
HOST=${LISTEN%:*}
PORT=${LISTEN##*:}
DIR=/etc/hpcspawner-dev/ssh
SERVICE=hpcspawner-hub
GROUP=jupyter-users
SSHD_LOG=/var/log/hpcspawner-sshd.log
command -v /usr/sbin/sshd >/dev/null || { echo "sshd missing: scripts/install-deps.sh installs openssh-server" >&2; exit 1; }
install -d -m 0755 /etc/hpcspawner-dev
install -d -m 0700 "$DIR"
# the service account: a shell (the driver's commands are one quoted command line), no password
id "$SERVICE" >/dev/null 2>&1 || useradd -r -m -d "/var/lib/$SERVICE" -s /bin/sh "$SERVICE"
usermod -p '*' "$SERVICE" # no password, but not locked ("!"): sshd refuses locked accounts
getent group "$GROUP" >/dev/null || groupadd "$GROUP"
for u in alice bob carol; do id -u "$u" >/dev/null 2>&1 && usermod -a -G "$GROUP" "$u"; done
HOSTKEY=$DIR/ssh_host_ed25519_key
SAVED=$HOSTKEY.before-rotation
if [ "${SSH_NEW_HOST_KEY:-0}" = 1 ]; then
  # keep the first key only: a second rotation must not lose the one known_hosts holds
  [ -f "$SAVED" ] || { mv "$HOSTKEY" "$SAVED"; mv "$HOSTKEY.pub" "$SAVED.pub"; }
  rm -f "$HOSTKEY" "$HOSTKEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C login-node-rotated -f "$HOSTKEY"
elif [ -f "$SAVED" ]; then
  mv "$SAVED" "$HOSTKEY"; mv "$SAVED.pub" "$HOSTKEY.pub" # back from a rotation
fi
[ -f "$HOSTKEY" ] || ssh-keygen -q -t ed25519 -N '' -C login-node -f "$HOSTKEY"
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C jupyterhub -f "$DIR/id_ed25519"
# sshd reads authorized keys as the user: outside the root-only $DIR
KEYS=/etc/hpcspawner-dev/ssh-authorized-keys
install -d -m 0755 "$KEYS"
install -m 0644 "$DIR/id_ed25519.pub" "$KEYS/$SERVICE"
# the readiness check below trusts the key sshd really has; known_hosts (the hub's) keeps
# the old one after a rotation
CHECK_HOSTS=$DIR/known_hosts
if [ "${SSH_NEW_HOST_KEY:-0}" = 1 ]; then
  CHECK_HOSTS=$(mktemp)
  trap 'rm -f "$CHECK_HOSTS"' EXIT
  echo "[$HOST]:$PORT $(cut -d' ' -f1,2 "$HOSTKEY.pub")" >"$CHECK_HOSTS"
else
  echo "[$HOST]:$PORT $(cut -d' ' -f1,2 "$HOSTKEY.pub")" >"$DIR/known_hosts"
fi
cat >"$DIR/sshd_config" <<CONF
ListenAddress $LISTEN
HostKey $HOSTKEY
PidFile $LOGIN_SSHD_PID
AuthorizedKeysFile $KEYS/%u
AllowUsers $SERVICE
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PermitTTY no
MaxSessions 10
ClientAliveInterval 15
CONF
sudoers=$(mktemp)
cat >"$sudoers" <<SUDO
# written by scripts/cluster/start-sshd.sh: the hub's service account on the test login node
Cmnd_Alias HPCSPAWNER_SLURM = /usr/bin/sbatch, /usr/bin/scancel
Cmnd_Alias HPCSPAWNER_FILES = /usr/bin/mktemp, /usr/bin/dd, /usr/bin/rm, \\
                              /usr/bin/install, /usr/bin/stat, /usr/bin/tail
Defaults:$SERVICE !requiretty, !lecture
Defaults!HPCSPAWNER_SLURM umask=0077
$SERVICE ALL = (%$GROUP, !root) NOPASSWD: HPCSPAWNER_SLURM, HPCSPAWNER_FILES
SUDO
visudo -cq -f "$sudoers"
install -m 0440 "$sudoers" /etc/sudoers.d/hpcspawner-login-node
rm -f "$sudoers"
install -d -m 0755 /run/sshd # privilege separation directory (sshd -t checks it too)
/usr/sbin/sshd -t -f "$DIR/sshd_config"
stop_pidfiles "sshd:$LOGIN_SSHD_PID"
touch "$SSHD_LOG"
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$SSHD_LOG"
# Ready = the service account logs in with the hub's key and runs squeue there.
for _ in $(seq 50); do
  if ssh -q -o BatchMode=yes -o UserKnownHostsFile="$CHECK_HOSTS" -o StrictHostKeyChecking=yes \
      -i "$DIR/id_ed25519" -p "$PORT" "$SERVICE@$HOST" squeue --version >/dev/null 2>&1; then
    log "sshd pid $(cat "$LOGIN_SSHD_PID") listening on $LISTEN (login as $SERVICE)"
    exit 0
  fi
  sleep 0.1
done
echo "sshd did not accept the hub's key on $LISTEN" >&2
tail -n 20 "$SSHD_LOG" >&2
stop_pidfiles "sshd:$LOGIN_SSHD_PID" # what this script started
exit 1
