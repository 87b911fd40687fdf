"""Run Slurm's commands on the hub's host, as argv lists, never through a shell.

The commands, their caps and the parsing are :class:`~hpcspawner.slurm.cli.CommandDriver`'s;
this module is the local transport: commands resolved on the hub's PATH, the
privilege wrapper (``runuser``/``sudo``), and :func:`~hpcspawner.slurm.commands.run_argv`.
"""

from __future__ import annotations

import os
import shutil

from traitlets import List, Unicode, default

from .cli import USER_FILE_OUTPUT_CAP, CommandDriver
from .commands import run_argv
from .errors import SlurmError

#: Variables of the hub's environment that Slurm's clients need to find the cluster.
PASSED_SLURM_VARIABLES = ("SLURM_CONF", "SLURM_CLUSTERS")

__all__ = ["PASSED_SLURM_VARIABLES", "USER_FILE_OUTPUT_CAP", "LocalSlurmDriver"]


class LocalSlurmDriver(CommandDriver):
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

    def _which(self, command: str) -> str:
        if os.path.isabs(command):
            return command
        found = shutil.which(command, path=self.commands_path)
        if found is None:
            raise SlurmError(
                [command], None, f"{command}: command not found in {self.commands_path}"
            )
        return found

    def _user_prefix(self, username: str) -> list[str]:
        prefix = [part.format(username=username) for part in self.user_command_prefix]
        if prefix:
            prefix[0] = self._which(prefix[0])
        return prefix

    def _base_env(self) -> dict[str, str]:
        env = {"PATH": self.commands_path, "LANG": "C.UTF-8"}
        for name in PASSED_SLURM_VARIABLES:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    async def _execute(self, argv, as_user, env, stdin, timeout, max_output):
        # its own session: a timeout kills it and everything it started (the prefix
        # command's children included); as_user (whom the prefix in argv runs it as)
        # changes nothing here
        env = env if env is not None else self._base_env()
        return await run_argv(argv, timeout=timeout, env=env, stdin=stdin, max_output=max_output)

    async def _run_sbatch(self, username, script, env):
        # sbatch's own environment becomes the job's: the prefix passes it (sudo -E)
        argv = self._as_user(username, ["sbatch", "--parsable"])
        run_env = self._base_env()
        run_env.update(env)
        rc, out, err = await self.run(
            argv, kind="sbatch", as_user=username, env=run_env, stdin=script
        )
        return argv, rc, out, err
