"""``hpcspawner-check-config [jupyterhub_config.py]``: check SlurmSpawner's settings.

Loads the config file the way JupyterHub does and builds the spawner's policy
(partitions, limits, profiles, environments, defaults) and its driver (its settings,
without asking Slurm: the SSH driver's hosts and keys, the REST driver's address and token,
and whether the driver can write the user's files). Exits 1 with a message naming the
setting to fix, or prints what users will be offered. Run it after
editing the config, in CI, or before rolling out a Helm release.
"""

from __future__ import annotations

import os
import sys

from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from .resources.options import OptionsError, Policy, format_memory, format_runtime, validate_options


def load(path: str):
    directory, filename = os.path.split(os.path.abspath(path))
    return PyFileConfigLoader(filename, path=directory).load_config()


def describe(policy) -> list[str]:
    lines = []
    if policy.partitions:
        for name, p in policy.partitions.items():
            limits = [
                f"max_{label} {value}"
                for label, value in (
                    ("nodes", p.max_nodes),
                    ("cpus", p.max_cpus),
                    ("memory", p.max_memory_mb and format_memory(p.max_memory_mb)),
                    ("gpus", p.max_gpus),
                    ("runtime", p.max_runtime_minutes and format_runtime(p.max_runtime_minutes)),
                )
                if value is not None
            ]
            lines.append(f"partition {name}: {', '.join(limits) or 'Slurm limits'}")
    else:
        lines.append("partitions: any (Slurm's limits)")
    lines += [f"profile {name}: {p.description}" for name, p in policy.profiles.items()]
    lines += [f"environment {name}: {e.description}" for name, e in policy.environments.items()]
    lines.append(f"defaults: {dict(policy.defaults)}")
    return lines


def check_config(config) -> Policy:
    """Build the policy from ``config`` (a traitlets Config); raise ValueError naming the fix.

    Used by ``hpcspawner-check-config``. The defaults alone must make a valid request, and
    the driver's own settings must hold (checked without asking Slurm).
    """
    from .spawner import SlurmSpawner  # the hub's imports, only when checking

    spawner = SlurmSpawner(config=config)
    policy = spawner.policy
    try:
        validate_options({}, policy)
    except OptionsError as e:
        raise ValueError(
            f"Invalid SlurmSpawner configuration: default_options do not satisfy the limits: "
            f"{e.summary()}"
        ) from None
    driver = spawner.driver_class(config=config, log=spawner.log)
    problems = driver.config_problems()
    token_file = spawner.token_delivery == "file"  # noqa: S105 - a delivery mode, not a password
    if not driver.handles_files and (token_file or spawner.internal_ssl):
        problems.append(
            f"{type(driver).__name__} cannot write the user's files: set "
            'c.SlurmSpawner.token_delivery = "environment" (the token then sits in Slurm\'s '
            "record of the job) and leave c.JupyterHub.internal_ssl off"
        )
    if problems:
        raise ValueError(
            f"Invalid {spawner.driver_class.__name__} configuration: " + "; ".join(problems)
        )
    return policy


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "jupyterhub_config.py"
    try:
        config = load(path)
    except ConfigFileNotFound:
        print(f"{path}: no such config file", file=sys.stderr)
        return 2
    from traitlets import TraitError

    try:
        policy = check_config(config)
    except (ValueError, TraitError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    print(f"{path}: SlurmSpawner settings are valid")
    for line in describe(policy):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
