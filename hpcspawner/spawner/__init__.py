"""The spawner's room: each user's server as a Slurm job, from the spawn page to ``scancel``.

- :mod:`~hpcspawner.spawner.spawner`: :class:`SlurmSpawner`, the lifecycle (orchestration only);
- :mod:`~hpcspawner.spawner.settings`: every option an admin sets, with its help and checks;
- :mod:`~hpcspawner.spawner.shared`: the hub's one door to Slurm (driver, poller, cluster cache),
  shared with the authenticator and closed when the hub stops;
- :mod:`~hpcspawner.spawner.poller`: one status query per interval for every server;
- :mod:`~hpcspawner.spawner.clusterinfo`: the cached view of what the cluster offers;
- :mod:`~hpcspawner.spawner.recovery`: finding a job again after a lost ``sbatch`` answer,
  and the reapers that cancel one that shows up late;
- :mod:`~hpcspawner.spawner.request`: from the form, a link or the REST API to a validated
  request (the hooks JupyterHub calls before a start);
- :mod:`~hpcspawner.spawner.jobspec`: the job's environment, command and batch script;
- :mod:`~hpcspawner.spawner.userfiles`: the user's account and the files the hub puts down
  as the user (TLS files, the token file) or reads back (the job's output);
- :mod:`~hpcspawner.spawner.messages`: the words of a start (pure);
- :mod:`~hpcspawner.spawner.jobwatch`: following a job through the poller (its port, its end);
- :mod:`~hpcspawner.spawner.progress`: the events of a start for the spawn-pending page;
- :mod:`~hpcspawner.spawner.state`: what a server keeps in the hub's database (pure);
- :mod:`~hpcspawner.spawner.tls`: the names in a server's certificate;
- :mod:`~hpcspawner.spawner.callback`: the endpoint the job calls with its port (and the
  token digest it checks);
- :mod:`~hpcspawner.spawner.page`, :mod:`~hpcspawner.spawner.form`,
  :mod:`~hpcspawner.spawner.spawnlink`: the spawn page;
- :mod:`~hpcspawner.spawner.errors`: what a failed start tells the user and the hub;
- :mod:`~hpcspawner.spawner.metrics`: hpcspawner's Prometheus metrics on ``/hub/metrics``.

``hpcspawner.spawner.SlurmSpawner`` (and the entry points ``hpc`` and ``hpcspawner``) keep
naming the class; it is loaded on first use, so that the authenticator can reach
:mod:`~hpcspawner.spawner.shared` without the spawner's own imports.
"""

__all__ = ["SlurmSpawner"]


def __getattr__(name):
    if name in __all__:
        from . import spawner

        return getattr(spawner, name)
    raise AttributeError(name)
