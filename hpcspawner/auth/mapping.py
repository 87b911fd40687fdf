"""Who a login is on the cluster: identity provider claims -> cluster user name (pure).

The identity provider says who logged in (``preferred_username``, ``eppn``,
``email``, ...); the cluster knows POSIX accounts. :func:`username_from_claims`
maps one to the other in fixed steps, each optional except the first:

1. take the configured claim;
2. check that it is ASCII (before anything else: ``"\\u212aarl".lower()`` is ``"karl"``);
3. lower-case it;
4. strip one of the allowed e-mail domains (any other domain, and no domain, is refused);
5. rewrite it with a regular expression and a template;
6. look the result up in the admin's map;
7. check that it is a valid POSIX user name.

Every refusal is a :class:`MappingError` with a short fixed ``reason`` label and
a ``detail`` for the log. Which accounts a login may then use (uid range,
service accounts, shells) is :mod:`hpcspawner.accounts.rules`. The login's
provider identity ``(iss, sub)`` is pinned to the account it mapped to
(:func:`check_pin`). This module reads no file and asks no database
(``tests/unit/test_layers.py`` checks): looking the name up in the system's user
database and reading slurm.conf are :mod:`hpcspawner.accounts.posix`; reading the
username map file, and asking Slurm for the user's accounts (through the hub's
driver), are :class:`~hpcspawner.auth.ClusterOAuthenticator`'s.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..accounts.rules import (
    POSIX_NAME_MIXED_CASE_RE,
    POSIX_NAME_RE,
    MappingError,
)
from ..resources.options import NAME_RE

#: Names a login may never map to, whatever the user database says.
RESERVED_NAMES = frozenset({"root", "nobody"})

#: Reasons that mean "the claim itself is missing or unusable": the page does not blame the user.
CLAIM_REASONS = frozenset({"missing-claim", "invalid-claim"})


@dataclass(frozen=True)
class MappingRules:
    """How a login's claims become a cluster user name (built from the authenticator's config)."""

    #: Claim name, or a callable taking the claims and returning the value.
    claim: str | Callable[[Mapping], object] = "preferred_username"
    lowercase: bool = True
    #: E-mail style domains that are stripped (``alice@uni.example`` -> ``alice``).
    strip_domains: tuple[str, ...] = ()
    #: Regular expression the value must match in full, or None.
    pattern: re.Pattern | None = None
    #: ``str.format`` template over the match: ``{0}`` whole match, ``{1}``... groups, ``{name}``.
    template: str = "{0}"

    def __post_init__(self):
        check_template(self.template, self.pattern)


# ---------------------------------------------------------------- config checks


def compile_pattern(pattern: str) -> re.Pattern | None:
    """Compile the admin's rewrite pattern; raise ValueError naming the problem."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(
            f"username_rewrite_pattern {pattern!r} is not a regular expression: {e}"
        ) from None


def check_template(template: str, pattern: re.Pattern | None) -> None:
    """Check that ``template`` only uses the groups ``pattern`` has; raise ValueError."""
    groups = pattern.groups if pattern is not None else 0
    names = set(pattern.groupindex) if pattern is not None else set()
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise ValueError(f"username_rewrite_template {template!r}: {e}") from None
    if not fields:
        raise ValueError(
            f"username_rewrite_template {template!r} uses no group; use e.g. '{{0}}' or '{{user}}'"
        )
    for name in fields:
        if name.isdigit():
            if int(name) > groups:
                raise ValueError(
                    f"username_rewrite_template {template!r} uses group {name}, "
                    f"but the pattern has {groups} group(s)"
                )
        elif name not in names:
            raise ValueError(
                f"username_rewrite_template {template!r} uses {{{name}}}, which is not "
                "'{0}', a group number or a named group of username_rewrite_pattern"
            )


# ---------------------------------------------------------------- claims -> user name


def claim_identity(claims: Mapping, claim: str | Callable[[Mapping], object]) -> str:
    """The login's identity: the value of the configured claim, as sent."""
    what = "the username_claim callable" if callable(claim) else f"claim {claim!r}"
    value = claim(claims) if callable(claim) else claims.get(claim)
    if value is None or value == "":
        raise MappingError("missing-claim", f"the identity provider sent no {what}")
    if not isinstance(value, str):
        raise MappingError(
            "invalid-claim", f"{what} is a {type(value).__name__}, not a string: {value!r:.60}"
        )
    return value


def check_ascii(value: str) -> str:
    """Refuse a claim that is not ASCII, before any case folding.

    ``str.lower`` folds some non-ASCII letters to ASCII ones (U+212A KELVIN SIGN
    to ``k``), so ``"\\u212aarl"`` would become the account ``karl``.
    """
    if not value.isascii():
        raise MappingError(
            "non-ascii-claim", f"{ascii(value):.80} is not ASCII (cluster user names are ASCII)"
        )
    return value


def transform(identity: str, rules: MappingRules) -> str:
    """Steps 2-5: ASCII only, lower-case, strip an allowed domain, rewrite."""
    value = check_ascii(identity)
    value = value.lower() if rules.lowercase else value
    if rules.strip_domains:
        allowed = {d.lower() for d in rules.strip_domains}
        if "@" not in value:
            raise MappingError(
                "unscoped-claim",
                f"{identity!r} has no domain, and only logins from "
                f"{' or '.join(sorted(allowed))} are accepted",
            )
        local, _, domain = value.rpartition("@")
        if domain.lower() not in allowed:
            raise MappingError(
                "foreign-domain",
                f"{identity!r} is not from {' or '.join(sorted(allowed))}",
            )
        value = local
    if rules.pattern is not None:
        match = rules.pattern.fullmatch(value)
        if match is None:
            raise MappingError("no-match", f"{value!r} does not match username_rewrite_pattern")
        value = rules.template.format(
            match.group(0), *match.groups(default=""), **match.groupdict(default="")
        )
    return value


def check_username(name: object, *, lowercase: bool = True) -> str:
    """Step 6: ``name`` must be a valid POSIX user name that a login may use."""
    regex = POSIX_NAME_RE if lowercase else POSIX_NAME_MIXED_CASE_RE
    if isinstance(name, str):
        check_ascii(name)
    if not isinstance(name, str) or not regex.fullmatch(name):
        shown = repr(name)[:66]
        raise MappingError(
            "invalid-username",
            f"{shown} is not a valid cluster user name (letters, digits, '_', '.', '-'; "
            "not starting with a digit, '.' or '-'; at most 32 characters)",
        )
    if name in RESERVED_NAMES:
        raise MappingError("reserved-username", f"logins may not map to {name!r}")
    return name


def username_from_claims(
    claims: Mapping, rules: MappingRules, username_map: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """Map a login's claims to ``(identity, cluster user name)``; raise :class:`MappingError`.

    ``username_map`` (identity after the transforms -> user name), when given,
    must contain the login: a login missing from it has no account.
    """
    identity = claim_identity(claims, rules.claim)
    name = transform(identity, rules)
    if username_map is not None:
        if name not in username_map:
            raise MappingError("unmapped", f"{name!r} is not in the username map")
        name = username_map[name]
    return identity, check_username(name, lowercase=rules.lowercase)


# ---------------------------------------------------------------- the username map file


def parse_username_map(text: str, *, lowercase: bool = True) -> dict[str, str]:
    """Parse a username map: a JSON object, or lines ``identity username``.

    In the line format, ``#`` starts a comment and blank lines are ignored. With
    ``lowercase`` the identities are lower-cased, as the transformed claims are.
    Raises ValueError naming the bad entry.
    """
    entries: list[tuple[str, object, str]] = []
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError("the JSON must be an object of identity -> username")
        entries = [(key, value, f"key {key!r}") for key, value in data.items()]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2:
                raise ValueError(
                    f"line {number}: expected 'identity username', got {line.strip()!r}"
                )
            entries.append((words[0], words[1], f"line {number}"))
    mapping: dict[str, str] = {}
    for identity, username, where in entries:
        try:
            check_username(username, lowercase=lowercase)
        except MappingError as e:
            raise ValueError(f"{where}: {e.detail}") from None
        key = identity.lower() if lowercase else identity
        if key in mapping and mapping[key] != username:
            raise ValueError(f"{where}: {identity!r} is mapped twice")
        mapping[key] = username
    return mapping


# ---------------------------------------------------------------- pinning the provider identity


def identity_pin(issuer: str, claims: Mapping) -> dict[str, str | None]:
    """What ``auth_state`` keeps of the provider identity: ``{"iss": ..., "sub": ...}``.

    ``sub`` is the provider's stable identifier of the person; a ``sub`` that is
    missing or not a string is kept as None (nothing to pin).
    """
    subject = claims.get("sub") if isinstance(claims, Mapping) else None
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)
    return {"iss": issuer, "sub": subject if isinstance(subject, str) and subject else None}


def check_pin(pinned: Mapping | None, login: Mapping, username: str) -> None:
    """Refuse a login that lands on an account pinned to another provider identity.

    ``pinned`` is the account's stored ``auth_state["hpcspawner"]`` (None or without
    ``sub``: not pinned yet, e.g. a user from before pinning, and this login pins it);
    ``login`` is :func:`identity_pin` of this login. Raises :class:`MappingError`
    (``identity-changed``).
    """
    if not pinned or not pinned.get("sub"):
        return
    before = (pinned.get("iss"), pinned.get("sub"))
    now = (login.get("iss"), login.get("sub"))
    if before != now:
        raise MappingError(
            "identity-changed",
            f"account {username!r} belongs to sub {before[1]!r} of {before[0]!r}, "
            f"this login is sub {now[1]!r} of {now[0]!r}",
        )


# ---------------------------------------------------------------- Slurm accounts


def check_account_map(value: Mapping) -> dict[str, tuple[str, ...]]:
    """Validate ``{username: [account, ...]}``; raise ValueError naming the bad entry."""
    checked = {}
    for username, accounts in value.items():
        if not isinstance(username, str):
            raise ValueError(f"slurm_accounts: key {username!r} is not a user name")
        if isinstance(accounts, str) or not isinstance(accounts, list | tuple):
            raise ValueError(f"slurm_accounts[{username!r}] must be a list of account names")
        checked[username] = check_account_names(accounts, f"slurm_accounts[{username!r}]")
    return checked


def check_account_names(accounts, where: str) -> tuple[str, ...]:
    for account in accounts:
        if not isinstance(account, str) or not NAME_RE.fullmatch(account):
            raise ValueError(f"{where}: {account!r} is not a Slurm account name")
    return tuple(dict.fromkeys(accounts))


__all__ = [
    "CLAIM_REASONS",
    "MappingError",
    "MappingRules",
    "check_account_map",
    "check_account_names",
    "check_ascii",
    "check_pin",
    "check_template",
    "check_username",
    "claim_identity",
    "compile_pattern",
    "identity_pin",
    "parse_username_map",
    "transform",
    "username_from_claims",
]
