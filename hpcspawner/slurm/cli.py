"""What a driver runs to reach Slurm through its command-line clients, not how.

:class:`CommandDriver` holds everything the local driver and the SSH driver share:
the argv of every command (``sbatch``, ``squeue``, ``scancel``, ``scontrol``,
``sacctmgr``, ``sacct``, ``sshare``, ``sdiag`` and the user-file commands ``install``, ``dd``, ``rm``, ``stat``,
``tail``), the output caps, the parsing of what they print and the mapping of
their errors. A subclass supplies the transport:

- :meth:`CommandDriver.run` runs one argv (already privilege-wrapped) and returns
  ``(rc, stdout, stderr)``, raising :class:`~hpcspawner.slurm.errors.SlurmTimeout`,
  :class:`~hpcspawner.slurm.errors.OutputTooLarge` or another
  :class:`~hpcspawner.slurm.errors.SlurmError` when it could not get an answer;
- :meth:`CommandDriver._which` names a command the way the transport finds it;
- :meth:`CommandDriver._user_prefix` is the privilege wrapper that runs the rest of
  argv as a user (``runuser``, ``sudo``);
- :meth:`CommandDriver._run_sbatch` hands the job's environment to ``sbatch``
  (locally in its environment; over SSH in a private file, never in argv).
"""

from __future__ import annotations

import asyncio
import re
import stat

from traitlets import Float, Integer, List, Unicode

from ..logtext import loggable
from .accounting import (
    QOS_ARGS,
    UserAccounting,
    account_rows_args,
    assoc_limits_args,
    parse_account_rows,
    parse_assoc_limits,
    parse_default_account,
    parse_qos,
    user_args,
    with_account_tree,
)
from .commands import DEFAULT_MAX_OUTPUT
from .driver import OUTPUT_TAIL_BYTES, JobOutput, SlurmDriver, may_act_as
from .errors import OutputTooLarge, SlurmError, SlurmTimeout
from .history import parse_sacct, sacct_args
from .jobstate import (
    INVALID_JOB_ID_RE,
    SQUEUE_FORMAT,
    JobInfo,
    parse_comment_matches,
    parse_squeue,
)
from .records import (
    NO_ACCOUNTING_RE,
    SCONTROL_NODES_ARGS,
    SCONTROL_PARTITIONS_ARGS,
    parse_associations,
    parse_nodes,
    parse_partitions,
    parse_sdiag_queue,
    sacctmgr_args,
)
from .snapshot import summarize
from .usage import parse_sshare, sshare_args

#: Cap on what a command working on a path the user controls may print (stdout and
#: stderr together), besides the bytes it is asked to read: error messages only.
USER_FILE_OUTPUT_CAP = 16 * 1024

#: What sacct says when the cluster keeps no job accounting (AccountingStorageType none).
NO_HISTORY_RE = re.compile(rf"{NO_ACCOUNTING_RE.pattern}|accounting storage is disabled")

#: The return code of a POSIX shell for "command not found".
COMMAND_NOT_FOUND = 127


class CommandDriver(SlurmDriver):
    """Slurm through its command-line clients; the transport is a subclass's.

    ``sbatch``, ``scancel`` and the user-file commands run as the user through the
    subclass's privilege wrapper; ``squeue``, ``scontrol``, ``sacctmgr``, ``sacct``,
    ``sshare`` and ``sdiag`` run once for all users as the hub's own account (through
    :attr:`query_command_prefix`).
    """

    query_command_prefix = List(
        Unicode(),
        config=True,
        help="""Command prefix for ``squeue``, ``scontrol``, ``sacctmgr``, ``sacct``,
        ``sshare`` and ``sdiag`` (which ask about every user's jobs, or the cluster, at once).

        Empty by default: they run as the hub's user (with the SSH driver, the
        account the hub logs in as). Set it only if your Slurm hides other users'
        jobs (``PrivateData=jobs``), e.g. ``["sudo", "-n", "-u", "slurm", "--"]``.
        """,
    )

    max_jobs_per_query = Integer(
        500,
        config=True,
        help="""How many job ids one ``squeue --jobs`` listing may carry (``job_query``
        "batch", or "auto" choosing it); more are split into several calls.
        """,
    )

    read_output_timeout = Float(
        5.0,
        config=True,
        help="""Seconds the hub spends reading the end of a job's output file, all in all.

        When a job ends before its server starts, the hub shows the user the end of
        the job's output file (``c.SlurmSpawner.job_output``). The file is the
        user's, so the hub reads it as the user, only if it is a regular file, and
        only its last few KiB; a read that takes longer than this (a slow file
        system, a file swapped for a FIFO) is abandoned and the user is told the
        file could not be read. Raise it only if the privilege wrapper itself is
        slow (e.g. sudo waiting for a directory service).

            c.LocalSlurmDriver.read_output_timeout = 10
        """,
    )

    # ------------------------------------------------------------ the transport's part

    def _which(self, command: str) -> str:
        """``command`` named the way the transport runs it (e.g. an absolute path)."""
        raise NotImplementedError

    def _user_prefix(self, username: str) -> list[str]:
        """The privilege wrapper that runs the rest of argv as ``username``."""
        raise NotImplementedError

    async def run(
        self,
        argv: list[str],
        *,
        kind: str,
        as_user: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> tuple[int, str, str]:
        """Run ``argv`` (already wrapped by :meth:`_as_user` when ``as_user`` is set);
        return (rc, stdout, stderr).

        ``kind`` counts the call in :attr:`calls`; ``env`` is the command's whole
        environment (None: the transport's default); ``timeout`` defaults to
        :attr:`command_timeout`; ``max_output`` caps stdout and stderr together
        (:class:`~hpcspawner.slurm.errors.OutputTooLarge` beyond it). Raises
        :class:`~hpcspawner.slurm.errors.SlurmTimeout` when the command takes too
        long and :class:`~hpcspawner.slurm.errors.SlurmError` when it cannot run.
        """
        self._count(kind)
        self.log.debug("Running %s", argv)
        timeout = self.command_timeout if timeout is None else timeout
        return await self._execute(argv, as_user, env, stdin, timeout, max_output)

    async def _execute(self, argv, as_user, env, stdin, timeout, max_output):
        """The transport: :meth:`run` with every argument given."""
        raise NotImplementedError

    async def _run_sbatch(
        self, username: str, script: str, env: dict[str, str]
    ) -> tuple[list[str], int, str, str]:
        """Run ``sbatch --parsable`` as ``username`` with ``script`` on stdin and ``env`` as
        the job's environment; return (argv, rc, stdout, stderr)."""
        raise NotImplementedError

    # ------------------------------------------------------------ argv

    def _as_user(self, username: str, argv: list[str]) -> list[str]:
        """argv run as ``username`` through the prefix; never as root, never a non-name.

        The last guard whatever the callers checked: ``runuser -u root`` and a
        name that could be read as an option or carry a path are refused here.
        """
        if not may_act_as(username):
            raise SlurmError(
                [argv[0]],
                None,
                f"refusing to run {argv[0]} as {username!r:.40}: not a user name a server "
                "may run as",
            )
        return self._user_prefix(username) + [self._which(argv[0])] + argv[1:]

    def _query_prefix(self) -> list[str]:
        """``query_command_prefix`` with its command resolved (for squeue, scontrol, sacctmgr)."""
        prefix = list(self.query_command_prefix)
        if prefix:
            prefix[0] = self._which(prefix[0])
        return prefix

    def _squeue_argv(self, *args: str) -> list[str]:
        """``squeue`` for every state Slurm still remembers, as the hub, without header."""
        return self._query_prefix() + [self._which("squeue"), "--noheader", "--states=all", *args]

    async def _run_as(self, username: str, argv: list[str], **kwargs) -> tuple[int, str, str]:
        """Run ``argv`` as ``username``; raise :class:`SlurmError` unless it exits 0."""
        full = self._as_user(username, argv)
        rc, out, err = await self.run(full, as_user=username, **kwargs)
        if rc != 0:
            raise SlurmError(full, rc, err, out)
        return rc, out, err

    # ------------------------------------------------------------ the driver interface

    async def submit(self, username, script, env):
        argv, rc, out, err = await self._run_sbatch(username, script, env)
        if rc != 0:
            raise SlurmError(argv, rc, err, out)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(argv, rc, f"sbatch printed no job id: {out.strip()!r} {err.strip()}")
        return job_id

    async def _query_batch(self, job_ids):
        found: dict[str, JobInfo] = {}
        for start in range(0, len(job_ids), self.max_jobs_per_query):
            chunk = job_ids[start : start + self.max_jobs_per_query]
            found.update(await self._squeue_jobs(chunk, kind="squeue"))
        return found

    async def _query_one(self, job_id):
        return (await self._squeue_jobs([job_id], kind="squeue_job")).get(job_id)

    async def _squeue_jobs(self, job_ids: list[str], kind: str) -> dict[str, JobInfo]:
        argv = self._squeue_argv(f"--jobs={','.join(job_ids)}", f"--format={SQUEUE_FORMAT}")
        rc, out, err = await self.run(argv, kind=kind)
        if rc != 0:
            if INVALID_JOB_ID_RE.search(err):
                # Slurm has purged these ids: a positive "no such job".
                return {}
            raise SlurmError(argv, rc, err, out)
        return parse_squeue(out)

    async def _read_queue_size(self):
        argv = self._query_prefix() + [self._which("sdiag")]
        rc, out, err = await self.run(argv, kind="sdiag")
        if rc != 0:
            raise SlurmError(argv, rc, err, out)
        return parse_sdiag_queue(out)

    async def find_jobs(self, username, comment):
        argv = self._squeue_argv(f"--users={username}", "--format=%i|%k")
        rc, out, err = await self.run(argv, kind="squeue")
        if rc != 0:
            raise SlurmError(argv, rc, err, out)
        return parse_comment_matches(out, comment)

    async def cancel(self, username, job_id):
        argv = self._as_user(username, ["scancel", str(job_id)])
        rc, out, err = await self.run(argv, kind="scancel", as_user=username)
        if rc != 0 and not INVALID_JOB_ID_RE.search(err):
            raise SlurmError(argv, rc, err, out)

    async def install_files(self, username, directory, files):
        steps = [(["install", "-d", "-m", "0700", "--", directory], None)]
        for name, content in files.items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"not a plain file name: {name!r}")
            path = f"{directory}/{name}"
            # create it 0600 first; dd then fills it from stdin (never argv) keeping the mode
            steps.append((["install", "-m", "0600", "/dev/null", path], None))
            steps.append((["dd", f"of={path}", "conv=notrunc", "status=none"], content))
        for argv, content in steps:
            await self._run_as(
                username,
                argv,
                kind="install_files",
                stdin=content.decode() if content is not None else None,
                max_output=USER_FILE_OUTPUT_CAP,  # they print nothing but errors
            )

    async def remove_file(self, username, path):
        await self._run_as(
            username,
            ["rm", "-f", "--", path],
            kind="remove_file",
            max_output=USER_FILE_OUTPUT_CAP,
        )

    async def read_output(self, username, path, max_bytes=OUTPUT_TAIL_BYTES):
        max_bytes = int(max_bytes)
        if max_bytes < 1:
            raise ValueError(f"read_output(max_bytes={max_bytes}): must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_output_timeout
        detail = ""
        try:
            # stat, not open: a FIFO would block and /dev/zero never end; -L follows symlinks
            argv = self._as_user(username, ["stat", "-L", "--format=%f %s", "--", path])
            rc, out, err = await self.run(
                argv,
                kind="read_output",
                as_user=username,
                timeout=self.read_output_timeout,
                max_output=USER_FILE_OUTPUT_CAP,
            )
            problem, size = stat_problem(rc, out, err)
            detail = err
            if not problem:
                # tail -c seeks to the end of a regular file: a huge file costs nothing more
                argv = self._as_user(username, ["tail", "-c", str(max_bytes), "--", path])
                rc, out, err = await self.run(
                    argv,
                    kind="read_output",
                    as_user=username,
                    timeout=max(deadline - loop.time(), 0.1),
                    max_output=max_bytes + USER_FILE_OUTPUT_CAP,
                )
                if rc != 0:
                    problem, detail = "cannot be read", err
        except SlurmTimeout:
            problem = f"could not be read within {self.read_output_timeout:g} s"
        except OutputTooLarge as e:
            problem, detail = "cannot be read", str(e)
        except SlurmError as e:
            problem, detail = "cannot be read", str(e)
        if problem:
            self.log.warning(
                "Not showing the output file %s of %s: it %s%s",
                loggable(path, 300),
                username,
                problem,
                f" ({loggable(detail.strip(), 500)})" if detail.strip() else "",
            )
            return JobOutput(problem=problem)
        if size > max_bytes and "\n" in out:
            out = out.split("\n", 1)[1]  # the first line was cut: drop it
        return JobOutput(text=out)

    async def cluster_snapshot(self):
        prefix = self._query_prefix()
        outputs = []
        for args in (SCONTROL_PARTITIONS_ARGS, SCONTROL_NODES_ARGS):
            argv = prefix + [self._which("scontrol"), *args]
            rc, out, err = await self.run(argv, kind="scontrol")
            if rc != 0:
                raise SlurmError(argv, rc, err, out)
            outputs.append(out)
        return summarize(parse_partitions(outputs[0]), parse_nodes(outputs[1]))

    async def _ask_accounting(self, command: str, args: list[str], none_re: re.Pattern):
        """Run the accounting client ``command`` (sacctmgr, sacct) as the hub; its stdout,
        or None when the hub or the cluster has no accounting: no such command (on the hub,
        or in the remote shell: the SSH driver names commands, it cannot look for them
        first), or Slurm's positive "no accounting" (``none_re`` in what it printed).

        An accounting database that does not answer (slurmdbd stopped: "failed to open
        persistent connection") is a :class:`SlurmError`, not "no accounting"."""
        prefix = self._query_prefix()
        try:
            argv = prefix + [self._which(command), *args]
        except SlurmError as e:
            self.log.warning("No %s on the hub, so no Slurm accounting: %s", command, e)
            return None
        rc, out, err = await self.run(argv, kind=command)
        if rc == COMMAND_NOT_FOUND and not prefix:
            self.log.warning("No %s, so no Slurm accounting: %s", command, err.strip())
            return None
        if rc != 0:
            if none_re.search(err) or none_re.search(out):
                # AccountingStorageType is not slurmdbd: a positive "no accounting"
                self.log.debug("Slurm has no accounting database: %s", err.strip())
                return None
            raise SlurmError(argv, rc, err, out)
        return out

    async def user_associations(self, username):
        out = await self._ask_accounting("sacctmgr", sacctmgr_args(username), NO_ACCOUNTING_RE)
        return None if out is None else parse_associations(out, username)

    async def qos_limits(self):
        out = await self._ask_accounting("sacctmgr", list(QOS_ARGS), NO_ACCOUNTING_RE)
        return None if out is None else parse_qos(out)

    async def user_accounting(self, username):
        out = await self._ask_accounting("sacctmgr", assoc_limits_args(username), NO_ACCOUNTING_RE)
        if out is None:
            return None
        limits = parse_assoc_limits(out, username)
        out = await self._ask_accounting("sacctmgr", user_args(username), NO_ACCOUNTING_RE)
        if out is None:
            return None
        accounting = UserAccounting(parse_default_account(out, username), limits)
        return await with_account_tree(accounting, self._account_rows)

    async def _account_rows(self, accounts: list[str]):
        """The accounts' own associations (one level of :func:`walk_accounts`)."""
        out = await self._ask_accounting("sacctmgr", account_rows_args(accounts), NO_ACCOUNTING_RE)
        return None if out is None else parse_account_rows(out)

    async def job_history(self, job_ids):
        if not job_ids:
            return {}
        out = await self._ask_accounting("sacct", sacct_args(job_ids), NO_HISTORY_RE)
        return None if out is None else parse_sacct(out)

    async def user_usage(self, username):
        argv = self._query_prefix() + [self._which("sshare"), *sshare_args(username)]
        rc, out, err = await self.run(argv, kind="sshare")
        if rc != 0:
            raise SlurmError(argv, rc, err, out)
        return parse_sshare(out, username)


#: What :func:`stat_problem` calls files that are not regular, by ``stat`` test.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)


def stat_problem(rc: int, out: str, err: str) -> tuple[str, int]:
    """(why not to read the file or "", its size) from ``stat -L --format='%f %s'``."""
    if rc != 0:
        return ("does not exist" if "No such file" in err else "cannot be read"), 0
    try:
        mode_hex, size_text = out.split()
        mode, size = int(mode_hex, 16), int(size_text)
    except ValueError:
        return "cannot be read", 0
    if stat.S_ISREG(mode):
        return "", size
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "something else")
    return f"is not a regular file (it is {kind})", size
