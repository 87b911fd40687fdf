"""The job a server runs: its name and comment, what its environment adds, its command and
its batch script, from the admin's settings and a validated request.

Pure but for reading an admin's own template file. The spawner calls these with itself as
``settings`` (a :class:`~hpcspawner.spawner.settings.SlurmSpawnerSettings`); what reaches
the script has been through :func:`hpcspawner.resources.options.validate_options`, and the
template renders it through :mod:`hpcspawner.job.batchscript`'s quoting filters.
"""

from __future__ import annotations

import re

from ..job import batchscript, walltime
from .userfiles import format_path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+:-]")

#: Where JupyterHub's get_env() puts the server's API token.
TOKEN_VARIABLES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")


def job_comment(job_tag: str, username: str, server: str, spawn_id: str) -> str:
    """``hpcspawner:<job_tag>:<user>:<server>:<spawn id>``: finds a start's job again."""
    return _UNSAFE.sub("_", f"hpcspawner:{job_tag}:{username}:{server or '-'}:{spawn_id}")


def job_name(username: str, server: str) -> str:
    name = f"jupyter-{username}-{server}" if server else f"jupyter-{username}"
    return _UNSAFE.sub("_", name)[:100]


def port_range(settings) -> tuple[int, int] | None:
    """The admin's ``port_range``, or None when the job may take any free port."""
    return None if tuple(settings.port_range) == (0, 0) else tuple(settings.port_range)


def job_environment(settings, env: dict[str, str], token_file: str | None) -> dict[str, str]:
    """``env`` (JupyterHub's ``get_env()``) with what the job's launcher needs added; with
    a ``token_file``, the API token leaves the environment and only the file's path stays
    (sbatch's environment becomes Slurm's record of the job)."""
    env.setdefault("PATH", settings.job_path)
    # sbatch passes its own umask unless this is set; slurmstepd creates the output
    # file with it: private whatever the hub's umask (c.Spawner.environment cannot widen it)
    env["SLURM_UMASK"] = batchscript.check_umask(settings.job_umask)
    ports = port_range(settings)
    if ports:
        env["HPCSPAWNER_PORT_RANGE"] = f"{ports[0]}-{ports[1]}"
    if not settings.fast_exit:
        env["HPCSPAWNER_FAST_EXIT"] = "0"
    # the job's clock (hpcspawner.job.clock): warnings, save lead, squeue interval
    env.update(walltime.clock_environment(settings.clock_settings()))
    if settings.job_idle_timeout:
        # read in the job by hpcspawner.job.activity: the server's idle safety net
        env["HPCSPAWNER_IDLE_TIMEOUT"] = str(int(settings.job_idle_timeout))
    if token_file:
        for name in TOKEN_VARIABLES:
            env.pop(name, None)
        env["HPCSPAWNER_TOKEN_FILE"] = token_file
    return env


def job_command(settings, request, environment, args: list[str]) -> list[str]:
    """What the job runs: the launcher, the server, its arguments (in a container if any)."""
    command = [*settings.launcher_command, *settings.cmd, *args]
    if environment is not None and environment.container:
        gpu_flag = ["--nv"] if request.gpus else []
        command = [*settings.container_exec, *gpu_flag, environment.container, *command]
    return command


def batch_script(
    settings,
    request,
    env: dict[str, str],
    *,
    home: str,
    username: str,
    server: str,
    comment: str,
    args: list[str],
) -> str:
    """The batch script for ``request``: the admin's template or the packaged one."""
    if settings.batch_script_template:
        with open(settings.batch_script_template) as f:
            template = f.read()
    else:
        template = batchscript.default_template()
    environment = (
        settings.policy.environments.get(request.environment) if request.environment else None
    )
    return batchscript.render(
        template,
        request=request,
        job_name=job_name(username, server),
        comment=comment,
        workdir=format_path(settings.job_workdir, home, username),
        output=format_path(settings.job_output, home, username),
        command=job_command(settings, request, environment, args),
        prologue=settings.batch_script_prologue,
        environment=environment,
        extra_directives=list(settings.extra_sbatch_options),
        requeue=settings.requeue,
        path=env.get("PATH", settings.job_path),
        umask=batchscript.check_umask(settings.job_umask),
        # the driver may not pass a signal for the batch shell on (slurmrestd's v0.0.38)
        signal_lead=walltime.check_save_before_end(settings.save_before_end)
        if settings.driver.batch_signal
        else 0,
    )
