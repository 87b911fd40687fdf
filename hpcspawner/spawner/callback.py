"""The hub endpoint a starting job calls to report its port.

Wire-compatible with batchspawner (``POST {hub_api}/batchspawner``, body
``{"port": N}``, ``Authorization: token <the server's API token>``), but strict:

- the token must be the API token of one of the user's servers (403); after a
  hub restart, the server's stored SHA-256 of it identifies the server;
- that server must be starting and waiting for its port (409);
- the body must be exactly ``{"port": <int>}`` with a port in the allowed
  range (400, naming the problem);
- the host is never taken from the request: the spawner uses the node Slurm
  runs the job on.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from jupyterhub.apihandlers import APIHandler, default_handlers
from tornado import web

CALLBACK_PATH = r"/api/batchspawner"
#: ``{"port": 65535}`` is 15 bytes; anything much larger is not a port report
MAX_BODY_BYTES = 1024


def parse_port_body(body: bytes, port_range: tuple[int, int] | None) -> int:
    """Validate the callback body; return the port or raise ValueError with the reason."""
    if len(body or b"") > MAX_BODY_BYTES:
        raise ValueError(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError('body must be JSON: {"port": <int>}') from None
    if not isinstance(data, dict):
        raise ValueError('body must be a JSON object: {"port": <int>}')
    extra = sorted(str(key)[:40] for key in data if key != "port")
    if extra:
        raise ValueError(f"only 'port' may be reported, not {', '.join(map(repr, extra))}")
    port = data.get("port")
    if isinstance(port, bool) or not isinstance(port, int):
        raise ValueError("'port' must be an integer")
    low, high = port_range or (1, 65535)
    if not low <= port <= high:
        raise ValueError(f"port {port} is outside the allowed range {low}-{high}")
    return port


def token_matches(spawner, token: str) -> bool:
    """Is ``token`` the API token of ``spawner``'s server?

    While the hub runs, the spawner holds the token. After a restart it only
    has the token's SHA-256 in its state (the token itself is never stored).

    Compares bytes: ``hmac.compare_digest`` refuses ``str`` with non-ASCII
    characters, and a header may carry any (Tornado decodes it as latin-1).
    Every token is answered True or False; none raises.
    """
    if not token:
        return False
    offered = token.encode("utf-8", "surrogatepass")
    own = getattr(spawner, "api_token", None) or ""
    if own:
        return hmac.compare_digest(own.encode(), offered)
    digest = getattr(spawner, "token_sha256", "") or ""
    return bool(digest) and hmac.compare_digest(
        digest.encode(), hashlib.sha256(offered).hexdigest().encode()
    )


def token_digest(token: str) -> str:
    """The SHA-256 of a server's API token that its spawner keeps (state: ``token_sha256``),
    so that a restarted hub, which no longer has the token, recognises the port report of
    a job it started before (:func:`token_matches`); the token itself is never stored.
    "" for no token. It lives here, next to the one check that uses it."""
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


class PortCallbackHandler(APIHandler):
    """``POST /hub/api/batchspawner``: a starting job reports its port."""

    @web.authenticated
    async def post(self):
        user = self.current_user
        token = self.get_auth_token() or ""
        spawner = None
        for candidate in getattr(user, "spawners", {}).values():
            if token_matches(candidate, token):
                spawner = candidate
                break
        if spawner is not None and not hasattr(spawner, "accept_port"):
            # Installing hpcspawner puts this handler in every hub of the environment (its
            # entry points are imported at start-up), batchspawner's hubs included.
            self._batchspawner_port(spawner)
            return
        if spawner is None:
            self.log.warning(
                "Port callback with a token that belongs to no server of %s", user.name
            )
            raise web.HTTPError(403, "This token does not belong to a server started by hpcspawner")
        try:
            port = parse_port_body(self.request.body, spawner.callback_port_range())
        except ValueError as e:
            self.log.warning("Rejected port callback for %s: %s", spawner.log_name, e)
            raise web.HTTPError(400, str(e)) from None
        if not spawner.accept_port(port):
            self.log.warning("Port callback for %s, which is not waiting for one", spawner.log_name)
            raise web.HTTPError(409, "This server is not waiting for its port")
        self.set_status(201)
        self.finish(json.dumps({"message": "port accepted"}))

    def _batchspawner_port(self, spawner) -> None:
        """The same strict rules for a batchspawner spawner, which waits for ``port != 0``.

        Its own handler would set every attribute posted; this one sets the port only,
        and only while the server waits for it.
        """
        if not _is_batchspawner(spawner):
            raise web.HTTPError(403, "This token does not belong to a batch spawner's server")
        try:
            port = parse_port_body(self.request.body, None)
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        if getattr(spawner, "port", None) != 0 or not spawner.pending:
            raise web.HTTPError(409, "This server is not waiting for its port")
        spawner.port = port
        self.set_status(201)
        self.finish(json.dumps({"message": "BatchSpawner data configured"}))


def _is_batchspawner(spawner) -> bool:
    return any(cls.__name__ == "BatchSpawnerBase" for cls in type(spawner).__mro__)


def register() -> None:
    """Put the handler before any other ``/api/batchspawner`` (e.g. batchspawner's own)."""
    if not any(route[1] is PortCallbackHandler for route in default_handlers):
        default_handlers.insert(0, (CALLBACK_PATH, PortCallbackHandler))


register()
