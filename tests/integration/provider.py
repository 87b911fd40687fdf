"""A real OpenID Connect provider on loopback for the login tests (``scripts/oidc_provider.py``).

It runs in its own process group (stopped by :meth:`Provider.stop`); each test module
passes its own users.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests

from .hub import free_port, stop_process_group


@dataclass
class Provider:
    """Handle on a running provider subprocess."""

    url: str
    proc: subprocess.Popen
    log_path: Path

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(
            f"{self.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
        )

    def set_claims(self, user: dict) -> None:
        claims = {key: value for key, value in user.items() if key != "sub"}
        r = requests.put(f"{self.url}/users/{user['sub']}", json=claims, timeout=10)
        assert r.status_code == 204, r.text

    def revoke_tokens(self, sub: str) -> None:
        r = requests.post(f"{self.url}/users/{sub}/revoke-tokens", timeout=10)
        assert r.status_code == 204, r.text

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the provider's process group (it runs in its own session)."""
        stop_process_group(self.proc, timeout=10)


def start_provider(
    directory: Path, users: Iterable[dict], *, token_max_age: int = 3600
) -> Provider:
    """Start the provider with ``users`` (claims dicts with a ``sub``); wait until it answers."""
    port = free_port()
    argv = [
        sys.executable,
        str(Path(__file__).parents[2] / "scripts" / "oidc_provider.py"),
        "--port",
        str(port),
        "--token-max-age",
        str(token_max_age),
    ]
    for user in users:
        argv += ["--user-claims", json.dumps(user)]
    log_path = directory / "oidc-provider.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    provider = Provider(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the provider exited with {proc.returncode}:\n{provider.log_text()}"
            )
        try:
            r = requests.get(f"{provider.url}/.well-known/openid-configuration", timeout=2)
            if r.status_code == 200:
                return provider
        except requests.RequestException:
            pass
        time.sleep(0.2)
    provider.stop()
    raise RuntimeError(f"the provider did not answer within 30 s:\n{provider.log_text()}")
