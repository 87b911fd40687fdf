"""The layers hold: what each lower room may import, checked on the source and for real.

- ``hpcspawner.slurm`` (the drivers, records, parsers, errors) is what a new driver (SSH,
  slurmrestd) plugs into and what the poller and the cluster cache sit on: nothing from the
  hub, nothing from the rooms above it; traitlets (drivers are configurables), asyncssh
  (the SSH driver), httpx (the REST driver) and the stdlib-only leaves ``hpcspawner.logtext``
  and ``hpcspawner.loopback``.
- ``hpcspawner.resources`` (the request, the policy, the one validator, the offer) is pure:
  the standard library and the Slurm layer's records, nothing else.
- ``hpcspawner.auth.mapping`` (claims -> cluster user name), ``hpcspawner.accounts.rules``,
  ``hpcspawner.slurm.querycost`` (which status query costs slurmctld less) and
  ``hpcspawner.job.walltime`` (the job's clock: squeue's answer, what is due) are pure in
  the stricter sense: no file or system I/O either (that is ``hpcspawner.accounts.posix``,
  and the drivers), so their tests need no machine.

Two checks per layer: the imports each module's source names (relative forms such as
``from .. import x`` included, wherever they stand: in functions, under ``TYPE_CHECKING``),
and a real import of every module in a fresh interpreter in which the hub's packages cannot
be imported at all. The job-side launcher's standard-library rule is in test_packaging.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import hpcspawner
from hpcspawner.accounts.rules import is_posix_name
from hpcspawner.slurm import may_act_as

PACKAGE_DIR = Path(hpcspawner.__file__).parent

#: The hub's packages: unimportable in the fresh interpreters below.
HUB_PACKAGES = ("jupyterhub", "tornado", "jinja2", "oauthenticator", "sqlalchemy")

#: Standard-library modules through which a module reads files or asks the system.
IO_MODULES = (
    "os",
    "pwd",
    "grp",
    "io",
    "pathlib",
    "shutil",
    "glob",
    "tempfile",
    "subprocess",
    "socket",
    "asyncio",
    "spwd",
)


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Layer:
    """A module or package, and what it may import besides the standard library."""

    name: str
    #: modules of the package it may import (each with its submodules)
    may_import: tuple[str, ...]
    #: third-party top-level packages it may import
    third_party: tuple[str, ...] = ()
    #: pure in the strict sense: no standard-library module that does file or system I/O
    no_io: bool = False

    def violation(self, name: str) -> str | None:
        """Why this layer may not import ``name``, or None."""
        root = name.split(".")[0]
        if name.startswith("."):
            return "a relative import that leaves the package"
        if root == "hpcspawner":
            if within(name, self.may_import):
                return None
            if name == "hpcspawner":
                return "the package's __init__ (it reaches the spawner)"
            return f"a module outside {', '.join(self.may_import)} (a higher layer)"
        if self.no_io and root in IO_MODULES:
            return "file or system I/O (hpcspawner.accounts.posix does that)"
        if root in sys.stdlib_module_names or root in self.third_party:
            return None
        if root in HUB_PACKAGES:
            return f"the hub's dependencies stay out of {self.name}"
        return "a third-party package"

    def modules(self) -> list[Path]:
        path = PACKAGE_DIR.parent.joinpath(*self.name.split("."))
        return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


#: asyncssh only in hpcspawner.slurm.ssh and .sshpool, httpx only in hpcspawner.slurm.rest
#: (test_packaging.py holds them there: the optional extras ssh and rest)
SLURM = Layer(
    "hpcspawner.slurm",
    ("hpcspawner.slurm", "hpcspawner.logtext", "hpcspawner.loopback"),
    ("traitlets", "asyncssh", "httpx"),
)
RESOURCES = Layer("hpcspawner.resources", ("hpcspawner.resources", "hpcspawner.slurm"))
MAPPING = Layer(
    "hpcspawner.auth.mapping",
    (
        "hpcspawner.auth.mapping",
        "hpcspawner.accounts.authstate",
        "hpcspawner.accounts.rules",
        "hpcspawner.resources.options",
        "hpcspawner.resources.limits",
    ),
    no_io=True,
)
RULES = Layer("hpcspawner.accounts.rules", ("hpcspawner.accounts.rules",), no_io=True)
QUERYCOST = Layer("hpcspawner.slurm.querycost", ("hpcspawner.slurm.querycost",), no_io=True)
#: the job's clock, pure: the hub checks the admin's settings with it, the job reads squeue
WALLTIME = Layer("hpcspawner.job.walltime", ("hpcspawner.job.walltime",), no_io=True)
LAYERS = [SLURM, RESOURCES, MAPPING, RULES, QUERYCOST, WALLTIME]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` of ``module``.

    ``from X import a, b`` yields ``X.a`` and ``X.b`` too (each may be a submodule).
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def violations(layer: Layer, source: str, module: str, is_package: bool = False) -> list[str]:
    """One line per import statement that breaks the layering (all its offending names)."""
    by_line: dict[int, tuple[list[str], str]] = {}
    for line, name in imported_names(source, module, is_package):
        if name == "__future__" or name.startswith("__future__."):
            continue
        why = layer.violation(name)
        if why is not None:
            by_line.setdefault(line, ([], why))[0].append(name)
    return [
        f"{module}:{line} imports {', '.join(names)}: {why}"
        for line, (names, why) in by_line.items()
    ]


def offending_names(found: list[str]) -> list[str]:
    assert len(found) == 1, found
    return found[0].split(" imports ", 1)[1].split(": ", 1)[0].split(", ")


@pytest.mark.parametrize(
    "source, expected",
    [
        pytest.param("import jupyterhub.spawner", "jupyterhub.spawner", id="import"),
        pytest.param("from tornado import web", "tornado", id="from-import"),
        pytest.param("def f():\n    import jinja2", "jinja2", id="inside-a-function"),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlalchemy",
            "sqlalchemy",
            id="type-checking",
        ),
        pytest.param(
            "from oauthenticator.generic import X", "oauthenticator.generic", id="submodule"
        ),
        pytest.param(
            "from ..spawner.errors import SpawnFailure",
            "hpcspawner.spawner.errors",
            id="dot-dot-module",
        ),
        pytest.param("from .. import spawner", "hpcspawner.spawner", id="dot-dot-import"),
        pytest.param("from ...x import y", "...x", id="beyond-the-top"),
        pytest.param("from hpcspawner import spawner", "hpcspawner.spawner", id="absolute"),
        pytest.param(
            "import hpcspawner.resources.options",
            "hpcspawner.resources.options",
            id="absolute-module",
        ),
        pytest.param("import yaml", "yaml", id="third-party"),
    ],
)
def test_the_check_catches(source, expected):
    found = violations(SLURM, source, "hpcspawner.slurm.local")
    assert expected in offending_names(found), found


@pytest.mark.parametrize(
    "source, module, is_package",
    [
        pytest.param(
            "from .errors import SlurmError", "hpcspawner.slurm.local", False, id="sibling"
        ),
        pytest.param("from . import local", "hpcspawner.slurm", True, id="package-init"),
        pytest.param(
            "from ..logtext import loggable", "hpcspawner.slurm.local", False, id="logtext"
        ),
        pytest.param(
            "from traitlets import Float", "hpcspawner.slurm.driver", False, id="traitlets"
        ),
        pytest.param("import asyncio, re", "hpcspawner.slurm.commands", False, id="stdlib"),
    ],
)
def test_the_check_allows(source, module, is_package):
    assert violations(SLURM, source, module, is_package) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        pytest.param("from traitlets import Unicode", "traitlets", id="traitlets"),
        pytest.param("from ..spawner import form", "hpcspawner.spawner", id="the-spawner"),
        pytest.param("from ..logtext import loggable", "hpcspawner.logtext", id="logtext"),
        pytest.param("import jinja2", "jinja2", id="jinja2"),
    ],
)
def test_the_resources_may_not_import_what_the_slurm_layer_may(source, expected):
    found = violations(RESOURCES, source, "hpcspawner.resources.options")
    assert expected in offending_names(found), found


def test_the_resources_may_import_the_slurm_records():
    source = "from ..slurm import Association\nfrom .options import Policy\nimport math"
    assert violations(RESOURCES, source, "hpcspawner.resources.offer") == []


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_the_layer_imports_only_what_it_may(layer):
    modules = layer.modules()
    assert modules and all(path.exists() for path in modules), modules
    found = []
    for path in modules:
        found += violations(layer, path.read_text(), module_name(path), path.name == "__init__.py")
    assert found == []


@pytest.mark.parametrize(
    "layer, allowed",
    [
        (layer, m)
        for layer in LAYERS
        for m in layer.may_import
        # a layer of its own (the Slurm layer for the resources) is held by its own rules
        if not within(m, [layer.name]) and m not in {other.name for other in LAYERS}
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_what_a_layer_imports_from_outside_keeps_its_rules(layer, allowed):
    """A module a layer may import must itself keep the layer's rules (e.g. stdlib only)."""
    found = []
    for path in Layer(allowed, ()).modules():
        source = path.read_text()
        found += [
            f"{allowed}:{line} imports {name}: {why}"
            for line, name in imported_names(source, module_name(path), path.name == "__init__.py")
            if not name.startswith("__future__")
            and not within(name, [allowed])
            and (why := layer.violation(name)) is not None
        ]
    assert found == []


@pytest.mark.parametrize("layer", [SLURM, RESOURCES], ids=lambda layer: layer.name)
def test_every_module_of_the_layer_imports_with_the_hub_unavailable(layer):
    """Transitive imports too: the hub's packages are made unimportable, then each module loads."""
    modules = [module_name(path) for path in layer.modules()]
    # what the layers it may import may import in turn (the Slurm layer's logtext)
    reach = {m for lower in LAYERS if lower.name in layer.may_import for m in lower.may_import}
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {HUB_PACKAGES!r}:
            sys.modules[name] = None  # "import name" now raises ImportError
        import hpcspawner  # what the package's __init__ loads is not the layer's doing
        before = set(sys.modules)
        for module in {modules!r}:
            importlib.import_module(module)
        allowed = {tuple(sorted(set(layer.may_import) | reach))!r}
        loaded = sorted(
            name for name in set(sys.modules) - before
            if name.startswith("hpcspawner.")
            and not any(name == a or name.startswith(a + ".") for a in allowed)
        )
        assert loaded == [], loaded
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "Alice_B",
        "_svc.data-1",
        "a" * 32,
        "a" * 33,
        "1alice",
        "-x",
        "../etc",
        "a b",
        "",
        None,
    ],
)
def test_the_drivers_guard_agrees_with_the_login_side_on_user_names(name):
    """The driver keeps its own copy of the name rule (it may not import accountrules)."""
    assert may_act_as(name) == is_posix_name(name)


def test_the_drivers_guard_refuses_root_in_any_case():
    assert not may_act_as("root") and not may_act_as("ROOT") and may_act_as("rooted")


# ---------------------------------------------------------------- the login mapping is pure


@pytest.mark.parametrize(
    "source, expected",
    [
        pytest.param("import pwd", "pwd", id="pwd"),
        pytest.param("from grp import getgrgid", "grp", id="grp"),
        pytest.param("import os", "os", id="os"),
        pytest.param("from pathlib import Path", "pathlib", id="pathlib"),
        pytest.param(
            "from ..accounts.posix import lookup_posix_account",
            "hpcspawner.accounts.posix",
            id="posix",
        ),
        pytest.param("from . import authenticator", "hpcspawner.auth.authenticator", id="class"),
        pytest.param("from jupyterhub.utils import url_path_join", "jupyterhub.utils", id="hub"),
        pytest.param("from traitlets import Unicode", "traitlets", id="traitlets"),
        pytest.param("def f():\n    import pwd", "pwd", id="inside-a-function"),
    ],
)
def test_the_purity_check_catches(source, expected):
    found = violations(MAPPING, source, MAPPING.name)
    assert expected in offending_names(found), found


def test_the_purity_check_allows_the_standard_library_and_the_account_rules():
    source = (
        "import json, re\nfrom ..accounts.rules import MappingError\n"
        "from ..resources.options import NAME_RE"
    )
    assert violations(MAPPING, source, MAPPING.name) == []


def test_the_spawner_room_imports_nothing_from_the_auth_room():
    """The authenticator uses the spawner room's shared driver; the spawner reads the
    login's facts through hpcspawner.accounts.authstate: no circle between the rooms."""
    found = []
    for path in sorted((PACKAGE_DIR / "spawner").rglob("*.py")):
        module = module_name(path)
        found += [
            f"{module}:{line} imports {name}"
            for line, name in imported_names(path.read_text(), module, path.name == "__init__.py")
            if within(name, ["hpcspawner.auth"])
        ]
    assert found == []
    code = textwrap.dedent(
        """
        import sys
        import hpcspawner.spawner.spawner
        loaded = sorted(name for name in sys.modules if name.startswith("hpcspawner.auth"))
        assert loaded == [], loaded
        import hpcspawner.auth
        assert hpcspawner.auth.ClusterOAuthenticator.__module__ == "hpcspawner.auth.authenticator"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
