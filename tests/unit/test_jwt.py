"""hpcspawner.slurm.jwt: HS256 tokens as Slurm's auth/jwt checks them, verified here with hmac."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from hpcspawner.slurm import jwt

KEY = bytes(range(32))


def verify(token: str, key: bytes) -> dict:
    """What slurmctld does: the signature over header.payload, then the claims."""
    header, payload, signature = token.split(".")
    expected = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    padded = signature + "=" * (-len(signature) % 4)
    assert hmac.compare_digest(base64.urlsafe_b64decode(padded), expected)
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))) == {
        "alg": "HS256",
        "typ": "JWT",
    }
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_minted_token_is_signed_with_the_key_and_names_the_user():
    token = jwt.mint(KEY, "slurm", issued_at=1_800_000_000, lifetime=600)
    assert verify(token, KEY) == {"exp": 1_800_000_600, "iat": 1_800_000_000, "sun": "slurm"}
    assert "=" not in token  # base64url without padding, as RFC 7515 wants
    with pytest.raises(AssertionError):
        verify(token, b"another key")


def test_claims_are_read_back_and_garbage_is_no_token():
    token = jwt.mint(KEY, "slurm", issued_at=10, lifetime=60)
    assert jwt.claims_of(token)["exp"] == 70
    for garbage in ("", "a.b", "not-a-token", "a.!!!.c"):
        with pytest.raises(ValueError, match="not a JSON Web Token"):
            jwt.claims_of(garbage)


@pytest.mark.parametrize(
    ("key", "lifetime", "message"),
    [
        pytest.param(b"", 60, "empty", id="empty-key"),
        pytest.param(KEY, 0, "not positive", id="no-lifetime"),
    ],
)
def test_bad_input_is_refused(key, lifetime, message):
    with pytest.raises(ValueError, match=message):
        jwt.mint(key, "slurm", issued_at=0, lifetime=lifetime)
