"""The names in a server's TLS certificate (``c.JupyterHub.internal_ssl``).

JupyterHub makes a server's certificate before ``start()``, when the node that will
run the job is not known yet: :func:`node_alt_names`, the default of
``c.SlurmSpawner.ssl_alt_names``, names every node of the cluster, as the hub will
reach the server (``c.SlurmSpawner.node_address``). Copying the certificate into
the user's directory is :mod:`hpcspawner.spawner.userfiles`'s.
"""

from __future__ import annotations

import ipaddress


async def node_alt_names(spawner) -> list[str]:
    """``c.SlurmSpawner.ssl_alt_names`` default: every node's address (the job's node is
    not known when the certificate is made)."""
    view = await spawner.cluster_info.snapshot()
    if view.snapshot is None:
        spawner.log.warning("No node list for the server certificate: %s", view.error)
        return []
    names = []
    for node in sorted(view.snapshot.nodes):
        address = spawner.node_address.format(node=node)
        try:
            ipaddress.ip_address(address)
            names.append(f"IP:{address}")
        except ValueError:
            names.append(f"DNS:{address}")
    return names


__all__ = ["node_alt_names"]
