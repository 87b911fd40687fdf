"""The hub's one door to Slurm: one driver and one cluster cache per hub config.

Every Slurm question the hub asks goes through the driver the admin configured
(``c.SlurmSpawner.driver_class``): the spawners' submissions and polls, the spawn
page's cluster information, and the authenticator's account lookup at login
(``c.ClusterOAuthenticator.slurm_accounts = "sacctmgr"``). :func:`shared_slurm`
returns the one :class:`SharedSlurm` of a hub: its driver, its
:class:`~hpcspawner.spawner.clusterinfo.ClusterInfo` (one cache per kind of answer: the
cluster snapshot, each user's associations) and its job poller.

The authenticator has no spawner to read the driver's settings from, so
:func:`spawner_settings` reads them from the hub's config the way the spawner
class would (its config sections, in its MRO order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from traitlets.config import Config

from ..slurm import SlurmDriver
from .clusterinfo import ClusterInfo
from .poller import JobPoller
from .settings import SlurmSpawnerSettings

#: The spawner settings that shape the shared objects (read by :func:`spawner_settings`).
SHARED_SETTINGS = ("driver_class", "cluster_info_ttl", "associations_ttl")


@dataclass
class SharedSlurm:
    """The driver, cluster cache and poller one hub shares between all its users."""

    driver: SlurmDriver
    cluster_info: ClusterInfo
    #: the hub's config, kept alive: the registry is keyed by its id()
    config: Config = field(repr=False)
    _poller: JobPoller | None = field(default=None, repr=False)

    def poller(self, interval: float, log: logging.Logger | logging.LoggerAdapter) -> JobPoller:
        """The hub's job poller; the first spawner to ask sets its interval."""
        if self._poller is None:
            self._poller = JobPoller(self.driver, interval=interval, logger=log)
        return self._poller

    async def close(self) -> None:
        """Stop the poller and the cache's refreshes in flight (at hub shutdown)."""
        if self._poller is not None:
            await self._poller.close()
        await self.cluster_info.close()


_registry: dict[tuple, SharedSlurm] = {}


def spawner_settings(config: Config, spawner_class: type | None = None) -> SlurmSpawnerSettings:
    """The spawner's :data:`SHARED_SETTINGS` as the hub's config sets them.

    ``spawner_class`` is the hub's ``c.JupyterHub.spawner_class`` when known (its
    config sections, e.g. ``c.MySlurmSpawner``, count too); otherwise
    ``c.SlurmSpawner``. Other options are not read, so a mistake in them is
    reported by the spawner, not at a login.
    """
    if isinstance(spawner_class, type) and issubclass(spawner_class, SlurmSpawnerSettings):
        sections = spawner_class.section_names()
    else:
        sections = ["SlurmSpawnerSettings", "SlurmSpawner"]
    picked = Config()
    for name in sections:
        section = config[name] if name in config else None
        if isinstance(section, Config):
            picked.update({key: section[key] for key in SHARED_SETTINGS if key in section})
    return SlurmSpawnerSettings(config=Config({"SlurmSpawnerSettings": picked}))


def shared_slurm(
    config: Config,
    log: logging.Logger | logging.LoggerAdapter,
    *,
    settings: SlurmSpawnerSettings | None = None,
    spawner_class: type | None = None,
) -> SharedSlurm:
    """The hub's :class:`SharedSlurm` for ``config``, made at the first call.

    A spawner passes itself as ``settings``; the authenticator passes the hub's
    config (and spawner class), and gets the same objects.
    """
    if settings is None:
        settings = spawner_settings(config, spawner_class)
    key = (settings.driver_class, id(config))
    shared = _registry.get(key)
    if shared is None:
        driver = settings.driver_class(config=config, log=log)
        info = ClusterInfo(
            driver,
            ttl=settings.cluster_info_ttl,
            association_ttl=settings.associations_ttl,
            logger=log,
        )
        shared = _registry[key] = SharedSlurm(driver=driver, cluster_info=info, config=config)
    return shared


__all__ = ["SHARED_SETTINGS", "SharedSlurm", "shared_slurm", "spawner_settings"]
