#!/usr/bin/env python3
"""A stand-in for jupyterhub-singleuser in scheduler-load benchmarks.

Started by the real launchers (``hpcspawner-singleuser hpcbench-tinyserver`` or
``batchspawner-singleuser hpcbench-tinyserver``), it listens where
``JUPYTERHUB_SERVICE_URL`` says and answers every GET with 200, which is all
JupyterHub's readiness check asks for. Like jupyter-server it takes
``--ServerApp.ip=ADDRESS`` to override the bind address. Standard library only,
so that a hundred of them fit on a 2-core machine.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # JupyterHub compares it with its own version and warns when it is missing
        self.send_header("X-JupyterHub-Version", os.environ.get("HPCBENCH_HUB_VERSION", ""))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


def main() -> None:
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    host = url.hostname or ""
    for arg in sys.argv[1:]:
        if arg.startswith("--ServerApp.ip="):
            host = arg.split("=", 1)[1]
    server = ThreadingHTTPServer((host, url.port), Handler)
    print(f"hpcbench-tinyserver listening on {host}:{url.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
