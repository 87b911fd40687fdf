"""The resources' room (pure): what a user may ask for, what the admin allows, and the check.

- :mod:`~hpcspawner.resources.options`: the fields of a request, the admin's policy, and the one
  validator the spawn form and the REST API share;
- :mod:`~hpcspawner.resources.offer`: the one place where the admin's allow-lists, the login's
  accounts and the cluster's offer (partitions, the user's associations) are intersected.

Nothing here imports JupyterHub, tornado or the rest of the package except the Slurm layer's
records (``tests/unit/test_layers.py`` holds it): a new resource field is added here, with its
tests, and nowhere else but the form's template.
"""
