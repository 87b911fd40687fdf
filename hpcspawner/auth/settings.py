"""The settings of :class:`~hpcspawner.auth.ClusterOAuthenticator`: its traits, their help, their checks.

The admin's reference (``docs/reference/configuration.md``) is generated from the
help texts here. The login flow that uses them is
:mod:`hpcspawner.auth.authenticator`; oauthenticator's own settings whose
defaults the authenticator changes (``scope``, ``basic_auth``, ...) are set there.
"""

from __future__ import annotations

from jupyterhub.traitlets import Callable
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, Union, validate
from traitlets.config import Configurable

from ..accounts.rules import (
    DEFAULT_MAX_UID,
    DEFAULT_MIN_UID,
    DEFAULT_REFUSED_NAMES,
    DEFAULT_REFUSED_SHELLS,
)
from .mapping import check_account_map, compile_pattern
from .oidc import check_issuer

#: Settings of the authenticator's own ``sacctmgr`` before logins went through the driver:
#: their old default, and what to set instead (the hub warns at start-up when one is set).
DEPRECATED_SLURM_SETTINGS = {
    "sacctmgr_command": (
        ["sacctmgr"],
        "c.LocalSlurmDriver.commands_path (where sacctmgr is) and "
        "c.LocalSlurmDriver.query_command_prefix (a wrapper such as sudo)",
    ),
    "sacctmgr_timeout": (10.0, "c.LocalSlurmDriver.command_timeout"),
    "accounts_cache_seconds": (300.0, "c.SlurmSpawner.associations_ttl"),
}


class ClusterOAuthenticatorSettings(Configurable):
    """The options of :class:`~hpcspawner.auth.ClusterOAuthenticator` (set as ``c.ClusterOAuthenticator.*``)."""

    # ------------------------------------------------------------ the provider

    issuer = Unicode(
        "",
        config=True,
        help="""The provider's issuer URL; its endpoints are found by OpenID Connect discovery.

        The hub reads ``<issuer>/.well-known/openid-configuration`` once, at start-up
        or at the first login, and takes ``authorize_url``, ``token_url`` and
        ``userdata_url`` from it. URLs you set explicitly win. The issuer must use
        https (http only on 127.0.0.1 or localhost, for tests), and the document
        must name the same issuer.

            c.ClusterOAuthenticator.issuer = "https://keycloak.example.org/realms/hpc"
        """,
    )

    @validate("issuer")
    def _check_issuer(self, proposal):
        return check_issuer(proposal.value) if proposal.value else ""

    # ------------------------------------------------------------ login -> cluster user name

    username_claim = Union(
        [Unicode("preferred_username"), Callable()],
        config=True,
        help="""The claim that names the user, or a callable taking the claims and returning it.

        Common choices: ``preferred_username`` (Keycloak), ``eppn`` (CILogon,
        Shibboleth), ``email``. The value then goes through, in this order:
        ``username_lowercase``, ``username_strip_domains``,
        ``username_rewrite_pattern``, ``username_map_file`` or
        ``username_lookup_hook``, and must end as a valid POSIX user name.

            c.ClusterOAuthenticator.username_claim = "eppn"
        """,
    )

    username_lowercase = Bool(
        True,
        config=True,
        help="""Lower-case the claim before the other steps.

        Turn it off only if your cluster has user names with capitals; JupyterHub
        then keeps the case too.
        """,
    )

    username_strip_domains = List(
        Unicode(),
        config=True,
        help="""E-mail style domains to strip from the claim (``alice@uni.example`` -> ``alice``).

        A claim with any other domain is refused: ``alice@elsewhere.example`` is
        not the cluster's ``alice``. A claim without ``@`` (no domain at all) is
        refused too (reason ``unscoped-claim``): it could come from anywhere.

            c.ClusterOAuthenticator.username_strip_domains = ["uni.example", "physics.uni.example"]
        """,
    )

    username_rewrite_pattern = Unicode(
        "",
        config=True,
        help="""A regular expression the claim must match in full; the name is then
        ``username_rewrite_template`` filled from the match.

        A claim that does not match is refused, so a pattern alone is also a filter.

            c.ClusterOAuthenticator.username_rewrite_pattern = r"(?P<user>[a-z0-9]+)@(?:[a-z]+\\.)?uni\\.example"
        """,
    )

    username_rewrite_template = Unicode(
        "{0}",
        config=True,
        help="""The user name built from ``username_rewrite_pattern``'s match.

        ``{0}`` is the whole match, ``{1}``, ``{2}``... the groups, ``{user}`` a
        named group.

            c.ClusterOAuthenticator.username_rewrite_template = "{user}"
        """,
    )

    @validate("username_rewrite_pattern")
    def _check_rewrite_pattern(self, proposal):
        compile_pattern(proposal.value)
        return proposal.value

    username_map_file = Unicode(
        "",
        config=True,
        help="""A file mapping logins to cluster user names; a login not in it has no account.

        Keys are the claim after the transforms above. Either a JSON object
        ``{"login": "username"}``, or one ``login username`` pair per line (``#``
        starts a comment). The hub reads it at start-up (and refuses to start if it
        is invalid) and again whenever it changes; a broken new version is logged
        and the previous one kept.

            c.ClusterOAuthenticator.username_map_file = "/etc/jupyterhub/usernames.map"
        """,
    )

    username_lookup_hook = Callable(
        None,
        allow_none=True,
        config=True,
        help="""An (async) callable mapping a login to a cluster user name, instead of a map file.

        Called as ``await hook(authenticator, login, claims)`` with the claim after
        the transforms above and all the claims; returns the user name, or None
        when the login has no account. For example::

            async def lookup(authenticator, login, claims):
                return await my_directory.username_for(claims["sub"])
            c.ClusterOAuthenticator.username_lookup_hook = lookup
        """,
    )

    require_posix_account = Bool(
        True,
        config=True,
        help="""Require the user name to exist in the hub host's user database (``getpwnam``:
        /etc/passwd, or LDAP/SSSD through NSS).

        A login whose name does not exist gets the "No cluster account" page; uid,
        gid and groups for ``auth_state`` come from here. Turn it off only when the
        hub cannot see the cluster's users and the map or hook is authoritative.
        """,
    )

    min_uid = Integer(
        DEFAULT_MIN_UID,
        config=True,
        help="""Smallest uid a login may map to; system accounts below it are refused.

        Checked whenever the hub host knows the account (also with
        ``require_posix_account`` off); uid 0 is always refused (reason
        ``system-account``). Keep ``c.SlurmSpawner.min_uid`` equal: the spawner
        checks again before it runs anything as the user.

            c.ClusterOAuthenticator.min_uid = 10000
        """,
    )

    max_uid = Integer(
        DEFAULT_MAX_UID,
        config=True,
        help="""The first uid a login may no longer map to (reason ``high-uid``).

        Debian gives packages' users uids from 60000 (``slurm``, Slurm's own
        super-user, is 64030) and ``nobody`` is 65534. If your users' uids go
        higher (LDAP or AD often use uids above 100000), raise it above the largest
        one, and ``c.SlurmSpawner.max_uid`` with it.

            c.ClusterOAuthenticator.max_uid = 2_000_000_000
        """,
    )

    refused_usernames = List(
        Unicode(),
        list(DEFAULT_REFUSED_NAMES),
        config=True,
        help="""Accounts a login may never map to, whatever their uid (reason ``service-account``).

        Checked even with ``require_posix_account`` off, and compared without
        regard to case. ``root`` and the ``SlurmUser`` and ``SlurmdUser`` of
        slurm.conf (``SLURM_CONF``, else /etc/slurm/slurm.conf, read at start-up)
        are always refused too. Add your site's service accounts, and set the
        same list as ``c.SlurmSpawner.refused_usernames``:

            c.ClusterOAuthenticator.refused_usernames = ["root", "nobody", "slurm", "munge", "slurmrest", "slurmrestd", "backup-svc"]
        """,
    )

    refused_shells = List(
        Unicode(),
        list(DEFAULT_REFUSED_SHELLS),
        config=True,
        help="""Login shells that mark an account a login may not map to (reason ``no-login-shell``).

        An absolute path matches exactly; a bare name matches the shell's last
        component (``nologin`` matches /usr/sbin/nologin and /sbin/nologin).
        Use ``[]`` if your users' accounts have ``nologin`` on purpose (e.g. no
        SSH to the login nodes) and should still get servers, and set
        ``c.SlurmSpawner.refused_shells`` the same.

            c.ClusterOAuthenticator.refused_shells = ["nologin", "false", "/usr/local/bin/locked"]
        """,
    )

    no_account_message = Unicode(
        "There is no cluster account for {identity}. If you need one, please apply for it; "
        "if you have one, please contact the hub's administrators.",
        config=True,
        help="""What a user without a cluster account reads (plain text; ``{identity}`` is
        the login the provider reported).

        The page also links to ``no_account_url`` if you set it.

            c.ClusterOAuthenticator.no_account_message = "No cluster account for {identity}: apply at https://hpc.uni.example/apply"
        """,
    )

    @validate("no_account_message")
    def _check_no_account_message(self, proposal):
        try:
            proposal.value.format(identity="alice@uni.example")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"no_account_message: only {{identity}} may appear in braces ({e!r}); "
                "write {{ and }} for literal braces"
            ) from None
        return proposal.value

    no_account_url = Unicode(
        "",
        config=True,
        help="""Where users apply for a cluster account; the "No cluster account" page links to it.

            c.ClusterOAuthenticator.no_account_url = "https://hpc.uni.example/apply"
        """,
    )

    @validate("no_account_url")
    def _check_no_account_url(self, proposal):
        if proposal.value and not proposal.value.startswith(("https://", "http://")):
            raise ValueError(f"no_account_url {proposal.value!r} must be an http(s) URL")
        return proposal.value

    # ------------------------------------------------------------ Slurm accounts

    slurm_accounts = Union(
        [Enum(["none", "sacctmgr"]), Dict(), Callable()],
        default_value="none",
        config=True,
        help="""Where the Slurm accounts a user may charge come from.

        The spawner offers only these and refuses any other ``account`` with a
        message naming the field. ``"none"`` (default): not known, the spawner's
        ``allowed_accounts`` apply and Slurm checks associations. ``"sacctmgr"``:
        ask Slurm's accounting (``sacctmgr show associations``) at login, through
        the spawner's driver (``c.SlurmSpawner.driver_class``, e.g.
        ``c.LocalSlurmDriver.*``) and the hub's one cache of associations
        (``c.SlurmSpawner.associations_ttl``), which the spawn page shares; when it
        fails (no slurmdbd, a timeout) the accounts count as not known. A dict
        ``{username: [account, ...]}``: a user missing from it may charge no
        account explicitly. A callable ``(authenticator, username, claims)``,
        which may be async, returning a list or None (not known).

            c.ClusterOAuthenticator.slurm_accounts = "sacctmgr"
            c.ClusterOAuthenticator.slurm_accounts = {"alice": ["proj-a"], "bob": ["proj-a", "proj-b"]}
        """,
    )

    @validate("slurm_accounts")
    def _check_slurm_accounts(self, proposal):
        if isinstance(proposal.value, dict):
            return check_account_map(proposal.value)
        return proposal.value

    sacctmgr_command = List(
        Unicode(),
        DEPRECATED_SLURM_SETTINGS["sacctmgr_command"][0],
        config=True,
        help="""Deprecated and ignored: logins ask ``sacctmgr`` through the spawner's driver.

        The hub logs a warning at start-up when it is set. Configure the driver
        instead: ``c.LocalSlurmDriver.commands_path`` says where ``sacctmgr`` is
        found on the hub's host, and ``c.LocalSlurmDriver.query_command_prefix``
        wraps it (and ``squeue``, ``scontrol``) in a command such as ``sudo``::

            c.LocalSlurmDriver.commands_path = "/opt/slurm/bin"
            c.LocalSlurmDriver.query_command_prefix = ["sudo", "-n", "-u", "slurm", "--"]

        A ``sacctmgr`` reached only over ``ssh`` has no equivalent until a driver
        over SSH exists; give ``slurm_accounts`` a callable meanwhile.
        """,
    )

    sacctmgr_timeout = Float(
        DEPRECATED_SLURM_SETTINGS["sacctmgr_timeout"][0],
        config=True,
        help="""Deprecated and ignored: ``sacctmgr`` runs through the spawner's driver.

        Set ``c.LocalSlurmDriver.command_timeout`` (the time any Slurm command may
        take). A login waits for the answer at most 5 s, after which the accounts
        count as not known for this login (the query goes on and fills the cache).
        """,
    )

    accounts_cache_seconds = Float(
        DEPRECATED_SLURM_SETTINGS["accounts_cache_seconds"][0],
        config=True,
        help="""Deprecated and ignored: the login and the spawn page share one cache.

        Set ``c.SlurmSpawner.associations_ttl`` (default 300 s) instead::

            c.SlurmSpawner.associations_ttl = 300
        """,
    )


__all__ = ["DEPRECATED_SLURM_SETTINGS", "ClusterOAuthenticatorSettings"]
