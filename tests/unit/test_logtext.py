"""hpcspawner.logtext.loggable: user- and IdP-controlled text reaches the log on one escaped line."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcspawner.logtext import DEFAULT_LIMIT, loggable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("plain text, ünïcode ☃", "plain text, ünïcode ☃", id="harmless"),
        pytest.param("a\nb", "a\\nb", id="newline"),
        pytest.param("a\r\nFAKE log line", "a\\r\\nFAKE log line", id="crlf"),
        pytest.param("a\tb", "a\\tb", id="tab"),
        pytest.param("C:\\path\\n", "C:\\\\path\\\\n", id="backslash-doubled"),
        pytest.param("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07", id="esc-sequences"),
        pytest.param("nul\x00del\x7f", "nul\\x00del\\x7f", id="nul-del"),
        pytest.param("\x9b31m\x85\x9d", "\\x9b31m\\x85\\x9d", id="c1-csi-nel-osc"),
        pytest.param("user\u202egpj.exe", "user\\u202egpj.exe", id="bidi-override"),
        pytest.param(
            "\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
            "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c",
            id="bidi-isolates-marks",
        ),
        pytest.param("a\u2028b\u2029c", "a\\u2028b\\u2029c", id="unicode-line-separators"),
        pytest.param("bad\udcff", "bad\\udcff", id="lone-surrogate"),
        pytest.param(None, "", id="none"),
        pytest.param(42, "42", id="not-text"),
    ],
)
def test_escapes(text, expected):
    assert loggable(text) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"ok\n", "ok\\n", id="utf8"),
        pytest.param("é\x1b".encode(), "é\\x1b", id="utf8-escape"),
        pytest.param(b"\xff\xfe!", "\ufffd\ufffd!", id="invalid-utf8-replaced"),
        pytest.param(bytearray(b"a\rb"), "a\\rb", id="bytearray"),
    ],
)
def test_bytes_are_decoded_then_escaped(data, expected):
    assert loggable(data) == expected


def test_long_text_is_cut_with_its_length():
    assert loggable("x" * 50, limit=10) == "x" * 10 + "... [50 characters in all]"
    assert loggable(b"y" * 50, limit=10) == "y" * 10 + "... [50 bytes in all]"
    assert loggable("z" * 10, limit=10) == "z" * 10  # exactly the limit: not cut


def test_cut_never_splits_an_escape():
    # "\x1b" escapes to 4 characters: a limit of 6 fits one escape and no part of the second
    assert loggable("\x1b\x1b\x1b", limit=6) == "\\x1b... [3 characters in all]"


def test_default_limit_bounds_huge_input():
    huge = "\n" * 10_000_000
    result = loggable(huge)
    assert len(result) <= DEFAULT_LIMIT + 40
    assert result.endswith("... [10000000 characters in all]")


def test_work_is_bounded_by_the_limit_not_the_input():
    """Bytes are cut before decoding: the count is of the whole input."""
    huge = bytes(20 * 1024 * 1024)
    assert loggable(huge, limit=8) == "\\x00\\x00... [20971520 bytes in all]"


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(limit):
    with pytest.raises(ValueError, match="at least 1"):
        loggable("x", limit=limit)


@given(st.text() | st.binary())
def test_result_is_one_printable_line(value):
    result = loggable(value, limit=200)
    assert "\n" not in result and "\r" not in result
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in result)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in result)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in result)
    result.encode("utf-8")  # a log handler can always write it


def _unescape(text: str) -> str:
    """Read loggable's escapes back (\\\\, \\n, \\r, \\t, \\xNN, \\uNNNN)."""
    named = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}

    def one(match: re.Match) -> str:
        escape = match.group(1)
        if escape in named:
            return named[escape]
        return chr(int(escape[1:], 16))

    return re.sub(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})", one, text)


@given(st.text(max_size=200))
def test_escaped_form_is_unambiguous(value):
    assert _unescape(loggable(value, limit=10_000)) == value


def test_a_log_record_stays_one_line(caplog):
    log = logging.getLogger("test_logtext")
    with caplog.at_level(logging.INFO, logger="test_logtext"):
        log.info("job output: %s", loggable("line 1\n[I 2026-01-01 hub] forged\x1b[0m"))
    (record,) = caplog.records
    assert record.getMessage().count("\n") == 0
    assert "\x1b" not in record.getMessage()
