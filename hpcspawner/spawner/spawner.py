"""SlurmSpawner: run each user's server as a Slurm job.

The spawner orchestrates start, poll, stop, progress and the state; the work is done
elsewhere:

- :mod:`~hpcspawner.spawner.request` takes the user's request from the form, a link or the
  REST API to a validated :class:`~hpcspawner.resources.options.ResourceRequest`;
- :mod:`~hpcspawner.spawner.jobspec` makes the job of it (environment, batch script);
- a :class:`~hpcspawner.slurm.SlurmDriver` talks to Slurm; the hub-wide
  :class:`~hpcspawner.spawner.poller.JobPoller` answers "is the job alive?" for every server
  with one query; :mod:`~hpcspawner.spawner.jobwatch` follows one job through it;
  :mod:`~hpcspawner.spawner.jobhistory` asks accounting why a job the queue forgot ended;
- :mod:`~hpcspawner.spawner.callback` receives the port the job reports;
- :mod:`~hpcspawner.spawner.userfiles` puts the user's files down and reads them back,
  as the user; :mod:`~hpcspawner.spawner.messages` words what the user is told;
- :mod:`~hpcspawner.spawner.recovery` finds a job whose ``sbatch`` answer was lost;
- :mod:`~hpcspawner.spawner.state` and :mod:`~hpcspawner.spawner.progress` hold what the
  hub keeps and what the spawn page shows; :mod:`~hpcspawner.spawner.metrics` counts what
  happened (a :class:`~hpcspawner.spawner.metrics.ServerRecord` per server).
"""

from __future__ import annotations

import asyncio
import secrets
import time

from jupyterhub.spawner import Spawner
from sqlalchemy.orm import object_session
from traitlets import (
    Unicode,
)

from .._version import __version__
from ..slurm import (
    Liveness,
    SlurmDriver,
    SlurmError,
)
from . import (
    callback,  # also registers the port callback handler
    jobhistory,
    jobspec,
    jobwatch,
    messages,
    metrics,
    recovery,
)
from . import state as serverstate
from .clusterinfo import ClusterInfo
from .errors import SpawnFailure
from .poller import JobPoller, JobStatus
from .progress import StartProgress
from .request import UserRequest
from .settings import SlurmSpawnerSettings
from .shared import SharedSlurm, shared_slurm
from .userfiles import UserFiles


class SlurmSpawner(SlurmSpawnerSettings, UserRequest, Spawner):
    """Start each user's server as a Slurm batch job submitted as that user."""

    # ------------------------------------------------------------ runtime state

    job_id = Unicode("", help="The Slurm job id of the current server (state).")
    job_host = Unicode("", help="The node the server runs on (state).")
    spawn_id = Unicode("", help="Random id of the current start, in the job's comment (state).")
    token_sha256 = Unicode(
        "", help="SHA-256 of the server's API token (state): recognises its job after a restart."
    )
    #: this start may have put a token file down (a command may have run as the user for it)
    _token_file_written = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._port_future: asyncio.Future | None = None
        self._progress = StartProgress()
        self._starting = False
        self._stopping = False
        self._recovering = False
        self._interrupted_start = False
        self._resume_task: asyncio.Future | None = None
        #: why the last server ended underneath the user (job, reason); shown at the next start
        self._last_end: dict | None = None
        self._record = metrics.ServerRecord(self.metrics_culler_services)
        if self.queue_timeout and self.start_timeout < self.queue_timeout + 30:
            self.log.warning(
                "c.Spawner.start_timeout (%s s) is not above c.SlurmSpawner.queue_timeout (%s s)"
                " plus the boot time: it will end queued spawns first",
                self.start_timeout,
                self.queue_timeout,
            )
        try:
            self.policy  # noqa: B018 - build it now: a config mistake is reported at once
        except ValueError as e:
            self.log.critical("%s", e)

    # ------------------------------------------------------------ shared driver + poller

    @property
    def shared(self) -> SharedSlurm:
        """The hub's one driver, cluster cache and poller (shared with the authenticator)."""
        return shared_slurm(self.config, self.log, settings=self)

    @property
    def driver(self) -> SlurmDriver:
        return self.shared.driver

    @property
    def poller(self) -> JobPoller:
        return self.shared.poller(self.poll_interval, self.log)

    @property
    def cluster_info(self) -> ClusterInfo:
        return self.shared.cluster_info

    @property
    def history(self) -> jobhistory.JobHistory:
        return self.shared.history

    # ------------------------------------------------------------ JupyterHub's private parts

    @property
    def log_name(self) -> str:
        """How the hub's log names this server: ``alice``, or ``alice:gpu`` for a named one."""
        # no public hook: JupyterHub names servers in its own log lines with the private
        # Spawner._log_name; ours say the same (tests/unit/test_hub_internals.py pins it)
        return self._log_name

    @property
    def stop_requested(self) -> bool:
        """JupyterHub is stopping this server (its own stop, not ours)."""
        # no public hook: JupyterHub sets the private Spawner._stop_pending before it
        # polls and stops a server (User.stop); the public ``pending`` says "spawn"
        # instead while a spawn is pending too (tests/unit/test_hub_internals.py pins it)
        return self._stop_pending

    @property
    def checking_server(self) -> bool:
        """JupyterHub waits for the started server's first HTTP answer (``http_timeout``)."""
        # no public hook: User.spawn sets the private Spawner._waiting_for_response while it
        # waits, and stops the server when it gives up (tests/unit/test_hub_internals.py);
        # only the metrics ask, so a JupyterHub without it must not fail a stop
        return bool(getattr(self, "_waiting_for_response", False))

    # ------------------------------------------------------------ state

    def get_state(self):
        state = super().get_state()
        fields = {name: getattr(self, name) for name in serverstate.FIELDS}
        state.update(serverstate.dump(fields, self._last_end))
        return state

    def load_state(self, state):
        super().load_state(state)
        fields, last_end = serverstate.load(state)
        for name, value in fields.items():
            setattr(self, name, value)
        self._token_file_written = bool(self.job_id)  # a job was submitted: its file was written
        # a job without a node: the hub stopped while this server was starting
        self._interrupted_start = bool(self.job_id and not self.job_host)
        if self.spawn_id and not self.job_id and state.get("spawn_id"):
            # the hub stopped while sbatch ran: its job may exist; cancel it if it shows up
            self.log.warning(
                "%s was being submitted when the hub stopped; looking for job %s",
                self.log_name,
                self._job_comment(),
            )
            self._reap(self._job_comment())
            self.spawn_id = ""
        if last_end:
            self._last_end = last_end  # kept across clear_state: the next start says it
        if self.job_id:
            self.poller.track(self.job_id, self._job_changed)
            self.shared.servers.add(self)

    def clear_state(self):
        super().clear_state()
        if self.job_id:
            self.poller.untrack(self.job_id)
        for name in serverstate.FIELDS:
            setattr(self, name, "")
        self._interrupted_start = False

    @property
    def last_end(self) -> dict | None:
        """Why this user's last server ended underneath them ({"job_id", "reason"}), or None."""
        return dict(self._last_end) if self._last_end else None

    def _save_state(self) -> None:
        """Write the state to the hub's database now (JupyterHub only does it after start)."""
        orm_spawner = self.orm_spawner
        if orm_spawner is None:
            return
        session = object_session(orm_spawner)
        if session is None:
            return
        orm_spawner.state = self.get_state()
        session.commit()

    # ------------------------------------------------------------ progress

    def _emit(self, progress: int, message: str) -> None:
        self._progress.emit(progress, message)

    async def progress(self):
        async for event in self._progress.follow(lambda: self._starting):
            yield event

    # ------------------------------------------------------------ the callback

    def callback_port_range(self) -> tuple[int, int] | None:
        return jobspec.port_range(self)

    def accept_port(self, port: int) -> bool:
        """Take the port the job reported; False if this server is not waiting for one."""
        future = self._port_future
        if not self._starting or future is None or future.done():
            return False
        future.set_result(port)
        return True

    # ------------------------------------------------------------ start

    def _job_comment(self) -> str:
        return jobspec.job_comment(self.job_tag, self.user.name, self.name, self.spawn_id)

    @property
    def files(self) -> UserFiles:
        """The user's side of this server: their account, the files put down as them."""
        return UserFiles(self.driver, self.user.name, self.name, self.log_name, self.log)

    async def move_certs(self, paths):
        """Copy the server's key and certificates to where only the user can read them."""
        files = self.files
        # JupyterHub calls this before start(); it runs as the user
        await files.check_account(self.account_rules(), "start servers")
        return await files.install_certs(files.server_directory(self.internal_certs_dir), paths)

    def get_env(self):
        token_file = None
        if self.token_delivery == "file":  # noqa: S105 - a delivery mode, not a password
            # the launcher reads the token from this file (see _write_token_file)
            token_file = self.files.token_file(self.token_dir, self.spawn_id)
        return jobspec.job_environment(self, super().get_env(), token_file)

    async def _write_token_file(self, env: dict[str, str]) -> None:
        """Put the API token, as the user, into the 0600 file the job's env names."""
        path = env.get("HPCSPAWNER_TOKEN_FILE")
        if path:
            self._token_file_written = True
            await self.files.write_token_file(path, self.api_token or "")

    async def _remove_token_file(self) -> None:
        """Remove this start's token file if the launcher has not (a start that never
        reached the server). Failures are logged: the start or stop goes on.

        Nothing runs when no file was written: a start refused before (a system
        account, invalid options) must not run any command as the user."""
        written = self._token_file_written or bool(self.job_id)
        if self.token_delivery != "file" or not (written and self.spawn_id):  # noqa: S105
            return
        self._token_file_written = False
        await self.files.remove_token_file(self.token_dir, self.spawn_id)

    def render_script(self, request, env: dict[str, str]) -> str:
        return jobspec.batch_script(
            self,
            request,
            env,
            home=self.files.home(),
            username=self.user.name,
            server=self.name,
            comment=self._job_comment(),
            args=self.get_args(),
        )

    def job_command(self, request, environment) -> list[str]:
        return jobspec.job_command(self, request, environment, self.get_args())

    def server_state(self) -> str | None:
        """``queued``, ``starting``, ``running`` or None, for the hub's metrics."""
        status = self.poller.cached(self.job_id) if self.job_id else None
        spawning = self._starting or self.pending == "spawn"
        return metrics.server_state(spawning, self.job_host, status)

    async def start(self):
        self.shared.servers.add(self)
        previous, self._last_end = self._last_end, None
        self.spawn_id = secrets.token_hex(6)
        self._token_file_written = False
        self.token_sha256 = callback.token_digest(self.api_token or "")
        first = None
        if previous:
            first = (
                f"Your previous server (job {previous['job_id']}) stopped: {previous['reason']}."
            )
        return await self._starting_frame(self._start(), first)

    async def _starting_frame(self, coro, first_message: str | None = None):
        """Run ``coro`` as this server's start: progress, the port future, cleanup."""
        self._progress.begin()
        if first_message:
            self._emit(0, first_message)
        self._starting = True
        self._port_future = asyncio.get_running_loop().create_future()
        self.port = 0
        self._record.start_began()
        try:
            return await coro
        except BaseException as e:
            self._record.start_failed(e, self.start_timeout)
            await self._cleanup_failed_start()
            raise
        finally:
            self._starting = False
            self._port_future = None
            self._progress.wake()  # progress listeners see the end now

    async def _start(self):
        await self.files.check_account(self.account_rules(), "start servers")
        request = await self._applied_request()
        env = self.get_env()
        script = self.render_script(request, env)
        self._save_state()  # the spawn id, before sbatch
        await self._write_token_file(env)
        t0 = time.monotonic()
        job_id = await self._submit(script, env)
        self.job_id = job_id
        self._record.submitted()
        self.log.info(
            "Submitted job %s for %s (%s) in %.3f s",
            job_id,
            self.log_name,
            messages.describe_request(request),
            time.monotonic() - t0,
        )
        self.poller.track(job_id, self._job_changed)
        # a hub that dies from here on finds the job in its database (see _resume_start)
        self._save_state()
        self._emit(10, f"Submitted job {job_id} to Slurm ({messages.describe_request(request)})")
        return await self._server_url(job_id)

    async def _server_url(self, job_id: str) -> str:
        try:
            port, status = await jobwatch.wait_for_port(
                self.poller,
                job_id,
                self._port_future,
                interval=self.startup_poll_interval,
                queue_timeout=self.queue_timeout,
                progress=self._emit,
            )
        except jobwatch.JobGone as e:
            raise await self._job_ended_failure(job_id, e.status) from None
        except jobwatch.QueuedTooLong as e:
            message = messages.queue_timeout(job_id, e.status.info, self.queue_timeout)
            raise SpawnFailure(message, reason="queue-timeout", status_code=503) from None
        self._record.server_up()
        host = self.node_address.format(node=status.info.batch_host)
        self.job_host = status.info.batch_host
        self.port = port
        self._emit(90, f"Server of job {job_id} is listening on {status.info.batch_host}:{port}")
        self.log.info("Job %s of %s reported port %s on %s", job_id, self.log_name, port, host)
        proto = "https" if self.internal_ssl else "http"
        return f"{proto}://{host}:{port}"

    # ------------------------------------------------------------ a start the hub lost

    def _resume_interrupted_start(self) -> None:
        """Finish, in the background, the start a hub restart interrupted: its job is
        in the state, alive (``poll()`` just asked), its port not reported yet."""
        # no public hook: after a restart JupyterHub restores each server with
        # load_state() (synchronous, before anyone asked Slurm about the job), then asks
        # poll() and, when poll() says "running", get_url(); nothing tells a spawner
        # "finish what you were doing". So the first poll() that finds the job alive
        # starts the resumed start here, and get_url() waits for it.
        self._interrupted_start = False
        task = self._resume_task = asyncio.ensure_future(self._starting_frame(self._resume_start()))
        # its failure is get_url()'s to report (and _starting_frame cleaned up): never
        # "Task exception was never retrieved" when JupyterHub does not ask
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _resume_start(self) -> str:
        """Finish a start that a hub crash interrupted: the job is in the state, the
        port not yet. The job's launcher reports it with the old token (matched by
        ``token_sha256``); the new hub takes it like the old one would have."""
        job_id = self.job_id
        self.log.info("Resuming the start of %s: following job %s again", self.log_name, job_id)
        self._emit(10, f"The hub restarted; following job {job_id} again")
        url = await asyncio.wait_for(self._server_url(job_id), timeout=self.start_timeout)
        self._save_state()
        return url

    async def get_url(self):
        """JupyterHub asks this after a restart, for servers whose ``poll()`` says running.

        For a start that the restart interrupted, wait for it to finish here: the
        hub then checks the server at the URL it reports. If it fails, the old URL
        goes back, the hub does not reach it and stops the server (after
        ``http_timeout``); the job was cancelled already.
        """
        task = self._resume_task
        if task is None:
            return await super().get_url()
        try:
            return await asyncio.shield(task)
        except Exception as e:  # noqa: BLE001 - whatever failed, the hub check must go on
            self.log.warning("Could not resume the start of %s: %s", self.log_name, e)
            return self.server.url

    async def _submit(self, script: str, env: dict[str, str]) -> str:
        """Submit once; if the answer was lost, find the job by its comment instead."""
        comment = self._job_comment()
        job_id = await recovery.submit_once(
            self.driver,
            self.user.name,
            script,
            env,
            comment=comment,
            log_name=self.log_name,
            log=self.log,
        )
        if job_id is not None:
            return job_id
        self._emit(15, "The scheduler did not answer the submission; checking whether it arrived")
        self._recovering = True  # a failure now leaves a reaper behind (_cleanup_failed_start)
        try:
            return await recovery.find_lost_job(
                self.driver,
                self.user.name,
                comment,
                timeout=self.submit_recovery_timeout,
                pause=min(5.0, max(0.5, self.startup_poll_interval)),
                reapers=self.shared.reapers,
                reap_interval=self.poll_interval,
                log=self.log,
            )
        finally:
            self._recovering = False

    def _reap(self, comment: str) -> None:
        """Cancel ``comment``'s job if it shows up (a submission whose start failed)."""
        self.shared.reapers.start(
            self.driver, self.user.name, comment, self.poll_interval, self.log
        )

    async def _job_ended_failure(self, job_id: str, status: JobStatus) -> SpawnFailure:
        why, _ = await jobhistory.why_ended(self.history, status, self.user.name)
        output_path, output = await self.files.job_output(self.job_output, job_id)
        message, logged = messages.job_ended(job_id, why, output_path, output)
        self.poller.untrack(job_id)  # clear_state() will not: the job id is gone from the state
        self.job_id = ""
        return SpawnFailure(
            message,
            reason="job-ended",
            log_message=(
                f"job {job_id} of {self.log_name} ended before its server started ({why}); {logged}"
            ),
            status_code=500,
        )

    async def _cleanup_failed_start(self) -> None:
        job_id = self.job_id
        if not job_id:
            if self._recovering:
                # stopped while looking for a lost submission: keep looking, cancel it if found
                self._reap(self._job_comment())
            await self._remove_token_file()
            return
        self.log.info("Cancelling job %s of %s after a failed start", job_id, self.log_name)
        try:
            await asyncio.shield(self.driver.cancel(self.user.name, job_id))
        except (SlurmError, asyncio.CancelledError) as e:
            self.log.warning("Could not cancel job %s of %s: %s", job_id, self.log_name, e)
        await self._remove_token_file()

    # ------------------------------------------------------------ poll / stop

    def _job_changed(self, status: JobStatus) -> None:
        """Called by the poller when a job's status changes."""
        self._record.job_changed(status.info)
        if (
            status.liveness is Liveness.GONE
            and not self._starting
            and not self._stopping
            and not self.stop_requested  # JupyterHub is stopping it already
            and self.server is not None
        ):
            # tell the hub now instead of at its next poll
            asyncio.ensure_future(self.poll_and_notify())

    async def poll(self):
        if not self.job_id:
            return 0
        if self._starting:
            return None
        status = await self.poller.status(self.job_id, max_age=self.poll_interval * 1.5)
        if self._interrupted_start and status.liveness is not Liveness.GONE:
            self._resume_interrupted_start()
            return None
        if status.liveness is Liveness.GONE:
            job_id = self.job_id
            known = self._last_end
            if known and known.get("job_id") == job_id:
                # asked again (JupyterHub polls once more while it stops the server): the
                # reason found the first time stands, accounting is not asked twice
                self.log.debug("Job %s of %s is gone: %s", job_id, self.log_name, known["reason"])
                return 1
            status = await jobwatch.final_status(self.poller, status)
            told = not self._stopping and not self.stop_requested  # else the hub ends it
            reason, state = await jobhistory.why_ended(
                self.history, status, self.user.name, ask=told
            )
            if told:
                self._last_end = {"job_id": job_id, "reason": reason}
            if not self._stopping and self.job_host:  # a server that came up ended by itself
                self._record.job_ended(job_id, state)
            self.log.info("Job %s of %s is gone: %s", job_id, self.log_name, reason)
            return 1
        if status.liveness is Liveness.UNKNOWN:
            self.log.debug(
                "Job %s of %s: status unknown (%s)", self.job_id, self.log_name, status.error
            )
        return None

    async def stop(self, now=False):
        job_id = self.job_id
        if not job_id:
            return
        # before anything runs as the user (the token file's removal included)
        await self.files.check_account(self.account_rules(), "stop servers")
        if not self._starting and self.poller.cached(job_id).liveness is Liveness.GONE:
            # it ended by itself (poll() said so): nothing to cancel, nothing to wait for
            self.log.info("Job %s of %s already ended", job_id, self.log_name)
            if not self.job_host:
                await self._remove_token_file()  # it ended before its launcher took the token
            return
        if self.job_host:  # a server that came up (a failed start counts as such)
            self._record.hub_stops(job_id, self.user.name, checking=self.checking_server)
        self._stopping = True
        try:
            await self._cancel_and_wait(job_id)
        finally:
            self._stopping = False
        if not self.job_host:
            # stopped before its server reported a port: the launcher may not have taken the
            # token yet (once it reports, it has deleted the file: no extra command per stop)
            await self._remove_token_file()

    async def _cancel_and_wait(self, job_id: str) -> None:
        self.log.info("Cancelling job %s of %s", job_id, self.log_name)
        await self.driver.cancel(self.user.name, job_id)
        if await jobwatch.wait_until_gone(self.poller, job_id, self.stop_timeout):
            self.log.info("Job %s of %s ended", job_id, self.log_name)
        else:
            self.log.warning(
                "Job %s of %s still not ended %.0f s after scancel",
                job_id,
                self.log_name,
                self.stop_timeout,
            )


__all__ = ["SlurmSpawner", "__version__"]
