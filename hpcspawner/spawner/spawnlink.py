"""May a ``GET /hub/spawn?opt-...`` link start a server at once?

JupyterHub starts a server straight from the query of ``/hub/spawn`` (and
``/hub/spawn/<user>/<server>``) through ``Spawner.options_from_query``. A GET is
what any other web site can make the user's browser send (a link, an image, a
redirect), with the user's hub cookie: without a check, a page elsewhere could
start servers and burn the user's allocation.

The rule, on the request's headers only (pure, no hub needed):

- ``Sec-Fetch-Site`` (sent by every current browser) decides when present: only
  ``same-origin`` (a link on the hub's own pages) and ``none`` (typed into the
  address bar, a bookmark, a link opened from another application) may start
  at once. ``same-site`` is refused too: with ``subdomain_host``, other users'
  servers are on sibling subdomains of the hub.
- Without it (an old browser, a script), a ``Referer`` whose host (and port) is
  the hub's own host may start; a foreign ``Referer`` or none at all may not.

A link that may not start shows the options form, pre-filled with its values:
one click on Start, on the hub's own page, starts the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from tornado import web

#: ``Sec-Fetch-Site`` values of a navigation the user made on the hub or by hand
SPAWNING_FETCH_SITES = frozenset({"same-origin", "none"})


def link_may_spawn(headers: Mapping[str, str] | None, hub_host: str) -> bool:
    """True if a GET with these request headers may start a server from its query.

    ``headers`` maps header names to values (Tornado's ``HTTPHeaders`` does it
    without regard to case; a plain dict must use the canonical names);
    ``hub_host`` is the request's ``Host`` (``hub.example.org`` or ``host:port``).
    No headers at all (no request) never may.
    """
    if headers is None:
        return False
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in SPAWNING_FETCH_SITES
    referer = headers.get("Referer")
    if not referer or not hub_host:
        return False
    try:
        referer_host = urlsplit(referer.strip()).netloc
    except ValueError:
        return False
    return bool(referer_host) and referer_host.lower() == hub_host.strip().lower()


class SpawnLinkNotConfirmed(web.HTTPError):
    """Raised by ``options_from_query`` for a link that may not start a server.

    JupyterHub has no hook to turn a query spawn into the form: its SpawnHandler
    catches what ``options_from_query`` raises and serves the options form with
    the exception's status and ``jupyterhub_message``. Status 200 and an empty
    message: the form shows no error, only its own notice (JupyterHub still logs
    the exception with a traceback at error level). ``headers`` is read by
    JupyterHub 5.
    """

    jupyterhub_message = ""
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only, what JupyterHub 5 reads

    def __init__(self):
        super().__init__(200, "a link from another site: showing the form instead of spawning")
