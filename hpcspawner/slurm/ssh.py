"""Reach Slurm on a login node over SSH: pooled connections, verified host keys, argv only.

:class:`SSHSlurmDriver` runs the same commands as the local driver
(:class:`~hpcspawner.slurm.cli.CommandDriver`) on a login node, through asyncssh:

- **One pooled connection per login host** (and login name,
  :class:`~hpcspawner.slurm.sshpool.ConnectionPool`) serves every command:
  the poller's ``squeue`` (one listing, or one lookup per job on a busy cluster: see
  ``job_query``), the spawn page's ``scontrol``, the submissions. SSH multiplexes
  commands as channels; at most :attr:`~SSHSlurmDriver.max_sessions_per_host` run at
  once on one connection (OpenSSH's ``MaxSessions`` is 10), and the per-job lookups
  take at most ``job_query_concurrency`` of them. Keepalives find a dead connection; the next
  command opens a new one. Hosts are tried in order: the one that answered last
  first, then the others (failover).
- **Every command is argv**, joined for the remote shell by
  :func:`~hpcspawner.slurm.shellquote.quote_argv` alone.
- **Timeouts**: a connection that is not up within ``connect_timeout``
  (:class:`~hpcspawner.slurm.errors.ConnectTimeout`) and a command that does not
  end within its timeout (:class:`~hpcspawner.slurm.errors.SlurmTimeout`) are
  "unknown", as are a refused connection
  (:class:`~hpcspawner.slurm.errors.ConnectionFailed`) and one that broke while a
  command ran (:class:`~hpcspawner.slurm.errors.ConnectionLost`): never "gone".
- **Host keys are verified** against a known_hosts file (plain keys or an SSH CA's
  ``@cert-authority`` line); turning that off is an explicit option that logs a
  warning at every connection.
- **As the user**: the service account runs ``sudo -n -u USER --`` (or, logged in
  as root, ``runuser -u USER --``), guarded by
  :func:`~hpcspawner.slurm.driver.may_act_as` like the local driver.
- **The job's environment never reaches argv**: a login node shows every
  process's argv to every user, and sshd accepts environment variables only as
  ``AcceptEnv`` allows. The environment goes, as the user, into a fresh private
  file (``mktemp``: mode 0600, fed by ``dd`` from stdin) that ``sbatch
  --export-file`` reads; the file is removed right after ``sbatch``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import ipaddress
import os
import re

import asyncssh
from traitlets import Bool, Float, Integer, List, Unicode, validate

from . import errors
from .cli import USER_FILE_OUTPUT_CAP, CommandDriver
from .errors import ConnectionFailed, SlurmError
from .shellquote import quote_argv
from .sshpool import ConnectionPool, LoggingClient, LoginHost, NotStarted

#: Seconds between tries when a login node refuses a command's channel (sshd's
#: ``MaxSessions`` met for a moment): nothing ran, so another try is safe; 1.55 s in all,
#: then the next login node.
REFUSED_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)

#: Slurm's clients: found in :attr:`SSHSlurmDriver.slurm_bin_dir` when that is set.
SLURM_COMMANDS = frozenset(
    {"sbatch", "scancel", "squeue", "scontrol", "sacctmgr", "sacct", "sshare", "sinfo", "sdiag"}
)

#: A name ``sbatch --export-file`` takes: a shell variable name, shorter than Slurm's
#: 256-byte name buffer.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")

#: Slurm drops an ``--export-file`` value of this many bytes or more (ENV_BUFSIZE).
ENV_VALUE_MAX_BYTES = 256 * 1024

#: ``mktemp`` template of the environment file, in :attr:`SSHSlurmDriver.env_file_dir`.
ENV_FILE_PREFIX = "hpcspawner-env."
ENV_FILE_TEMPLATE = ENV_FILE_PREFIX + "XXXXXXXXXX"


def export_file_content(env: dict[str, str]) -> str:
    """``env`` as ``sbatch --export-file`` reads it: ``NAME=value``, each ended by NUL.

    Raises :class:`ValueError` naming (never showing the value of) each variable
    the file cannot carry the way ``sbatch``'s environment would: a name that is
    not a variable name, a value with a NUL or too long for Slurm, and ``SBATCH_*``
    variables, which ``sbatch`` reads as options from its own environment only
    (set such options in the batch script instead).
    """
    problems, entries = [], []
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            problems.append(f"{str(name)[:60]!r} is not a variable name")
        elif name.startswith("SBATCH_"):
            problems.append(
                f"{name} is an sbatch option variable, which sbatch takes only from its own "
                "environment (set the option in the batch script)"
            )
        elif not isinstance(value, str) or "\0" in value:
            problems.append(f"the value of {name} is not text without NUL characters")
        elif len(value.encode()) >= ENV_VALUE_MAX_BYTES:
            problems.append(f"the value of {name} is longer than Slurm takes")
        else:
            entries.append(f"{name}={value}\0")
    if problems:
        raise ValueError("; ".join(problems))
    return "".join(entries)


@dataclasses.dataclass(frozen=True)
class UserCredentials:
    """How to log in to the login nodes as the user (see
    :meth:`SSHSlurmDriver.user_credentials`)."""

    #: the user's private keys, each with its certificate: anything asyncssh's
    #: ``client_keys`` takes (e.g. ``[(SSHKey, SSHCertificate)]``)
    client_keys: list
    #: the login name, when it is not the user's cluster name
    login: str | None = None


class SSHSlurmDriver(CommandDriver):
    """Reach Slurm with its command-line clients on a login node, over SSH.

    The hub logs in to a login node as its own service account (or as root) and
    runs ``squeue``, ``scontrol`` and ``sacctmgr`` there for everybody, and
    ``sbatch``, ``scancel`` and the user-file commands as the user through
    :attr:`user_command_prefix`. The hub then needs neither Slurm's clients nor
    munge: only SSH access to a login node. See :doc:`/howto/ssh-driver`.
    """

    hosts = List(
        Unicode(),
        config=True,
        help="""The login nodes to run Slurm's commands on, tried in this order.

        Each is ``host``, ``host:port`` or ``[address]:port``. The hub keeps one
        connection to the node that answered last and moves to the next one in
        the list when it cannot connect (failover). Required.

            c.SSHSlurmDriver.hosts = ["login1.cluster.example.org", "login2.cluster.example.org"]
        """,
    )

    @validate("hosts")
    def _check_hosts(self, proposal):
        for text in proposal.value:
            LoginHost.parse(text)  # ValueError names the bad entry
        return proposal.value

    port = Integer(
        22,
        config=True,
        help="""The SSH port of the login nodes that :attr:`hosts` names without a port.""",
    )

    login_user = Unicode(
        config=True,
        help="""The account the hub logs in as on the login nodes.

        Defaults to the name the hub runs as. Use a service account that may run
        only the commands in the :doc:`how-to </howto/ssh-driver>`'s sudoers lines,
        or ``root`` with ``user_command_prefix = ["runuser", "-u", "{username}", "--"]``.
        Its login shell must be a POSIX shell (sh, bash, dash, ksh, zsh): commands
        are quoted for one.

            c.SSHSlurmDriver.login_user = "jupyterhub"
        """,
    )

    client_keys = List(
        Unicode(),
        config=True,
        help="""Private key files the hub logs in with (unencrypted; readable by the hub only).

        A certificate next to a key (``KEY-cert.pub``) is sent with it, so a key
        signed by your SSH CA works where the nodes trust that CA
        (``TrustedUserCAKeys``) instead of ``authorized_keys``. Empty:
        asyncssh's defaults (``~/.ssh/id_*`` of the hub's user, and an ssh-agent if
        ``SSH_AUTH_SOCK`` is set).

            c.SSHSlurmDriver.client_keys = ["/etc/jupyterhub/ssh/id_ed25519"]
        """,
    )

    known_hosts = Unicode(
        config=True,
        help="""The known_hosts file holding the login nodes' host keys, or your SSH CA.

        Required: the hub refuses a login node whose host key it cannot verify
        (and says so, naming the node and this file). Lines are OpenSSH's: a
        node's key (``login1.cluster.example.org ssh-ed25519 AAAA...``, from
        ``ssh-keyscan`` after checking the fingerprint with the node's admin), or
        ``@cert-authority *.cluster.example.org ssh-ed25519 AAAA...`` to trust
        every host key your CA signed. The file is read again when it changes.

            c.SSHSlurmDriver.known_hosts = "/etc/jupyterhub/ssh/known_hosts"
        """,
    )

    disable_host_key_checking = Bool(
        False,
        config=True,
        help="""Connect to login nodes without checking their host keys. INSECURE.

        Anyone who can redirect the hub's connection then sees every job's
        environment and the commands the hub runs, and can answer them. For a
        throw-away test set-up only; the hub logs a warning at every connection.

            c.SSHSlurmDriver.disable_host_key_checking = False
        """,
    )

    connect_timeout = Float(
        10.0,
        config=True,
        help="""Seconds to wait for a connection to a login node (TCP, key exchange
        and login together) before trying the next one.

        A login node that does not answer in time counts as unreachable: a status
        query is then "unknown" (no server is stopped) and a spawn fails with a
        message naming the nodes.

            c.SSHSlurmDriver.connect_timeout = 10
        """,
    )

    keepalive_interval = Float(
        15.0,
        config=True,
        help="""Seconds between SSH keepalive messages on an idle pooled connection
        (0: none). With :attr:`keepalive_count_max` unanswered ones the connection
        is dropped, and the next command opens a new one (to the next node if this
        one stays away).

            c.SSHSlurmDriver.keepalive_interval = 15
        """,
    )

    keepalive_count_max = Integer(
        3,
        config=True,
        help="""Unanswered keepalives after which a pooled connection counts as dead.""",
    )

    max_sessions_per_host = Integer(
        8,
        config=True,
        help="""Commands that may run at once on the one connection to a login node;
        more wait for a free slot.

        Keep it below the node's sshd ``MaxSessions`` (10 by default), which makes
        sshd refuse further channels on a connection, and above ``job_query_concurrency``
        (the status lookups that may run at once), so that a submission finds a channel.

            c.SSHSlurmDriver.max_sessions_per_host = 8
        """,
    )

    user_command_prefix = List(
        Unicode(),
        ["sudo", "-n", "-u", "{username}", "--"],
        config=True,
        help="""Command that runs the rest of argv as the user on the login node, as a list.

        ``{username}`` is replaced by the user's name. The default suits a service
        account with the sudoers lines of :doc:`/howto/ssh-driver` (no ``-E``: the
        job's environment travels in a private file, not in sudo's environment).
        Logged in as root, use ``runuser``. It must name ``{username}``: commands
        never run as the login account itself.

            c.SSHSlurmDriver.user_command_prefix = ["runuser", "-u", "{username}", "--"]
        """,
    )

    @validate("user_command_prefix")
    def _check_prefix(self, proposal):
        prefix = proposal.value
        if not prefix or not any("{username}" in part for part in prefix):
            raise ValueError(
                f"c.SSHSlurmDriver.user_command_prefix = {prefix!r} does not name "
                "{username}: the commands would run as the login account. Use e.g. "
                '["sudo", "-n", "-u", "{username}", "--"].'
            )
        return prefix

    slurm_bin_dir = Unicode(
        "",
        config=True,
        help="""Directory of Slurm's commands on the login nodes, if they are not on the
        PATH of a non-interactive SSH session (``ssh node squeue`` fails with
        "command not found").

        Empty: commands are named without a directory and found by the remote
        PATH (and by sudo's ``secure_path`` for the commands run as the user).

            c.SSHSlurmDriver.slurm_bin_dir = "/opt/slurm/bin"
        """,
    )

    env_file_dir = Unicode(
        "/tmp",  # noqa: S108 - on the login node; mktemp makes an unpredictable 0600 file
        config=True,
        help="""Directory on the login node for the job's environment file at submission.

        ``sbatch`` cannot be given the job's environment safely over SSH (argv is
        visible to every user of the node; sshd passes only ``AcceptEnv``
        variables), so the hub writes it, as the user, into a new file made by
        ``mktemp`` (mode 0600, a random name) in this directory, runs ``sbatch
        --export-file=FILE`` and removes the file. A directory every user may
        create files in (sticky, like /tmp) or a per-user one that exists.

            c.SSHSlurmDriver.env_file_dir = "/tmp"
        """,
    )

    @validate("slurm_bin_dir", "env_file_dir")
    def _check_dir(self, proposal):
        value = proposal.value
        if value and (not value.startswith("/") or any(c in value for c in "\0\n")):
            raise ValueError(f"{proposal.trait.name} = {value!r}: an absolute path is needed")
        return value.rstrip("/") or value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pools: dict[tuple[LoginHost, str], ConnectionPool] = {}
        self._preferred: LoginHost | None = None
        self._known_hosts_cache: tuple[tuple, asyncssh.SSHKnownHosts] | None = None

    def config_problems(self) -> list[str]:
        problems = []
        if not self.hosts:
            problems.append("c.SSHSlurmDriver.hosts is empty: name at least one login node")
        if not self.disable_host_key_checking:
            try:
                self._known_hosts()
            except ConnectionFailed as e:
                problems.append(e.stderr.strip())
        for path in self.client_keys:
            if not os.access(path, os.R_OK):
                problems.append(f"c.SSHSlurmDriver.client_keys: cannot read {path}")
        if self.job_query != "batch" and self.job_query_concurrency >= self.max_sessions_per_host:
            problems.append(
                f"c.SSHSlurmDriver.job_query_concurrency ({self.job_query_concurrency}) is not "
                f"below max_sessions_per_host ({self.max_sessions_per_host}): the per-job "
                "status lookups would take every SSH channel and a submission would wait "
                "for them; lower it (4 is the default)"
            )
        return problems

    # ------------------------------------------------------------ per-user credentials

    def user_credentials(self, username: str) -> UserCredentials | None:
        """The seam for per-user credentials; None (the service account) by default.

        A site that issues each user an SSH certificate at login (an SSH CA behind
        the identity provider, e.g. Smallstep, Vault's SSH secrets engine, or
        NERSC's sshproxy) can override this to return that certificate and its
        key, e.g. kept by the authenticator in ``auth_state`` and handed to the
        driver in ``pre_spawn_start``. The driver then runs the user's commands
        (``sbatch``, ``scancel``, the file commands) on a connection logged in as
        the user with those keys, without :attr:`user_command_prefix`: no sudo
        rule is needed, and the login node's own access rules apply. Queries
        (``squeue``, ``scontrol``, ``sacctmgr``) keep the service account's pooled
        connection. Return None when the user has no valid certificate (expired):
        the service account is used, if it may act for users at all.

        Called for every command as the user, so it must be quick (no I/O);
        refresh certificates elsewhere. A certificate that has expired fails the
        login (:class:`~hpcspawner.slurm.errors.ConnectionFailed`).
        """
        return None

    # ------------------------------------------------------------ the transport

    def _which(self, command: str) -> str:
        if "/" in command:
            if not command.startswith("/"):
                raise SlurmError([command], None, f"{command}: a relative path is not allowed")
            return command
        if command in SLURM_COMMANDS and self.slurm_bin_dir:
            return f"{self.slurm_bin_dir}/{command}"
        return command

    def _user_prefix(self, username: str) -> list[str]:
        if self.user_credentials(username) is not None:
            return []  # logged in as the user
        return [part.format(username=username) for part in self.user_command_prefix]

    def _login_name(self) -> str:
        return self.login_user or getpass.getuser()

    def _host_order(self) -> list[LoginHost]:
        hosts = [LoginHost.parse(text, self.port) for text in self.hosts]
        if self._preferred in hosts:
            hosts.remove(self._preferred)
            hosts.insert(0, self._preferred)
        return hosts

    def _pool(
        self, host: LoginHost, login: str, credentials: UserCredentials | None
    ) -> ConnectionPool:
        key = (host, login)
        pool = self._pools.get(key)
        if pool is None:

            async def opener(host, login=login, credentials=credentials):
                return await self._connect(host, login, credentials)

            pool = self._pools[key] = ConnectionPool(host, self.max_sessions_per_host, opener)
        return pool

    @property
    def connections_opened(self) -> int:
        """SSH connections this driver opened so far (for tests and benchmarks)."""
        return sum(pool.opened for pool in self._pools.values())

    async def _execute(self, argv, as_user, env, stdin, timeout, max_output):
        """Run ``argv`` on a login node.

        Opens (or reuses) the pooled connection to the first login node that
        answers. A node that cannot be reached, or whose pooled connection turns
        out dead before the command starts, is skipped; once the command started,
        its failure is final (it may have taken effect). ``env`` must be None:
        SSH cannot carry an environment safely (see :meth:`_run_sbatch`).
        """
        if env is not None:
            raise ValueError("the SSH driver passes no environment to commands")
        try:
            command = quote_argv(argv)
        except (TypeError, ValueError) as e:
            raise SlurmError(argv, None, f"cannot be sent to a login node: {e}") from None
        credentials = self.user_credentials(as_user) if as_user else None
        login = (credentials.login or as_user) if credentials else self._login_name()
        data = stdin.encode() if stdin is not None else None
        hosts = self._host_order()
        if not hosts:
            raise ConnectionFailed(argv, None, "no login node: c.SSHSlurmDriver.hosts is empty")
        failures: list[SlurmError] = []
        for host in hosts:
            pool = self._pool(host, login, credentials)
            refusals = iter(REFUSED_RETRY_DELAYS)
            fresh = 2  # a dead pooled connection: one new one
            while fresh:
                try:
                    conn = await pool.connection()
                except ConnectionFailed as e:
                    failures.append(e)
                    break
                self.log.debug("Sending it to login node %s", host)
                try:
                    result = await pool.run(conn, argv, command, data, timeout, max_output)
                except NotStarted as e:
                    if e.refused and (delay := next(refusals, None)) is not None:
                        # sshd frees a finished command's session a moment after its
                        # channel closed, so a burst of commands can meet MaxSessions
                        # ("no more sessions"); nothing ran: try again shortly
                        self.log.debug("%s refused a channel (%s); again in %g s", host, e, delay)
                        await asyncio.sleep(delay)
                        continue
                    failures.append(ConnectionFailed(argv, None, f"{host}: {e}"))
                    if e.refused:
                        break  # the node keeps refusing commands: the next node
                    pool.discard(conn)
                    fresh -= 1
                    continue
                self._preferred = host
                return result
        raise self._unreachable(argv, failures)

    def _unreachable(self, argv: list[str], failures: list[SlurmError]) -> ConnectionFailed:
        reasons = dict.fromkeys(e.stderr for e in failures)  # a config error: once
        message = "no login node answered: " + "; ".join(reasons)
        if failures and all(isinstance(e, errors.ConnectTimeout) for e in failures):
            return errors.ConnectTimeout(argv, self.connect_timeout, message)
        return ConnectionFailed(argv, None, message)

    # ------------------------------------------------------------ connecting

    def _known_hosts(self):
        """What asyncssh checks host keys against: the parsed known_hosts file (read
        again only when it changes), or None when checking is off (logged loudly)."""
        if self.disable_host_key_checking:
            self.log.warning(
                "SSH host key checking is OFF (c.SSHSlurmDriver.disable_host_key_checking): "
                "the login node is not authenticated; anyone on the path can read the "
                "jobs' environments and answer for Slurm. Set c.SSHSlurmDriver.known_hosts."
            )
            return None
        path = self.known_hosts
        if not path:
            raise ConnectionFailed(
                ["ssh"],
                None,
                "c.SSHSlurmDriver.known_hosts is not set: the login nodes' host keys "
                "cannot be verified (set it to a known_hosts file with their keys or an "
                "@cert-authority line)",
            )
        try:
            info = os.stat(path)
            key = (path, info.st_mtime_ns, info.st_size, info.st_ino)
            if self._known_hosts_cache is None or self._known_hosts_cache[0] != key:
                self._known_hosts_cache = (key, asyncssh.read_known_hosts(path))
        except (OSError, ValueError, asyncssh.Error) as e:
            raise ConnectionFailed(
                ["ssh"], None, f"cannot read the known_hosts file {path}: {e}"
            ) from None
        return self._known_hosts_cache[1]

    def _host_key_problem(self, host: LoginHost, known_hosts) -> str:
        """Why ``host``'s key was refused, for the admin: unknown, or changed."""
        try:
            ipaddress.ip_address(host.host)
            addr = host.host
        except ValueError:
            addr = ""
        recorded = known_hosts.match(host.host, addr, host.port) if known_hosts else ((),) * 7
        keys, cas = recorded[0], recorded[1]
        port = f"-p {host.port} " if host.port != 22 else ""
        if keys or cas:
            return (
                f"the SSH host key of {host} does not match the "
                f"{'key' if keys else 'certificate authority'} recorded for it in "
                f"{self.known_hosts}: the node's key changed, or this is not the login node. "
                "Refusing to connect. If the change is expected, replace its line (check "
                f"the new fingerprint with the node's admin: ssh-keyscan {port}{host.host})"
            )
        return (
            f"the SSH host key of {host} is unknown: {self.known_hosts} has no key and no "
            f"@cert-authority line for it. Refusing to connect. Add its key (ssh-keyscan "
            f"{port}{host.host}, fingerprint checked with the node's admin) or your SSH CA"
        )

    async def _connect(
        self, host: LoginHost, login: str, credentials: UserCredentials | None
    ) -> asyncssh.SSHClientConnection:
        known_hosts = self._known_hosts()
        options = {
            "port": host.port,
            "username": login,
            "known_hosts": known_hosts,
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count_max": self.keepalive_count_max,
            "config": None,  # not the hub user's ~/.ssh/config: only what is configured here
            "client_factory": lambda: LoggingClient(self.log, host),
        }
        if credentials is not None:
            options["client_keys"] = credentials.client_keys
            options["agent_path"] = None
        elif self.client_keys:
            options["client_keys"] = list(self.client_keys)
        where = f"{login}@{host}"
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(host.host, **options), timeout=self.connect_timeout + 1
            )
        except (asyncio.TimeoutError, TimeoutError):
            message = f"{where}: no SSH connection within {self.connect_timeout:g} s"
            self.log.warning("Login node unreachable: %s", message)
            raise errors.ConnectTimeout(["ssh", where], self.connect_timeout, message) from None
        except (asyncssh.HostKeyNotVerifiable, asyncssh.KeyExchangeFailed) as e:
            if isinstance(e, asyncssh.KeyExchangeFailed) and "host key" not in str(e):
                message = f"{where}: cannot connect: {e}"
                self.log.warning("Login node unreachable: %s", message)
                raise ConnectionFailed(["ssh", where], None, message) from None
            # a node with a plain key where known_hosts trusts only a CA fails earlier,
            # at the key exchange ("Unable to find compatible server host key")
            message = self._host_key_problem(host, known_hosts)
            self.log.error("Refused login node %s: %s", host, message)
            raise ConnectionFailed(["ssh", where], None, message) from None
        except asyncssh.PermissionDenied as e:
            message = (
                f"{where}: login refused ({e.reason}); is the key in "
                "c.SSHSlurmDriver.client_keys authorized for this account?"
            )
            self.log.error("Login node refused the hub: %s", message)
            raise ConnectionFailed(["ssh", where], None, message) from None
        except (asyncssh.Error, OSError, ValueError) as e:
            message = f"{where}: cannot connect: {e}"
            self.log.warning("Login node unreachable: %s", message)
            raise ConnectionFailed(["ssh", where], None, message) from None
        self.log.info("Connected to login node %s", where)
        return conn

    async def close(self) -> None:
        """Close every pooled connection (at hub shutdown)."""
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools), return_exceptions=True)

    # ------------------------------------------------------------ sbatch

    async def _run_sbatch(self, username, script, env):
        """``sbatch --export-file`` with the environment in a private, short-lived file.

        As the user: ``mktemp`` makes the file (0600, unpredictable name, refusing
        to follow a planted link), ``dd`` fills it from stdin, ``sbatch`` reads it,
        ``rm`` removes it whatever happened. No value reaches argv or a log.
        ``sbatch --export-file`` exports the file's variables plus the Slurm ones
        sbatch sets itself; note that ``SLURM_UMASK`` then comes from sbatch's own
        umask on the login node, not from the file (see the how-to).
        """
        sbatch = ["sbatch"]
        try:
            content = export_file_content(env)
        except ValueError as e:
            raise SlurmError(sbatch, None, f"the job's environment cannot be passed: {e}") from None
        _, out, _ = await self._run_as(
            username,
            ["mktemp", "-p", self.env_file_dir, ENV_FILE_TEMPLATE],
            kind="env_file",
            max_output=USER_FILE_OUTPUT_CAP,
        )
        path = out.strip()
        expected = f"{self.env_file_dir.rstrip('/')}/{ENV_FILE_PREFIX}"
        name = path[len(expected) :]
        if not path.startswith(expected) or not name or any(c in name for c in "/\n\t "):
            raise SlurmError(sbatch, None, f"mktemp printed an unexpected path: {out!r:.200}")
        try:
            await self._run_as(
                username,
                ["dd", f"of={path}", "conv=notrunc", "status=none"],
                kind="env_file",
                stdin=content,
                max_output=USER_FILE_OUTPUT_CAP,
            )
            argv = self._as_user(username, ["sbatch", "--parsable", f"--export-file={path}"])
            rc, out, err = await self.run(argv, kind="sbatch", as_user=username, stdin=script)
            return argv, rc, out, err
        finally:
            try:
                await asyncio.shield(
                    self._run_as(
                        username,
                        ["rm", "-f", "--", path],
                        kind="env_file",
                        max_output=USER_FILE_OUTPUT_CAP,
                    )
                )
            except SlurmError as e:
                self.log.warning(
                    "Could not remove %s's job environment file %s on the login node "
                    "(mode 0600, the user's): %s",
                    username,
                    path,
                    e,
                )
