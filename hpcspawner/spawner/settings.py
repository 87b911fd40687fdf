"""SlurmSpawner's settings: every option an admin sets, with its help, its checks, and the
policy built from them. The lifecycle (start, poll, stop, state) is in :mod:`hpcspawner.spawner`.
"""

from __future__ import annotations

import re

from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Instance,
    Integer,
    List,
    TraitError,
    Tuple,
    Type,
    Unicode,
    default,
    validate,
)
from traitlets.config import Configurable
from traitlets.utils.importstring import import_item

from ..accounts.posix import slurm_service_users
from ..accounts.rules import (
    DEFAULT_MAX_UID,
    DEFAULT_MIN_UID,
    DEFAULT_REFUSED_NAMES,
    DEFAULT_REFUSED_SHELLS,
    AccountRules,
    rules_from_config,
)
from ..job import batchscript, walltime
from ..resources.options import (
    Policy,
    check_defaults,
    environments_from_config,
    partition_policies,
    profiles_from_config,
)
from ..slurm import LocalSlurmDriver, SlurmDriver
from . import tls

#: Short names of the drivers that come with hpcspawner (``c.SlurmSpawner.driver_class``).
DRIVERS = {
    "local": "hpcspawner.slurm.local.LocalSlurmDriver",
    "ssh": "hpcspawner.slurm.ssh.SSHSlurmDriver",
    "rest": "hpcspawner.slurm.rest.RESTSlurmDriver",
}


class DriverType(Type):
    """A driver class, its import path, or a short name from :data:`DRIVERS`."""

    def validate(self, obj, value):
        if isinstance(value, str):
            path = DRIVERS.get(value, value)
            try:
                value = import_item(path)
            except (ImportError, ValueError) as e:  # a missing extra (asyncssh), a typo
                raise TraitError(
                    f"c.SlurmSpawner.driver_class = {path!r} cannot be imported ({e}); "
                    f"use one of {', '.join(map(repr, DRIVERS))} or a driver's import path "
                    "(the ssh and rest drivers need the extras of the same names)"
                ) from None
        return super().validate(obj, value)


class SlurmSpawnerSettings(Configurable):
    """The configuration of :class:`hpcspawner.spawner.SlurmSpawner`, mixed in before
    JupyterHub's ``Spawner`` (set it as ``c.SlurmSpawner.<option>``)."""

    # ------------------------------------------------------------ scheduler access

    driver_class = DriverType(
        LocalSlurmDriver,
        klass=SlurmDriver,
        config=True,
        help="""How the hub reaches Slurm: ``"local"``, ``"ssh"``, or a driver class (or its
        import path).

        ``"local"`` (the default) runs Slurm's commands on the hub's host
        (:class:`hpcspawner.slurm.local.LocalSlurmDriver`, configured as
        ``c.LocalSlurmDriver.*``); the hub then needs Slurm's clients and munge. ``"ssh"``
        runs them on a login node (:class:`hpcspawner.slurm.ssh.SSHSlurmDriver`, configured
        as ``c.SSHSlurmDriver.*``; needs ``pip install 'hpcspawner[ssh]'``). ``"rest"`` asks
        slurmrestd (:class:`hpcspawner.slurm.rest.RESTSlurmDriver`, configured as
        ``c.RESTSlurmDriver.*``; needs ``pip install 'hpcspawner[rest]'`` and
        ``c.SlurmSpawner.token_delivery = "environment"``). One driver
        instance serves the whole hub, the authenticator's account lookup included.

            c.SlurmSpawner.driver_class = "ssh"
            c.SSHSlurmDriver.hosts = ["login1.cluster.example.org"]
            c.SSHSlurmDriver.known_hosts = "/etc/jupyterhub/ssh_known_hosts"
        """,
    )

    startup_poll_interval = Float(
        1.0,
        config=True,
        help="""Seconds between job status checks while servers are starting.

        All starting servers share one status query per interval, so this does
        not grow with the number of users. Running servers are checked every
        ``poll_interval`` seconds, again with one query for the whole hub (see the
        driver's ``job_query``).

            c.SlurmSpawner.startup_poll_interval = 1.0
        """,
    )

    @default("poll_interval")
    def _default_poll_interval(self):
        return 30

    stop_timeout = Float(
        30.0,
        config=True,
        help="""Seconds ``stop()`` waits for Slurm to confirm that a cancelled job ended.""",
    )

    queue_timeout = Float(
        0.0,
        config=True,
        help="""Seconds a server's job may wait in Slurm's queue before the spawn gives up.

        Separate from the server's boot: the clock stops when the job starts
        running. When it runs out, the job is cancelled and the user is told it
        waited too long (reason ``queue-timeout``). 0 (default) sets no limit of
        its own. JupyterHub's ``c.Spawner.start_timeout`` still bounds the whole
        start (queue wait + boot); keep it above ``queue_timeout`` plus the boot
        time, or it ends the spawn first.

            c.SlurmSpawner.queue_timeout = 600
            c.Spawner.start_timeout = 900
        """,
    )

    submit_recovery_timeout = Float(
        120.0,
        config=True,
        help="""Seconds to look for the job of a submission whose answer was lost.

        When ``sbatch`` times out (a hung or overloaded controller), Slurm may still
        create the job later. The spawner never submits twice: it looks for the job
        by its comment (which carries a per-spawn id) until the controller answers.
        Found, the spawn goes on with that job; positively absent, the spawn fails
        with "the scheduler is not answering". If the controller stays silent this
        long, the spawn fails too, and the hub keeps looking in the background to
        cancel the job should it appear.

            c.SlurmSpawner.submit_recovery_timeout = 120
        """,
    )

    # ------------------------------------------------------------ metrics

    metrics_culler_services = List(
        Unicode(),
        ["idle-culler"],
        config=True,
        help="""JupyterHub services whose stops count as ``culled`` in the hub's metrics.

        ``hpcspawner_server_stops_total{reason=...}`` names who asked the hub to stop a
        server: ``user`` (its owner), ``admin`` (another user), ``culled`` (one of these
        services), ``service`` (any other service), ``hub`` (no request: the hub's own
        stop). List the name your idle culler has in ``c.JupyterHub.services``. See
        :doc:`/howto/metrics`.

            c.SlurmSpawner.metrics_culler_services = ["idle-culler"]
        """,
    )

    # ------------------------------------------------------------ accounts servers may run as

    min_uid = Integer(
        DEFAULT_MIN_UID,
        config=True,
        help="""Smallest uid a server may run as; system accounts below it are refused.

        The spawner looks the user up (``getpwnam``) before it submits or cancels
        anything as them, whatever authenticator the hub uses, and refuses
        (reason ``system-account``) a uid below this one; uid 0 is always refused.
        A user the hub host does not know is checked by name only. Keep it equal
        to ``c.ClusterOAuthenticator.min_uid``.

            c.SlurmSpawner.min_uid = 10000
        """,
    )

    max_uid = Integer(
        DEFAULT_MAX_UID,
        config=True,
        help="""The first uid a server may no longer run as (reason ``high-uid``).

        Debian gives packages' users uids from 60000 (``slurm`` is 64030) and
        ``nobody`` is 65534. If your users' uids go higher (LDAP or AD often use
        uids above 100000), raise it above the largest one; keep it equal to
        ``c.ClusterOAuthenticator.max_uid``.

            c.SlurmSpawner.max_uid = 2_000_000_000
        """,
    )

    refused_usernames = List(
        Unicode(),
        list(DEFAULT_REFUSED_NAMES),
        config=True,
        help="""Accounts no server may run as, whatever their uid (reason ``service-account``).

        Compared without regard to case. ``root`` and the ``SlurmUser`` and
        ``SlurmdUser`` of slurm.conf (``SLURM_CONF``, else /etc/slurm/slurm.conf)
        are always refused too. Add your site's service accounts:

            c.SlurmSpawner.refused_usernames = ["root", "nobody", "slurm", "munge", "slurmrest", "slurmrestd", "backup-svc"]
        """,
    )

    refused_shells = List(
        Unicode(),
        list(DEFAULT_REFUSED_SHELLS),
        config=True,
        help="""Login shells that mark an account no server may run as (reason ``no-login-shell``).

        An absolute path matches exactly; a bare name matches the shell's last
        component (``nologin`` matches /usr/sbin/nologin and /sbin/nologin). Use
        ``[]`` if your users' accounts have ``nologin`` on purpose (e.g. no SSH to
        the login nodes) and should still get servers.

            c.SlurmSpawner.refused_shells = ["nologin", "false", "/usr/local/bin/locked"]
        """,
    )

    def account_rules(self) -> AccountRules:
        """The rules above plus slurm.conf's ``SlurmUser``; ValueError names a bad setting."""
        try:
            return rules_from_config(
                min_uid=self.min_uid,
                max_uid=self.max_uid,
                refused_usernames=self.refused_usernames,
                refused_shells=self.refused_shells,
                service_users=slurm_service_users(),
            )
        except ValueError as e:
            raise ValueError(f"Invalid SlurmSpawner configuration: {e}") from None

    # ------------------------------------------------------------ the batch job

    batch_script_template = Unicode(
        "",
        config=True,
        help="""Path of a jinja2 template to use instead of the packaged batch script.

        Start from ``hpcspawner/job/templates/batch_script.sh.j2``. The template sees
        ``request`` (the validated resources), ``job_name``, ``comment``,
        ``workdir``, ``output``, ``command`` (a list), ``prologue``,
        ``environment``, ``extra_directives``, ``requeue``, ``path`` (the job's
        PATH), ``umask`` (``job_umask`` as four digits) and ``signal_lead``
        (``save_before_end``: the ``--signal=B:USR1@`` lead in seconds, 0 for none);
        undefined names are errors. Use ``| sh`` for values on shell lines and ``| directive``
        for values in ``#SBATCH`` lines.

            c.SlurmSpawner.batch_script_template = "/etc/jupyterhub/batch_script.sh.j2"
        """,
    )

    batch_script_prologue = Unicode(
        "",
        config=True,
        help="""Shell lines run in the job before the server starts (site set-up).

        Written by the admin and inserted verbatim; never contains user input.

            c.SlurmSpawner.batch_script_prologue = "module load jupyter"
        """,
    )

    extra_sbatch_options = List(
        Unicode(),
        config=True,
        help="""Extra ``#SBATCH`` options for every job, each a single word.

            c.SlurmSpawner.extra_sbatch_options = ["--constraint=ib", "--exclusive"]
        """,
    )

    @validate("extra_sbatch_options")
    def _check_extra_options(self, proposal):
        for option in proposal.value:
            if not option.startswith("--"):
                raise ValueError(f"extra_sbatch_options: {option!r} must start with '--'")
            batchscript.directive(option)
        return proposal.value

    job_tag = Unicode(
        "jupyterhub",
        config=True,
        help="""A word naming this hub in its jobs' Slurm comment.

        Every job's comment is
        ``hpcspawner:<job_tag>:<username>:<server name>:<spawn id>``, so
        ``squeue --format=%k`` tells which hub started a job (the spawn id, new for
        every start, lets the hub find a job whose submission timed out). Give each
        hub sharing a cluster its own tag.

            c.SlurmSpawner.job_tag = "jupyter-prod"
        """,
    )

    @validate("job_tag")
    def _check_job_tag(self, proposal):
        if not re.match(r"^[A-Za-z0-9_.-]{1,32}$", proposal.value):
            raise ValueError(
                f"job_tag {proposal.value!r} must be 1-32 letters, digits, '_', '.' or '-'"
            )
        return proposal.value

    job_workdir = Unicode(
        "{home}",
        config=True,
        help="""Working directory of the job (``--chdir``). ``{home}`` is the user's home
        directory, ``{username}`` the user's name.

            c.SlurmSpawner.job_workdir = "/scratch/{username}"
        """,
    )

    job_output = Unicode(
        "{home}/.jupyterhub-slurm-%j.log",
        config=True,
        help="""Where the job writes its output (``--output``); ``%j`` is the job id.

        The directory must exist: Slurm does not create it. On a failed start the
        last lines of this file are shown to the user.

            c.SlurmSpawner.job_output = "/scratch/{username}/jupyter-%j.log"
        """,
    )

    job_umask = Unicode(
        batchscript.DEFAULT_UMASK,
        config=True,
        help="""The job's umask: who may read the files the job creates.

        Three octal digits, as for the shell's ``umask``. It applies to the job's
        output file (``job_output``: the hub sets ``SLURM_UMASK`` for ``sbatch``,
        from which Slurm creates it) and, through a ``umask`` line at the top of the
        batch script, to every file the server and the user's notebooks create.
        The default ``"077"`` makes them readable by the user only, whatever the
        hub's own umask; ``"027"`` lets the user's group read them too.

            c.SlurmSpawner.job_umask = "027"
        """,
    )

    @validate("job_umask")
    def _validate_job_umask(self, proposal):
        try:
            return batchscript.check_umask(proposal["value"])
        except ValueError as e:
            raise ValueError(f"c.SlurmSpawner.{e}") from None

    requeue = Bool(
        False,
        config=True,
        help="""Let Slurm requeue the job when its node fails.

        Off by default (``--no-requeue``): a requeued job would restart the server
        later, on another node, behind the user's back. The hub notices the
        failed node and the user starts a new server.
        """,
    )

    launcher_command = List(
        Unicode(),
        ["hpcspawner-singleuser"],
        config=True,
        help="""Command that starts the server in the job and reports its port.

        It is followed by ``cmd`` and ``args``. ``batchspawner-singleuser`` works
        too, for user environments that already have batchspawner.

            c.SlurmSpawner.launcher_command = ["/opt/jupyter/bin/hpcspawner-singleuser"]
        """,
    )

    fast_exit = Bool(
        True,
        config=True,
        help="""Let a Python server end without the interpreter's final garbage collection.

        When the server command is a Python script (``jupyterhub-singleuser``),
        the launcher runs it so that, once its shutdown and its ``atexit``
        handlers are done, the interpreter exits without a last pass of the
        garbage collector. For JupyterLab that pass costs ~0.5 s of CPU, during
        which Slurm keeps the job and its CPUs: with it skipped, a stopped job
        leaves ``squeue`` ~0.1 s after ``scancel`` instead of 0.7–1.7 s. The
        server's own shutdown (kernels, sessions, extensions' stop hooks) and its
        log output are unchanged; what is skipped, as after ``os._exit()``, are
        the finalizers (``__del__``) of objects still alive at exit, which Python
        does not promise to run. Turn it off if a server extension at your site
        leaves files open and relies on exit to flush them.

            c.SlurmSpawner.fast_exit = False
        """,
    )

    walltime_warnings = List(
        Integer(),
        list(walltime.DEFAULT_WARNINGS),
        config=True,
        help="""When JupyterLab warns that the server's job is about to end: seconds before
        Slurm's time limit, largest first.

        The job's clock (a status bar item with the time left, from the job's own
        ``squeue``) shows a notification as each threshold is reached; ``[]`` shows
        none (the clock stays). The default warns 15 and 5 minutes before the end.
        Each must be between 1 second and a week.

            c.SlurmSpawner.walltime_warnings = [30 * 60, 10 * 60, 2 * 60]
        """,
    )

    save_before_end = Integer(
        walltime.DEFAULT_SAVE_BEFORE_END,
        config=True,
        help="""Seconds before Slurm's time limit at which JupyterLab saves the open documents
        that have unsaved changes; 0 turns it off.

        Two cues lead to the save, whichever comes first: JupyterLab's own count-down of
        the time left, and Slurm's signal: the batch script asks for
        ``#SBATCH --signal=B:USR1@<save_before_end>``, the launcher relays it to the server,
        and the next request of the page learns of it (this catches a time limit changed
        since the job last read it). Slurm may send the signal up to 60 seconds earlier
        than asked. Give the users' notebooks time to save: a few seconds each on a
        shared file system. At most 65535 (sbatch's limit). Only pages open in a browser
        save; the user is told in a notification.

            c.SlurmSpawner.save_before_end = 300
        """,
    )

    walltime_refresh_interval = Float(
        walltime.DEFAULT_REFRESH_INTERVAL,
        config=True,
        help="""Seconds between two reads of the job's time left by the job itself.

        The job's clock runs ``squeue --jobs=$SLURM_JOB_ID`` when a JupyterLab page asks
        and its last read is older than this (Slurm's admins may change a running job's
        limit); between reads the page counts down by itself, and with no page open the
        job does not ask at all. Each read is one job lookup for slurmctld, per open
        server: at least 10 seconds.

            c.SlurmSpawner.walltime_refresh_interval = 120
        """,
    )

    @validate("walltime_warnings", "save_before_end", "walltime_refresh_interval")
    def _check_clock_settings(self, proposal):
        # the checks the job's clock applies when it reads them back (hpcspawner.job.walltime)
        check = {
            "walltime_warnings": lambda value: list(walltime.check_warnings(value)),
            "save_before_end": walltime.check_save_before_end,
            "walltime_refresh_interval": walltime.check_refresh_interval,
        }[proposal.trait.name]
        try:
            return check(proposal.value)
        except ValueError as e:
            raise ValueError(f"c.SlurmSpawner.{e}") from None

    def clock_settings(self) -> walltime.ClockSettings:
        """What the job's clock needs of the settings above."""
        return walltime.ClockSettings(
            warnings=tuple(self.walltime_warnings),
            save_before_end=self.save_before_end,
            refresh_interval=self.walltime_refresh_interval,
        )

    job_idle_timeout = Integer(
        0,
        config=True,
        help="""Seconds without activity after which a server ends its own job; 0 (the
        default): never.

        The safety net for when the hub cannot stop an idle server. The hub's idle culler
        (``jupyterhub-idle-culler``, see the culling how-to) stops idle servers through the
        hub; while the hub is down, or cannot reach the compute nodes, nothing would, and
        the allocation stays taken until the walltime ends. With this set, the server in
        the job stops by itself once it has had no activity for this long: no request from
        a browser or an API client, no output from a kernel or a terminal, no kernel busy
        executing and no command running in a terminal (those count as activity however
        long they run, silent or not; an idle kernel or a terminal at its prompt does not).
        Its launcher then exits, the job ends and Slurm frees the allocation.

        Set it longer than the culler's ``--timeout``, so that the hub normally culls
        first. It reaches the job as ``HPCSPAWNER_IDLE_TIMEOUT``, which the Jupyter Server
        extension ``hpcspawner.job.activity`` reads; the extension is enabled in every
        server of an environment hpcspawner is installed in (``pip install --no-deps
        hpcspawner``, as ``hpcspawner-singleuser`` needs), and without it the setting has
        no effect.

            c.SlurmSpawner.job_idle_timeout = 4 * 3600
        """,
    )

    @validate("job_idle_timeout")
    def _check_job_idle_timeout(self, proposal):
        if proposal.value < 0:
            raise ValueError(
                f"c.SlurmSpawner.job_idle_timeout = {proposal.value}: give a number of "
                "seconds, or 0 for no idle limit in the job"
            )
        return proposal.value

    container_exec = List(
        Unicode(),
        ["apptainer", "exec"],
        config=True,
        help="""How to run the server in an environment's ``container`` image.

        The job runs ``container_exec [--nv] IMAGE launcher_command cmd args``;
        ``--nv`` is added when the user asked for GPUs. The image must contain
        jupyterhub, jupyterlab and hpcspawner (for its launcher), and Slurm's
        clients if users run ``srun`` or ``squeue`` from the notebook.

        Apptainer (the default) runs a SIF file or a directory and binds the home
        itself; bind what else the job needs, e.g. scratch:

            c.SlurmSpawner.container_exec = ["apptainer", "exec", "--bind", "/scratch"]

        Rootless podman runs a root file system directory through
        ``hpcspawner-podman`` (installed with hpcspawner on the nodes), which gives
        the container the home, Slurm's config and munge's socket, the node's
        network and the job's environment, and ends podman's helpers with the job.
        The image has its own PATH; users need ranges in /etc/subuid and /etc/subgid
        (docs/howto/containers.md):

            c.SlurmSpawner.container_exec = [
                "hpcspawner-podman", "--volume=/scratch",
                "--env=PATH=/opt/jupyter/bin:/usr/local/bin:/usr/bin:/bin",
            ]
        """,
    )

    @validate("container_exec")
    def _check_container_exec(self, proposal):
        if not proposal.value:
            raise ValueError(
                'container_exec must name a command, e.g. ["apptainer", "exec"] or '
                '["hpcspawner-podman"]'
            )
        return proposal.value

    port_range = Tuple(
        Integer(),
        Integer(),
        default_value=(0, 0),
        config=True,
        help="""Ports the server may listen on on the compute node, as ``(low, high)``.

        ``(0, 0)`` (default) lets the operating system choose a free port.
        Set a range your firewall opens between the hub and the compute nodes;
        the hub rejects a reported port outside it.

            c.SlurmSpawner.port_range = (40000, 49999)
        """,
    )

    @validate("port_range")
    def _check_port_range(self, proposal):
        low, high = proposal.value
        if (low, high) != (0, 0) and not (1024 <= low <= high <= 65535):
            raise ValueError(
                f"port_range {proposal.value} must be (0, 0) or (low, high) with 1024 <= low <= high <= 65535"
            )
        return proposal.value

    node_address = Unicode(
        "{node}",
        config=True,
        help="""How the hub reaches a compute node, from Slurm's node name ``{node}``.

        The proxy sends the user's traffic to this host. Use it when node names do
        not resolve on the hub, or a different network should carry the traffic.

            c.SlurmSpawner.node_address = "{node}.ib.cluster.example.org"
        """,
    )

    internal_certs_dir = Unicode(
        "{home}/.jupyterhub-certs/{server}",
        config=True,
        help="""Where the server's TLS key and certificates go with ``c.JupyterHub.internal_ssl``.

        The hub writes them as the user (through the driver's privilege wrapper),
        the directory mode 0700 and the files 0600, so only the user (and root) can
        read them; the job must see the same path (a shared home or scratch).
        ``{home}`` is the user's home, ``{username}`` the name, ``{server}`` the
        server's name (``default`` for the default server).

            c.SlurmSpawner.internal_certs_dir = "/scratch/{username}/.jupyterhub-certs/{server}"
        """,
    )

    token_delivery = Enum(
        ["file", "environment"],
        config=True,
        help="""How the server's API token reaches the job.

        ``"file"`` (the default with ``hpcspawner-singleuser``): before ``sbatch``
        the hub writes the token as the user into a file only the user can read
        (see ``token_dir``); the job's environment carries only the file's path
        (``HPCSPAWNER_TOKEN_FILE``). The launcher reads the file, deletes it and
        hands the token to the server in the server's environment. The token is
        then not in Slurm's record of the job: not in slurmctld's saved job
        environment, nor in slurmdbd (``AccountingStoreFlags=job_env``).

        ``"environment"`` (the default when ``launcher_command`` is
        ``batchspawner-singleuser``, which only reads the environment): the token
        travels in sbatch's environment, as with batchspawner. Slurm then stores
        it with the job: slurmctld keeps it in its state directory
        (``StateSaveLocation/hash.N/job.ID/environment``, root and SlurmUser) while
        the job is known, and slurmdbd keeps it for as long as it keeps the job if
        ``AccountingStoreFlags`` has ``job_env``; ``sacct --env-vars`` shows it to the
        user and to Slurm's operators and admins.

            c.SlurmSpawner.token_delivery = "environment"
        """,
    )

    @default("token_delivery")
    def _default_token_delivery(self):
        launcher = self.launcher_command[0] if self.launcher_command else ""
        return "environment" if launcher.endswith("batchspawner-singleuser") else "file"

    token_dir = Unicode(
        "{home}/.jupyterhub-tokens/{server}",
        config=True,
        help="""Where the hub puts the server's API token for the job (``token_delivery = "file"``).

        The hub writes it as the user (through the driver's privilege wrapper):
        the directory mode 0700, the file (named after the start) 0600, so only
        the user (and root) can read it. The job's launcher deletes it when it
        starts the server; the hub deletes it when a start fails or the server
        stops before that. The job must see the same path (a shared home or
        scratch; with a container image, a path bound into it). ``{home}`` is the
        user's home, ``{username}`` the name, ``{server}`` the server's name
        (``default`` for the default server).

            c.SlurmSpawner.token_dir = "/scratch/{username}/.jupyterhub-tokens/{server}"
        """,
    )

    @default("ssl_alt_names")
    def _default_ssl_alt_names(self):
        # the hub connects to https://<node_address>:<port>: the certificate must name every node
        return tls.node_alt_names

    @default("ip")
    def _default_ip(self):
        # the server listens on the compute node; the hub reaches it via node_address
        return "0.0.0.0"  # noqa: S104 - the server is protected by the hub's OAuth

    @default("env_keep")
    def _default_env_keep(self):
        return ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]

    job_path = Unicode(
        "/usr/local/bin:/usr/bin:/bin",
        config=True,
        help="""PATH in the job, unless ``c.Spawner.environment`` sets one.

        JupyterHub >= 5.2 no longer passes the hub's PATH to non-local spawners; the
        job needs one that finds ``launcher_command`` and ``cmd``.

            c.SlurmSpawner.job_path = "/opt/jupyter/bin:/usr/local/bin:/usr/bin:/bin"
        """,
    )

    # ------------------------------------------------------------ what users may ask for

    default_options = Dict(
        {"cpus": 1, "memory": "1G", "runtime": "1:00:00", "nodes": 1, "gpus": 0},
        config=True,
        help="""Resources used where the user asks for nothing (same keys as ``user_options``:
        partition, account, qos, reservation, nodes, cpus, memory, gpus, runtime,
        profile, environment).

            c.SlurmSpawner.default_options = {"partition": "debug", "cpus": 2, "memory": "4G", "runtime": "2:00:00"}
        """,
    )

    partitions = Dict(
        config=True,
        help="""Partitions users may choose, with optional limits; empty allows any
        partition (Slurm then enforces its own limits).

        Keys per partition: ``description``, ``max_nodes``, ``max_cpus``,
        ``max_memory`` (e.g. ``"16G"``), ``max_gpus``, ``max_runtime`` (e.g. ``"8:00:00"``).

            c.SlurmSpawner.partitions = {
                "debug": {"max_runtime": "1:00:00", "max_cpus": 2},
                "gpu": {"max_gpus": 2, "max_runtime": "4:00:00"},
            }
        """,
    )

    environments = Dict(
        config=True,
        help="""Named software environments users may choose for their server.

        Keys per environment: ``description``, ``prefix`` (a venv/conda prefix whose
        ``bin`` goes first on PATH), ``modules`` (a list to ``module load``),
        ``prologue`` (admin-written shell lines).

            c.SlurmSpawner.environments = {
                "python3.11": {"description": "Python 3.11", "prefix": "/opt/py311"},
                "pytorch": {"modules": ["cuda/12.2", "pytorch/2.3"]},
            }
        """,
    )

    profiles = Dict(
        config=True,
        help="""Named presets of option values users can pick in one go.

            c.SlurmSpawner.profiles = {
                "small": {"description": "2 CPUs, 4 GB, 2 h", "options": {"cpus": 2, "memory": "4G", "runtime": "2:00:00"}},
            }
        """,
    )

    allowed_accounts = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        config=True,
        help="""Slurm accounts users may charge; None allows any (Slurm checks associations).""",
    )

    allowed_qos = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        config=True,
        help="""QOS names users may choose; None allows any (Slurm checks associations).""",
    )

    allowed_reservations = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        config=True,
        help="""Reservations users may choose; None allows any.""",
    )

    allow_custom_options = Bool(
        True,
        config=True,
        help="""Let users set their own resources; False offers only the profiles
        (and the environments).

            c.SlurmSpawner.allow_custom_options = False
        """,
    )

    cluster_info_ttl = Float(
        60.0,
        config=True,
        help="""Seconds the spawn page may show the same cluster information.

        One ``scontrol`` refresh serves every user's page; within this time a page
        view costs no scheduler call. When Slurm does not answer, the page shows
        the last known data and says it is stale.

            c.SlurmSpawner.cluster_info_ttl = 60
        """,
    )

    associations_ttl = Float(
        300.0,
        config=True,
        help="""Seconds a user's Slurm associations (accounts and QOS, from ``sacctmgr``)
        are reused, by the spawn page and by the login
        (``c.ClusterOAuthenticator.slurm_accounts = "sacctmgr"``): one cache for both.

        "Slurm has no accounting" is remembered as long, for the whole hub. So are the
        limits the spawn page shows and the validator applies: every QOS's ``MaxWall`` and
        ``MaxTRESPerJob`` (one ``sacctmgr show qos`` for the whole hub) and each user's
        default account and association limits. When the accounting database does not
        answer (slurmdbd stopped), the last answers stay in use and the page says since
        when; the hub asks again on a page view at most every 10 seconds and catches up
        once it answers. See :doc:`/howto/accounting`. Each user's use of their accounts
        (``sshare``) that the spawn page shows under the Account field is remembered as
        long too. This replaces ``c.ClusterOAuthenticator.accounts_cache_seconds``.

            c.SlurmSpawner.associations_ttl = 300
        """,
    )

    options_form_template = Unicode(
        "",
        config=True,
        help="""Path of a jinja2 template to use instead of the packaged spawn form.

        Start from ``hpcspawner/spawner/templates/options_form.html.j2``; it is rendered
        with autoescaping inside JupyterHub's own form.

            c.SlurmSpawner.options_form_template = "/etc/jupyterhub/options_form.html.j2"
        """,
    )

    @default("options_form")
    def _default_options_form(self):
        return _render_options_form

    max_nodes = Integer(1, config=True, help="""Most nodes one server may use (any partition).""")
    max_cpus = Integer(64, config=True, help="""Most CPUs per node one server may use.""")
    max_gpus = Integer(8, config=True, help="""Most GPUs per node one server may use.""")
    max_memory = Unicode(
        "256G", config=True, help="""Most memory per node one server may use, e.g. ``"64G"``."""
    )
    max_runtime = Unicode(
        "1-00:00:00", config=True, help="""Longest walltime a server may ask for."""
    )

    policy = Instance(Policy, help="The validated policy built from the settings above.")

    @default("policy")
    def _build_policy(self):
        from ..resources.options import parse_memory_mb, parse_runtime_minutes

        try:
            return Policy(
                partitions=partition_policies(self.partitions),
                accounts=_tuple_or_none(self.allowed_accounts),
                qos=_tuple_or_none(self.allowed_qos),
                reservations=_tuple_or_none(self.allowed_reservations),
                environments=environments_from_config(self.environments),
                profiles=profiles_from_config(self.profiles),
                defaults=check_defaults(self.default_options),
                max_nodes=self.max_nodes,
                max_cpus=self.max_cpus,
                max_gpus=self.max_gpus,
                max_memory_mb=parse_memory_mb(self.max_memory),
                max_runtime_minutes=parse_runtime_minutes(self.max_runtime),
                allow_custom=self.allow_custom_options,
            )
        except ValueError as e:
            raise ValueError(f"Invalid SlurmSpawner configuration: {e}") from None


async def _render_options_form(spawner) -> str:
    """``c.SlurmSpawner.options_form`` default: the packaged form (JupyterHub calls it)."""
    return await spawner.render_options_form()


def _tuple_or_none(value):
    return None if value is None else tuple(value)
