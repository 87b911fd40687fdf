"""``GET {base_url}hpcspawner/job/clock``: the job's clock for JupyterLab (see
:mod:`hpcspawner.job.clock`).

Authenticated and authorized like the server's own REST API (jupyter_server's
``APIHandler``, ``@web.authenticated``, ``@authorized`` on the resource ``hpcspawner``):
in a JupyterHub server, only who may access the server (``access:servers``) reads it.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .walltime import NOT_IN_A_JOB

#: The URL under the server's base URL.
CLOCK_PATH = "hpcspawner/job/clock"
#: The resource name jupyter_server's authorizer is asked about.
AUTH_RESOURCE = "hpcspawner"


class ClockHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, clock) -> None:
        # a hpcspawner.job.clock.JobClock (which loads this module), or None outside a job
        self.clock = clock

    @web.authenticated
    @authorized
    async def get(self) -> None:
        status = NOT_IN_A_JOB if self.clock is None else await self.clock.status()
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(status))


def add_handlers(web_app, clock) -> None:
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$", [(url_path_join(base_url, CLOCK_PATH), ClockHandler, {"clock": clock})]
    )
