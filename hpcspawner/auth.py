"""ClusterOAuthenticator: log in with the site's identity provider, land on the cluster account.

A :class:`~oauthenticator.generic.GenericOAuthenticator` that

- configures itself from the provider's issuer URL (OpenID Connect discovery,
  :mod:`hpcspawner.oidc`), with PKCE, the state check and auth_state on;
- maps the login to a POSIX account (:mod:`hpcspawner.identity`) and refuses a
  login without one with a page that says what to do;
- tells the spawner, through ``auth_state["hpcspawner"]``, who the user is on
  the cluster and which Slurm accounts they may charge;
- refreshes an expired access token with the refresh token, and ends the
  session when the provider or the cluster no longer knows the user.
"""

from __future__ import annotations

import asyncio
import os
import time
from inspect import isawaitable

from jupyterhub.traitlets import Callable
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    Unicode,
    Union,
    default,
    observe,
    validate,
)

from .accountrules import (
    DEFAULT_MAX_UID,
    DEFAULT_MIN_UID,
    DEFAULT_REFUSED_NAMES,
    DEFAULT_REFUSED_SHELLS,
    AccountRules,
    check_account,
    rules_from_config,
)
from .identity import (
    AUTH_STATE_KEY,
    CLAIM_REASONS,
    MappingError,
    MappingRules,
    PosixAccount,
    check_account_map,
    check_account_names,
    check_pin,
    check_username,
    claim_identity,
    compile_pattern,
    identity_pin,
    lookup_posix_account,
    parse_username_map,
    slurm_service_users,
    transform,
    username_from_claims,
)
from .loginhandlers import (
    CLAIM_LOG_LIMIT,
    ClusterCallbackHandler,
    ClusterLoginHandler,
    NoClusterAccount,
    unavailable,
)
from .logtext import loggable
from .oidc import (
    DiscoveryError,
    ProviderMetadata,
    check_issuer,
    check_secure_url,
    discovery_url,
    parse_discovery,
)
from .sharedslurm import SharedSlurm, shared_slurm
from .slurm import association_choices

#: What the page says when the provider sent no usable identity (not the user's fault).
CLAIM_PROBLEM_MESSAGE = (
    "The identity provider did not tell this hub who you are. "
    "Please contact the hub's administrators."
)
#: Reasons of :mod:`hpcspawner.accountrules` (and root/nobody): the account exists but is not
#: a person's; applying for an account would not help.
ACCOUNT_RULE_REASONS = frozenset(
    {"reserved-username", "service-account", "system-account", "high-uid", "no-login-shell"}
)
#: What the page says for those.
SYSTEM_ACCOUNT_MESSAGE = (
    "The cluster account for {identity} is a system or service account, which cannot be "
    "used on this hub. If you think this is wrong, please contact the hub's administrators."
)
#: What the page says when the account belongs to another identity at the provider.
IDENTITY_CHANGED_MESSAGE = (
    "The cluster account for {identity} belongs to another identity at the identity "
    "provider. Please contact the hub's administrators."
)
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


# ---------------------------------------------------------------- the authenticator


class ClusterOAuthenticator(GenericOAuthenticator):
    """Log in with the site's OpenID Connect provider and map the login to a cluster account.

    Select it with ``c.JupyterHub.authenticator_class = "hpc"``. Besides the
    options below it takes every option of oauthenticator's
    ``GenericOAuthenticator`` (``client_id``, ``client_secret``,
    ``oauth_callback_url``, ``allowed_groups``, ``admin_groups``,
    ``manage_groups``, ``auth_state_groups_key``, ...). Its defaults differ:
    ``username_claim`` is ``preferred_username``, ``scope`` is
    ``["openid", "profile", "email"]``, ``basic_auth`` is True (the client
    authenticates to the token endpoint with HTTP Basic, which every provider
    must support), ``enable_auth_state`` is True (set ``JUPYTERHUB_CRYPT_KEY``),
    and the login button reads "Sign in with your institution" (``login_service``).
    """

    login_handler = ClusterLoginHandler
    callback_handler = ClusterCallbackHandler

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

    @validate("oauth_callback_url")
    def _check_callback_url(self, proposal):
        if proposal.value:
            check_secure_url(proposal.value, "oauth_callback_url")
        return proposal.value

    @default("login_service")
    def _default_login_service(self):
        return "your institution"

    @default("scope")
    def _default_scope(self):
        return ["openid", "profile", "email"]

    @default("basic_auth")
    def _default_basic_auth(self):
        # client_secret_basic: every provider must support it (RFC 6749 section 2.3.1), and
        # some (authlib's refresh grant) accept nothing else
        return True

    @default("enable_auth_state")
    def _default_enable_auth_state(self):
        # the spawner learns the user's cluster identity and accounts from auth_state
        return True

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

    # ------------------------------------------------------------ set-up

    _rules: MappingRules | None = None
    _account_rules: AccountRules | None = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._metadata: ProviderMetadata | None = None
        self._discovery: asyncio.Future | None = None
        self._startup_discovery: asyncio.Task | None = None
        self._map: dict[str, str] | None = None
        self._map_mtime: int | None = None
        # fail at start-up, not at the first login
        if not self.issuer and not (self.authorize_url and self.token_url):
            raise ValueError(
                "ClusterOAuthenticator needs c.ClusterOAuthenticator.issuer "
                "(or authorize_url, token_url and userdata_url)"
            )
        if self.username_map_file and self.username_lookup_hook:
            raise ValueError("set username_map_file or username_lookup_hook, not both")
        self._rules = self._build_rules()
        self._service_users = slurm_service_users()
        self._account_rules = self._build_account_rules()
        self._username_map()
        self._warn_deprecated()

    def _warn_deprecated(self) -> None:
        for name, (default_value, instead) in DEPRECATED_SLURM_SETTINGS.items():
            if getattr(self, name) != default_value:
                self.log.warning(
                    "c.ClusterOAuthenticator.%s is deprecated and ignored: logins ask Slurm "
                    "through the spawner's driver; set %s instead",
                    name,
                    instead,
                )

    @observe(
        "username_claim",
        "username_lowercase",
        "username_strip_domains",
        "username_rewrite_pattern",
        "username_rewrite_template",
    )
    def _mapping_config_changed(self, change):
        self._rules = None

    @observe("min_uid", "max_uid", "refused_usernames", "refused_shells")
    def _account_config_changed(self, change):
        self._account_rules = None

    @property
    def account_rules(self) -> AccountRules:
        """Which accounts a login may map to (the settings above plus slurm.conf's users)."""
        if self._account_rules is None:
            self._account_rules = self._build_account_rules()
        return self._account_rules

    def _build_account_rules(self) -> AccountRules:
        """Raise ValueError when max_uid is not above min_uid."""
        return rules_from_config(
            min_uid=self.min_uid,
            max_uid=self.max_uid,
            refused_usernames=self.refused_usernames,
            refused_shells=self.refused_shells,
            service_users=getattr(self, "_service_users", ()),
        )

    @property
    def mapping_rules(self) -> MappingRules:
        """The username mapping rules built from the config."""
        if self._rules is None:
            self._rules = self._build_rules()
        return self._rules

    def _build_rules(self) -> MappingRules:
        """Raise ValueError when the rewrite template uses groups the pattern lacks."""
        return MappingRules(
            claim=self.username_claim,
            lowercase=self.username_lowercase,
            strip_domains=tuple(self.username_strip_domains),
            pattern=compile_pattern(self.username_rewrite_pattern),
            template=self.username_rewrite_template,
        )

    def normalize_username(self, username):
        if self.username_lowercase:
            return super().normalize_username(username)
        return self.username_map.get(username, username)

    # ------------------------------------------------------------ discovery

    def get_handlers(self, app):
        if self.issuer:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop yet: the first login discovers
            else:
                self._startup_discovery = loop.create_task(self._discover_at_startup())
        return super().get_handlers(app)

    async def _discover_at_startup(self):
        try:
            await self.discover()
        except DiscoveryError as e:
            self.log.error("OIDC discovery failed (retried at the next login): %s", e)

    async def discover(self) -> ProviderMetadata | None:
        """Fetch and apply the issuer's discovery document, once; None without an issuer.

        Concurrent callers share one request; a failure is not cached, so the
        next caller tries again. Raises :class:`~hpcspawner.oidc.DiscoveryError`.
        """
        if not self.issuer:
            return None
        if self._metadata is not None:
            return self._metadata
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.ensure_future(self._fetch_discovery())
        return await asyncio.shield(self._discovery)

    async def require_discovery(self) -> None:
        """:meth:`discover`, or a 503 page that says the provider cannot be reached."""
        try:
            await self.discover()
        except DiscoveryError as e:
            self.log.error("OIDC discovery failed: %s", e)
            raise unavailable(
                "The identity provider cannot be reached; please try again in a few minutes."
            ) from None

    async def _fetch_discovery(self) -> ProviderMetadata:
        url = discovery_url(self.issuer)
        try:
            response = await self.httpfetch(
                url,
                label="fetching the OIDC discovery document",
                parse_json=False,
                method="GET",
                headers={"Accept": "application/json"},
                validate_cert=self.validate_server_cert,
            )
        except (HTTPClientError, OSError) as e:
            raise DiscoveryError(f"could not fetch {url}: {e}") from None
        metadata = parse_discovery(
            response.body, self.issuer, need_userinfo=not self.userdata_from_id_token
        )
        self._apply_metadata(metadata)
        self._metadata = metadata
        return metadata

    def _apply_metadata(self, metadata: ProviderMetadata) -> None:
        if not self.authorize_url:
            self.authorize_url = metadata.authorization_endpoint
        if not self.token_url:
            self.token_url = metadata.token_endpoint
        if not self.userdata_url and not self.userdata_from_id_token:
            self.userdata_url = metadata.userinfo_endpoint
        if metadata.pkce_s256_refused and self.enable_pkce:
            self.log.warning(
                "%s lists PKCE methods %s without S256; logins may fail (enable_pkce is on)",
                metadata.issuer,
                list(metadata.code_challenge_methods_supported),
            )
        if metadata.basic_auth_refused and self.basic_auth:
            self.log.warning(
                "%s lists client authentication methods %s without client_secret_basic; "
                "set c.ClusterOAuthenticator.basic_auth = False",
                metadata.issuer,
                list(metadata.token_endpoint_auth_methods_supported),
            )
        self.log.info(
            "OIDC discovery for %s: authorize %s, token %s, userinfo %s",
            metadata.issuer,
            self.authorize_url,
            self.token_url,
            self.userdata_url or "(from the id token)",
        )

    # ------------------------------------------------------------ login -> cluster account

    def user_info_to_username(self, user_info):
        # the login's identity; update_auth_model replaces it by the cluster user name
        try:
            return claim_identity(user_info, self.username_claim)
        except MappingError as e:
            raise self._no_account(e, identity="", claims=user_info) from None

    def _no_account(self, error: MappingError, *, identity: str, claims) -> NoClusterAccount:
        if error.reason in CLAIM_REASONS:
            message = CLAIM_PROBLEM_MESSAGE
        elif error.reason == "identity-changed":
            message = IDENTITY_CHANGED_MESSAGE.format(identity=identity)
        elif error.reason in ACCOUNT_RULE_REASONS:
            message = SYSTEM_ACCOUNT_MESSAGE.format(identity=identity)
        else:
            message = self.no_account_message.format(identity=identity)
        subject = claims.get("sub") if isinstance(claims, dict) else None
        return NoClusterAccount(
            error, identity=identity, message=message, subject=str(subject or "")
        )

    def _username_map(self) -> dict[str, str] | None:
        """The username map file, re-read when it changes (None when not configured)."""
        path = self.username_map_file
        if not path:
            return None
        try:
            mtime = os.stat(path).st_mtime_ns
            if self._map is not None and mtime == self._map_mtime:
                return self._map
            with open(path, encoding="utf-8") as f:
                mapping = parse_username_map(f.read(), lowercase=self.username_lowercase)
        except (OSError, ValueError) as e:
            if self._map is None:
                raise ValueError(f"username_map_file {path}: {e}") from None
            self.log.error("Keeping the previous username map: %s: %s", path, e)
            return self._map
        self._map, self._map_mtime = mapping, mtime
        self.log.info("Loaded username map %s (%d entries)", path, len(mapping))
        return mapping

    async def cluster_account(self, claims: dict) -> tuple[str, PosixAccount]:
        """Map a login's claims to ``(identity, cluster account)``; raise :class:`NoClusterAccount`."""
        rules = self.mapping_rules
        identity = ""
        try:
            identity = claim_identity(claims, rules.claim)
            if self.username_lookup_hook is not None:
                login = transform(identity, rules)
                name = self.username_lookup_hook(self, login, claims)
                if isawaitable(name):
                    name = await name
                if name is None:
                    raise MappingError(
                        "unmapped", f"username_lookup_hook found no account for {login!r}"
                    )
                name = check_username(name, lowercase=rules.lowercase)
            else:
                identity, name = username_from_claims(claims, rules, self._username_map())
            account_rules = self.account_rules
            check_account(PosixAccount(name), account_rules)  # the names, before asking NSS
            account = await asyncio.get_running_loop().run_in_executor(
                None, lookup_posix_account, name
            )
            if account is not None:
                # uid and shell of the account the spawner's driver would run as
                check_account(account, account_rules)
            if not self.require_posix_account:
                return identity, PosixAccount(name)
            if account is None:
                raise MappingError("no-account", f"there is no user {name!r} on this host")
            return identity, account
        except MappingError as e:
            raise self._no_account(e, identity=identity, claims=claims) from None

    async def slurm_accounts_of(self, username: str, claims: dict) -> list[str] | None:
        """The Slurm accounts ``username`` may charge, or None when not known."""
        source = self.slurm_accounts
        if callable(source):
            accounts = source(self, username, claims)
            if isawaitable(accounts):
                accounts = await accounts
            if accounts is None:
                return None
            return list(check_account_names(accounts, "slurm_accounts callable"))
        if isinstance(source, dict):
            return list(source.get(username, ()))
        if source == "sacctmgr":
            return await self._sacctmgr_accounts(username)
        return None

    @property
    def shared_slurm(self) -> SharedSlurm:
        """The hub's one driver and cluster cache, the ones its spawners use."""
        return shared_slurm(
            self.config, self.log, spawner_class=getattr(self.parent, "spawner_class", None)
        )

    async def _sacctmgr_accounts(self, username: str) -> list[str] | None:
        # the hub's cache of associations (the spawn page's too), filled through the driver;
        # None: no accounting, or sacctmgr failed or is slow (ClusterInfo logged why)
        associations = await self.shared_slurm.cluster_info.associations(username)
        if associations is None:
            self.log.info("Slurm accounts of %s are not known", username)
            return None
        accounts, _ = association_choices(associations)
        return list(accounts)

    async def update_auth_model(self, auth_model):
        """Replace the login's identity by the cluster account; record it in auth_state."""
        auth_state = auth_model["auth_state"]
        claims = auth_state.get(self.user_auth_state_key) or {}
        identity, account = await self.cluster_account(claims)
        self.log.debug(
            "Login %s is cluster user %s (uid %s)",
            loggable(identity, CLAIM_LOG_LIMIT),
            account.username,
            account.uid,
        )
        auth_model["name"] = account.username
        auth_model["admin"] = True if account.username in self.admin_users else None
        accounts = await self.slurm_accounts_of(account.username, claims)
        auth_state[AUTH_STATE_KEY] = {
            "username": account.username,
            "uid": account.uid,
            "gid": account.gid,
            "groups": list(account.groups),
            "accounts": accounts,
            **identity_pin(self.pin_issuer, claims),
        }
        return auth_model

    @property
    def pin_issuer(self) -> str:
        """The issuer an account's ``sub`` is pinned with: ``issuer`` (or the token URL)."""
        return self.issuer or self.token_url

    async def check_pinned_identity(self, handler, auth_model: dict) -> None:
        """Refuse a login whose account is pinned to another provider identity.

        The first login of an account pins ``(iss, sub)`` in its auth_state (so does
        the next login of a user from before pinning); a later login that maps to
        the same account with another ``sub`` (a renamed ``preferred_username``, a
        reused e-mail address) gets the "No cluster account" page (reason
        ``identity-changed``). Raises :class:`NoClusterAccount`.
        """
        find_user = getattr(handler, "find_user", None)
        if find_user is None:
            return
        name = self.normalize_username(auth_model["name"])
        user = find_user(name)
        if user is None:
            return
        stored = await user.get_auth_state()
        auth_state = auth_model["auth_state"]
        claims = auth_state.get(self.user_auth_state_key) or {}
        try:
            check_pin((stored or {}).get(AUTH_STATE_KEY), auth_state[AUTH_STATE_KEY], name)
        except MappingError as e:
            error = MappingError(
                e.reason,
                f"{e.detail}; if the account really changed hands, delete the user {name!r} "
                "in the hub's admin panel (or DELETE /hub/api/users/<name>): the next login "
                "pins it again",
            )
            identity = claim_identity(claims, self.username_claim)
            raise self._no_account(error, identity=identity, claims=claims) from None

    async def build_auth_state_dict(self, token_info, user_info):
        auth_state = super().build_auth_state_dict(token_info, user_info)
        if isawaitable(auth_state):
            auth_state = await auth_state
        expires_in = token_info.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            auth_state["expires_at"] = time.time() + expires_in
        return auth_state

    async def authenticate(self, handler, data=None, **kwargs):
        await self.require_discovery()
        auth_model = await super().authenticate(handler, data, **kwargs)
        await self.check_pinned_identity(handler, auth_model)
        claims = auth_model["auth_state"].get(self.user_auth_state_key) or {}
        self.log.info(
            "Login %s (sub %s) is cluster user %s",
            loggable(claim_identity(claims, self.username_claim), CLAIM_LOG_LIMIT),
            loggable(claims.get("sub"), CLAIM_LOG_LIMIT),
            auth_model["name"],
        )
        return auth_model

    # ------------------------------------------------------------ keeping the session valid

    async def refresh_user(self, user, handler=None, **kwargs):
        """Refresh the user's tokens and cluster identity.

        An expired access token is exchanged for a new one with the refresh token
        (without first trying it). The session ends (the user must log in again)
        when that fails, when the login no longer maps to the same cluster user,
        or when the user is no longer allowed (e.g. left the allowed group).
        """
        if not self.enable_auth_state:
            return True
        try:
            await self.discover()
        except DiscoveryError as e:
            self.log.warning("Not refreshing %s: %s", user.name, e)
            return True
        auth_state = await user.get_auth_state()
        try:
            if self.refresh_user_hook is None and _expired(auth_state):
                auth_model = await self._refresh_expired_token(user, handler, auth_state)
            else:
                auth_model = await super().refresh_user(user, handler, **kwargs)
        except NoClusterAccount as e:
            self.log.warning("Ending the session of %s: %s", user.name, e.log_message % e.args)
            return False
        if not isinstance(auth_model, dict):
            return auth_model
        try:
            pin = (auth_model.get("auth_state") or {}).get(AUTH_STATE_KEY) or {}
            check_pin((auth_state or {}).get(AUTH_STATE_KEY), pin, user.name)
        except MappingError as e:
            self.log.warning("Ending the session of %s: %s", user.name, loggable(e.detail))
            return False
        return await self._still_allowed(user, auth_model)

    async def _refresh_expired_token(self, user, handler, auth_state):
        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:
            self.log.info("Access token of %s expired and there is no refresh token", user.name)
            return False
        self.log.info("Refreshing the expired access token of %s", user.name)
        try:
            token_info = await self.get_token_info(
                handler, self.build_refresh_token_request_params(refresh_token)
            )
        except (HTTPClientError, web.HTTPError, OSError) as e:
            self.log.info("Refreshing the access token of %s failed: %s", user.name, e)
            return False
        if not token_info.get("refresh_token"):
            token_info["refresh_token"] = refresh_token
        try:
            return await self._token_to_auth_model(token_info)
        except HTTPClientError as e:
            if 400 <= e.code < 500:
                self.log.info("The refreshed access token of %s was refused: %s", user.name, e)
                return False
            raise

    async def _still_allowed(self, user, auth_model):
        if auth_model["name"] != user.name:
            self.log.warning(
                "Ending the session of %s: the login now maps to %s", user.name, auth_model["name"]
            )
            return False
        blocked_pass = self.check_blocked_users(user.name, auth_model)
        if isawaitable(blocked_pass):
            blocked_pass = await blocked_pass
        allowed = self.allow_all or self.check_allowed(user.name, auth_model)
        if isawaitable(allowed):
            allowed = await allowed
        if not (blocked_pass and allowed):
            self.log.warning("Ending the session of %s: no longer allowed", user.name)
            return False
        return auth_model


def _expired(auth_state) -> bool:
    expires_at = (auth_state or {}).get("expires_at")
    return isinstance(expires_at, int | float) and time.time() >= expires_at


__all__ = ["ClusterOAuthenticator", "NoClusterAccount"]
