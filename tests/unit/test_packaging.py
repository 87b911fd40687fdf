"""What the package declares is what it needs, and the scripts test what it declares.

- every third-party module ``hpcspawner/`` imports is a declared dependency, and every
  declared dependency is imported (batchspawner is only for tests and benchmarks: an extra);
  an optional runtime extra (``ssh``: asyncssh) is imported only by the modules that need it,
  which the package never imports on its own, so everything else runs without it;
- the lowest JupyterHub ``pyproject.toml`` allows is the one ``install-deps.sh`` installs
  for test.sh's JupyterHub 5 run, and the one the README and the install guide name;
- the job-side launcher imports nothing but the standard library, so a job environment
  needs only ``jupyterhub`` + ``jupyterlab`` + ``pip install --no-deps hpcspawner``; the
  job's clock (a Jupyter server extension) adds jupyter_server and tornado, which
  jupyterlab brings;
- the scripts that change directory call the repository's scripts by absolute path.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "hpcspawner"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

#: what a job environment holds besides the standard library; the launcher may use none of it
HUB_SIDE = ("jupyterhub", "jinja2", "tornado", "traitlets", "oauthenticator", "sqlalchemy")


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` that are not the stdlib."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "hpcspawner"}


def declared(requirements) -> dict[str, Requirement]:
    parsed = (Requirement(text) for text in requirements)
    return {re.sub(r"[-_.]+", "-", r.name).lower(): r for r in parsed}


def jupyterhub_floor() -> Version:
    (spec,) = declared(PYPROJECT["project"]["dependencies"])["jupyterhub"].specifier
    assert spec.operator == ">=", f"jupyterhub is declared as {spec}: expected a >= floor"
    return Version(spec.version)


#: optional runtime extras: extra -> the modules (relative to hpcspawner/) that may import it
RUNTIME_EXTRAS = {"ssh": ("slurm/ssh.py", "slurm/sshpool.py"), "rest": ("slurm/rest.py",)}

#: modules that only a Jupyter server in the job loads (server extensions): they may import
#: jupyter_server and tornado, which the job environment's jupyterlab brings, and nothing else
JOB_SERVER_MODULES = ("job/clockhandler.py",)
JOB_SERVER_IMPORTS = {"jupyter_server", "tornado"}


def test_every_import_is_declared_and_every_dependency_imported():
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        module = path.relative_to(PACKAGE).as_posix()
        if module in JOB_SERVER_MODULES:
            continue
        if not any(module in modules for modules in RUNTIME_EXTRAS.values()):
            imported |= third_party_imports(path)
    # every import name here is its distribution's name too (prometheus_client: normalised)
    imported = {re.sub(r"[-_.]+", "-", name).lower() for name in imported}
    assert set(declared(PYPROJECT["project"]["dependencies"])) == imported


@pytest.mark.parametrize("extra", sorted(RUNTIME_EXTRAS))
def test_an_optional_extra_is_declared_and_imported_only_where_it_is_needed(extra):
    optional = PYPROJECT["project"]["optional-dependencies"]
    wanted = set(declared(optional[extra]))
    core = set(declared(PYPROJECT["project"]["dependencies"]))
    imported = set()
    for module in RUNTIME_EXTRAS[extra]:
        imported |= third_party_imports(PACKAGE / module)
    assert wanted == imported - core
    # the test extra carries it too: the unit tests of those modules run everywhere
    assert wanted <= set(declared(optional["test"]))


#: extras the hub runs as programs of their own (a hub service), which hpcspawner never imports:
#: extra -> the module the hub runs
HUB_SERVICE_EXTRAS = {"cull": "jupyterhub_idle_culler"}


@pytest.mark.parametrize("extra", sorted(HUB_SERVICE_EXTRAS))
def test_a_hub_service_extra_is_installed_in_every_hub_environment_and_never_imported(extra):
    """The sample config and the chart start the idle culler as ``python -m
    jupyterhub_idle_culler`` with the hub's own interpreter: the image and the test venvs
    (install-hub-env.sh's default, install-deps.sh's jh6 and jh5) carry it."""
    assert extra in PYPROJECT["project"]["optional-dependencies"]
    module = HUB_SERVICE_EXTRAS[extra]
    assert not [p for p in PACKAGE.rglob("*.py") if module in third_party_imports(p)]
    script = (REPO / "scripts" / "install-hub-env.sh").read_text()
    (default,) = re.findall(r"HPCSPAWNER_EXTRAS=\$\{HPCSPAWNER_EXTRAS:-(\S+)\}", script)
    assert extra in default.split(",")
    install = (REPO / "scripts" / "install-deps.sh").read_text()
    venvs = re.findall(r"HPCSPAWNER_EXTRAS=(\S+)", install)
    assert len(venvs) == 2 and all(extra in extras.split(",") for extras in venvs), venvs


def test_the_package_works_without_the_optional_extras():
    """hpcspawner.slurm, the spawner and the authenticator import with asyncssh and httpx
    absent; the REST driver's pure modules (rest_v0038, jwt) need neither."""
    code = (
        "import sys\n"
        "sys.modules['asyncssh'] = None\n"
        "sys.modules['httpx'] = None\n"
        "import hpcspawner.slurm, hpcspawner.spawner, hpcspawner.auth\n"
        "import hpcspawner.slurm.rest_v0038, hpcspawner.slurm.jwt\n"
        "from hpcspawner.spawner import SlurmSpawner\n"
        "for name in ('ssh', 'sshpool', 'rest'):\n"
        "    try:\n"
        "        __import__('hpcspawner.slurm.' + name)\n"
        "    except ImportError as e:\n"
        "        print(name, 'needs', e.name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:3] == [
        "ssh needs asyncssh",
        "sshpool needs asyncssh",
        "rest needs httpx",
    ]


@pytest.mark.parametrize("module", JOB_SERVER_MODULES)
def test_job_server_modules_import_only_what_a_jupyter_server_has(module):
    assert third_party_imports(PACKAGE / module) <= JOB_SERVER_IMPORTS
    # their tests run a real Jupyter server
    assert "jupyter-server" in declared(PYPROJECT["project"]["optional-dependencies"]["test"])


LABEXTENSION = "share/jupyter/labextensions/hpcspawner-jupyterlab"


def installed_data_files() -> dict[str, str]:
    """What the wheel installs under {sys.prefix} -> its file in the source tree, as
    setuptools expands pyproject.toml's data-files (globs included)."""
    from setuptools.config.expand import canonic_data_files

    data_files = PYPROJECT["tool"]["setuptools"]["data-files"]
    return {
        f"{target}/{Path(source).name}": source
        for target, sources in canonic_data_files(data_files, str(REPO))
        for source in sources
    }


def test_the_package_installs_the_built_labextension_whole():
    """Every file of the built JupyterLab extension reaches the same place under
    share/jupyter/labextensions/, and its package.json (and install.json) are named
    without a glob: a package built without the extension fails to build."""
    built = REPO / LABEXTENSION
    assert (built / "package.json").exists(), (
        f"{LABEXTENSION} is not built: run scripts/build-labextension.sh "
        "(scripts/install-deps.sh does)"
    )
    files = {p.relative_to(REPO).as_posix() for p in built.rglob("*") if p.is_file()}
    installed = installed_data_files()
    assert {f for f in installed if f.startswith(LABEXTENSION)} == files
    assert all(installed[f] == f for f in files)
    load = json.loads((built / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    assert f"{LABEXTENSION}/{load}" in files
    literal = PYPROJECT["tool"]["setuptools"]["data-files"][LABEXTENSION]
    assert sorted(literal) == [f"{LABEXTENSION}/install.json", f"{LABEXTENSION}/package.json"]


def test_the_package_enables_the_clock_in_every_jupyter_server():
    target = "etc/jupyter/jupyter_server_config.d/hpcspawner-clock.json"
    config = json.loads((REPO / installed_data_files()[target]).read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"hpcspawner.job.clock": True}}}


def test_the_labextensions_build_output_stays_out_of_git():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    for path in (f"/{LABEXTENSION.rsplit('/', 1)[0]}/", "/labextension/node_modules/"):
        assert path in ignored


def test_batchspawner_is_only_for_tests():
    assert "batchspawner" not in declared(PYPROJECT["project"]["dependencies"])
    assert "batchspawner" in declared(PYPROJECT["project"]["optional-dependencies"]["test"])


def test_the_lowest_jupyterhub_allowed_is_the_one_installed_and_tested():
    floor = jupyterhub_floor()
    # ssl_alt_names as a callable (settings.py) needs 5.4.1; apply_user_options needs 5.3
    assert floor >= Version("5.4.1")
    install = (REPO / "scripts" / "install-deps.sh").read_text()
    # the venv of test.sh's JupyterHub floor run
    (jh5,) = re.findall(
        r"JUPYTERHUB_VERSION=(\S+) \\\n\s*\S+install-hub-env.sh\" \S+/jh5\"", install
    )
    assert jh5 == str(floor)
    for doc in ("README.md", "docs/howto/install.md"):
        assert f"JupyterHub {floor}" in (REPO / doc).read_text(), doc


@pytest.mark.parametrize(
    "module",
    [
        pytest.param("job/launcher.py", id="launcher"),
        pytest.param("job/magics.py", id="magics"),
        pytest.param("job/clock.py", id="clock-extension"),
        pytest.param("job/walltime.py", id="clock-pure"),
        pytest.param("job/activity.py", id="activity"),
        pytest.param("job/podman.py", id="podman"),
        pytest.param("job/__init__.py", id="job-package"),
        pytest.param("_version.py", id="version"),
        pytest.param("__init__.py", id="package"),
    ],
)
def test_job_side_modules_use_the_standard_library_only(module):
    assert third_party_imports(PACKAGE / module) == set()


@pytest.mark.parametrize(
    "module, entry",
    [
        pytest.param("hpcspawner.job.launcher", "main", id="launcher"),
        pytest.param("hpcspawner.job.podman", "main", id="podman"),
        # IPython calls it with its shell: the module itself must not need IPython
        pytest.param("hpcspawner.job.magics", "load_ipython_extension", id="magics"),
        # jupyter_server finds the clock's extension points without importing its handler
        pytest.param("hpcspawner.job.clock", "_jupyter_server_extension_points", id="clock"),
        # Jupyter Server calls it with its ServerApp: the module itself needs no Jupyter
        pytest.param("hpcspawner.job.activity", "_load_jupyter_server_extension", id="activity"),
    ],
)
def test_the_job_side_runs_without_site_packages(module, entry):
    # -I -S: no site-packages, no PYTHONPATH, no user site: only the stdlib and the work tree
    probe = (
        "import sys, importlib; sys.path.insert(0, sys.argv[1]); "
        f"import hpcspawner; module = importlib.import_module({module!r}); "
        f"print(callable(module.{entry})); "
        f"print(sorted(set(sys.modules) & {set(HUB_SIDE) | {'IPython'}!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["True", "[]"]


def test_the_package_still_exports_the_spawner_lazily():
    import hpcspawner
    from hpcspawner.spawner import SlurmSpawner

    assert hpcspawner.SlurmSpawner is SlurmSpawner
    with pytest.raises(AttributeError):
        hpcspawner.NoSuchThing  # noqa: B018


# a path to one of the repository's scripts that does not start at $REPO (or another absolute
# directory): it breaks as soon as the script changes directory (demo.sh runs the hub in .demo/,
# and its cleanup trap runs from there)
RELATIVE_SCRIPT_PATH = re.compile(r"""(?:^|[\s=;&|("'])(?:\./)?(?:scripts|\.venv)/""")


@pytest.mark.parametrize("script", ["demo.sh", "test.sh"])
def test_scripts_call_the_repositorys_files_by_absolute_path(script):
    relative = [
        line.strip()
        for line in (REPO / "scripts" / script).read_text().splitlines()
        if not line.lstrip().startswith("#") and RELATIVE_SCRIPT_PATH.search(line.split(" #")[0])
    ]
    assert relative == []
