"""The hub-free Slurm layer: the driver interface, Slurm's records, parsers and errors.

Nothing in this package imports JupyterHub, tornado or the rest of hpcspawner
(``tests/unit/test_layers.py`` holds it to that). The exceptions: traitlets,
since drivers are configurables (``c.LocalSlurmDriver.*``), and two leaves that need
only the standard library (the same test holds them to that):
:mod:`hpcspawner.logtext`, which every room uses to escape text for the log, and
:mod:`hpcspawner.loopback` (is a URL on this host?).
:mod:`~hpcspawner.slurm.ssh` and :mod:`~hpcspawner.slurm.sshpool` also import
asyncssh, the optional dependency of the ``ssh`` extra (``pip install hpcspawner[ssh]``),
and :mod:`~hpcspawner.slurm.rest` imports httpx (the ``rest`` extra): this package does not
import them, so the rest works without asyncssh and httpx.

- :mod:`~hpcspawner.slurm.driver`: :class:`SlurmDriver`, the interface every driver
  implements, :class:`JobOutput`, and :class:`DriverObserver`, what is told of each
  request and operation (the hub's metrics);
- :mod:`~hpcspawner.slurm.cli`: :class:`~hpcspawner.slurm.cli.CommandDriver`, what the
  command drivers run and how they read the answers, apart from the transport;
- :mod:`~hpcspawner.slurm.local`: :class:`LocalSlurmDriver`, Slurm's commands on the
  hub's host;
- :mod:`~hpcspawner.slurm.ssh`: :class:`~hpcspawner.slurm.ssh.SSHSlurmDriver`, Slurm's
  commands on a login node over SSH (import it from there), and
  :mod:`~hpcspawner.slurm.sshpool`, its pooled connections;
- :mod:`~hpcspawner.slurm.rest`: :class:`~hpcspawner.slurm.rest.RESTSlurmDriver`, Slurm
  through slurmrestd with JWTs (import it from there); :mod:`~hpcspawner.slurm.rest_v0038`,
  what it sends and reads for slurmrestd's API v0.0.38 (pure); :mod:`~hpcspawner.slurm.jwt`,
  HS256 tokens with the standard library;
- :mod:`~hpcspawner.slurm.shellquote`: argv -> one command line for a remote shell;
- :mod:`~hpcspawner.slurm.jobstate`: ``squeue`` -> :class:`JobInfo`, alive/gone/unknown;
- :mod:`~hpcspawner.slurm.records`: ``scontrol`` and ``sacctmgr`` -> :class:`NodeInfo`,
  :class:`PartitionInfo`, :class:`Association`;
- :mod:`~hpcspawner.slurm.history`: ``sacct`` (and slurmrestd's ``dbv0.0.38`` jobs) ->
  :class:`~hpcspawner.slurm.history.JobEnd`, how a job ended;
- :mod:`~hpcspawner.slurm.usage`: ``sshare`` -> :class:`~hpcspawner.slurm.usage.AccountUsage`;
- :mod:`~hpcspawner.slurm.snapshot`: partitions and nodes summed up into a
  :class:`ClusterSnapshot`;
- :mod:`~hpcspawner.slurm.hostlist`: Slurm's host list syntax;
- :mod:`~hpcspawner.slurm.commands`: the subprocess runner (argv, timeout, output cap);
- :mod:`~hpcspawner.slurm.errors`: :class:`SlurmError` and its kin.
"""

from __future__ import annotations

from .driver import (
    OPERATIONS,
    OUTPUT_TAIL_BYTES,
    DriverObserver,
    JobOutput,
    SlurmDriver,
    may_act_as,
)
from .errors import (
    ConnectionFailed,
    ConnectionLost,
    ConnectTimeout,
    OutputTooLarge,
    SlurmError,
    SlurmTimeout,
    controller_unreachable,
    failure_kind,
    submission_uncertain,
)
from .jobstate import JobInfo, Liveness, liveness_of
from .local import LocalSlurmDriver
from .records import (
    UNTYPED,
    Association,
    NodeInfo,
    ParseError,
    PartitionInfo,
    association_choices,
)
from .snapshot import ClusterSnapshot, PartitionSummary, summarize

__all__ = [
    "OPERATIONS",
    "OUTPUT_TAIL_BYTES",
    "UNTYPED",
    "Association",
    "ClusterSnapshot",
    "ConnectTimeout",
    "ConnectionFailed",
    "ConnectionLost",
    "DriverObserver",
    "JobInfo",
    "JobOutput",
    "Liveness",
    "LocalSlurmDriver",
    "NodeInfo",
    "OutputTooLarge",
    "ParseError",
    "PartitionInfo",
    "PartitionSummary",
    "SlurmDriver",
    "SlurmError",
    "SlurmTimeout",
    "association_choices",
    "controller_unreachable",
    "failure_kind",
    "liveness_of",
    "may_act_as",
    "submission_uncertain",
    "summarize",
]
