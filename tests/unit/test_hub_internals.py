"""What hpcspawner relies on inside JupyterHub where it has no public hook, pinned here so
that a JupyterHub upgrade that changes it fails a test (run on JupyterHub 5 and 6):

- ``Spawner._log_name``: how the hub's log names a server (``SlurmSpawner.log_name``);
- ``Spawner._stop_pending``: set by ``User.stop()`` before it polls and stops the server
  (``SlurmSpawner.stop_requested``: a server the hub stops did not end underneath the user);
- the hub's shutdown cancels every task of its loop after ``cleanup()`` and waits for
  them: the moment the shared driver, poller and reapers are closed
  (``hpcspawner.spawner.shared._close_at_shutdown``).
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from jupyterhub.objects import Hub
from jupyterhub.spawner import Spawner
from jupyterhub.user import User
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from traitlets.config import Config

from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.shared import shared_slurm

TIMEOUT = 10.0
LOG = logging.getLogger("test")
#: Every config made here, kept alive: shared objects are keyed by ``id(config)``.
_configs: list[Config] = []


def hub_config(cluster: FakeCluster) -> Config:
    config = Config()
    config.SlurmSpawner.driver_class = FakeSlurm
    config.FakeSlurm.cluster = cluster
    config.SlurmSpawner.poll_interval = 1
    _configs.append(config)
    return config


@pytest.mark.parametrize(("server", "name"), [("", "alice"), ("gpu", "alice:gpu")])
def test_the_hubs_log_name_of_a_server(server, name):
    user, orm_spawner = SimpleNamespace(name="alice"), orm.Spawner(name=server)
    assert Spawner(user=user, orm_spawner=orm_spawner)._log_name == name
    config = hub_config(FakeCluster())
    assert SlurmSpawner(config=config, user=user, orm_spawner=orm_spawner).log_name == name


class Recording(SlurmSpawner):
    """SlurmSpawner, noting what ``stop_requested`` said when the hub polled it."""

    seen: list[bool]

    async def poll(self):
        self.seen.append(self.stop_requested)
        return await super().poll()


@pytest.fixture
def db():
    engine = create_engine("sqlite://")
    orm.Base.metadata.create_all(engine)
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    yield session
    session.close()
    engine.dispose()


async def test_the_hubs_stop_marks_the_server_before_it_polls(db):
    """JupyterHub's User.stop() sets _stop_pending, then polls: a job found gone then
    was stopped by the hub, not lost by the user (no "your last server stopped")."""
    cluster = FakeCluster()
    cluster.existing_job("42")
    cluster.end("42", "CANCELLED")
    config = hub_config(cluster)
    orm_user = orm.User(name="alice")
    db.add(orm_user)
    db.commit()
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    user = User(orm_user, {"spawner_class": Recording, "config": config, "hub": hub}, db=db)
    spawner = user.spawners[""]
    spawner.seen = []
    spawner.load_state({"job_id": "42", "job_host": "vm", "spawn_id": "abc"})
    assert spawner.stop_requested is False
    await asyncio.wait_for(user.stop(""), TIMEOUT)
    assert spawner.seen == [True]
    assert spawner.stop_requested is False  # and cleared after
    assert spawner.last_end is None
    # the same job gone without the hub stopping it: the user is told at the next start
    alone = Recording(config=config, user=SimpleNamespace(name="alice"))
    alone.seen = []
    alone.load_state({"job_id": "42", "job_host": "vm", "spawn_id": "abc"})
    assert await asyncio.wait_for(alone.poll(), TIMEOUT) == 1
    assert alone.seen == [False]
    assert alone.last_end == {"job_id": "42", "reason": "the job was cancelled"}


def test_the_hubs_shutdown_closes_the_shared_driver_poller_and_reapers():
    """JupyterHub's shutdown (SIGTERM, SIGINT, JupyterHub.stop) runs cleanup() and then
    cancels every task of its loop and waits for them: the shared objects close then."""
    cluster = FakeCluster()
    config = hub_config(cluster)
    cleaned = []

    async def cleanup():
        cleaned.append("servers and proxy")

    async def hub_lifetime():
        shared = shared_slurm(config, LOG)
        shared.poller(1, LOG).track("7")  # the poller's loop runs
        shared.reapers.start(shared.driver, "alice", "c", 60, LOG)
        reaper = shared.reapers.task("c")
        await cluster.wait_for(lambda: cluster.count("query") >= 1, TIMEOUT)
        app = JupyterHub()
        app.cleanup = cleanup
        app._stop_event_loop = lambda: None  # JupyterHub's own seam for its tests
        # bounded by a timer, not wait_for: the shutdown cancels every other task
        timer = asyncio.get_running_loop().call_later(TIMEOUT, asyncio.current_task().cancel)
        try:
            await app.shutdown_cancel_tasks()
        finally:
            timer.cancel()
        # closed before the loop ends: the reaper stopped, the hub's objects forgotten
        assert cleaned == ["servers and proxy"]
        assert reaper.cancelled() and "c" not in shared.reapers
        assert shared_slurm(config, LOG) is not shared
        queries = cluster.count("query")
        await asyncio.sleep(0)
        return queries

    queries = asyncio.run(hub_lifetime())
    assert cluster.count("query") == queries  # the closed poller asks no more
