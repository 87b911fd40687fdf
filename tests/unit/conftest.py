"""Shared set-up for the unit tests (pure modules, no Slurm, no hub).

Hypothesis profiles: ``unit`` (the default) is derandomized and bounded so that
the suite is fast and the same on every run; ``nightly`` explores more, with
fresh randomness. Choose with ``HYPOTHESIS_PROFILE=nightly pytest tests/unit``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
