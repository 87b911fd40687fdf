"""Fixtures for tests against the real local Slurm cluster and a real hub + proxy.

These tests never skip: a missing cluster, proxy or singleuser venv is a
failure that says how to set it up (``sudo scripts/test.sh`` does it all).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from .browser import launch
from .hub import ACTIVE_HUBS, CHP, Hub, dump_cluster_state, home_entries, remove_new_entries, run

SINGLEUSER_VENV = Path(
    os.environ.get("HPCSPAWNER_SINGLEUSER_VENV", "/opt/hpcspawner-dev/singleuser")
)
ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts"


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.slurm)
        if item.fspath.basename.startswith("test_drills_"):
            item.add_marker(pytest.mark.drill)


@pytest.fixture(scope="session", autouse=True)
def _users_homes_left_as_found():
    """Remove what the run's jobs and servers left in the test users' homes (output logs,
    certificates, notebooks): the demo's JupyterLab shows these homes. Only new names go."""
    before = home_entries()
    yield
    remove_new_entries(before)


@pytest.fixture(scope="session")
def cluster():
    if os.geteuid() != 0:
        pytest.fail(
            "integration tests run as root (the hub submits jobs as other users via runuser)"
        )
    result = run(["sinfo", "--noheader", "--format=%P|%a|%t"])
    if result.returncode != 0:
        pytest.fail(
            "the local Slurm cluster is not answering; start it with "
            f"`sudo MULTINODE=2 scripts/cluster/setup.sh`:\n{result.stderr}"
        )
    partitions = {line.split("|")[0].rstrip("*") for line in result.stdout.splitlines()}
    missing = {"debug", "compute", "remote"} - partitions
    if missing:
        pytest.fail(
            f"partitions {missing} missing: run `sudo MULTINODE=2 scripts/cluster/setup.sh`"
        )
    return partitions


@pytest.fixture(scope="session")
def singleuser_venv():
    for command in ("hpcspawner-singleuser", "jupyterhub-singleuser"):
        if not (SINGLEUSER_VENV / "bin" / command).exists():
            pytest.fail(
                f"{SINGLEUSER_VENV}/bin/{command} is missing: run `sudo scripts/install-deps.sh` "
                "(or set HPCSPAWNER_SINGLEUSER_VENV)"
            )
    return SINGLEUSER_VENV


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def proxy_command():
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run `npm ci` (scripts/install-deps.sh does)")
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run `sudo scripts/install-deps.sh`")
    return CHP


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for hub in ACTIVE_HUBS:
        report.sections.append((f"hub log {hub.job_tag} (tail)", hub.log_tail(150)))
    report.sections.append(("slurm", dump_cluster_state()))


@pytest.fixture(scope="module")
def hub_factory(tmp_path_factory, cluster, singleuser_venv, proxy_command):
    """Start hubs for a test module; stop all they started (hub, proxy, tagged jobs).

    ``hub_factory(hub_class=...)`` starts a subclass of :class:`Hub` (the chart's hub,
    ``chartpods.ChartHub``). ``hub_factory.stop(hub)`` stops one of them before the module
    ends (a module's hub per driver: stopped before the driver's daemon is)."""
    hubs: list[Hub] = []

    def make(hub_class: type[Hub] = Hub, **kwargs) -> Hub:
        hub = hub_class(directory=tmp_path_factory.mktemp("hub"), **kwargs)
        hubs.append(hub)
        return hub.start()

    def stop(hub: Hub) -> None:
        hubs.remove(hub)
        hub.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(hub.log_path, ARTIFACTS / f"hub-{hub.job_tag}.log")

    make.hubs = hubs
    make.stop = stop
    yield make
    for hub in list(hubs):
        stop(hub)
