"""A real HTTP/1.1 server on loopback or a unix socket that answers like slurmrestd.

It replays the answers recorded from slurmrestd 22.05 (``data/rest/NAME.json`` +
``NAME.status``) by route, and records every request it got (method, path, query,
headers, body, and which TCP connection it came on), so that a test checks what
slurmrestd would have received. A route may also be a coroutine function (to hang, or
to answer from the request). Keep-alive like slurmrestd: many requests per connection.
The test that starts a server stops it (:meth:`RESTServer.stop`), and with it every
connection and handler it started.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REST_DATA = Path(__file__).parent / "data" / "rest"

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


def recorded(name: str) -> tuple[int, bytes]:
    """A recorded answer: (HTTP status, body). A missing recording fails the test."""
    status = int((REST_DATA / f"{name}.status").read_text().strip())
    return status, (REST_DATA / f"{name}.json").read_bytes()


def recorded_json(name: str):
    return json.loads((REST_DATA / f"{name}.json").read_text())


def answer(status: int, body) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    connection: int

    def json(self):
        return json.loads(self.body)


@dataclass
class RESTServer:
    #: (method, path) -> (status, body bytes) or an async function(Request) -> that
    routes: dict = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    url: str = ""
    _server: asyncio.AbstractServer | None = None
    _tasks: set = field(default_factory=set)
    _writers: set = field(default_factory=set)

    async def start_tcp(self, ssl_context: ssl.SSLContext | None = None) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        return self.url

    async def start_unix(self, path: str) -> str:
        self._server = await asyncio.start_unix_server(self._handle, path)
        self.url = f"unix:{path}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        number = self.connections
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                url = urlsplit(target)
                request = Request(method, url.path, parse_qs(url.query), headers, body, number)
                self.requests.append(request)
                route = self.routes.get((method, url.path), (404, b'{"errors": []}'))
                status, payload = await route(request) if callable(route) else route
                writer.write(
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                    "\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)


def slurmrestd_routes() -> dict:
    """slurmrestd 22.05 as recorded: the spec, the listings, one job's lookups, a submission,
    cancels; and the statistics (``diag_by_hand.json``: 10,006 jobs pending, written by hand
    in the answer's shape, not recorded)."""
    base = "/slurm/v0.0.38"
    return {
        ("GET", "/openapi/v3"): recorded("openapi_v3"),
        ("GET", f"{base}/ping"): recorded("ping"),
        ("GET", f"{base}/jobs"): recorded("jobs"),
        ("GET", f"{base}/job/313"): recorded("job_running"),
        ("GET", f"{base}/job/999999"): recorded("job_unknown"),
        ("GET", f"{base}/diag"): answer(200, recorded_json("diag_by_hand")),
        ("GET", f"{base}/partitions"): recorded("partitions"),
        ("GET", f"{base}/nodes"): recorded("nodes"),
        ("POST", f"{base}/job/submit"): recorded("submit"),
        ("DELETE", f"{base}/job/313"): recorded("cancel"),
        ("DELETE", f"{base}/job/314"): recorded("cancel_pending"),
        ("DELETE", f"{base}/job/999999"): recorded("cancel_unknown"),
    }
