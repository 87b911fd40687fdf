"""The driver interface: scheduler access behind one small set of coroutines.

A driver knows how to reach Slurm; the spawner, the poller and the cluster
cache only ever call these methods. :class:`~hpcspawner.slurm.local.LocalSlurmDriver`
runs the Slurm commands on the hub's host, :class:`~hpcspawner.slurm.ssh.SSHSlurmDriver`
on a login node over SSH (both share :class:`~hpcspawner.slurm.cli.CommandDriver`),
and :class:`~hpcspawner.slurm.rest.RESTSlurmDriver` asks slurmrestd (JWT) over HTTP.
"""

from __future__ import annotations

import dataclasses
import re

from traitlets import Float
from traitlets.config import LoggingConfigurable

from .jobstate import JobInfo
from .records import Association
from .snapshot import ClusterSnapshot

#: How many bytes (from its end) of a job's output file :meth:`SlurmDriver.read_output` reads.
OUTPUT_TAIL_BYTES = 4096


#: The user names a driver acts as: POSIX names (either case, ASCII, at most 32
#: characters). Nothing that could be read as an option (``-x``) or carry a path.
USER_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def may_act_as(username: object) -> bool:
    """True when a driver may run commands as ``username``: a plain name, never root.

    The last guard of every driver whatever its callers checked (who may log in
    is decided by :mod:`hpcspawner.accounts.rules`, above this package).
    """
    return (
        isinstance(username, str)
        and USER_NAME_RE.fullmatch(username) is not None
        and username.lower() != "root"
    )


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """The end of a job's output file, or why it was not read.

    ``text`` is "" when the file was not read; ``problem`` then says why, in words
    for the user that complete "The job's output file ...": "does not exist",
    "is not a regular file (it is a FIFO)", "could not be read within 5 s".
    """

    text: str = ""
    problem: str = ""


class SlurmDriver(LoggingConfigurable):
    """Base class of scheduler drivers. One instance serves the whole hub."""

    command_timeout = Float(
        30.0,
        config=True,
        help="""Seconds a scheduler request may take before it is abandoned.

        Slurm clients wait MessageTimeout (10 s by default) per attempt when the
        controller is down and retry once, so keep this above 2 x MessageTimeout.
        A timed-out status query counts as "unknown" and never stops a server.

            c.LocalSlurmDriver.command_timeout = 30
        """,
    )

    #: How many scheduler requests this driver made, by kind (for tests and benchmarks).
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    async def close(self) -> None:
        """Release what the driver holds open (connections); the hub calls it at shutdown.

        Nothing to do for a driver that holds nothing (the local one). The driver
        stays usable: a later call opens what it needs again.
        """

    #: Whether the driver can write and read the user's files (the token file, the TLS
    #: files, a failed job's output): slurmrestd cannot, without a ``files`` delegate.
    handles_files = True

    def config_problems(self) -> list[str]:
        """What in this driver's settings an admin must fix, each naming the setting; checked
        without asking Slurm (``hpcspawner-check-config`` prints them). None by default."""
        return []

    async def submit(self, username: str, script: str, env: dict[str, str]) -> str:
        """Submit ``script`` as ``username`` with ``env``; return the job id.

        ``env`` is the job's whole environment and may hold secrets: it must
        never reach argv, the script, or a log.
        """
        raise NotImplementedError

    async def query(self, job_ids: list[str]) -> dict[str, JobInfo]:
        """Ask about many jobs at once.

        Returns the records Slurm has; a job missing from the result is unknown
        to Slurm (gone). Raises :class:`~hpcspawner.slurm.errors.SlurmError` when
        Slurm could not be asked: callers must treat that as "unknown".
        """
        raise NotImplementedError

    async def cancel(self, username: str, job_id: str) -> None:
        """Cancel a job of ``username``. Cancelling a finished job is not an error."""
        raise NotImplementedError

    async def find_jobs(self, username: str, comment: str) -> list[str]:
        """Ids of ``username``'s jobs (in any state Slurm still remembers) whose comment
        is exactly ``comment``. Raises :class:`~hpcspawner.slurm.errors.SlurmError` when
        Slurm could not be asked."""
        raise NotImplementedError

    async def install_files(self, username: str, directory: str, files: dict[str, bytes]) -> None:
        """Write ``files`` (name -> content) into ``directory`` as ``username``: the
        directory mode 0700, each file 0600. Content never reaches argv. Raises
        :class:`~hpcspawner.slurm.errors.SlurmError` on failure."""
        raise NotImplementedError

    async def remove_file(self, username: str, path: str) -> None:
        """Remove the file ``path`` as ``username``; a missing file is not an error.
        Raises :class:`~hpcspawner.slurm.errors.SlurmError` on failure."""
        raise NotImplementedError

    async def read_output(
        self, username: str, path: str, max_bytes: int = OUTPUT_TAIL_BYTES
    ) -> JobOutput:
        """The last ``max_bytes`` bytes of a job's output file, read as ``username``.

        The file is the user's to make anything: a driver reads it only if it is a
        regular file (following symlinks, checked without opening it, so a FIFO or
        ``/dev/zero`` is refused), reads at most ``max_bytes`` from its end, holds at
        most that much (plus error messages), and gives up after a few seconds. It
        never raises for a file it cannot read: it logs why and returns a
        :class:`JobOutput` with empty ``text`` and the ``problem``. The text may hold
        anything (control characters, escapes): callers escape it before logging
        (:func:`hpcspawner.logtext.loggable`).
        """
        return JobOutput(problem="is not read by this driver")

    async def cluster_snapshot(self) -> ClusterSnapshot:
        """Partitions, nodes, limits and free resources, from one look at the cluster.

        Asks as the hub (not as a user). Raises :class:`~hpcspawner.slurm.errors.SlurmError`
        when Slurm could not be asked and :class:`~hpcspawner.slurm.records.ParseError`
        when its answer is not understood. :class:`~hpcspawner.spawner.clusterinfo.ClusterInfo`
        caches the result for the whole hub; call that, not this, from request handlers.
        """
        raise NotImplementedError

    async def user_associations(self, username: str) -> list[Association] | None:
        """``username``'s Slurm associations (account, QOS, partition).

        Returns None when the cluster has no accounting database (no slurmdbd):
        accounts and QOS then come from the admin's config. Raises
        :class:`~hpcspawner.slurm.errors.SlurmError` when accounting exists but could not
        be asked, :class:`ValueError` for a user name that is not a plain name.
        """
        raise NotImplementedError
