"""hpcspawner.spawner.callback.token_matches: any token a client can send is a clean yes or no.

Tornado decodes header values as latin-1, so the handler may see any character up to
U+00FF (UTF-8 bytes arrive as two such characters each); the comparison must not raise
on any of them (a raise is a 500 instead of the 403).
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from hpcspawner.spawner.callback import token_matches

TOKEN = "0123456789abcdef0123456789abcdef"
LIVE = SimpleNamespace(api_token=TOKEN, token_sha256="")
RESTARTED = SimpleNamespace(api_token="", token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest())

SPAWNERS = [pytest.param(LIVE, id="live"), pytest.param(RESTARTED, id="after-restart")]

BAD_TOKENS = [
    pytest.param("é" * 32, id="non-ascii"),
    pytest.param("Ã©" + TOKEN[2:], id="utf-8-read-as-latin-1"),
    pytest.param("\xe9\xff" * 16, id="latin-1"),
    pytest.param(TOKEN[:-1] + "\x00", id="nul"),
    pytest.param("\udcff" * 32, id="lone-surrogate"),
    pytest.param("€" * 32, id="beyond-latin-1"),
    pytest.param("a" * 10_000, id="10-kB"),
    pytest.param(TOKEN + "é", id="token-plus-non-ascii"),
    pytest.param(TOKEN.upper(), id="other-case"),
]


@pytest.mark.parametrize("spawner", SPAWNERS)
@pytest.mark.parametrize("token", BAD_TOKENS)
def test_bad_tokens_are_a_plain_no(spawner, token):
    assert token_matches(spawner, token) is False


@pytest.mark.parametrize("spawner", SPAWNERS)
def test_the_servers_own_token_matches(spawner):
    assert token_matches(spawner, TOKEN) is True
