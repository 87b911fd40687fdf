"""Shared set-up for the unit tests (pure modules, no Slurm, no hub).

Every test sees the test cluster's users (alice, bob: ``fakeslurm.HOST_USERS``) through
the one seam :func:`hpcspawner.accounts.posix.lookup_posix_account`, whether or not
this machine has them (the ``host_users`` fixture; a test may add users to it).

Hypothesis profiles: ``unit`` (the default) is derandomized and bounded so that
the suite is fast and the same on every run; ``nightly`` explores more, with
fresh randomness. Choose with ``HYPOTHESIS_PROFILE=nightly pytest tests/unit``.
"""

from __future__ import annotations

import os

import pytest
from fakeslurm import HOST_USERS, host_users_lookup
from hypothesis import HealthCheck, settings

from hpcspawner.accounts import posix

settings.register_profile(
    "unit",
    max_examples=300,
    derandomize=True,
    deadline=None,  # `bash -n` runs in some examples; CI machines stall
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))


@pytest.fixture(autouse=True)
def host_users(monkeypatch):
    """The hub host's users as the test cluster has them: name -> PosixAccount (add to it);
    other names are looked up on this machine (root, daemon, ...)."""
    users = dict(HOST_USERS)
    monkeypatch.setattr(posix, "lookup_posix_account", host_users_lookup(users))
    return users
