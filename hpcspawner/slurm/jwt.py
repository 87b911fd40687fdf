"""HS256 JSON Web Tokens for slurmrestd, with the standard library only (pure, no I/O).

Slurm's ``auth/jwt`` plugin checks tokens signed with the cluster's shared key
(``AuthAltParameters=jwt_key=/var/spool/slurm/jwt_hs256.key``): HMAC-SHA256 over
``header.payload``, the key file's bytes used as they are. The claims Slurm reads
are ``sun`` (the Slurm user name), ``exp`` (expiry) and ``iat`` (issued at), the
same as ``scontrol token`` makes. :func:`mint` needs no JWT library; nothing here
logs or keeps a token or the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

#: The header of every token: Slurm accepts HS256 only.
HEADER = {"alg": "HS256", "typ": "JWT"}


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515, section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _segment(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def mint(key: bytes, username: str, issued_at: int, lifetime: int) -> str:
    """A token for ``username`` valid from ``issued_at`` for ``lifetime`` seconds."""
    if not key:
        raise ValueError("the JWT key is empty")
    if lifetime < 1:
        raise ValueError(f"a token lifetime of {lifetime} s is not positive")
    claims = {"exp": int(issued_at) + int(lifetime), "iat": int(issued_at), "sun": username}
    signing_input = f"{_segment(HEADER)}.{_segment(claims)}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims_of(token: str) -> dict:
    """The claims of a token, unverified (to read when it expires)."""
    try:
        _, payload, _ = token.split(".")
        claims = json.loads(b64url_decode(payload))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a JSON Web Token") from None
    if not isinstance(claims, dict):
        raise ValueError("not a JSON Web Token")
    return claims
