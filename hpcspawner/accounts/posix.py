"""Who an account is on this host: the system's user database and slurm.conf (I/O).

:func:`lookup_posix_account` asks NSS (``getpwnam``: /etc/passwd, LDAP/SSSD) for
an account's uid, gid, groups, shell and home; :func:`slurm_service_users` reads the
``SlurmUser`` and ``SlurmdUser`` of the local slurm.conf. Both block; both are
used by the authenticator (at login) and by the spawner (before it runs anything
as the user), which is why they live here and not in the authenticator. The
decisions on what they return are :mod:`hpcspawner.accounts.rules`'s; the pure
mapping of a login to a name is :mod:`hpcspawner.auth.mapping`.
"""

from __future__ import annotations

import grp
import os
import pwd

from .rules import PosixAccount, parse_slurm_conf_users

#: Where Slurm's clients find slurm.conf when ``SLURM_CONF`` is not set (Debian's packages).
DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"


def lookup_posix_account(name: str) -> PosixAccount | None:
    """The user ``name`` in the system's user database (files, LDAP/SSSD via NSS), or None.

    Blocks while NSS answers: call it in an executor. This is the one place where the
    package asks who a user is (uid, shell, home): the authenticator, the spawner and
    the spawner's file handling call it as ``posix.lookup_posix_account``, so that a
    test can stand in the test cluster's users for the host's (tests/unit/conftest.py).
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = []
    for gid in os.getgrouplist(entry.pw_name, entry.pw_gid):
        try:
            groups.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue  # a gid without a name: nothing a policy could refer to
    return PosixAccount(
        entry.pw_name, entry.pw_uid, entry.pw_gid, tuple(groups), entry.pw_shell, entry.pw_dir
    )


def slurm_service_users(path: str | None = None) -> tuple[str, ...]:
    """The ``SlurmUser``/``SlurmdUser`` of slurm.conf (``SLURM_CONF``, else /etc/slurm/slurm.conf).

    Reads the local file only (no controller call); () when it is missing or unreadable.
    """
    path = path or os.environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_slurm_conf_users(f.read())
    except OSError:
        return ()


__all__ = ["DEFAULT_SLURM_CONF", "lookup_posix_account", "slurm_service_users"]
