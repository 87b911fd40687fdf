"""Run Slurm's commands on the hub's host, as argv lists, never through a shell."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat

from traitlets import Float, Integer, List, Unicode, default

from ..logtext import loggable
from .commands import DEFAULT_MAX_OUTPUT, run_argv
from .driver import OUTPUT_TAIL_BYTES, JobOutput, SlurmDriver, may_act_as
from .errors import OutputTooLarge, SlurmError, SlurmTimeout
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
    sacctmgr_args,
)
from .snapshot import summarize

#: Variables of the hub's environment that Slurm's clients need to find the cluster.
PASSED_SLURM_VARIABLES = ("SLURM_CONF", "SLURM_CLUSTERS")

#: Cap on what a command working on a path the user controls may print (stdout and
#: stderr together), besides the bytes it is asked to read: error messages only.
USER_FILE_OUTPUT_CAP = 16 * 1024


class LocalSlurmDriver(SlurmDriver):
    """Reach Slurm with its command-line clients on the hub's host.

    ``sbatch``, ``scancel`` and reading a job's output run as the user through
    :attr:`user_command_prefix`; ``squeue`` runs once for all users as the hub's
    own user.
    """

    user_command_prefix = List(
        Unicode(),
        config=True,
        help="""Command that runs the rest of argv as the user, as a list.

        ``{username}`` is replaced by the user's name. The default is
        ``["runuser", "-u", "{username}", "--"]`` when the hub runs as root, else
        ``["sudo", "-n", "-E", "-H", "-u", "{username}", "--"]`` (sudoers must then allow
        SETENV for sbatch and scancel: the job's environment, including its API
        token, travels in sbatch's environment). Use ``[]`` when the hub runs as
        the user already.

            c.LocalSlurmDriver.user_command_prefix = ["sudo", "-n", "-E", "-H", "-u", "{username}", "--"]
        """,
    )

    @default("user_command_prefix")
    def _default_prefix(self):
        if os.geteuid() == 0:
            return ["runuser", "-u", "{username}", "--"]
        return ["sudo", "-n", "-E", "-H", "-u", "{username}", "--"]

    query_command_prefix = List(
        Unicode(),
        config=True,
        help="""Command prefix for ``squeue`` (which asks about every user's jobs at once).

        Empty by default: ``squeue`` runs as the hub's user. Set it only if your
        Slurm hides other users' jobs (``PrivateData=jobs``), e.g.
        ``["sudo", "-n", "-u", "slurm", "--"]``.
        """,
    )

    commands_path = Unicode(
        config=True,
        help="""Where to look for Slurm's commands and the prefix command (PATH syntax).

        Defaults to the hub's PATH followed by the standard system directories.
        Commands are resolved to absolute paths on the hub, so the job's own PATH
        (``c.Spawner.environment``) does not need to contain them.
        """,
    )

    @default("commands_path")
    def _default_commands_path(self):
        parts = os.environ.get("PATH", "").split(os.pathsep)
        for extra in (
            "/usr/local/bin",
            "/usr/bin",
            "/bin",
            "/usr/local/sbin",
            "/usr/sbin",
            "/sbin",
        ):
            if extra not in parts:
                parts.append(extra)
        return os.pathsep.join(part for part in parts if part)

    max_jobs_per_query = Integer(
        500,
        config=True,
        help="""How many job ids one ``squeue --jobs`` call may carry; more are split into
        several calls.
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

    def _which(self, command: str) -> str:
        if os.path.isabs(command):
            return command
        found = shutil.which(command, path=self.commands_path)
        if found is None:
            raise SlurmError(
                [command], None, f"{command}: command not found in {self.commands_path}"
            )
        return found

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
        prefix = [part.format(username=username) for part in self.user_command_prefix]
        if prefix:
            prefix[0] = self._which(prefix[0])
        return prefix + [self._which(argv[0])] + argv[1:]

    def _query_prefix(self) -> list[str]:
        """``query_command_prefix`` with its command resolved (for squeue, scontrol, sacctmgr)."""
        prefix = list(self.query_command_prefix)
        if prefix:
            prefix[0] = self._which(prefix[0])
        return prefix

    def _base_env(self) -> dict[str, str]:
        env = {"PATH": self.commands_path, "LANG": "C.UTF-8"}
        for name in PASSED_SLURM_VARIABLES:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    async def run(
        self,
        argv: list[str],
        *,
        kind: str,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> tuple[int, str, str]:
        """Run argv; return (rc, stdout, stderr). Raise SlurmTimeout when it takes too long.

        ``timeout`` defaults to :attr:`command_timeout`; ``max_output`` caps what the
        command may print (:class:`~hpcspawner.slurm.errors.OutputTooLarge` beyond it).

        The command runs in its own session so that a timeout kills it and
        everything it started (the prefix command's children included).
        """
        self._count(kind)
        self.log.debug("Running %s", argv)
        return await run_argv(
            argv,
            timeout=self.command_timeout if timeout is None else timeout,
            env=env if env is not None else self._base_env(),
            stdin=stdin,
            max_output=max_output,
        )

    async def submit(self, username, script, env):
        argv = self._as_user(username, ["sbatch", "--parsable"])
        run_env = self._base_env()
        run_env.update(env)
        rc, out, err = await self.run(argv, kind="sbatch", env=run_env, stdin=script)
        if rc != 0:
            raise SlurmError(argv, rc, err, out)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(argv, rc, f"sbatch printed no job id: {out.strip()!r} {err.strip()}")
        return job_id

    async def query(self, job_ids):
        ids = sorted(set(job_ids), key=lambda job_id: (len(job_id), job_id))
        found: dict[str, JobInfo] = {}
        for start in range(0, len(ids), self.max_jobs_per_query):
            chunk = ids[start : start + self.max_jobs_per_query]
            found.update(await self._query_chunk(chunk))
        return found

    async def _query_chunk(self, job_ids: list[str]) -> dict[str, JobInfo]:
        prefix = self._query_prefix()
        argv = prefix + [
            self._which("squeue"),
            "--noheader",
            "--states=all",
            f"--jobs={','.join(job_ids)}",
            f"--format={SQUEUE_FORMAT}",
        ]
        rc, out, err = await self.run(argv, kind="squeue")
        if rc != 0:
            if INVALID_JOB_ID_RE.search(err):
                # Slurm has purged these ids: a positive "no such job".
                return {}
            raise SlurmError(argv, rc, err, out)
        return parse_squeue(out)

    async def find_jobs(self, username, comment):
        prefix = self._query_prefix()
        argv = prefix + [
            self._which("squeue"),
            "--noheader",
            "--states=all",
            f"--users={username}",
            "--format=%i|%k",
        ]
        rc, out, err = await self.run(argv, kind="squeue")
        if rc != 0:
            raise SlurmError(argv, rc, err, out)
        return parse_comment_matches(out, comment)

    async def cancel(self, username, job_id):
        argv = self._as_user(username, ["scancel", str(job_id)])
        rc, out, err = await self.run(argv, kind="scancel")
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
            full = self._as_user(username, argv)
            rc, out, err = await self.run(
                full,
                kind="install_files",
                stdin=content.decode() if content is not None else None,
                max_output=USER_FILE_OUTPUT_CAP,  # they print nothing but errors
            )
            if rc != 0:
                raise SlurmError(full, rc, err, out)

    async def remove_file(self, username, path):
        argv = self._as_user(username, ["rm", "-f", "--", path])
        rc, out, err = await self.run(argv, kind="remove_file", max_output=USER_FILE_OUTPUT_CAP)
        if rc != 0:
            raise SlurmError(argv, rc, err, out)

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
                timeout=self.read_output_timeout,
                max_output=USER_FILE_OUTPUT_CAP,
            )
            problem, size = _stat_problem(rc, out, err)
            detail = err
            if not problem:
                # tail -c seeks to the end of a regular file: a huge file costs nothing more
                argv = self._as_user(username, ["tail", "-c", str(max_bytes), "--", path])
                rc, out, err = await self.run(
                    argv,
                    kind="read_output",
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

    async def user_associations(self, username):
        args = sacctmgr_args(username)
        prefix = self._query_prefix()
        try:
            argv = prefix + [self._which("sacctmgr"), *args]
        except SlurmError as e:
            self.log.warning("No sacctmgr on the hub, so no Slurm accounting: %s", e)
            return None
        rc, out, err = await self.run(argv, kind="sacctmgr")
        if rc != 0:
            if NO_ACCOUNTING_RE.search(err) or NO_ACCOUNTING_RE.search(out):
                # AccountingStorageType is not slurmdbd: a positive "no accounting"
                self.log.debug("Slurm has no accounting database: %s", err.strip())
                return None
            raise SlurmError(argv, rc, err, out)
        return parse_associations(out, username)


#: What :func:`_stat_problem` calls files that are not regular, by ``stat`` test.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)


def _stat_problem(rc: int, out: str, err: str) -> tuple[str, int]:
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
