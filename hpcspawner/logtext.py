"""Make text from outside the hub safe to put in the hub's log (pure, stdlib only).

Text a user or an identity provider controls (the tail of a job's output, IdP
claims) must not reach the log verbatim: a newline forges a log line, a
terminal escape rewrites what an admin sees in ``less -R`` or a terminal, a
bidi override reorders it. :func:`loggable` returns a one-line, escaped,
bounded form of such text::

    self.log.warning("Job %s ended: %s", job_id, loggable(tail))

This module imports nothing from JupyterHub or tornado, so every layer
(drivers, authenticator, spawner) can use it.
"""

from __future__ import annotations

#: Default cap on the characters :func:`loggable` returns (before the truncation note).
DEFAULT_LIMIT = 2000

#: Code points that reorder or hide text (bidi embeddings, overrides, isolates and marks).
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])

#: Code points some viewers treat as line breaks.
LINE_SEPARATORS = frozenset([0x2028, 0x2029])

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(char: str) -> str:
    """The escaped form of one character (itself when it is harmless)."""
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:  # C0 controls (ESC...), DEL, C1 controls (CSI...)
        return f"\\x{code:02x}"
    if code in BIDI_CONTROLS or code in LINE_SEPARATORS or 0xD800 <= code <= 0xDFFF:
        # lone surrogates (from surrogateescape) would make the log handler fail to encode
        return f"\\u{code:04x}"
    return char


def loggable(text, limit: int = DEFAULT_LIMIT) -> str:
    """Return *text* escaped onto one line and cut to about *limit* characters.

    - newlines, carriage returns and tabs become ``\\n``, ``\\r``, ``\\t``;
      backslashes are doubled, so the escaped form is unambiguous;
    - other C0 controls (ESC...), DEL and C1 controls (CSI...) become ``\\xNN``;
    - bidi controls (U+202A-202E, U+2066-2069, U+200E/F, U+061C), U+2028/2029
      and lone surrogates become ``\\uNNNN``;
    - the result holds at most *limit* characters of escaped text (never a
      broken escape), followed by ``... [N characters in all]`` when cut.

    *text* may be ``str``, ``bytes`` (decoded as UTF-8, bad bytes replaced) or
    anything else (``str()`` of it). Work is bounded by *limit*, not by the
    size of *text*.
    """
    if limit < 1:
        raise ValueError(f"loggable(limit={limit!r}): the limit must be at least 1")
    if text is None:
        return ""
    unit = "characters"
    if isinstance(text, bytes | bytearray):
        # cut before decoding (a character is at most 4 bytes): work bounded by limit
        unit, total = "bytes", len(text)
        text = bytes(text[: 4 * limit + 4]).decode("utf-8", errors="replace")
    else:
        text = text if isinstance(text, str) else str(text)
        total = len(text)

    pieces = []
    used = 0
    for char in text[: limit + 1]:
        piece = _escape_char(char)
        if used + len(piece) > limit:
            return "".join(pieces) + f"... [{total} {unit} in all]"
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces)
