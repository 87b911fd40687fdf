"""The idle culler a hub's configuration starts, read as JupyterHub and the culler read it.

Shared by the tests of the sample ``jupyterhub_config.py`` (test_culling_config.py) and of
the chart's (test_helm_hubconfig.py): the service JupyterHub would run, its command parsed by
``jupyterhub_idle_culler`` itself (an option it does not take fails here, as it would fail the
service), and the role that gives the service its scopes, checked by JupyterHub's own list of
scopes.
"""

from __future__ import annotations

from dataclasses import dataclass

from jupyterhub.app import JupyterHub
from jupyterhub.scopes import _check_scopes_exist
from jupyterhub_idle_culler import IdleCuller

#: The scopes jupyterhub-idle-culler's README lists for stopping servers ("admin:users" only
#: for --cull-users).
SERVER_SCOPES = {"list:users", "read:users:activity", "read:servers", "delete:servers"}


@dataclass
class Culler:
    options: IdleCuller  # what the culler makes of its command line
    service: dict
    role: dict


def culler_of(config, name: str = "jupyterhub-idle-culler") -> Culler:
    """The culler service ``name`` of the hub ``config`` (a traitlets Config) would start."""
    hub = JupyterHub(config=config)
    (service,) = [s for s in hub.services if s["name"] == name]
    (role,) = [r for r in hub.load_roles if name in r.get("services", ())]
    command = service["command"]
    assert command[1:3] == ["-m", "jupyterhub_idle_culler"], command
    options = IdleCuller()
    options.parse_command_line(command[3:])
    _check_scopes_exist(role["scopes"], who_for=f"role {role['name']}")
    return Culler(options, service, role)
