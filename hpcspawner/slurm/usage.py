"""A user's use of their Slurm accounts, from ``sshare`` (pure, no I/O).

The spawn page shows it next to the Account field. The hub asks, as itself::

    sshare --noheader --parsable2 --users=NAME --format=<SSHARE_FORMAT>

which slurmctld answers (it works with slurmdbd down) with the association tree down
to the user's rows; :func:`parse_sshare` keeps those rows as :class:`AccountUsage`.
Recorded answers: ``tests/unit/data/accounting/sshare_*.txt`` (``record.sh``).
slurmrestd 22.05 (``dbv0.0.38``) has no shares endpoint: the REST driver has no usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import ParseError, check_user_name, parsable_fields

#: ``sshare --format`` fields, in output order (as recorded by record.sh).
SSHARE_FIELDS = (
    "Account",
    "User",
    "RawShares",
    "NormShares",
    "RawUsage",
    "NormUsage",
    "EffectvUsage",
    "FairShare",
    "GrpTRESMins",
    "GrpTRESRaw",
    "TRESRunMins",
)
SSHARE_FORMAT = ",".join(SSHARE_FIELDS)


def sshare_args(username: str) -> list[str]:
    """sshare's arguments for ``username``'s associations (a plain name, else ValueError)."""
    check_user_name(username)
    return ["--noheader", "--parsable2", f"--users={username}", f"--format={SSHARE_FORMAT}"]


@dataclass(frozen=True)
class AccountUsage:
    """A user's use of one account."""

    account: str
    #: ``RawUsage`` (CPU-seconds, decayed by PriorityDecayHalfLife) in CPU-hours
    cpu_hours: float
    #: ``EffectvUsage``: the user's share of the account's parent's usage (0..1)
    effective_usage: float | None = None
    #: ``FairShare``: 1 unused, 0.5 used as granted, toward 0 over-used; None: not computed
    #: (sshare leaves ``NormShares`` empty and prints 0 here under ``priority/basic``)
    fair_share: float | None = None
    #: CPU-hours granted by ``GrpTRESMins=cpu=N`` on the user's association, else on the
    #: account's; None: no such limit
    granted_cpu_hours: float | None = None


def tres_minutes(text: str, tres: str = "cpu") -> int | None:
    """``cpu=6000,mem=...`` -> 6000 for ``tres``; None when it has no such entry."""
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if sep and name == tres and value.isdigit():
            return int(value)
    return None


def _number(value: str, field: str, line: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ParseError(f"sshare {field} {value!r} is not a number: {line[:200]!r}") from None


def parse_sshare(output: str, username: str) -> list[AccountUsage]:
    """``username``'s rows of ``sshare --parsable2`` output (:data:`SSHARE_FORMAT`), one per
    account, in sshare's order. Raises :class:`~hpcspawner.slurm.records.ParseError` for
    a line that is not one."""
    grants: dict[str, int] = {}  # account -> the account's own GrpTRESMins cpu
    rows: list[tuple[str, float, float | None, float | None, int | None]] = []
    for line in output.splitlines():
        if not line.strip():
            continue
        raw = parsable_fields(line, SSHARE_FIELDS, "sshare")
        account, user = raw["Account"].strip(), raw["User"].strip()
        granted = tres_minutes(raw["GrpTRESMins"])
        if not user:
            if granted is not None:
                grants[account] = granted
            continue
        if user.lower() != username.lower():
            continue
        used = _number(raw["RawUsage"], "RawUsage", line) or 0.0
        effective = _number(raw["EffectvUsage"], "EffectvUsage", line)
        fair_share = _number(raw["FairShare"], "FairShare", line)
        if not raw["NormShares"].strip():
            # no shares computed (PriorityType=priority/basic prints 0 for both): not real
            effective = fair_share = None
        rows.append((account, used, effective, fair_share, granted))
    usages = []
    for account, used, effective, fair_share, granted in rows:
        if granted is None:
            granted = grants.get(account)
        usages.append(
            AccountUsage(
                account=account,
                cpu_hours=used / 3600,
                effective_usage=effective,
                fair_share=fair_share,
                granted_cpu_hours=granted / 60 if granted is not None else None,
            )
        )
    return usages


__all__ = ["SSHARE_FIELDS", "SSHARE_FORMAT", "AccountUsage", "parse_sshare", "sshare_args"]
