"""The authenticator's room: log in with the site's identity provider, land on the cluster account.

- :mod:`~hpcspawner.auth.authenticator`: :class:`ClusterOAuthenticator`, the login flow;
- :mod:`~hpcspawner.auth.settings`: its options (traits, help, checks);
- :mod:`~hpcspawner.auth.handlers`: the login and callback handlers, the "No cluster account" page;
- :mod:`~hpcspawner.auth.oidc`: OpenID Connect discovery (pure);
- :mod:`~hpcspawner.auth.mapping`: login claims -> cluster user name, pinning (pure);
- :mod:`~hpcspawner.accounts.posix`: the system's user database and slurm.conf (I/O).

``hpcspawner.auth.ClusterOAuthenticator`` (and the entry point ``hpc``) keep naming the
class. It is loaded on first use: the spawner imports :mod:`~hpcspawner.auth.mapping` and
:mod:`~hpcspawner.accounts.posix` without loading the authenticator (and oauthenticator).
"""

__all__ = ["ClusterOAuthenticator", "NoClusterAccount"]


def __getattr__(name):
    if name == "ClusterOAuthenticator":
        from .authenticator import ClusterOAuthenticator

        return ClusterOAuthenticator
    if name == "NoClusterAccount":
        from .handlers import NoClusterAccount

        return NoClusterAccount
    raise AttributeError(name)
