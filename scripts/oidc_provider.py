"""A real OpenID Connect provider on loopback for the login tests and the demo: oidc-provider-mock + PKCE.

Run as a script (the tests start it as a subprocess in its own process group)::

    python scripts/oidc_provider.py --port 9400 --token-max-age 3 \\
        --user-claims '{"sub": "u-alice", "eppn": "alice@uni.example", "groups": ["hpc-users"]}'

It serves ``oidc_provider_mock.app()`` (Flask + authlib: discovery, authorize,
token with refresh tokens, userinfo, ``PUT /users/<sub>``,
``POST /users/<sub>/revoke-tokens``) exactly like the ``oidc-provider-mock`` CLI,
with one addition: the mock accepts PKCE parameters but does not check them, so
:class:`RequirePKCE` does. An authorization request without an S256
``code_challenge`` is refused, and the token request must carry the matching
``code_verifier``. A hub login through this provider therefore proves the hub
really does PKCE. Each verified exchange is logged as ``PKCE verified``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import os
import sys
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("oidc-provider")


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class RequirePKCE:
    """WSGI middleware: the authorization code flow must use PKCE with S256."""

    def __init__(self, app):
        self.app = app
        self.challenges: dict[str, str] = {}  # authorization code -> code_challenge
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize":
            return self._authorize(environ, start_response)
        if path == "/oauth2/token" and environ.get("REQUEST_METHOD") == "POST":
            return self._token(environ, start_response)
        return self.app(environ, start_response)

    def _authorize(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        challenge = query.get("code_challenge", [""])[0]
        if not challenge or query.get("code_challenge_method", ["plain"])[0] != "S256":
            log.warning("authorization request without PKCE S256 refused")
            return _reply(start_response, "400 Bad Request", "PKCE with S256 is required")

        def capture(status, headers, exc_info=None):
            for name, value in headers:
                if name.lower() == "location":
                    code = parse_qs(urlsplit(value).query).get("code", [""])[0]
                    if code:
                        with self.lock:
                            self.challenges[code] = challenge
            return start_response(status, headers, exc_info)

        return self.app(environ, capture)

    def _token(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # the mock reads it again
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("grant_type", [""])[0] == "authorization_code":
            code = form.get("code", [""])[0]
            verifier = form.get("code_verifier", [""])[0]
            with self.lock:
                challenge = self.challenges.pop(code, None)
            if challenge is None or not verifier or s256(verifier) != challenge:
                log.warning("token request with a wrong or missing code_verifier refused")
                return _reply(
                    start_response,
                    "400 Bad Request",
                    json.dumps(
                        {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                    ),
                    "application/json",
                )
            log.info("PKCE verified for an authorization code")
        return self.app(environ, start_response)


def _reply(start_response, status: str, text: str, content_type: str = "text/plain"):
    data = text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token-max-age", type=int, default=3600)
    parser.add_argument("--user-claims", action="append", default=[])
    args = parser.parse_args(argv)

    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, as the CLI does
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    users = [json.loads(text) for text in args.user_claims]
    serve(users, host=args.host, port=args.port, token_max_age=args.token_max_age)


def serve(users: list[dict], *, host: str, port: int, token_max_age: int, **options) -> None:
    """Run the mock provider behind :class:`RequirePKCE` until stopped.

    ``users``: claims dicts with a ``sub``; ``options`` go to ``oidc_provider_mock.app``.
    """
    import uvicorn
    from oidc_provider_mock import User, app

    provider = app(
        access_token_max_age=timedelta(seconds=token_max_age),
        user_claims=[
            User(sub=user["sub"], claims={k: v for k, v in user.items() if k != "sub"})
            for user in users
        ],
        **options,
    )
    uvicorn.run(RequirePKCE(provider), interface="wsgi", host=host, port=port, log_config=None)


if __name__ == "__main__":
    main()
