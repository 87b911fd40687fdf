"""Run code in a kernel of a user's server through the hub's proxy, as JupyterLab does:
the REST API starts the kernel, its websocket (``/api/kernels/ID/channels``, Jupyter's
JSON protocol) carries an ``execute_request`` and brings back what the cell gave.

For tests that look inside a job's server (what its kernels see: files, environment,
Slurm; the magics; a busy kernel). Everything goes over HTTPS through the proxy with the
user's own token.

    kernel_id = start_kernel(hub, "alice", token)
    assert execute(hub, "alice", token, kernel_id, "print(1 + 1)") == "2\\n"
    cell = run_cell(hub, "alice", token, kernel_id, "%scancel")   # .stdout .results .error
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class KernelError(AssertionError):
    """The code raised: its traceback, as the kernel reported it."""


@dataclass
class Cell:
    """What one cell gave: its streams, its ``Out[]`` values (text/plain), its error."""

    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    #: the error's traceback lines joined (IPython's own rendering, e.g. only the message of
    #: an exception with ``_render_traceback_``), or None
    error: str | None = None


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


def run_cell(
    hub,
    name: str,
    token: str,
    kernel_id: str,
    code: str,
    server: str = "",
    timeout: float = 120,
    wait: bool = True,
) -> Cell:
    """Run ``code`` as one cell: what it gave once the kernel is idle again and has replied.
    ``wait=False``: return as soon as the kernel is busy with it (a long computation goes
    on after the connection closes); the Cell is then empty."""
    url = hub.url.replace("https://", "wss://", 1) + (
        f"{_prefix(name, server)}/api/kernels/{kernel_id}/channels"
    )
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        ca_certs=hub.session.verify,
        connect_timeout=30,
        request_timeout=timeout,
    )
    return asyncio.run(asyncio.wait_for(_run(request, name, code, wait), timeout))


def execute(
    hub, name: str, token: str, kernel_id: str, code: str, server: str = "", timeout=120
) -> str:
    """Run ``code`` in the kernel; what it printed on stdout. Raises KernelError if it raised."""
    cell = run_cell(hub, name, token, kernel_id, code, server, timeout)
    if cell.error:
        raise KernelError(cell.error)
    return cell.stdout


async def _run(request: HTTPRequest, name: str, code: str, wait: bool) -> Cell:
    connection = await websocket_connect(request)
    try:
        msg_id = uuid.uuid4().hex
        await connection.write_message(json.dumps(_execute_request(msg_id, name, code)))
        cell, idle, replied = Cell(), False, False
        while not (idle and replied):
            raw = await connection.read_message()
            if raw is None:
                raise AssertionError(f"the kernel's websocket closed; so far: {cell}")
            if isinstance(raw, bytes):
                continue  # binary frames carry buffers, not what a cell prints
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                if content.get("name") == "stdout":
                    cell.stdout += content["text"]
                else:
                    cell.stderr += content["text"]
            elif kind == "execute_result":
                cell.results.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                cell.error = "\n".join(content.get("traceback", [])) or content.get("evalue")
            elif kind == "status":
                if content.get("execution_state") == "busy" and not wait:
                    return cell
                idle = content.get("execution_state") == "idle"
            elif kind == "execute_reply":
                replied = True
        return cell
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
