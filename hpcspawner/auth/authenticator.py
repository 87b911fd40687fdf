"""ClusterOAuthenticator: log in with the site's identity provider, land on the cluster account.

A :class:`~oauthenticator.generic.GenericOAuthenticator` that

- configures itself from the provider's issuer URL (OpenID Connect discovery,
  :mod:`hpcspawner.auth.oidc`), with PKCE, the state check and auth_state on;
- maps the login to a POSIX account (:mod:`hpcspawner.auth.mapping`,
  :mod:`hpcspawner.accounts.posix`) and refuses a
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

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import (
    default,
    observe,
    validate,
)

from ..accounts import posix
from ..accounts.authstate import AUTH_STATE_KEY
from ..accounts.posix import slurm_service_users
from ..accounts.rules import (
    AccountRules,
    PosixAccount,
    check_account,
    rules_from_config,
)
from ..logtext import loggable
from ..slurm import association_choices
from ..spawner.shared import SharedSlurm, shared_slurm
from .handlers import (
    CLAIM_LOG_LIMIT,
    ClusterCallbackHandler,
    ClusterLoginHandler,
    NoClusterAccount,
    refusal_message,
    unavailable,
)
from .mapping import (
    MappingError,
    MappingRules,
    check_account_names,
    check_pin,
    check_username,
    claim_identity,
    compile_pattern,
    identity_pin,
    parse_username_map,
    transform,
    username_from_claims,
)
from .oidc import (
    DiscoveryError,
    ProviderMetadata,
    check_secure_url,
    discovery_url,
    parse_discovery,
)
from .settings import DEPRECATED_SLURM_SETTINGS, ClusterOAuthenticatorSettings

# ---------------------------------------------------------------- the authenticator


class ClusterOAuthenticator(ClusterOAuthenticatorSettings, GenericOAuthenticator):
    """Log in with the site's OpenID Connect provider and map the login to a cluster account.

    Select it with ``c.JupyterHub.authenticator_class = "hpc"``. Its options
    are declared in :mod:`hpcspawner.auth.settings`. Besides the options below it takes every option of oauthenticator's
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

    # ------------------------------------------------------------ the provider's defaults

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
        next caller tries again. Raises :class:`~hpcspawner.auth.oidc.DiscoveryError`.
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
        message = refusal_message(error.reason, identity, self.no_account_message)
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
                None, posix.lookup_posix_account, name
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
