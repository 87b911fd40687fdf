"""Security checks against the real hub, proxy and cluster.

- ``internal_ssl = True`` end to end: the server's key and certificates are put
  where only the user can read them (``move_certs``), the job's server speaks
  TLS with them, and hub and proxy verify it, also on the extra nodes;
- user A cannot reach user B's server through the proxy, nor spawn, stop or
  read it through the REST API with A's token;
- from outside: HTTPS only, TLS >= 1.2, Secure and HttpOnly cookies, HSTS.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
from urllib.parse import urlparse

import pytest
import requests

from .drills import login_session
from .hub import job_environ

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

HSTS = "max-age=31536000; includeSubDomains"

EXTRA_CONFIG = f"""
c.JupyterHub.internal_ssl = True
# the jobs reach the hub at the bridge address: its internal certificate must name it
c.JupyterHub.trusted_alt_names = ["IP:10.250.0.1"]
# with internal_ssl the proxy's API speaks TLS too
c.ConfigurableHTTPProxy.api_url = c.ConfigurableHTTPProxy.api_url.replace("http://", "https://")
c.JupyterHub.tornado_settings = {{
    "slow_spawn_timeout": 3,
    "headers": {{"Strict-Transport-Security": {HSTS!r}}},
    # also the _xsrf cookie (JupyterHub copies cookie_options into its settings)
    "cookie_options": {{"secure": True}},
}}
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory(extra_config=EXTRA_CONFIG)
    for name in ("alice", "bob"):
        hub.create_user(name)
    hub.tokens = {name: hub.user_token(name) for name in ("alice", "bob")}
    return hub


@pytest.fixture(scope="module")
def servers(hub):
    """alice's server on an extra node (n1/n2), bob's on the hub's node (vm)."""
    wanted = {("alice", "tls"): "remote", ("bob", "tls"): "debug"}
    for (name, server), partition in wanted.items():
        r = hub.spawn(name, server, options={"partition": partition, "memory": "512M"})
        assert r.status_code in (201, 202), r.text
    models = {key: hub.wait_ready(*key) for key in wanted}
    yield models
    for key in wanted:
        if hub.server_model(*key) is not None:
            hub.stop_server(*key)


def proxy_routes(hub) -> dict:
    """The proxy's routes, asked as the hub does: mutual TLS with the internal certificates."""
    certs = hub.directory / "internal-ssl"
    r = hub.session.get(
        f"https://127.0.0.1:{hub.proxy_api_port}/api/routes",
        headers={"Authorization": f"token {hub.proxy_token}"},
        timeout=10,
        verify=str(certs / "hub-ca_trust.crt"),
        cert=(
            str(certs / "hub-internal" / "hub-internal.crt"),
            str(certs / "hub-internal" / "hub-internal.key"),
        ),
    )
    r.raise_for_status()
    return r.json()


def test_internal_ssl_end_to_end(hub, servers):
    routes = proxy_routes(hub)
    for (name, server), model in servers.items():
        node = model["state"]["job_host"]
        target = routes[f"/user/{name}/{server}"]["target"]
        assert target.startswith(f"https://{node}:"), target
        # the key and certificates sit where only the user can read them
        directory = f"/home/{name}/.jupyterhub-certs/{server}"
        info = os.stat(directory)
        assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
        assert info.st_uid == os.stat(f"/home/{name}").st_uid
        for filename in ("server.key", "server.crt", "ca.crt"):
            info = os.stat(f"{directory}/{filename}")
            assert stat.S_IMODE(info.st_mode) == 0o600, (filename, oct(info.st_mode))
            assert info.st_uid == os.stat(f"/home/{name}").st_uid, filename
        # the job's server uses them
        env = job_environ(name, server)
        assert env["JUPYTERHUB_SSL_KEYFILE"] == f"{directory}/server.key"
        assert env["JUPYTERHUB_API_URL"].startswith("https://"), env["JUPYTERHUB_API_URL"]
        port = urlparse(target).port
        # plain HTTP to the server is refused: it only speaks TLS
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{node}:{port}/user/{name}/{server}/api", timeout=10)
        # TLS without a client certificate signed by the hub's CAs is refused too
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with socket.create_connection((node, port), timeout=10) as sock:
                with context.wrap_socket(sock, server_hostname=node) as tls:
                    tls.sendall(
                        f"GET /user/{name}/{server}/api HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                    )
                    if not tls.recv(100):
                        raise ConnectionError("closed")
        # and through the proxy (which verifies the server's certificate) it works
        r = hub.session.get(
            f"{hub.url}/user/{name}/{server}/api/status",
            headers={"Authorization": f"token {hub.tokens[name]}"},
            timeout=30,
        )
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
    log = hub.log_path.read_text(errors="replace")
    assert "CERTIFICATE_VERIFY_FAILED" not in log


def test_users_cannot_touch_each_others_servers(hub, servers):
    alice = {"Authorization": f"token {hub.tokens['alice']}"}
    # through the proxy: bob's server refuses alice's token
    r = hub.session.get(
        f"{hub.url}/user/bob/tls/api/status", headers=alice, timeout=30, allow_redirects=False
    )
    assert r.status_code == 403, r.status_code
    # through the REST API: no spawn, stop, read or progress of bob's servers
    cases = [
        ("POST", "/users/bob/servers/evil", {"json": {}}),
        ("DELETE", "/users/bob/servers/tls", {}),
        ("GET", "/users/bob", {}),
        ("GET", "/users/bob/servers/tls/progress", {}),
        ("POST", "/users/bob/tokens", {"json": {}}),
    ]
    for method, path, kwargs in cases:
        r = hub.api(method, path, token=hub.tokens["alice"], **kwargs)
        assert r.status_code in (403, 404), (method, path, r.status_code, r.text)
    assert hub.server_model("bob", "tls")["ready"]
    assert hub.server_model("bob", "evil") is None


def test_outside_https_only_modern_tls_secure_cookies_hsts(hub):
    port = hub.port
    # plain HTTP to the public port gets no HTTP answer
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /hub/login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(10)
        try:
            answer = sock.recv(100)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer
    # TLS 1.1 and older are refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.fail("this Python cannot offer TLS 1.1; the check needs it")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with old.wrap_socket(sock, server_hostname="localhost"):
                pass
    modern = ssl.create_default_context(cafile=hub.session.verify)
    modern.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with modern.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
    # cookies after a login: Secure and HttpOnly; HSTS on the hub's pages
    session = login_session(hub, "alice")
    r = session.get(f"{hub.url}/hub/home", timeout=30)
    assert r.status_code == 200
    assert r.headers.get("Strict-Transport-Security") == HSTS, dict(r.headers)
    cookies = list(session.cookies)
    assert cookies, "no cookies after login"
    for cookie in cookies:
        assert cookie.secure, cookie.name
        if cookie.name != "_xsrf":  # read by JavaScript by design (double-submit)
            assert cookie.has_nonstandard_attr("HttpOnly"), cookie.name
