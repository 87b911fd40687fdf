"""Slurm's host list syntax (pure): ``n[1-2],vm`` -> ``["n1", "n2", "vm"]``."""

from __future__ import annotations

import re


class HostlistError(ValueError):
    """A host list that is not valid Slurm syntax."""


def expand_hostlist(text: str, *, limit: int = 100_000) -> list[str]:
    """Expand Slurm's host list syntax: ``n[1-2],vm`` -> ``["n1", "n2", "vm"]``.

    Ranges keep the lower bound's width (``a[08-10]`` -> a08 a09 a10); several
    bracket groups multiply (``r[1-2]n[1-2]`` -> r1n1 r1n2 r2n1 r2n2). Empty or
    ``(null)`` is no host. Anything malformed raises :class:`HostlistError`.
    """
    text = text.strip()
    if text in ("", "(null)"):
        return []
    names: list[str] = []
    for item in _split_outside_brackets(text):
        if not item:
            raise HostlistError(f"empty host name in host list {text!r}")
        names.extend(_expand_item(item, text, limit - len(names)))
    return names


def split_outside(text: str, opening: str, closing: str, max_depth: int | None = None) -> list[str]:
    """Split ``text`` on the commas that are not between ``opening`` and ``closing``.

    With ``max_depth``, nesting deeper than that or unbalanced brackets raise
    ValueError; without it, the split is lenient (for values Slurm formats itself).
    """
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
        if max_depth is not None and not 0 <= depth <= max_depth:
            raise ValueError("unbalanced or nested brackets")
    if max_depth is not None and depth:
        raise ValueError("unbalanced brackets")
    items.append(text[start:])
    return items


def _split_outside_brackets(text: str) -> list[str]:
    try:
        return split_outside(text, "[", "]", max_depth=1)
    except ValueError:
        raise HostlistError(f"unbalanced brackets in host list {text!r}") from None


_BRACKET_RE = re.compile(r"([^\[\]]*)\[([^\[\]]*)\](.*)")
_RANGE_RE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def _expand_item(item: str, text: str, room: int) -> list[str]:
    match = _BRACKET_RE.fullmatch(item)
    if not match:
        if "[" in item or "]" in item or any(char.isspace() for char in item):
            raise HostlistError(f"malformed host name {item!r} in host list {text!r}")
        return [item]
    prefix, ranges, rest = match.groups()
    tails = _expand_item(rest, text, room) if rest else [""]
    names = []
    for part in ranges.split(","):
        bounds = _RANGE_RE.fullmatch(part)
        if not bounds:
            raise HostlistError(f"malformed range [{ranges}] in host list {text!r}")
        low_text, high_text = bounds.group(1), bounds.group(2) or bounds.group(1)
        low, high = int(low_text), int(high_text)
        if high < low:
            raise HostlistError(f"range {part} runs backwards in host list {text!r}")
        if len(names) + (high - low + 1) * len(tails) > room:
            raise HostlistError(f"host list {text!r} names more than the limit of hosts")
        width = len(low_text)
        names.extend(
            f"{prefix}{number:0{width}d}{tail}" for number in range(low, high + 1) for tail in tails
        )
    return names
