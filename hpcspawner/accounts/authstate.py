"""What a login tells the spawner: hpcspawner's part of JupyterHub's ``auth_state`` (pure).

The authenticator (:class:`hpcspawner.auth.ClusterOAuthenticator`) writes it at login; the
spawner reads the user's Slurm accounts from it. Both import this module, so neither room
imports the other for it.
"""

from __future__ import annotations

#: Key of hpcspawner's part of ``auth_state``: ``username``, ``uid``, ``gid``, ``groups``,
#: ``accounts`` (read by the spawner, written by the authenticator), and ``iss`` and
#: ``sub``, the provider identity the account is pinned to (see
#: :func:`hpcspawner.auth.mapping.check_pin`).
AUTH_STATE_KEY = "hpcspawner"


def login_accounts(auth_state: dict | None) -> list[str] | None:
    """The Slurm accounts the login says the user may charge; None when the login does not
    say (another authenticator, or no accounting on the cluster)."""
    accounts = ((auth_state or {}).get(AUTH_STATE_KEY) or {}).get("accounts")
    return None if accounts is None else [str(account) for account in accounts]
