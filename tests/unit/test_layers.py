"""The layers hold: ``hpcspawner.slurm`` imports nothing from the hub or the rest of the package.

The Slurm layer is what a new driver (SSH, slurmrestd) plugs into and what the
poller and the cluster cache sit on; it must stay usable without JupyterHub.
Two checks: the imports each module's source names (relative forms such as
``from .. import x`` included, wherever they stand: in functions, under
``TYPE_CHECKING``), and a real import of every module in a fresh interpreter in
which the hub's packages cannot be imported at all.

The same walk holds the login mapping (``hpcspawner.auth.mapping``) pure: no file
or system I/O (that is ``hpcspawner.accounts.posix``), nothing from the hub; and the
spawner reaches the auth room's mapping and lookups without loading the
authenticator.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hpcspawner
from hpcspawner.accounts.rules import is_posix_name
from hpcspawner.slurm import may_act_as

PACKAGE_DIR = Path(hpcspawner.__file__).parent
SLURM_DIR = PACKAGE_DIR / "slurm"

#: Top-level packages the Slurm layer must not import.
FORBIDDEN = ("jupyterhub", "tornado", "jinja2", "oauthenticator", "sqlalchemy")

#: Modules outside ``hpcspawner.slurm`` it may import: stdlib-only leaves (checked below).
ALLOWED_PACKAGE_MODULES = ("hpcspawner.logtext",)

#: Third-party packages the Slurm layer may import (drivers are configurables).
ALLOWED_THIRD_PARTY = ("traitlets",)


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


def violation(name: str) -> str | None:
    """Why the Slurm layer may not import ``name``, or None."""
    root = name.split(".")[0]
    if root in FORBIDDEN:
        return "the hub's dependencies stay out of hpcspawner.slurm"
    if name.startswith("."):
        return "a relative import that leaves the package"
    if root == "hpcspawner":
        if name == "hpcspawner.slurm" or name.startswith("hpcspawner.slurm."):
            return None
        if any(
            name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_PACKAGE_MODULES
        ):
            return None
        if name == "hpcspawner":
            return "the package's __init__ (it reaches the spawner)"
        return "a module outside hpcspawner.slurm (a higher layer)"
    return None


def violations(source: str, module: str, is_package: bool, rule=violation) -> list[str]:
    """One line per import statement that breaks the layering (all its offending names)."""
    by_line: dict[int, tuple[list[str], str]] = {}
    for line, name in imported_names(source, module, is_package):
        why = rule(name)
        if why is not None:
            by_line.setdefault(line, ([], why))[0].append(name)
    return [
        f"{module}:{line} imports {', '.join(names)}: {why}"
        for line, (names, why) in by_line.items()
    ]


def slurm_modules() -> list[Path]:
    return sorted(SLURM_DIR.rglob("*.py"))


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
    ],
)
def test_the_check_catches(source, expected):
    found = violations(source, "hpcspawner.slurm.local", is_package=False)
    assert len(found) == 1, found
    names = found[0].split(" imports ", 1)[1].split(": ", 1)[0].split(", ")
    assert expected in names, found


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
    assert violations(source, module, is_package) == []


def test_the_slurm_layer_imports_nothing_from_the_hub_or_higher_layers():
    modules = slurm_modules()
    assert {path.name for path in modules} >= {"__init__.py", "driver.py", "local.py"}
    found = []
    for path in modules:
        found += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert found == []


@pytest.mark.parametrize("allowed", ALLOWED_PACKAGE_MODULES)
def test_what_the_slurm_layer_may_import_from_outside_needs_only_the_standard_library(allowed):
    path = PACKAGE_DIR.parent.joinpath(*allowed.split(".")).with_suffix(".py")
    names = imported_names(path.read_text(), allowed, is_package=False)
    outside = [
        f"{allowed}:{line} imports {name}"
        for line, name in names
        if name.split(".")[0] not in sys.stdlib_module_names
    ]
    assert outside == []


def test_every_slurm_module_imports_with_the_hub_unavailable():
    """Transitive imports too: the hub's packages are made unimportable, then each module loads."""
    modules = [module_name(path) for path in slurm_modules()]
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {FORBIDDEN!r}:
            sys.modules[name] = None  # "import name" now raises ImportError
        import hpcspawner  # what the package's __init__ loads is not the layer's doing
        before = set(sys.modules)
        for module in {modules!r}:
            importlib.import_module(module)
        allowed = ("hpcspawner.slurm",) + {ALLOWED_PACKAGE_MODULES!r}
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

MAPPING = "hpcspawner.auth.mapping"

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

#: Modules of the package the mapping may import: pure, standard library only (checked below).
MAPPING_MAY_IMPORT = ("hpcspawner.accounts.rules", "hpcspawner.resources.options")


def pure_violation(name: str) -> str | None:
    """Why the pure login mapping may not import ``name``, or None."""
    root = name.split(".")[0]
    if root in IO_MODULES:
        return "file or system I/O (hpcspawner.accounts.posix does that)"
    if name.startswith("."):
        return "a relative import that leaves the package"
    if root == "hpcspawner":
        if any(name == m or name.startswith(m + ".") for m in MAPPING_MAY_IMPORT):
            return None
        return "a module of the package that is not known to be pure"
    if root not in sys.stdlib_module_names:
        return "a third-party package (the hub's among them)"
    return None


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
    found = violations(source, MAPPING, is_package=False, rule=pure_violation)
    assert len(found) == 1, found
    names = found[0].split(" imports ", 1)[1].split(": ", 1)[0].split(", ")
    assert expected in names, found


def test_the_purity_check_allows_the_standard_library_and_the_account_rules():
    source = (
        "import json, re\nfrom ..accounts.rules import MappingError\n"
        "from ..resources.options import NAME_RE"
    )
    assert violations(source, MAPPING, is_package=False, rule=pure_violation) == []


def test_the_login_mapping_is_pure():
    path = PACKAGE_DIR / "auth" / "mapping.py"
    assert violations(path.read_text(), MAPPING, is_package=False, rule=pure_violation) == []


@pytest.mark.parametrize("allowed", MAPPING_MAY_IMPORT)
def test_what_the_login_mapping_imports_from_the_package_is_pure_too(allowed):
    path = PACKAGE_DIR.parent.joinpath(*allowed.split(".")).with_suffix(".py")
    names = imported_names(path.read_text(), allowed, is_package=False)
    found = [f"{allowed}:{line} imports {name}" for line, name in names if pure_violation(name)]
    assert found == []


def test_the_spawner_reaches_the_auth_room_without_the_authenticator():
    """AUTH_STATE_KEY and the POSIX lookups load; the authenticator and oauthenticator do not."""
    code = textwrap.dedent(
        """
        import sys
        for name in ("pwd", "grp", "jupyterhub", "tornado", "oauthenticator"):
            sys.modules[name] = None  # "import name" now raises ImportError
        import hpcspawner.auth.mapping
        assert "hpcspawner.auth.authenticator" not in sys.modules
        for name in ("pwd", "grp", "jupyterhub", "tornado", "oauthenticator"):
            del sys.modules[name]
        import hpcspawner.spawner
        loaded = {"hpcspawner.auth.authenticator", "hpcspawner.auth.handlers", "oauthenticator"}
        assert not loaded & set(sys.modules), sorted(loaded & set(sys.modules))
        import hpcspawner.auth
        assert hpcspawner.auth.ClusterOAuthenticator.__module__ == "hpcspawner.auth.authenticator"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
