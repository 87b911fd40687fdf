"""The user's side of a server: who the user is, and the files the hub puts down as them.

- who: :meth:`UserFiles.account` and :meth:`UserFiles.home` ask the one seam
  :func:`hpcspawner.accounts.posix.lookup_posix_account` (called through its module, so
  that the unit tests stand the test cluster's users in for the host's);
  :meth:`UserFiles.check_account` refuses system and service accounts before
  anything runs as the user;
- what: the server's TLS files (:meth:`UserFiles.install_certs`), the API token's
  file (:meth:`UserFiles.write_token_file`, :meth:`UserFiles.remove_token_file`)
  and the end of a job's output (:meth:`UserFiles.job_output`), all of it through
  the hub's driver, as the user (never as root, never on the command line).

The spawner decides when; this module knows where and how.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..accounts import posix
from ..accounts.rules import AccountRules, MappingError, PosixAccount, check_account
from ..slurm import JobOutput, SlurmDriver, SlurmError, controller_unreachable
from .errors import SpawnFailure, scheduler_unavailable

#: The files ``move_certs`` installs: JupyterHub's name -> the file's name in the directory.
CERT_FILES = {"keyfile": "server.key", "certfile": "server.crt", "cafile": "ca.crt"}


def format_path(template: str, home: str, username: str) -> str:
    """``{home}`` and ``{username}`` in a path the admin configured (job_output, job_workdir)."""
    return template.format(home=home, username=username)


@dataclass
class UserFiles:
    """One user's server (``server``: "" for the default one), seen from the hub."""

    driver: SlurmDriver
    username: str
    server: str
    #: how the hub's log names this server ("alice", "alice:gpu")
    log_name: str
    log: logging.Logger | logging.LoggerAdapter

    # ------------------------------------------------------------ who

    def home(self) -> str:
        """The user's home directory (blocks while NSS answers, as ``getpwnam`` does)."""
        account = posix.lookup_posix_account(self.username)
        if account is None:
            raise SpawnFailure(
                f"There is no account named {self.username} on the cluster.",
                reason="no-account",
            )
        return account.home or ""

    async def check_account(self, rules: AccountRules, action: str) -> None:
        """Refuse system and service accounts before anything runs as the user.

        The authenticator's rules again, with the spawner's own settings, so that a
        hub with any authenticator never runs ``sbatch``/``scancel`` as e.g. ``slurm``.
        A user the hub host does not know is checked by name only.
        """
        name = self.username
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(None, posix.lookup_posix_account, name)
        try:
            check_account(account or PosixAccount(name), rules)
        except MappingError as e:
            raise SpawnFailure(
                f"This hub cannot {action} for the account {name!r}: "
                "it is a system or service account.",
                reason=e.reason,
                log_message=(
                    f"refused to {action} for {self.log_name} ({e.reason}): {e.detail}; "
                    "see c.SlurmSpawner.min_uid, max_uid, refused_usernames, refused_shells"
                ),
                status_code=403,
            ) from None

    def server_directory(self, template: str) -> str:
        """A per-server directory the admin configured (``{home}``, ``{username}``,
        ``{server}``: the server's name, ``default`` for the default server)."""
        return template.format(
            home=self.home(), username=self.username, server=self.server or "default"
        )

    # ------------------------------------------------------------ what

    async def _install(self, directory: str, files: dict[str, bytes], what: str, **failure):
        """Install ``files`` as the user; a failure is the user's ``what`` message."""
        try:
            await self.driver.install_files(self.username, directory, files)
        except SlurmError as e:
            if controller_unreachable(e):  # the way to Slurm is away, not the user's files
                raise scheduler_unavailable(f"{failure['doing']} failed: {e}") from None
            raise SpawnFailure(
                f"Could not put {what} into your directory; please tell the administrators.",
                reason=failure["reason"],
                log_message=f"{failure['doing']} failed: {e}",
                status_code=500,
            ) from None

    async def install_certs(self, directory: str, paths: dict[str, str]) -> dict[str, str]:
        """Copy the server's key and certificates (JupyterHub's ``paths``) into
        ``directory``, where only the user can read them; return their new paths."""
        files = {}
        for key, filename in CERT_FILES.items():
            with open(paths[key], "rb") as f:
                files[filename] = f.read()
        await self._install(
            directory,
            files,
            "the server's TLS certificates",
            reason="certificates",
            doing=f"installing certificates for {self.log_name}",
        )
        self.log.info("Installed TLS certificates of %s in %s", self.log_name, directory)
        return {key: f"{directory}/{filename}" for key, filename in CERT_FILES.items()}

    def token_file(self, token_dir: str, spawn_id: str) -> str:
        """Where start ``spawn_id``'s API token waits for the job (``token_delivery = "file"``)."""
        return f"{self.server_directory(token_dir)}/api-token-{spawn_id}"

    async def write_token_file(self, path: str, token: str) -> None:
        """Put the API token, as the user, into the 0600 file ``path`` (the driver makes
        the file 0600 in a 0700 directory)."""
        directory, _, name = path.rpartition("/")
        await self._install(
            directory,
            {name: token.encode()},
            "your server's API token",
            reason="token-file",
            doing=f"writing the token file of {self.log_name}",
        )

    async def remove_token_file(self, token_dir: str, spawn_id: str) -> None:
        """Remove start ``spawn_id``'s token file; failures are logged (the start or
        stop goes on), a cancellation does not interrupt the removal."""
        try:
            path = self.token_file(token_dir, spawn_id)
            await asyncio.shield(self.driver.remove_file(self.username, path))
        except (SlurmError, SpawnFailure, NotImplementedError, asyncio.CancelledError) as e:
            self.log.warning("Could not remove the token file of %s: %s", self.log_name, e)

    async def job_output(self, template: str, job_id: str) -> tuple[str, JobOutput]:
        """The path of job ``job_id``'s output (``c.SlurmSpawner.job_output``) and its
        end: the driver reads a few KiB, as the user, and only from a regular file."""
        path = format_path(template, self.home(), self.username).replace("%j", job_id)
        return path, await self.driver.read_output(self.username, path)


__all__ = ["CERT_FILES", "UserFiles", "format_path"]
