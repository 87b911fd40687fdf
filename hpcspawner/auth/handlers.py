"""The login pages of :class:`hpcspawner.auth.ClusterOAuthenticator`.

- :class:`ClusterLoginHandler` sends the browser to the provider once its
  endpoints are known (OIDC discovery), or shows a 503 page when it cannot be
  reached;
- :class:`ClusterCallbackHandler` finishes the login, and renders the packaged
  ``no_cluster_account.html`` (403) for a login without a cluster account;
- :class:`NoClusterAccount` is that refusal, as an HTTP error.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler
from tornado import web

from ..logtext import loggable
from .mapping import CLAIM_REASONS, MappingError

NO_ACCOUNT_TEMPLATE = "no_cluster_account.html"
#: How much of one claim value (identity, sub) reaches the log, escaped.
CLAIM_LOG_LIMIT = 200
#: The auth room's templates (``hpcspawner/auth/templates``, shipped as package data).
_TEMPLATES = Path(__file__).resolve().parent / "templates"

#: What the page says when the provider sent no usable identity (not the user's fault).
CLAIM_PROBLEM_MESSAGE = (
    "The identity provider did not tell this hub who you are. "
    "Please contact the hub's administrators."
)
#: Reasons of :mod:`hpcspawner.accounts.rules` (and root/nobody): the account exists but is not
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


def refusal_message(reason: str, identity: str, no_account_message: str) -> str:
    """What the "No cluster account" page says for a refusal with ``reason``.

    ``no_account_message`` is the admin's text for a login that has no account.
    """
    if reason in CLAIM_REASONS:
        return CLAIM_PROBLEM_MESSAGE
    if reason == "identity-changed":
        return IDENTITY_CHANGED_MESSAGE.format(identity=identity)
    if reason in ACCOUNT_RULE_REASONS:
        return SYSTEM_ACCOUNT_MESSAGE.format(identity=identity)
    return no_account_message.format(identity=identity)


class NoClusterAccount(web.HTTPError):
    """403: the login maps to no usable cluster account.

    The callback handler renders it as the "No cluster account" page; anywhere
    else JupyterHub's error page shows :attr:`jupyterhub_message`. Its log message
    carries the claims escaped (:func:`~hpcspawner.logtext.loggable`): they come from
    the identity provider.
    """

    def __init__(self, error: MappingError, *, identity: str, message: str, subject: str = ""):
        super().__init__(
            403,
            "login of %s (sub %s) refused (%s): %s",
            loggable(identity or "?", CLAIM_LOG_LIMIT),
            loggable(subject or "?", CLAIM_LOG_LIMIT),
            error.reason,
            loggable(error.detail),
        )
        self.error = error
        self.identity = identity
        self.jupyterhub_message = message


def unavailable(message: str) -> web.HTTPError:
    """503 with a message for the user (the provider cannot be reached)."""
    error = web.HTTPError(503, "%s", message)
    error.jupyterhub_message = message
    return error


class ClusterLoginHandler(OAuthLoginHandler):
    """Redirect to the provider, once its endpoints are known."""

    async def get(self):
        await self.authenticator.require_discovery()
        super().get()


_overlays: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _with_package_templates(env: Environment) -> Environment:
    """The hub's template environment, falling back to hpcspawner's templates.

    Admins' ``c.JupyterHub.template_paths`` come first, so they can override ours.
    """
    overlay = _overlays.get(env)
    if overlay is None:
        loader = ChoiceLoader([env.loader, FileSystemLoader(str(_TEMPLATES))])
        overlay = _overlays[env] = env.overlay(loader=loader)
    return overlay


class ClusterCallbackHandler(OAuthCallbackHandler):
    """The OAuth callback; a login without a cluster account gets a page that says what to do."""

    async def get(self):
        try:
            await super().get()
        except NoClusterAccount as e:
            self.log.warning("%s", e.log_message % e.args)
            self.set_status(403)
            html = await self.render_template(
                NO_ACCOUNT_TEMPLATE,
                message=e.jupyterhub_message,
                identity=e.identity,
                reason=e.error.reason,
                account_request_url=self.authenticator.no_account_url,
            )
            self.finish(html)

    def get_template(self, name, sync=False):
        env = self.settings["jinja2_env_sync" if sync else "jinja2_env"]
        return _with_package_templates(env).get_template(name)


__all__ = [
    "ACCOUNT_RULE_REASONS",
    "CLAIM_LOG_LIMIT",
    "CLAIM_PROBLEM_MESSAGE",
    "IDENTITY_CHANGED_MESSAGE",
    "NO_ACCOUNT_TEMPLATE",
    "ClusterCallbackHandler",
    "ClusterLoginHandler",
    "NoClusterAccount",
    "SYSTEM_ACCOUNT_MESSAGE",
    "refusal_message",
    "unavailable",
]
