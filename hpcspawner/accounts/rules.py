"""Which POSIX accounts a login may map to and a server may run as (pure, no I/O).

A login that maps to a system or service account must not get a server: Slurm's
own ``SlurmUser`` is a Slurm super-user, ``root`` is root, and accounts such as
``munge``, ``daemon`` or ``bin`` own files the whole cluster trusts. The same
rules are applied twice, by the authenticator at login and by the spawner
before it submits or cancels anything as the user (whatever authenticator
the hub uses):

- the name is not one of the refused names (``root``, ``nobody``, Slurm's and
  munge's users, and the ``SlurmUser``/``SlurmdUser`` that slurm.conf names);
- the uid, when known, is at least ``min_uid`` and below ``max_uid`` (and never 0);
- the login shell, when known, is not a refused one (``nologin``, ``false``).

Reading the user database and slurm.conf happens elsewhere
(:func:`hpcspawner.accounts.posix.lookup_posix_account`,
:func:`hpcspawner.accounts.posix.slurm_service_users`); this module only decides.
It is the lowest layer of the login side: it imports nothing from the package.
It stays outside ``hpcspawner/auth/`` because two rooms apply it independently:
the authenticator at login, and the spawner before it runs anything as the user,
whatever authenticator the hub uses (its check must not depend on the auth room).
The scheduler drivers keep their own last guard with the same name rule
(:func:`hpcspawner.slurm.driver.may_act_as`; ``tests/unit/test_layers.py`` holds
the two to the same answers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: POSIX user names accepted (what ``useradd`` accepts by default, at most 32 characters).
POSIX_NAME_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
#: The same, when the admin turned lower-casing off.
POSIX_NAME_MIXED_CASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")

#: Smallest uid of a person's account on most Linux distributions.
DEFAULT_MIN_UID = 1000
#: Debian reserves 60000-64999 for packages' users (``slurm`` is 64030) and 65534 is ``nobody``.
DEFAULT_MAX_UID = 60000
#: Service accounts of the Slurm stack, refused whatever their uid.
DEFAULT_REFUSED_NAMES = ("root", "nobody", "slurm", "munge", "slurmrest", "slurmrestd")
#: Shells that mean "nobody logs in as this account": a bare name matches any directory.
DEFAULT_REFUSED_SHELLS = ("nologin", "false")
#: Names refused even when the admin's list leaves them out.
ALWAYS_REFUSED_NAMES = frozenset({"root"})
#: The keys of slurm.conf that name the users Slurm's daemons run as.
SLURM_CONF_USER_KEYS = ("slurmuser", "slurmduser")


class MappingError(ValueError):
    """A login that maps to no usable cluster account.

    ``reason`` is a short fixed label (logs, metrics, the page's wording);
    ``detail`` says what exactly went wrong, for the log.
    """

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class PosixAccount:
    """A user of the cluster as the system's user database knows it (None: not known)."""

    username: str
    uid: int | None = None
    gid: int | None = None
    groups: tuple[str, ...] = ()
    shell: str | None = None
    #: the home directory (where the spawner puts the user's files unless told otherwise)
    home: str | None = None


@dataclass(frozen=True)
class AccountRules:
    """Which accounts a login may map to (built from the authenticator's or spawner's config)."""

    min_uid: int = DEFAULT_MIN_UID
    max_uid: int = DEFAULT_MAX_UID
    #: Compared case-insensitively; ``root`` is always added.
    refused_names: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_REFUSED_NAMES))
    #: Absolute paths match the shell exactly; bare names match its last component.
    refused_shells: tuple[str, ...] = DEFAULT_REFUSED_SHELLS

    def __post_init__(self):
        if self.min_uid < 0:
            raise ValueError(f"min_uid must be 0 or more, not {self.min_uid}")
        if self.max_uid <= self.min_uid:
            raise ValueError(
                f"max_uid ({self.max_uid}) must be above min_uid ({self.min_uid}); "
                "set max_uid above the largest uid of your users"
            )
        names = frozenset(n.lower() for n in self.refused_names) | ALWAYS_REFUSED_NAMES
        object.__setattr__(self, "refused_names", names)
        object.__setattr__(self, "refused_shells", tuple(self.refused_shells))


def rules_from_config(
    *,
    min_uid: int,
    max_uid: int,
    refused_usernames,
    refused_shells,
    service_users=(),
) -> AccountRules:
    """The rules from the config traits plus the users Slurm's daemons run as."""
    return AccountRules(
        min_uid=min_uid,
        max_uid=max_uid,
        refused_names=frozenset(refused_usernames) | frozenset(service_users),
        refused_shells=tuple(refused_shells),
    )


def is_posix_name(name: object) -> bool:
    """True when ``name`` is a plain POSIX user name (either case, ASCII, at most 32)."""
    return isinstance(name, str) and POSIX_NAME_MIXED_CASE_RE.fullmatch(name) is not None


def shell_refused(shell: str, refused: tuple[str, ...]) -> bool:
    """True when ``shell`` is one of ``refused`` (paths exactly, bare names by last component)."""
    base = shell.rstrip("/").rsplit("/", 1)[-1]
    return any(shell == entry if "/" in entry else base == entry for entry in refused)


def check_account(account: PosixAccount, rules: AccountRules) -> PosixAccount:
    """Return ``account`` if a login may use it; raise :class:`MappingError` if not.

    Reasons: ``service-account`` (a refused name), ``system-account`` (uid 0 or
    below ``min_uid``), ``high-uid`` (uid at or above ``max_uid``),
    ``no-login-shell`` (a refused shell). A uid or shell that is None is not known
    and not checked; the name always is.
    """
    name = account.username
    if name.lower() in rules.refused_names:
        raise MappingError("service-account", f"{name!r} is a system or service account")
    uid = account.uid
    if uid is not None:
        if uid == 0 or uid < rules.min_uid:
            raise MappingError(
                "system-account", f"{name!r} has uid {uid}, below min_uid {rules.min_uid}"
            )
        if uid >= rules.max_uid:
            raise MappingError(
                "high-uid",
                f"{name!r} has uid {uid}, at or above max_uid {rules.max_uid} "
                "(raise max_uid if your users' uids go that high)",
            )
    if account.shell and shell_refused(account.shell, rules.refused_shells):
        raise MappingError(
            "no-login-shell", f"{name!r} has the login shell {account.shell!r}, which is refused"
        )
    return account


def parse_slurm_conf_users(text: str) -> tuple[str, ...]:
    """The ``SlurmUser`` and ``SlurmdUser`` a slurm.conf names (keys in any case).

    Comments (``#``) are ignored; a key may share its line with others
    (``SlurmUser=slurm SlurmdUser=root``). Values that are not user names
    (e.g. a numeric uid) are skipped.
    """
    users: list[str] = []
    for line in text.splitlines():
        for word in line.split("#", 1)[0].split():
            key, sep, value = word.partition("=")
            if sep and key.lower() in SLURM_CONF_USER_KEYS:
                value = value.strip("\"'")
                if is_posix_name(value) and value not in users:
                    users.append(value)
    return tuple(users)


__all__ = [
    "DEFAULT_MAX_UID",
    "DEFAULT_MIN_UID",
    "DEFAULT_REFUSED_NAMES",
    "DEFAULT_REFUSED_SHELLS",
    "POSIX_NAME_MIXED_CASE_RE",
    "POSIX_NAME_RE",
    "AccountRules",
    "MappingError",
    "PosixAccount",
    "check_account",
    "is_posix_name",
    "parse_slurm_conf_users",
    "rules_from_config",
    "shell_refused",
]
