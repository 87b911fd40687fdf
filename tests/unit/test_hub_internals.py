"""What hpcspawner relies on inside JupyterHub where it has no public hook, pinned here so
that a JupyterHub upgrade that changes it fails a test (run on JupyterHub 5 and 6):

- ``Spawner._log_name``: how the hub's log names a server (``SlurmSpawner.log_name``);
- ``Spawner._stop_pending``: set by ``User.stop()`` before it polls and stops the server
  (``SlurmSpawner.stop_requested``: a server the hub stops did not end underneath the user);
- the hub's shutdown cancels every task of its loop after ``cleanup()`` and waits for
  them: the moment the shared driver, poller and reapers are closed
  (``hpcspawner.spawner.shared._close_at_shutdown``);
- ``BaseHandler.stop_single_user`` (every stop asked through the hub: the REST API's
  DELETE, the admin page, the idle culler) stops the server in a task of its inner
  coroutine, which holds the request's handler: who asked, for the metrics
  (``hpcspawner.spawner.metrics.stop_requester``);
- ``Spawner._waiting_for_response``: set by ``User.spawn`` while it waits for the started
  server's first answer, still set when it gives up and stops the server
  (``SlurmSpawner.checking_server``: a failed start, not a stop, in the metrics).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from types import SimpleNamespace

import pytest
from fakeslurm import FakeCluster, FakeSlurm
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.objects import Hub
from jupyterhub.spawner import Spawner
from jupyterhub.user import User
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from traitlets.config import Config

from hpcspawner.spawner import SlurmSpawner, metrics
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


# ---------------------------------------------------------------- who stops a server


class StubHandler:
    """What ``BaseHandler.stop_single_user`` uses of its request handler; ``current_user``
    is who sent the request (a user or a service: ``kind``, ``name``)."""

    def __init__(self, current_user):
        self.current_user = current_user
        self.authenticator = SimpleNamespace(refresh_pre_stop=False)
        self.proxy = SimpleNamespace(delete_user=self._no_route)
        self.log = LOG
        self.statsd = SimpleNamespace(timing=lambda *args: None)  # JupyterHub 5
        self.eventlog = SimpleNamespace(emit=lambda **kwargs: None)
        self.slow_stop_timeout = TIMEOUT

    async def _no_route(self, user, server_name):
        pass


async def stop_through_the_api(user: User, server_name: str, kind: str, name: str) -> None:
    """Stop ``user``'s server as JupyterHub does on a DELETE /hub/api/users/.../server
    sent by the user or service ``name`` (``kind``: "user" or "service")."""
    spawner = user.spawners[server_name]  # a stopped server's spawner leaves user.spawners
    handler = StubHandler(SimpleNamespace(kind=kind, name=name))
    await asyncio.wait_for(BaseHandler.stop_single_user(handler, user, server_name), TIMEOUT)
    assert spawner._stop_future is None, "the stop did not finish"


def hub_user(db, config: Config, spawner_class: type, name: str = "alice") -> User:
    """A JupyterHub ``User`` of the hub ``config`` (its spawners of ``spawner_class``)."""
    orm_user = db.query(orm.User).filter_by(name=name).one_or_none()
    if orm_user is None:
        orm_user = orm.User(name=name)
        db.add(orm_user)
        db.commit()
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    statsd = SimpleNamespace(incr=lambda *args: None, timing=lambda *args: None)  # JupyterHub 5
    settings = {"spawner_class": spawner_class, "config": config, "hub": hub, "statsd": statsd}
    return User(orm_user, settings, db=db)


def running_server(db, cluster: FakeCluster, spawner_class: type) -> User:
    """alice with a server that runs (job 42 on vm), as a hub restores it from its state."""
    cluster.existing_job("42")
    cluster.run("42", "vm")
    user = hub_user(db, hub_config(cluster), spawner_class)
    user.spawners[""].load_state({"job_id": "42", "job_host": "vm", "spawn_id": "abc"})
    return user


class AskedBy(SlurmSpawner):
    """SlurmSpawner, noting who asked for each stop (``metrics.stop_requester``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked: list = []

    async def stop(self, now=False):
        self.asked.append(metrics.stop_requester())
        return await super().stop(now)


@pytest.mark.parametrize(
    ("kind", "name"), [("service", "idle-culler"), ("user", "alice"), ("user", "an-admin")]
)
async def test_a_stop_asked_through_the_hub_names_who_asked(db, kind, name):
    cluster = FakeCluster()
    user = running_server(db, cluster, AskedBy)
    spawner = user.spawners[""]
    await stop_through_the_api(user, "", kind, name)
    assert spawner.asked == [(kind, name)]
    assert cluster.job("42").state == "CANCELLED"


async def test_a_stop_nobody_asked_for_names_nobody(db):
    """The hub's own stops (its shutdown with cleanup_servers, a server it found dead)
    call User.stop() without a request; so does this test."""
    user = running_server(db, FakeCluster(), AskedBy)
    spawner = user.spawners[""]
    await asyncio.wait_for(user.stop(""), TIMEOUT)
    assert spawner.asked == [None]
    assert metrics.stop_requester() is None  # a test's own task: nobody either


class NeverAnswers(SlurmSpawner):
    """A started server that never answers the hub's HTTP check."""

    @property
    def server(self):
        return SimpleNamespace(url="http://vm:1/", wait_up=self._never)

    async def _never(self, **kwargs):
        raise asyncio.TimeoutError("never answered")


async def test_the_hub_stops_a_server_it_never_reached_while_still_waiting(db):
    """User.spawn sets _waiting_for_response before it waits for the server's first
    answer (_wait_up); _wait_up stops the server, when it gives up, before clearing it."""
    spawn = inspect.getsource(User.spawn)
    flag = spawn.index("spawner._waiting_for_response = True")
    assert flag < spawn.index("await self._wait_up(spawner)", flag)
    user = hub_user(db, hub_config(FakeCluster()), NeverAnswers)
    spawner = user.spawners[""]
    seen = []

    async def stop(server_name=""):
        seen.append(spawner.checking_server)

    user.stop = stop
    spawner._waiting_for_response = True  # as User.spawn does
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(user._wait_up(spawner), TIMEOUT)
    assert seen == [True]
    assert spawner.checking_server is False
