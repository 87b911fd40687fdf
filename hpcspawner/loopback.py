"""Whether a URL points at this host: a leaf every room may import (standard library only).

The authenticator allows plain http to its provider only on the loopback interface, and the
REST driver warns about plain http to slurmrestd anywhere else; both ask this one function.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this host (127.0.0.0/8, ::1 or ``localhost``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
