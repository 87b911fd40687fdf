"""What runs inside the job: the batch script and the launcher.

- :mod:`~hpcspawner.job.batchscript`: the hub renders the batch script from its template
  (jinja2, on the hub's side);
- :mod:`~hpcspawner.job.launcher`: ``hpcspawner-singleuser``, which binds a port on the compute
  node, calls the hub back and runs the server. It needs only the standard library and
  ``jupyterhub-singleuser``: ``pip install --no-deps hpcspawner`` is enough in a job
  environment.

This ``__init__`` imports nothing, so that importing the launcher loads no hub dependency.
"""
