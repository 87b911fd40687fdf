"""The driver seam: every driver tells its observer (``SlurmDriver.observer``) each request
that reaches Slurm and each operation of the interface (``OPERATIONS``), once, with how long
it took and what it raised; a failing observer never fails the driver.

With a driver of a few hooks; tests/unit/test_metrics.py runs the real local driver on
fake commands into the hub's metrics, test_metrics_lifecycle.py the fake Slurm's driver.
"""

from __future__ import annotations

import asyncio

import pytest
from fakeslurm import FakeSlurm

from hpcspawner.slurm import OPERATIONS, DriverObserver, SlurmDriver, SlurmTimeout
from hpcspawner.slurm.local import LocalSlurmDriver
from hpcspawner.slurm.rest import RESTSlurmDriver


def bounded(awaitable, timeout: float = 5.0):
    return asyncio.wait_for(awaitable, timeout)


class Told(DriverObserver):
    def __init__(self):
        self.requests: list[str] = []
        self.operations: list[tuple[str, str | None]] = []

    def request(self, command):
        self.requests.append(command)

    def operation(self, name, seconds, error):
        assert seconds >= 0
        self.operations.append((name, type(error).__name__ if error else None))


class Hooks(SlurmDriver):
    """A driver of a few operations: ``cancel`` fails as told, ``install_files`` hands
    over to ``files`` (another driver), ``submit`` waits for ``gate``."""

    def __init__(self, files=None, **kwargs):
        super().__init__(**kwargs)
        self.files = files
        self.cancel_error: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def submit(self, username, script, env):
        self._count("sbatch")
        if self.gate is not None:
            await self.gate.wait()
        return "1"

    async def _query_batch(self, job_ids):
        self._count("squeue")
        return {}

    async def cancel(self, username, job_id):
        self._count("scancel")
        if self.cancel_error is not None:
            raise self.cancel_error

    async def install_files(self, username, directory, files):
        if self.files is not None:
            return await self.files.install_files(username, directory, files)
        self._count("install_files")


def test_every_operation_of_the_interface_is_observed():
    for name in OPERATIONS:
        assert getattr(SlurmDriver, name).observed_operation == name
        assert getattr(LocalSlurmDriver, name).observed_operation == name
        assert getattr(RESTSlurmDriver, name).observed_operation == name
        assert getattr(FakeSlurm, name).observed_operation == name


async def test_operations_and_requests_reach_the_observer_with_their_errors():
    driver = Hooks(job_query="batch")
    told = driver.observer = Told()
    assert await bounded(driver.submit("alice", "#!/bin/sh", {})) == "1"
    assert await bounded(driver.query(["2", "1"])) == {}
    driver.cancel_error = SlurmTimeout(["scancel", "1"], 30)
    with pytest.raises(SlurmTimeout):
        await bounded(driver.cancel("alice", "1"))
    assert told.requests == ["sbatch", "squeue", "scancel"]
    assert told.operations == [("submit", None), ("query", None), ("cancel", "SlurmTimeout")]


async def test_an_operation_inside_another_is_told_once():
    """A driver that hands the user's files to another driver (the REST driver's
    ``files``): one operation, told by the outer driver; the inner one's requests are
    its own."""
    inner = Hooks()
    outer = Hooks(files=inner)
    outer.observer, inner.observer = Told(), Told()
    await bounded(outer.install_files("alice", "/d", {"f": b"x"}))
    assert outer.observer.operations == [("install_files", None)]
    assert inner.observer.operations == []
    assert inner.observer.requests == ["install_files"]
    # and the next operation, outside, is told again
    await bounded(inner.install_files("alice", "/d", {"f": b"x"}))
    assert inner.observer.operations == [("install_files", None)]


async def test_a_cancelled_operation_is_told_as_such():
    driver = Hooks()
    told = driver.observer = Told()
    driver.gate = asyncio.Event()
    task = asyncio.ensure_future(driver.submit("alice", "#!/bin/sh", {}))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert told.operations == [("submit", "CancelledError")]


async def test_a_failing_observer_never_fails_the_driver(caplog):
    class Broken(DriverObserver):
        def request(self, command):
            raise RuntimeError("metrics bug")

        def operation(self, name, seconds, error):
            raise RuntimeError("metrics bug")

    driver = Hooks()
    driver.observer = Broken()
    assert await bounded(driver.submit("alice", "#!/bin/sh", {})) == "1"
    assert driver.calls == {"sbatch": 1}
    assert "The driver's observer failed on sbatch" in caplog.text
    assert "The driver's observer failed on submit" in caplog.text
