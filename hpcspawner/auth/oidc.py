"""OpenID Connect discovery: the provider's metadata document, checked (pure).

An OIDC provider publishes its endpoints at
``<issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0).
:func:`parse_discovery` checks that document against the issuer the admin
configured and returns the endpoints the authenticator needs. Fetching it is
:class:`~hpcspawner.auth.ClusterOAuthenticator`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..loopback import is_loopback

WELL_KNOWN_PATH = "/.well-known/openid-configuration"


class DiscoveryError(ValueError):
    """The issuer or its discovery document cannot be used; the message names the fix."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What the hub uses from a provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    jwks_uri: str = ""
    scopes_supported: tuple[str, ...] = ()
    #: Empty when the provider does not say (PKCE is still sent: unknown parameters are ignored).
    code_challenge_methods_supported: tuple[str, ...] = ()
    #: Empty when the provider does not say (then client_secret_basic, per the specification).
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()

    @property
    def pkce_s256_refused(self) -> bool:
        """True when the provider lists its PKCE methods and S256 is not among them."""
        methods = self.code_challenge_methods_supported
        return bool(methods) and "S256" not in methods

    @property
    def basic_auth_refused(self) -> bool:
        """True when the provider lists its client authentication methods without HTTP Basic."""
        methods = self.token_endpoint_auth_methods_supported
        return bool(methods) and "client_secret_basic" not in methods


def check_secure_url(url: str, what: str) -> str:
    """``url`` must be absolute https, or http on the loopback interface (tests, demos)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DiscoveryError(f"{what} {url!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback(url):
        raise DiscoveryError(
            f"{what} {url!r} must use https (plain http is allowed on 127.0.0.1 and localhost only)"
        )
    return url


def check_issuer(issuer: str) -> str:
    """Check the configured issuer URL and return it without a trailing slash."""
    check_secure_url(issuer, "issuer")
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        raise DiscoveryError(f"issuer {issuer!r} must not have a query or fragment")
    return issuer.rstrip("/")


def discovery_url(issuer: str) -> str:
    """Where ``issuer`` publishes its metadata."""
    return check_issuer(issuer) + WELL_KNOWN_PATH


def parse_discovery(
    document: str | bytes | Mapping, issuer: str, *, need_userinfo: bool = True
) -> ProviderMetadata:
    """Check a discovery document fetched from ``issuer``; raise :class:`DiscoveryError`.

    The document must name the same issuer (a trailing slash aside: OpenID
    Connect Discovery section 4.3), and every endpoint must be https (http only
    when the issuer itself is on the loopback interface).
    """
    expected = check_issuer(issuer)
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError as e:
            raise DiscoveryError(f"the discovery document of {expected} is not JSON: {e}") from None
    if not isinstance(document, Mapping):
        raise DiscoveryError(f"the discovery document of {expected} is not a JSON object")
    reported = document.get("issuer")
    if not isinstance(reported, str) or reported.rstrip("/") != expected:
        raise DiscoveryError(
            f"the provider at {expected} says its issuer is {reported!r}; "
            "set c.ClusterOAuthenticator.issuer to exactly that URL"
        )
    required = ["authorization_endpoint", "token_endpoint"]
    if need_userinfo:
        required.append("userinfo_endpoint")
    values: dict[str, str] = {}
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "end_session_endpoint",
        "jwks_uri",
    ):
        url = document.get(key)
        if url in (None, ""):
            if key in required:
                raise DiscoveryError(f"the discovery document of {expected} has no {key}")
            continue
        if not isinstance(url, str):
            raise DiscoveryError(f"{key} in the discovery document of {expected} is not a URL")
        if is_loopback(expected):
            check_secure_url(url, key)
        elif urlsplit(url).scheme != "https":
            raise DiscoveryError(f"{key} {url!r} of {expected} must use https")
        values[key] = url
    return ProviderMetadata(
        issuer=expected,
        scopes_supported=_strings(document.get("scopes_supported")),
        code_challenge_methods_supported=_strings(document.get("code_challenge_methods_supported")),
        token_endpoint_auth_methods_supported=_strings(
            document.get("token_endpoint_auth_methods_supported")
        ),
        **values,
    )


def _strings(value) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(item for item in value if isinstance(item, str))


__all__ = [
    "WELL_KNOWN_PATH",
    "DiscoveryError",
    "ProviderMetadata",
    "check_issuer",
    "check_secure_url",
    "discovery_url",
    "is_loopback",
    "parse_discovery",
]
