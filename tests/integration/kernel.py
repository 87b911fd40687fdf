"""Run code in a kernel of a user's server through the hub's proxy, as JupyterLab does:
the REST API starts the kernel, its websocket (``/api/kernels/ID/channels``, Jupyter's
JSON protocol) carries an ``execute_request`` and brings back what the code printed.

For tests that look inside a job's server (what its kernels see: files, environment,
Slurm). Everything goes over HTTPS through the proxy with the user's own token.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class KernelError(AssertionError):
    """The code raised: its traceback, as the kernel reported it."""


def start_kernel(hub, name: str, token: str, server: str = "") -> str:
    """Start a python3 kernel in ``name``'s server; its id."""
    r = hub.session.post(
        f"{hub.url}{_prefix(name, server)}/api/kernels",
        headers={"Authorization": f"token {token}"},
        json={"name": "python3"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def execute(
    hub, name: str, token: str, kernel_id: str, code: str, server: str = "", timeout=120
) -> str:
    """Run ``code`` in the kernel; what it printed on stdout. Raises KernelError if it raised."""
    url = hub.url.replace("https://", "wss://", 1) + (
        f"{_prefix(name, server)}/api/kernels/{kernel_id}/channels"
    )
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        ca_certs=hub.session.verify,
        request_timeout=timeout,
    )
    return asyncio.run(asyncio.wait_for(_execute(request, name, code), timeout))


async def _execute(request: HTTPRequest, name: str, code: str) -> str:
    connection = await websocket_connect(request)
    try:
        msg_id = uuid.uuid4().hex
        await connection.write_message(json.dumps(_execute_request(msg_id, name, code)))
        stdout, error, idle, replied = [], None, False, False
        while not (idle and replied):
            raw = await connection.read_message()
            if raw is None:
                raise AssertionError(f"the kernel's websocket closed; printed so far: {stdout}")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content.get("name") == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                error = "\n".join(content.get("traceback", [])) or content.get("evalue")
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
        if error:
            raise KernelError(error)
        return "".join(stdout)
    finally:
        connection.close()


def _execute_request(msg_id: str, username: str, code: str) -> dict:
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": username,
            "session": uuid.uuid4().hex,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def _prefix(name: str, server: str) -> str:
    return f"/user/{name}/{server}" if server else f"/user/{name}"
