"""Who may be a cluster user: the rules (pure) and the system's user database (I/O).

- :mod:`~hpcspawner.accounts.rules`: which POSIX accounts a login may map to and a server may
  run as (uid range, Slurm's and munge's own users, nologin shells);
- :mod:`~hpcspawner.accounts.posix`: ``pwd``/``grp`` lookups and slurm.conf's service users.

Both the authenticator and the spawner use them: the spawner checks again whatever
authenticator is configured (defence in depth), so they live in neither room.
"""
