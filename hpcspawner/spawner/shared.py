"""The hub's one door to Slurm: one driver and one cluster cache per hub config.

Every Slurm question the hub asks goes through the driver the admin configured
(``c.SlurmSpawner.driver_class``): the spawners' submissions and polls, the spawn
page's cluster information, and the authenticator's account lookup at login
(``c.ClusterOAuthenticator.slurm_accounts = "sacctmgr"``). :func:`shared_slurm`
returns the one :class:`SharedSlurm` of a hub: its driver, its
:class:`~hpcspawner.spawner.clusterinfo.ClusterInfo` (one cache per kind of answer: the
cluster snapshot, each user's associations) and its job poller.

The objects live as long as the event loop that uses them: the first call inside a
running loop arms :func:`_close_at_shutdown`, which closes them (poller, cache
refreshes, reapers) when the hub stops, and forgets them.

They feed the hub's metrics (:mod:`~hpcspawner.spawner.metrics`): the driver's requests and
operations, the poller's queries, and, counted at each scrape while the hub runs, the
servers its spawners run (:attr:`SharedSlurm.servers`) and the jobs its poller follows.

The authenticator has no spawner to read the driver's settings from, so
:func:`spawner_settings` reads them from the hub's config the way the spawner
class would (its config sections, in its MRO order).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

from traitlets.config import Config

from ..slurm import SlurmDriver
from . import metrics
from .clusterinfo import ClusterInfo
from .jobhistory import JobHistory
from .poller import JobPoller
from .recovery import Reapers
from .settings import SlurmSpawnerSettings

#: The spawner settings that shape the shared objects (read by :func:`spawner_settings`).
SHARED_SETTINGS = ("driver_class", "cluster_info_ttl", "associations_ttl")


@dataclass
class SharedSlurm:
    """The driver, cluster cache, job history, poller and reapers one hub shares between all its users."""

    driver: SlurmDriver
    cluster_info: ClusterInfo
    #: accounting's answers about jobs that left the queue unseen (see jobhistory)
    history: JobHistory
    #: the hub's config, kept alive: the registry is keyed by its id()
    config: Config = field(repr=False)
    #: the background looks for lost submissions' jobs (see recovery)
    reapers: Reapers = field(default_factory=Reapers, repr=False)
    #: the spawners of this hub that started or restored a server (counted by the metrics)
    servers: weakref.WeakSet = field(default_factory=weakref.WeakSet, repr=False)
    _poller: JobPoller | None = field(default=None, repr=False)
    #: the task that closes all this when the hub stops (see _close_at_shutdown)
    _closer: asyncio.Task | None = field(default=None, repr=False)

    def poller(self, interval: float, log: logging.Logger | logging.LoggerAdapter) -> JobPoller:
        """The hub's job poller; the first spawner to ask sets its interval."""
        if self._poller is None:
            self._poller = JobPoller(
                self.driver, interval=interval, logger=log, on_query=metrics.METRICS.poll_done
            )
        return self._poller

    @property
    def tracked_jobs(self) -> int:
        """How many jobs the poller follows (0 before it exists)."""
        return len(self._poller.tracked) if self._poller is not None else 0

    async def close(self) -> None:
        """Stop the poller, the cache's refreshes in flight and the reapers, and let the driver
        close its connections (at hub shutdown)."""
        if self._poller is not None:
            await self._poller.close()
        await self.cluster_info.close()
        await self.history.close()
        await self.reapers.close()
        await self.driver.close()


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
        driver.observer = metrics.METRICS.driver_observer(metrics.driver_label(type(driver)))
        info = ClusterInfo(
            driver,
            ttl=settings.cluster_info_ttl,
            association_ttl=settings.associations_ttl,
            usage_ttl=settings.associations_ttl,
            logger=log,
        )
        shared = _registry[key] = SharedSlurm(
            driver=driver, cluster_info=info, history=JobHistory(driver, logger=log), config=config
        )
        metrics.METRICS.watch_hub(shared)
    _close_at_shutdown(key, shared, log)
    return shared


def _close_at_shutdown(key: tuple, shared: SharedSlurm, log) -> None:
    """Arm the closing of ``shared`` when the event loop running now stops (the hub).

    No public hook: JupyterHub gives spawners and authenticators no shutdown hook.
    Its shutdown (``JupyterHub.shutdown_cancel_tasks``, on SIGTERM, SIGINT and
    ``JupyterHub.stop()``; the same in JupyterHub 5 and 6) first runs ``cleanup()``,
    which stops the servers when ``cleanup_servers`` is set (through this driver and
    poller), then cancels every task of its loop and waits for them. So a task that
    only waits to be cancelled closes the shared objects then: the least surprising
    place, after the servers' stops and before the loop ends (``asyncio.run`` and
    ``asyncio.Runner`` end the same way). tests/unit/test_hub_internals.py pins it.
    Made outside a running loop (``hpcspawner-check-config``, a test), nothing is armed
    until the first call inside one.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if shared._closer is not None and shared._closer.get_loop() is loop:
        return
    shared._closer = loop.create_task(_wait_for_shutdown(key, shared, log))


async def _wait_for_shutdown(key: tuple, shared: SharedSlurm, log) -> None:
    try:
        await asyncio.get_running_loop().create_future()  # never set: only cancelled
    finally:
        if _registry.get(key) is shared:
            del _registry[key]  # a later hub (a test's next loop) makes its own
        metrics.METRICS.forget_hub(shared)
        try:
            await shared.close()
        except Exception:
            log.exception("Closing the hub's Slurm driver, poller and reapers failed")


__all__ = ["SHARED_SETTINGS", "SharedSlurm", "shared_slurm", "spawner_settings"]
