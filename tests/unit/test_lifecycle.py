"""SlurmSpawner's whole lifecycle on the in-memory Slurm (tests/unit/fakeslurm.py), through
the public Spawner API: start, progress, the port callback, poll, stop, get_state /
load_state and get_url after a hub restart. Every wait is bounded and event-driven.

tests/integration/test_lifecycle.py runs the same story against the real cluster.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from types import SimpleNamespace

import pytest
from fakeslurm import DATA, FakeCluster, FakeSlurm, controller_down, report_port, timed_out
from jupyterhub import orm
from jupyterhub.objects import Hub
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from traitlets.config import Config

from hpcspawner.spawner import SlurmSpawner
from hpcspawner.spawner.errors import SpawnFailure

#: Upper bound of every await here (seconds): the fake answers at once.
TIMEOUT = 5.0
PORT = 48123

#: Every config made here, kept alive: spawners share a driver per ``id(config)``,
#: which a later config could otherwise reuse.
_configs: list[Config] = []


async def bounded(awaitable, timeout: float = TIMEOUT):
    return await asyncio.wait_for(awaitable, timeout)


@pytest.fixture
def cluster():
    return FakeCluster()


@pytest.fixture
async def new_hub(cluster):
    """Factory: the config of one hub on ``cluster`` (a second call is the hub after a
    restart: its own driver and poller, the same Slurm). Closes what the hubs opened."""
    spawners: list[SlurmSpawner] = []

    def make(**settings) -> Config:
        config = Config()
        config.SlurmSpawner.driver_class = FakeSlurm
        config.FakeSlurm.cluster = cluster
        config.SlurmSpawner.startup_poll_interval = 0.01
        config.SlurmSpawner.poll_interval = 1  # JupyterHub's trait is whole seconds
        config.SlurmSpawner.stop_timeout = 3.0
        for name, value in settings.items():
            setattr(config.SlurmSpawner, name, value)
        _configs.append(config)
        return config

    make.spawners = spawners
    yield make
    # a test that failed half-way leaves its starts running: end them while the hub is up
    current = asyncio.current_task()
    leftover = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in leftover:
        task.cancel()
    await bounded(asyncio.gather(*leftover, return_exceptions=True))
    seen = set()
    for spawner in spawners:
        if id(spawner.poller) not in seen:
            seen.add(id(spawner.poller))
            await bounded(spawner.poller.close())
            await bounded(spawner.cluster_info.close())


@pytest.fixture
def db():
    """The hub's database (in memory): it outlives a hub restart."""
    engine = create_engine("sqlite://")
    orm.Base.metadata.create_all(engine)  # not new_session_factory: its alembic stamp takes seconds
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    yield session
    session.close()
    engine.dispose()


@pytest.fixture
def new_spawner(new_hub, db):
    """Factory: a spawner of ``user``'s server ``name`` on a hub (a new hub unless
    given), as JupyterHub makes one before ``start()`` or after a restart: its row in
    the database, a minimal user (name, url, servers) and the hub's address."""

    def make(user: str = "alice", name: str = "", *, hub: Config | None = None, token=None):
        config = hub if hub is not None else new_hub()
        orm_user = db.query(orm.User).filter_by(name=user).one_or_none()
        if orm_user is None:
            orm_user = orm.User(name=user)
            db.add(orm_user)
        orm_spawner = orm_user.orm_spawners.get(name)
        if orm_spawner is None:
            orm_spawner = orm.Spawner(user=orm_user, name=name)
            db.add(orm_spawner)
        db.commit()
        owner = SimpleNamespace(name=user, escaped_name=user, url=f"/user/{user}/", spawners={})
        spawner = SlurmSpawner(
            config=config,
            user=owner,
            orm_spawner=orm_spawner,
            hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
            api_token=secrets.token_hex(16) if token is None else token,
        )
        owner.spawners[name] = spawner
        new_hub.spawners.append(spawner)
        return spawner

    return make


async def start_server(spawner, cluster, *, node: str = "vm", port: int = PORT):
    """Start ``spawner``: its job runs on ``node`` and reports ``port``; return (job, url)."""
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job(spawner.user.name))
    cluster.run(job.job_id, node)
    assert await bounded(report_port(spawner.user, job.token, port)) == (201, "port accepted")
    return job, await bounded(task)


async def failed_start(spawner) -> SpawnFailure:
    with pytest.raises(SpawnFailure) as info:
        await bounded(spawner.start())
    return info.value


# ---------------------------------------------------------------- start


async def test_start_returns_the_url_on_the_jobs_node(cluster, new_spawner):
    spawner = new_spawner()
    job, url = await start_server(spawner, cluster, node="vm")
    assert url == f"http://vm:{PORT}"
    assert job.user == "alice" and job.state == "RUNNING"
    assert job.comment.startswith("hpcspawner:") and ":alice:" in job.comment
    assert job.token == spawner.api_token and job.token not in job.script
    state = spawner.get_state()
    assert (state["job_id"], state["job_host"]) == (job.job_id, "vm")
    assert spawner.driver.calls["sbatch"] == 1
    assert await bounded(spawner.poll()) is None


async def test_queued_start_shows_slurms_reason_and_expected_start(cluster, new_spawner):
    spawner = new_spawner()
    cluster.on_submit = lambda job: cluster.pend(job.job_id, "Priority", datetime(2030, 1, 2, 3, 4))
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    messages = []
    async for event in spawner.progress():
        messages.append(event["message"])
        if "queued" in event["message"]:
            break
    assert messages[-1] == (
        f"Job {job.job_id} is queued: other jobs have a higher priority;"
        " expected start 2030-01-02 03:04"
    )
    assert not task.done()
    cluster.run(job.job_id, "vm")
    assert (await bounded(report_port(spawner.user, job.token, PORT)))[0] == 201
    rest = [event["message"] async for event in spawner.progress()]
    assert await bounded(task) == f"http://vm:{PORT}"
    assert rest[-1] == f"Server of job {job.job_id} is listening on vm:{PORT}"


async def test_rejected_submission_tells_the_user_slurms_words(cluster, new_spawner):
    spawner = new_spawner()
    cluster.reject_next_submit((DATA / "sbatch_reject_partition.stderr").read_text())
    failure = await failed_start(spawner)
    assert failure.reason == "job-rejected"
    assert "Slurm rejected the job: " in failure.jupyterhub_message
    assert "invalid partition name specified" in failure.jupyterhub_message.lower()
    assert cluster.jobs == {}
    assert spawner.driver.calls.get("scancel") is None
    assert await bounded(spawner.poll()) == 0


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        pytest.param(
            lambda cluster, job: cluster.end(job.job_id, "FAILED", "NonZeroExitCode"),
            "the job failed (non-zero exit code)",
            id="failed",
        ),
        pytest.param(
            lambda cluster, job: cluster.end(job.job_id, "CANCELLED"),
            "the job was cancelled",
            id="cancelled-while-queued",
        ),
        pytest.param(
            lambda cluster, job: cluster.purge(job.job_id),
            "the job is no longer known to Slurm",
            id="purged",
        ),
    ],
)
async def test_a_job_that_ends_before_its_server_fails_the_start(
    cluster, new_spawner, end, expected
):
    spawner = new_spawner()
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    cluster.write_output(job.job_id, "line 1\nModuleNotFoundError: No module named 'jupyterhub'\n")
    end(cluster, job)
    with pytest.raises(SpawnFailure) as info:
        await bounded(task)
    message = info.value.jupyterhub_message
    assert info.value.reason == "job-ended"
    assert message.startswith(f"Job {job.job_id} ended before the server started: {expected}.")
    assert message.endswith("ModuleNotFoundError: No module named 'jupyterhub'")
    assert f"Last lines of {job.output_path}:" in message
    assert await bounded(spawner.poll()) == 0


async def test_lost_submission_is_found_by_its_comment_not_submitted_twice(cluster, new_spawner):
    spawner = new_spawner()
    cluster.lose_next_submit(arrives=True)
    job, url = await start_server(spawner, cluster)
    assert url == f"http://vm:{PORT}"
    assert [j.job_id for j in cluster.jobs_of("alice")] == [job.job_id]
    assert cluster.count("submit") == 1
    assert cluster.count("find_jobs") >= 1
    assert spawner.get_state()["job_id"] == job.job_id


async def test_lost_submission_that_never_arrives_fails_and_a_late_job_is_cancelled(
    cluster, new_spawner
):
    spawner = new_spawner()
    cluster.lose_next_submit(arrives=False)
    failure = await failed_start(spawner)
    assert failure.reason == "scheduler-unavailable"
    assert failure.status_code == 503
    assert cluster.count("submit") == 1
    # the controller works through its backlog after all: the hub still looks, and cancels it
    (late,) = cluster.deliver_lost()
    await bounded(cluster.wait_for(lambda: late.state == "CANCELLED"))
    assert cluster.count("submit") == 1


async def test_queue_timeout_fails_the_start_and_cancels_the_job(cluster, new_spawner, new_hub):
    spawner = new_spawner(hub=new_hub(queue_timeout=0.2))
    cluster.on_submit = lambda job: cluster.pend(job.job_id, "Resources")
    failure = await failed_start(spawner)
    assert failure.reason == "queue-timeout"
    assert "(waiting for resources to become free)" in failure.jupyterhub_message
    (job,) = cluster.jobs_of("alice")
    assert job.state == "CANCELLED"


async def test_a_start_the_hub_abandons_cancels_the_job(cluster, new_spawner):
    """JupyterHub cancels a start that exceeds start_timeout (or the user cancels it)."""
    spawner = new_spawner()
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    await bounded(cluster.wait_for(lambda: cluster.count("query") >= 1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert job.state == "CANCELLED"


# ---------------------------------------------------------------- the port callback


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b'{"port": 70000}', 400, "outside the allowed range", id="port-out-of-range"),
        pytest.param(b'{"port": 40000, "ip": "evil"}', 400, "only 'port'", id="extra-keys"),
        pytest.param(b"port=40000", 400, "must be JSON", id="not-json"),
        pytest.param(b'{"port": "40000"}', 400, "must be an integer", id="port-as-string"),
    ],
)
async def test_callback_refuses_a_bad_body(cluster, new_spawner, body, status, message):
    spawner = new_spawner()
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    cluster.run(job.job_id)
    got_status, got_message = await bounded(report_port(spawner.user, job.token, body=body))
    assert got_status == status and message in got_message
    # the start still waits for a good report
    assert (await bounded(report_port(spawner.user, job.token, PORT)))[0] == 201
    assert await bounded(task) == f"http://vm:{PORT}"


async def test_callback_with_another_token_is_refused(cluster, new_spawner):
    spawner = new_spawner()
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    status, _ = await bounded(report_port(spawner.user, "not-" + job.token, PORT))
    assert status == 403
    assert not task.done()
    cluster.end(job.job_id, "FAILED", "NonZeroExitCode")
    with pytest.raises(SpawnFailure):
        await bounded(task)


async def test_callback_when_not_waiting_is_a_conflict(cluster, new_spawner):
    spawner = new_spawner()
    assert await bounded(report_port(spawner.user, spawner.api_token, PORT)) == (
        409,
        "This server is not waiting for its port",
    )
    job, _ = await start_server(spawner, cluster)
    # a second report once the server runs changes nothing
    assert (await bounded(report_port(spawner.user, job.token, PORT + 1)))[0] == 409
    assert spawner.get_state()["job_host"] == "vm"
    assert spawner.port == PORT


async def test_callback_port_range_is_enforced(cluster, new_spawner, new_hub):
    spawner = new_spawner(hub=new_hub(port_range=(40000, 40010)))
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    assert job.env["HPCSPAWNER_PORT_RANGE"] == "40000-40010"
    cluster.run(job.job_id)
    assert (await bounded(report_port(spawner.user, job.token, 40011)))[0] == 400
    assert (await bounded(report_port(spawner.user, job.token, 40010)))[0] == 201
    assert await bounded(task) == "http://vm:40010"


# ---------------------------------------------------------------- poll


async def test_poll_before_any_start_is_0(new_spawner):
    assert await bounded(new_spawner().poll()) == 0


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        pytest.param(
            lambda c, job: c.end(job.job_id, "TIMEOUT", "TimeLimit"),
            "the job reached its time limit (TimeLimit)",
            id="time-limit",
        ),
        pytest.param(
            lambda c, job: c.end(job.job_id, "CANCELLED by 0"),
            "the job was cancelled",
            id="cancelled-by-admin",
        ),
        pytest.param(
            lambda c, job: c.end(job.job_id, "NODE_FAIL"),
            "the node running the job failed",
            id="node-failed",
        ),
        pytest.param(
            lambda c, job: c.purge(job.job_id),
            "the job is no longer known to Slurm",
            id="purged",
        ),
    ],
)
async def test_poll_alive_then_gone_and_the_next_start_says_why(cluster, new_spawner, end, reason):
    spawner = new_spawner()
    job, _ = await start_server(spawner, cluster)
    assert await bounded(spawner.poll()) is None
    end(cluster, job)
    await bounded(_until_poll_is(spawner, 1))
    assert spawner.get_state()["last_end"] == {"job_id": job.job_id, "reason": reason}
    assert await first_line_of_next_start(spawner, cluster) == (
        f"Your previous server (job {job.job_id}) stopped: {reason}."
    )


async def first_line_of_next_start(spawner, cluster) -> str:
    """The first progress line of the next start (cancelled after it)."""
    # JupyterHub clears the state and gives the next start a new token; it tells the user first
    spawner.clear_state()
    spawner.api_token = secrets.token_hex(16)
    task = asyncio.ensure_future(spawner.start())
    await bounded(cluster.next_job())
    first = await bounded(anext(spawner.progress()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    return first["message"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(controller_down("query"), id="controller-down"),
        pytest.param(timed_out("query"), id="timed-out"),
        pytest.param(ValueError("squeue printed something else"), id="unparsable"),
    ],
)
async def test_poll_keeps_the_server_while_slurm_cannot_be_asked(cluster, new_spawner, error):
    spawner = new_spawner()
    job, _ = await start_server(spawner, cluster)
    cluster.fail("query", error, times=None)
    cluster.end(job.job_id, "COMPLETED")  # true, but nobody can see it
    await bounded(cluster.wait_for(lambda: _failed_queries(cluster)))
    for _ in range(3):
        assert await bounded(spawner.poll()) is None
    # only a positive answer ends it
    cluster.heal("query")
    await bounded(_until_poll_is(spawner, 1))


def _failed_queries(cluster) -> int:
    return sum(
        1 for c in cluster.history if c.kind == "query" and (c.outcome or "").startswith("error")
    )


async def test_poll_during_a_start_is_none_even_when_slurm_fails(cluster, new_spawner):
    spawner = new_spawner()
    cluster.fail("query", times=None)
    task = asyncio.ensure_future(spawner.start())
    await bounded(cluster.next_job())
    assert await bounded(spawner.poll()) is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)


async def _until_poll_is(spawner, expected) -> None:
    """Poll until ``expected``: the hub-wide poller refreshes every poll_interval."""
    cluster = spawner.driver.cluster
    while (await spawner.poll()) != expected:
        seen = cluster.count("query")
        await cluster.wait_for(lambda seen=seen: cluster.count("query") > seen)


# ---------------------------------------------------------------- stop


async def test_stop_a_running_server_cancels_and_waits_for_the_end(cluster, new_spawner):
    spawner = new_spawner()
    job, _ = await start_server(spawner, cluster)
    cluster.cancel_leaves_completing = True
    stopping = asyncio.ensure_future(spawner.stop())
    await bounded(cluster.wait_for(lambda: job.state == "COMPLETING"))
    # Slurm is still killing the processes: stop() waits
    seen = cluster.count("query")
    await bounded(cluster.wait_for(lambda: cluster.count("query") > seen))
    assert not stopping.done()
    cluster.end(job.job_id, "CANCELLED")
    await bounded(stopping)
    assert cluster.count("cancel") == 1


async def test_stop_a_queued_server(cluster, new_spawner):
    spawner = new_spawner()
    cluster.on_submit = lambda job: cluster.pend(job.job_id, "Priority")
    task = asyncio.ensure_future(spawner.start())
    job = await bounded(cluster.next_job())
    await bounded(spawner.stop())
    assert job.state == "CANCELLED"
    # the start that was waiting ends with the reason
    with pytest.raises(SpawnFailure) as info:
        await bounded(task)
    assert "ended before the server started: the job was cancelled" in str(
        info.value.jupyterhub_message
    )


async def test_stop_after_the_job_ended_by_itself_does_not_cancel(cluster, new_spawner):
    spawner = new_spawner()
    job, _ = await start_server(spawner, cluster)
    cluster.end(job.job_id, "TIMEOUT", "TimeLimit")
    await bounded(_until_poll_is(spawner, 1))
    await bounded(spawner.stop())
    assert cluster.count("cancel") == 0


async def test_stop_of_a_job_slurm_forgot_returns(cluster, new_spawner):
    spawner = new_spawner()
    job, _ = await start_server(spawner, cluster)
    cluster.purge(job.job_id)
    await bounded(spawner.stop())
    assert cluster.count("cancel") == 1


async def test_stop_never_started_does_nothing(cluster, new_spawner):
    await bounded(new_spawner().stop())
    assert cluster.history == []


# ---------------------------------------------------------------- hub restart


async def test_restarted_hub_readopts_every_server_with_one_query(cluster, new_spawner, new_hub):
    old_hub = new_hub()
    servers = [("alice", ""), ("alice", "gpu"), ("bob", ""), ("bob", "big")]
    states = []
    for user, name in servers:
        spawner = new_spawner(user, name, hub=old_hub)
        await start_server(spawner, cluster)
        states.append(spawner.get_state())
    hub = new_hub(poll_interval=30)  # a poll loop that does not tick during the test
    restored = [new_spawner(user, name, hub=hub, token="") for user, name in servers]
    for spawner, state in zip(restored, states, strict=True):
        spawner.load_state(state)
    polls = await bounded(asyncio.gather(*(spawner.poll() for spawner in restored)))
    assert polls == [None] * len(servers)
    assert restored[0].driver.calls == {"squeue": 1}
    assert all(job.state == "RUNNING" for job in cluster.jobs.values())


async def test_restart_during_a_start_finishes_it_through_get_url(cluster, new_spawner, new_hub):
    old = new_spawner()
    cluster.on_submit = lambda job: cluster.pend(job.job_id, "Resources")
    task = asyncio.ensure_future(old.start())
    job = await bounded(cluster.next_job())
    state = await bounded(
        cluster.wait_for(lambda: old.get_state().get("job_id") and old.get_state())
    )
    # the hub dies: nothing it would do on the way out happens (here: its commands fail)
    cluster.fail("cancel")
    cluster.fail("remove_file")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert job.state == "PENDING"

    spawner = new_spawner(hub=new_hub(), token="")  # JupyterHub keeps no token in its state
    spawner.load_state(state)
    assert await bounded(spawner.poll()) is None
    cluster.run(job.job_id, "n1")
    # the job reports with the token it was started with: the stored digest recognises it
    assert (await bounded(report_port(spawner.user, job.token, PORT)))[0] == 201
    assert await bounded(spawner.get_url()) == f"http://n1:{PORT}"
    assert spawner.get_state()["job_host"] == "n1"


async def test_restart_while_sbatch_ran_cancels_the_job_that_arrives(cluster, new_spawner, new_hub):
    old = new_spawner()
    release = cluster.hold("submit")
    task = asyncio.ensure_future(old.start())
    await bounded(cluster.wait_for(lambda: cluster.held("submit")))
    state = old.get_state()
    assert "job_id" not in state and state.get("spawn_id")
    task.cancel()  # the hub dies while sbatch runs
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    release.set()
    (call,) = [call for call in cluster.history if call.kind == "submit"]
    late = cluster.submit_script(*call.args, {})  # the controller created it anyway

    spawner = new_spawner(hub=new_hub(), token="")
    spawner.load_state(state)
    await bounded(cluster.wait_for(lambda: late.state == "CANCELLED"))
    assert await bounded(spawner.poll()) == 0
