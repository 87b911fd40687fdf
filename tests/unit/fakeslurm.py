"""An in-memory Slurm for tests: one scheduler (:class:`FakeCluster`) and the driver that
talks to it (:class:`FakeSlurm`, a real :class:`~hpcspawner.slurm.SlurmDriver`).

The spawner gets the driver the way a site configures one, through config::

    cluster = FakeCluster()
    c.SlurmSpawner.driver_class = FakeSlurm
    c.FakeSlurm.cluster = cluster

Several hubs (a hub and the hub after its restart: two configs, two drivers,
two pollers) may share one cluster. The test moves jobs through Slurm's states
(:meth:`FakeCluster.run`, :meth:`~FakeCluster.end`, :meth:`~FakeCluster.purge`),
injects failures (:meth:`~FakeCluster.fail`, :meth:`~FakeCluster.reject_next_submit`,
:meth:`~FakeCluster.lose_next_submit`), holds calls until it releases them
(:meth:`~FakeCluster.hold`), and waits for what it expects with
:meth:`~FakeCluster.wait_for` (an event per change, never a sleep). The job's
port report goes through the hub's real callback handler (:func:`report_port`).

Tests of one component (the poller, the cluster cache) give it a driver of their own,
``FakeSlurm(cluster=cluster)``, read what it asked in :attr:`FakeCluster.history` (or
:meth:`~FakeCluster.calls`) and wait for the answers with :meth:`~FakeCluster.answered`.
Small knobs for them:
:meth:`~FakeCluster.existing_job` (a job with a chosen id), :attr:`~FakeCluster.accounts`
(login names the cluster knows beyond the hub host's users), an exception as a user's
:attr:`~FakeCluster.associations` (sacctmgr fails for that user), accounting's limits
(:attr:`~FakeCluster.qos`, :attr:`~FakeCluster.user_accounting`), the job accounting
(:attr:`~FakeCluster.accounting`, sacct) and the users' :attr:`~FakeCluster.usage`
(sshare), and a submit call's
:attr:`~FakeCall.env` and :attr:`~FakeCall.files` (what sbatch got, also when it refused).

Who a user is on the hub's host (uid, shell, home) comes from the one seam
:func:`hpcspawner.accounts.posix.lookup_posix_account`: tests/unit/conftest.py stands
:data:`HOST_USERS` (alice and bob, as the test cluster's set-up creates them) in for
the host's, through :func:`host_users_lookup`, so that the unit tests need no such users
on the machine. A test adds a user with the ``host_users`` fixture.

Import it as ``fakeslurm`` from tests/unit and as ``tests.unit.fakeslurm`` from
tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

from tornado import httputil, web
from traitlets import Instance, default

from hpcspawner.accounts import posix
from hpcspawner.accounts.rules import PosixAccount
from hpcspawner.slurm import OUTPUT_TAIL_BYTES, JobOutput, SlurmDriver
from hpcspawner.slurm.errors import SlurmError, SlurmTimeout
from hpcspawner.slurm.history import JobEnd
from hpcspawner.slurm.jobstate import ENDED_STATES, JobInfo
from hpcspawner.slurm.records import parse_nodes, parse_partitions, sacctmgr_args
from hpcspawner.slurm.snapshot import ClusterSnapshot, summarize

DATA = Path(__file__).parent / "data"

#: What the driver methods are called when a test injects a failure or a hold.
KINDS = (
    "submit",
    "query",
    "cancel",
    "find_jobs",
    "install_files",
    "remove_file",
    "read_output",
    "cluster_snapshot",
    "user_associations",
    "qos_limits",
    "user_accounting",
    "job_history",
    "user_usage",
)

#: The Slurm command each method stands for: ``driver.calls`` counts these, as
#: :class:`~hpcspawner.slurm.local.LocalSlurmDriver` does, so counts compare.
COMMANDS = {
    "submit": "sbatch",
    "query": "squeue",
    "cancel": "scancel",
    "find_jobs": "squeue",
    "install_files": "install_files",
    "remove_file": "remove_file",
    "read_output": "read_output",
    "cluster_snapshot": "scontrol",
    "user_associations": "sacctmgr",
    "qos_limits": "sacctmgr",
    "user_accounting": "sacctmgr",
    "job_history": "sacct",
    "user_usage": "sshare",
}

#: stderr of a Slurm client when slurmctld is down (recorded: squeue_controller_down.stderr).
CONTROLLER_DOWN = (DATA / "squeue_controller_down.stderr").read_text()

_DIRECTIVE = re.compile(r"^#SBATCH\s+--([a-z-]+)=(\S*)\s*$")


#: The test cluster's users as the hub host knows them (scripts/cluster creates them there).
HOST_USERS = {
    "alice": PosixAccount("alice", 1001, 1001, ("alice",), "/bin/bash", "/home/alice"),
    "bob": PosixAccount("bob", 1002, 1002, ("bob",), "/bin/bash", "/home/bob"),
}


def host_users_lookup(users: dict[str, PosixAccount], host_lookup=posix.lookup_posix_account):
    """A stand-in for :func:`~hpcspawner.accounts.posix.lookup_posix_account`: ``users``
    first (alice, bob and whoever a test adds), then the host's own (root, daemon, ...)."""

    def lookup(name: str) -> PosixAccount | None:
        account = users.get(name)
        return account if account is not None else host_lookup(name)

    return lookup


def controller_down(kind: str = "query") -> SlurmError:
    """The error a driver raises when slurmctld cannot be reached."""
    return SlurmError([COMMANDS[kind]], 1, CONTROLLER_DOWN)


def timed_out(kind: str = "query", seconds: float = 30.0) -> SlurmTimeout:
    """The error a driver raises when a command gave no answer in time (killed)."""
    return SlurmTimeout([COMMANDS[kind]], seconds)


def recorded_snapshot() -> ClusterSnapshot:
    """The test cluster idle, from recorded ``scontrol`` output (partitions debug,
    compute, gpu, remote; see tests/unit/data/README.md)."""
    return summarize(
        parse_partitions((DATA / "scontrol_partitions.txt").read_text()),
        parse_nodes((DATA / "scontrol_nodes_idle.txt").read_text()),
    )


@dataclass
class FakeJob:
    """One job in the fake scheduler."""

    job_id: str
    user: str
    script: str
    #: the job's environment (what sbatch got): the API token or the path of its file
    env: dict[str, str]
    state: str = "PENDING"
    #: Slurm's reason: "None" for a job not yet looked at by the scheduler
    reason: str | None = "None"
    node: str | None = None
    start_time: datetime | None = None
    #: forgotten by the controller (after MinJobAge): squeue no longer lists it
    purged: bool = False
    directives: dict[str, str] = field(default_factory=dict)
    #: the API token the job's launcher took when the job started (see FakeCluster.run)
    token: str = ""

    @property
    def comment(self) -> str:
        return self.directives.get("comment", "")

    @property
    def output_path(self) -> str:
        return self.directives.get("output", "slurm-%j.out").replace("%j", self.job_id)

    @property
    def ended(self) -> bool:
        return self.state.split()[0] in ENDED_STATES

    def info(self) -> JobInfo:
        """The job as squeue shows it."""
        return JobInfo(
            job_id=self.job_id,
            state=self.state,
            reason=None
            if self.reason in (None, "None") and self.state != "PENDING"
            else self.reason,
            batch_host=self.node,
            node_list=self.node,
            start_time=self.start_time,
            partition=self.directives.get("partition"),
            user=self.user,
            time_limit=self.directives.get("time"),
            num_nodes=int(self.directives.get("nodes", "1")),
        )


@dataclass
class FakeCall:
    """One driver call as the scheduler saw it."""

    kind: str
    args: tuple
    #: time.monotonic() when the call reached the scheduler, and when it returned
    started: float
    ended: float | None = None
    #: "ok", "error: ...", "cancelled", or None while it runs
    outcome: str | None = None
    #: submit only: the job's environment, and every file on the cluster at that moment
    #: ((user, path) -> content, as :attr:`FakeCluster.files`)
    env: dict[str, str] | None = None
    files: dict[tuple[str, str], bytes] | None = None


@dataclass
class _Failure:
    error: BaseException
    remaining: int | None  # None: until healed


class FakeCluster:
    """The scheduler: jobs, users' files, and what the test makes go wrong."""

    def __init__(self, *, first_job_id: int = 100, snapshot: ClusterSnapshot | None = None):
        self.jobs: dict[str, FakeJob] = {}
        #: (user, path) -> content, written by install_files (each file 0600, as the user)
        self.files: dict[tuple[str, str], bytes] = {}
        #: (user, directory) made by install_files (mode 0700)
        self.directories: set[tuple[str, str]] = set()
        #: user -> associations; a user not in here: no accounting (None); an exception:
        #: sacctmgr fails for that user (raised). Each answer is a new list, as parsed output is.
        self.associations: dict[str, Any] = {}
        #: every QOS's limits (``qos_limits``: None, no accounting; an exception: raised)
        self.qos: Any = None
        #: user -> UserAccounting (``user_accounting``), as :attr:`associations`
        self.user_accounting: dict[str, Any] = {}
        #: Slurm's job accounting (sacct): None, none kept (the default); a dict, kept:
        #: what it says of each job id, else of each ended job as the test ended it
        self.accounting: dict[str, JobEnd] | None = None
        #: user -> their accounts' usage (sshare); a user not in here: not available
        #: (None); an exception: sshare fails for that user (raised)
        self.usage: dict[str, Any] = {}
        #: login names the cluster knows besides the hub host's users (e.g. behind an SSH driver)
        self.accounts: set[str] = set()
        self.snapshot = snapshot if snapshot is not None else recorded_snapshot()
        #: scancel of a running job leaves it COMPLETING until the test ends it
        self.cancel_leaves_completing = False
        #: called with each new job (e.g. ``lambda job: cluster.run(job.job_id)``)
        self.on_submit: Callable[[FakeJob], None] | None = None
        #: every driver call, in order
        self.history: list[FakeCall] = []
        self._next_id = first_job_id
        self._failures: dict[str, list[_Failure]] = {}
        self._holds: dict[str, asyncio.Event] = {}
        self._held: dict[str, int] = {}
        self._lost_submits: list[bool] = []  # one entry per lost sbatch to come: does it arrive?
        self._undelivered: list[FakeJob] = []
        self._changed = asyncio.Event()

    def __deepcopy__(self, memo):
        # traitlets deep-copies config values: every driver must share this one scheduler
        return self

    # ------------------------------------------------------------ waiting (events, never sleeps)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (checked at every change); return its value."""

        async def watch():
            while True:
                changed = self._changed
                value = predicate()
                if value:
                    return value
                await changed.wait()

        return await asyncio.wait_for(watch(), timeout)

    async def next_job(self, user: str | None = None, timeout: float = 5.0) -> FakeJob:
        """The next job submitted from now on (by ``user``, if given)."""
        known = set(self.jobs)
        return await self.wait_for(
            lambda: next(
                (
                    job
                    for job_id, job in self.jobs.items()
                    if job_id not in known and (user is None or job.user == user)
                ),
                None,
            ),
            timeout,
        )

    def count(self, kind: str) -> int:
        """How many calls of ``kind`` (a driver method name) reached the scheduler."""
        return sum(1 for call in self.history if call.kind == kind)

    def calls(self, kind: str) -> list[FakeCall]:
        """The calls of ``kind`` so far, in order."""
        return [call for call in self.history if call.kind == kind]

    def settled(self, kind: str | None = None) -> bool:
        """No call (of ``kind``) is still running or held: each has returned or raised."""
        return all(call.outcome is not None for call in self.history if kind in (None, call.kind))

    async def answered(self, kind: str, calls: int, timeout: float = 5.0) -> None:
        """Wait until ``calls`` calls of ``kind`` have reached the scheduler and every one
        has returned or raised (the caller has its answer when this returns)."""
        await self.wait_for(lambda: self.count(kind) >= calls and self.settled(kind), timeout)

    # ------------------------------------------------------------ jobs

    def submit_script(self, user: str, script: str, env: dict[str, str]) -> FakeJob:
        """Create a job as sbatch would (also what a controller does with a lost submission)."""
        directives = {}
        for line in script.splitlines():
            match = _DIRECTIVE.match(line)
            if match:
                directives[match.group(1)] = match.group(2)
        job = FakeJob(str(self._next_id), user, script, dict(env), directives=directives)
        self._next_id += 1
        self.jobs[job.job_id] = job
        if self.on_submit is not None:
            self.on_submit(job)
        self._notify()
        return job

    def existing_job(self, job_id: str, user: str = "alice") -> FakeJob:
        """A job with the id ``job_id``, already in the queue when the test begins (PENDING,
        submitted by someone else or an earlier hub); move it with :meth:`run`, :meth:`end`..."""
        if job_id in self.jobs:
            raise ValueError(f"job {job_id} exists")
        job = self.jobs[job_id] = FakeJob(job_id, user, "#!/bin/bash\n", {})
        self._notify()
        return job

    def job(self, job_id: str) -> FakeJob:
        return self.jobs[job_id]

    def jobs_of(self, user: str) -> list[FakeJob]:
        return [job for job in self.jobs.values() if job.user == user]

    def pend(self, job_id: str, reason: str = "Priority", start_time: datetime | None = None):
        """Keep the job PENDING for ``reason``, with the scheduler's expected start."""
        job = self.jobs[job_id]
        job.state, job.reason, job.start_time, job.node = "PENDING", reason, start_time, None
        self._notify()

    def run(self, job_id: str, node: str = "vm") -> None:
        """Start the job on ``node``; its launcher takes the API token (from the file
        ``HPCSPAWNER_TOKEN_FILE`` names, which it deletes, else from the environment)."""
        job = self.jobs[job_id]
        job.state, job.reason, job.node = "RUNNING", None, node
        job.start_time = datetime.now().replace(microsecond=0)
        path = job.env.get("HPCSPAWNER_TOKEN_FILE")
        if path:
            content = self.files.pop((job.user, path), None)
            job.token = content.decode().strip() if content is not None else ""
        else:
            job.token = job.env.get("JUPYTERHUB_API_TOKEN", "")
        self._notify()

    def end(self, job_id: str, state: str = "COMPLETED", reason: str | None = None) -> None:
        """End the job: COMPLETED, FAILED (reason NonZeroExitCode), CANCELLED, TIMEOUT, ..."""
        job = self.jobs[job_id]
        job.state, job.reason = state, reason
        self._notify()

    def purge(self, job_id: str) -> None:
        """The controller forgets the job (MinJobAge passed): squeue no longer lists it."""
        self.jobs[job_id].purged = True
        self._notify()

    def write_output(self, job_id: str, text: str) -> None:
        """What the job printed into its ``--output`` file."""
        job = self.jobs[job_id]
        self.files[(job.user, job.output_path)] = text.encode()
        self._notify()

    def job_end(self, job_id: str) -> JobEnd | None:
        """What accounting says of ``job_id`` (see :attr:`accounting`); None: nothing."""
        if self.accounting is None:
            return None
        if job_id in self.accounting:
            return self.accounting[job_id]
        job = self.jobs.get(job_id)
        if job is None or not job.ended:
            return None
        state, _, by = job.state.partition(" by ")
        return JobEnd(job_id, job.user, state, cancelled_by=by or None)

    def listed(self, job_id: str) -> bool:
        return job_id in self.jobs and not self.jobs[job_id].purged

    # ------------------------------------------------------------ what goes wrong

    def fail(self, kind: str, error: BaseException | None = None, times: int | None = 1) -> None:
        """The next ``times`` calls of ``kind`` raise ``error`` (default: controller down);
        ``times=None``: every call until :meth:`heal`. Failures queue in order."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        self._failures.setdefault(kind, []).append(
            _Failure(error if error is not None else controller_down(kind), times)
        )

    def heal(self, kind: str) -> None:
        self._failures.pop(kind, None)

    def reject_next_submit(self, stderr: str) -> None:
        """sbatch refuses the next job with Slurm's own message (rc 1, nothing created)."""
        self.fail("submit", SlurmError(["sbatch", "--parsable"], 1, stderr))

    def lose_next_submit(self, *, arrives: bool = True) -> None:
        """sbatch times out on the next job. ``arrives``: the controller created it anyway
        (found again by its comment); else it stays undelivered until :meth:`deliver_lost`."""
        self._lost_submits.append(arrives)

    def deliver_lost(self) -> list[FakeJob]:
        """The controller comes back and creates the lost submissions from its backlog."""
        delivered = []
        while self._undelivered:
            pending = self._undelivered.pop(0)
            delivered.append(self.submit_script(pending.user, pending.script, pending.env))
        return delivered

    def hold(self, kind: str) -> asyncio.Event:
        """Calls of ``kind`` wait (a hung controller) until the returned event is set."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        release = self._holds[kind] = asyncio.Event()
        return release

    def held(self, kind: str) -> int:
        """How many calls of ``kind`` wait at a hold now."""
        return self._held.get(kind, 0)

    async def _enter(self, kind: str, args: tuple, **record) -> FakeCall:
        call = FakeCall(kind, args, time.monotonic(), **record)
        self.history.append(call)
        self._notify()
        release = self._holds.get(kind)
        if release is not None and not release.is_set():
            self._held[kind] = self._held.get(kind, 0) + 1
            self._notify()
            try:
                await release.wait()
            except asyncio.CancelledError:
                call.outcome, call.ended = "cancelled", time.monotonic()
                raise
            finally:
                self._held[kind] -= 1
                self._notify()
        queue = self._failures.get(kind)
        if queue:
            failure = queue[0]
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    queue.pop(0)
            call.outcome, call.ended = f"error: {failure.error}", time.monotonic()
            self._notify()
            raise failure.error
        return call

    def _done(self, call: FakeCall, outcome: str = "ok") -> None:
        call.outcome, call.ended = outcome, time.monotonic()
        self._notify()


class FakeSlurm(SlurmDriver):
    """The driver for a :class:`FakeCluster` (``c.FakeSlurm.cluster``); one per hub."""

    cluster = Instance(
        FakeCluster,
        config=True,
        help="""The in-memory scheduler this driver talks to (shared by hubs that share it).

            c.FakeSlurm.cluster = FakeCluster()
        """,
    )

    @default("cluster")
    def _default_cluster(self):
        return FakeCluster()

    async def _enter(self, kind: str, *args, **record) -> FakeCall:
        self._count(COMMANDS[kind])
        return await self.cluster._enter(kind, args, **record)

    async def submit(self, username, script, env):
        cluster = self.cluster
        call = await self._enter(
            "submit", username, script, env=dict(env), files=dict(cluster.files)
        )
        _check_user(cluster, username, "sbatch")
        _check_secrets(cluster, username, script, env)
        if cluster._lost_submits:
            arrives = cluster._lost_submits.pop(0)
            if arrives:
                cluster.submit_script(username, script, env)
            else:
                cluster._undelivered.append(FakeJob("", username, script, dict(env)))
            cluster._done(call, "error: lost")
            raise SlurmError(
                ["sbatch", "--parsable"],
                1,
                "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
            )
        job = cluster.submit_script(username, script, env)
        cluster._done(call)
        return job.job_id

    async def query(self, job_ids):
        call = await self._enter("query", tuple(job_ids))
        cluster = self.cluster
        answer = {
            job_id: cluster.jobs[job_id].info() for job_id in job_ids if cluster.listed(job_id)
        }
        cluster._done(call)
        return answer

    async def cancel(self, username, job_id):
        call = await self._enter("cancel", username, job_id)
        _check_user(self.cluster, username, "scancel")
        cluster = self.cluster
        job = cluster.jobs.get(job_id)
        if job is not None and not job.purged:
            if job.user != username:
                raise SlurmError(
                    ["scancel", job_id],
                    1,
                    f"scancel: error: Kill job error on job id {job_id}: Access/permission denied",
                )
            if not job.ended:
                running = job.state != "PENDING"
                if running and cluster.cancel_leaves_completing:
                    job.state = "COMPLETING"
                else:
                    job.state = "CANCELLED"
                    if running:
                        job.reason = None
        # a finished or purged job: scancel says nothing useful and the driver ignores it
        cluster._done(call)

    async def find_jobs(self, username, comment):
        call = await self._enter("find_jobs", username, comment)
        cluster = self.cluster
        found = [
            job.job_id
            for job in cluster.jobs.values()
            if job.user == username and job.comment == comment and not job.purged
        ]
        cluster._done(call)
        return found

    async def install_files(self, username, directory, files):
        call = await self._enter("install_files", username, directory, tuple(files))
        _check_user(self.cluster, username, "install")
        for name in files:
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"not a plain file name: {name!r}")
        cluster = self.cluster
        cluster.directories.add((username, directory))
        for name, content in files.items():
            cluster.files[(username, f"{directory}/{name}")] = bytes(content)
        cluster._done(call)

    async def remove_file(self, username, path):
        call = await self._enter("remove_file", username, path)
        _check_user(self.cluster, username, "rm")
        self.cluster.files.pop((username, path), None)
        self.cluster._done(call)

    async def read_output(self, username, path, max_bytes=OUTPUT_TAIL_BYTES):
        call = await self._enter("read_output", username, path, max_bytes)
        content = self.cluster.files.get((username, path))
        self.cluster._done(call)
        if content is None:
            return JobOutput(problem="does not exist")
        return JobOutput(text=content[-int(max_bytes) :].decode(errors="replace"))

    async def cluster_snapshot(self):
        call = await self._enter("cluster_snapshot")
        self.cluster._done(call)
        return self.cluster.snapshot

    async def user_associations(self, username):
        sacctmgr_args(username)  # the name check the local driver makes first (ValueError)
        call = await self._enter("user_associations", username)
        return self._answer(call, self.cluster.associations.get(username), copy=True)

    async def qos_limits(self):
        call = await self._enter("qos_limits")
        return self._answer(call, self.cluster.qos)

    async def user_accounting(self, username):
        sacctmgr_args(username)
        call = await self._enter("user_accounting", username)
        return self._answer(call, self.cluster.user_accounting.get(username))

    async def job_history(self, job_ids):
        call = await self._enter("job_history", tuple(job_ids))
        cluster = self.cluster
        cluster._done(call)
        if cluster.accounting is None:
            return None
        return {job_id: end for job_id in job_ids if (end := cluster.job_end(job_id)) is not None}

    async def user_usage(self, username):
        call = await self._enter("user_usage", username)
        return self._answer(call, self.cluster.usage.get(username), copy=True)

    def _answer(self, call: FakeCall, answer, *, copy: bool = False):
        """The answer as the test set it: an exception is raised; ``copy``: a new list
        (as parsed output is), None as it is."""
        if isinstance(answer, BaseException):
            self.cluster._done(call, f"error: {answer}")
            raise answer
        self.cluster._done(call)
        return list(answer) if copy and answer is not None else answer


def _check_user(cluster: FakeCluster, username: str, command: str) -> None:
    """Commands run as the user: never as root, and only for a login account of the hub's
    host (as ``runuser -u`` needs; asked through the one seam, where the unit tests stand
    in alice and bob) or one the test declared in ``cluster.accounts``."""
    if username == "root":
        raise AssertionError(f"{command} would run as root")
    if username not in cluster.accounts and posix.lookup_posix_account(username) is None:
        raise SlurmError(
            ["runuser", "-u", username, "--", command],
            1,
            f"runuser: user {username} does not exist",
        )


def _check_secrets(cluster: FakeCluster, username: str, script: str, env: dict[str, str]) -> None:
    """What the house rules promise about the API token at sbatch time."""
    token = env.get("JUPYTERHUB_API_TOKEN")
    path = env.get("HPCSPAWNER_TOKEN_FILE")
    if path:
        if token or env.get("JPY_API_TOKEN"):
            raise AssertionError("the API token is in sbatch's environment next to its file")
        content = cluster.files.get((username, path))
        if not content:
            raise AssertionError(f"the token file {path} was not written before sbatch")
        token = content.decode().strip()
    if token and token in script:
        raise AssertionError("the API token is in the batch script")


# ---------------------------------------------------------------- the job's port report


async def report_port(user, token: str, port: int | None = None, *, body: bytes | None = None):
    """POST ``{"port": port}`` (or ``body``) with ``token`` to the hub's real port
    callback handler (:class:`hpcspawner.spawner.callback.PortCallbackHandler`), as the job's
    launcher does; ``user`` is the token's owner (with ``.spawners``).

    Returns ``(status, message)``: 201 accepted, 400 bad body, 403 wrong token,
    409 not waiting. Authentication (the token -> user lookup) is the hub's and is
    not part of this.
    """
    from jupyterhub.objects import Hub

    from hpcspawner.spawner.callback import CALLBACK_PATH, PortCallbackHandler

    if body is None:
        body = json.dumps({"port": port}).encode()
    application = web.Application(
        [], hub=Hub(), db=mock.Mock(dirty=()), log_function=lambda _handler: None
    )
    connection = mock.Mock()
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine("POST", "/hub" + CALLBACK_PATH, "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "hub:8081", "Authorization": f"token {token}"}),
        body=body,
        connection=connection,
    )
    handler = PortCallbackHandler(application, request)
    handler._jupyterhub_user = user  # what the hub's authentication found for the token
    handler._transforms = []  # what tornado's _execute sets up (no gzip)
    try:
        await handler.post()
    except web.HTTPError as e:
        return e.status_code, e.log_message or ""
    _start_line, _headers, chunk = connection.write_headers.call_args.args
    return handler.get_status(), json.loads(chunk)["message"]
