#!/usr/bin/env bash
# Stop the local Slurm test cluster: slurmrestd, slurmdbd, the login node's sshd (start-sshd.sh), every slurmd (node vm and netns nodes n1..nN)
# and slurmctld, found by their pid files only (never by process name: that would also hit
# daemons this script does not own).  SIGTERM to all at once, then wait (each takes ~1.5-2 s).
#
#   STOP_MUNGE=1       also stop munged
#   STOP_MARIADB=1     also stop the MariaDB start-accounting.sh started (never the system's)
#   STOP_SLURMRESTD=0  leave slurmrestd running
#   STOP_SSHD=0        leave the login node's sshd running
#
# Running jobs are not cancelled: their records survive in StateSaveLocation, and their processes
# are killed when slurmd comes back.  The netns nodes stay; scripts/cluster/teardown-multinode.sh
# removes them.  Exits 1 if a daemon is still alive after 20 s.
set -euo pipefail
LOG_TAG=stop
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
specs=()
[ "${STOP_SLURMRESTD:-1}" = 1 ] && specs+=("slurmrestd:$SLURMRESTD_PID")
[ "${STOP_SSHD:-1}" = 1 ] && specs+=("sshd:$LOGIN_SSHD_PID")
mapfile -t -O "${#specs[@]}" specs < <(slurmd_specs)
specs+=("slurmctld:$SLURMCTLD_PID" "slurmdbd:$SLURMDBD_PID")
[ -n "${STOP_MARIADB:-}" ] && specs+=("mariadbd:$MARIADB_PID")
[ -n "${STOP_MUNGE:-}" ] && specs+=("munged:$MUNGED_PID" "munged:$MUNGED_PID_DEFAULT")
stop_pidfiles "${specs[@]}"
log "stopped"
