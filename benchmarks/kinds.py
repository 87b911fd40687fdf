"""The hubs the side-by-side harness can run: a spawner and the way it reaches Slurm.

A *kind* names one hub configuration and keys its results in
benchmarks/results/sidebyside.json. The local driver keeps the names the results had
before there were drivers ("hpcspawner", "batchspawner"), so older results still render.
"""

from __future__ import annotations

SPAWNERS = ("hpcspawner", "batchspawner")
DRIVERS = ("local", "ssh", "rest")

#: kind -> (spawner, driver), in the order the report shows them. batchspawner has no
#: REST driver: "ssh" is its exec_prefix through the login node, as NERSC runs it.
KINDS = {
    "hpcspawner": ("hpcspawner", "local"),
    "hpcspawner-ssh": ("hpcspawner", "ssh"),
    "hpcspawner-rest": ("hpcspawner", "rest"),
    "batchspawner": ("batchspawner", "local"),
    "batchspawner-ssh": ("batchspawner", "ssh"),
}


def kind_of(spawner: str, driver: str) -> str | None:
    """The kind of ``spawner`` over ``driver``, or None when there is no such hub."""
    for kind, pair in KINDS.items():
        if pair == (spawner, driver):
            return kind
    return None


def kinds_for(spawners: list[str], drivers: list[str]) -> list[str]:
    """The kinds to run, driver by driver: ``["hpcspawner", "batchspawner", ...]``."""
    found = [kind_of(spawner, driver) for driver in drivers for spawner in spawners]
    return [kind for kind in found if kind]


def spawner_of(kind: str) -> str:
    return KINDS[kind][0]


def driver_of(kind: str) -> str:
    return KINDS[kind][1]


def local_twin(kind: str) -> str | None:
    """The same spawner over the local driver: what a driver's figures are compared with."""
    return kind_of(spawner_of(kind), "local")


def batchspawner_twin(kind: str) -> str:
    """The batchspawner hub an hpcspawner hub is compared with: the same driver where
    batchspawner has it (local, ssh), else the local one (for rest)."""
    return kind_of("batchspawner", driver_of(kind)) or "batchspawner"
