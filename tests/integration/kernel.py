"""Run code in a kernel of a user's server the way a notebook does: through the hub's proxy,
over HTTPS and the kernel's websocket, with the user's API token in the header.

    with Kernel(hub, "alice", token) as kernel:
        result = kernel.execute("print(1 + 1)")
        assert result.stdout == "2\\n"
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from dataclasses import dataclass, field

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


@dataclass
class Execution:
    """What one cell gave: its streams, its ``Out[]`` values (text/plain), its error."""

    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    #: the error's traceback lines joined (IPython's own rendering), or None
    error: str | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr + "".join(self.results) + (self.error or "")


class Kernel:
    """A kernel started in ``user``'s server (``server``: a named server) for a test."""

    def __init__(self, hub, user: str, token: str, server: str = "", name: str = "python3"):
        self.hub = hub
        self.token = token
        self.base = f"/user/{user}/{server + '/' if server else ''}api/kernels"
        self.name = name
        self.session = uuid.uuid4().hex
        self.id: str | None = None

    def _request(self, method: str, path: str = "", **kwargs):
        return self.hub.session.request(
            method,
            f"{self.hub.url}{self.base}{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=kwargs.pop("timeout", 60),
            **kwargs,
        )

    def start(self) -> Kernel:
        r = self._request("POST", json={"name": self.name})
        assert r.status_code == 201, r.text
        self.id = r.json()["id"]
        return self

    def shutdown(self) -> None:
        if self.id is not None:
            self._request("DELETE", f"/{self.id}")
            self.id = None

    def __enter__(self) -> Kernel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def execute(self, code: str, timeout: float = 120) -> Execution:
        """Run ``code`` as one cell and wait until the kernel is idle again."""
        assert self.id, "start() the kernel first"
        return asyncio.run(asyncio.wait_for(self._execute(code), timeout))

    async def _execute(self, code: str) -> Execution:
        context = ssl.create_default_context(cafile=self.hub.session.verify)
        url = self.hub.url.replace("https://", "wss://", 1)
        request = HTTPRequest(
            f"{url}{self.base}/{self.id}/channels?session_id={self.session}",
            headers={"Authorization": f"token {self.token}"},
            ssl_options=context,
        )
        connection = await websocket_connect(request)
        try:
            msg_id = uuid.uuid4().hex
            connection.write_message(json.dumps(self._execute_request(msg_id, code)))
            result = Execution()
            while True:
                raw = await connection.read_message()
                if raw is None:
                    raise AssertionError(f"the kernel's websocket closed while running {code!r}")
                if isinstance(raw, bytes):
                    continue  # binary frames carry buffers, not what a cell prints
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    if content["name"] == "stdout":
                        result.stdout += content["text"]
                    else:
                        result.stderr += content["text"]
                elif kind == "execute_result":
                    result.results.append(content["data"].get("text/plain", ""))
                elif kind == "error":
                    result.error = "\n".join(content["traceback"]) or content["evalue"]
                elif kind == "status" and content["execution_state"] == "idle":
                    return result
        finally:
            connection.close()

    def _execute_request(self, msg_id: str, code: str) -> dict:
        return {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "session": self.session,
                "username": "test",
                "version": "5.3",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "buffers": [],
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        }
