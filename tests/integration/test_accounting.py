"""Slurm accounting on the spawn page, for real (issue 15): the local cluster's slurmdbd and
the site of scripts/cluster/make-site.sh (accounts physics and chemistry, QOS normal, short
(MaxWall 2:00:00, 2 CPUs, 4G, no GPU) and long; alice in physics (default) and chemistry,
bob in chemistry), a real hub + proxy, Chromium, once per driver (``hub_driver``: local,
ssh, rest).

- alice's page offers physics and chemistry, physics selected, and each QOS with its
  limits; choosing chemistry hides the QOS it does not allow; bob's offers chemistry only;
- QOS short with 3:00:00 is refused on the page with the hub's words, and nothing is
  submitted;
- a spawn with account chemistry is charged to it (sacct);
- bob asking for account physics through the REST API is refused with a clear message;
- with slurmdbd stopped, the page still offers the cached accounts with a notice, and a
  spawn still works (slurmctld caches the associations); slurmdbd is started again after.

Needs the cluster with accounting (scripts/cluster/setup.sh, ACCOUNTING=1, the default).
HPCSPAWNER_UPDATE_SCREENSHOTS=1 refreshes docs/_static/screenshots/spawn-page-accounting*.png.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from . import offcluster, test_spawn_page
from .browser import screenshot
from .drills import wait_gone
from .hub import run, tagged_jobs

pytestmark = pytest.mark.accounting  # slurmdbd (setup.sh ACCOUNTING=1, the default)

#: short TTLs: the outage test waits for one to pass
EXTRA_CONFIG = """
c.SlurmSpawner.partitions = {
    "debug": {"description": "Quick tests on node vm", "max_runtime": "1:00:00"},
    "compute": {"description": "Every node"},
}
c.SlurmSpawner.cluster_info_ttl = 5
c.SlurmSpawner.associations_ttl = 5
c.SlurmSpawner.default_options = {"partition": "debug", "memory": "512M", "runtime": "0:10:00"}
"""

SLURMDBD_PID = Path("/run/slurmdbd.pid")
SLURMDBD = "/usr/sbin/slurmdbd"
OUTAGE = "Slurm's accounting database is not answering"

hub_driver = offcluster.hub_driver
hub = offcluster.module_hub(EXTRA_CONFIG)
#: a logged-in browser page on the spawn form, for this module's hub
page_for = test_spawn_page.page_for


def options_of(page: Page, field: str) -> list[str]:
    return page.locator(f"#field-{field} option").evaluate_all(
        "options => options.filter(o => o.value && !o.disabled).map(o => o.value)"
    )


def sacct_account(job_id: str, timeout: float = 30) -> str:
    """The account slurmdbd charged job ``job_id`` to (it learns of a job within seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        out = run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "Account"]).stdout.strip()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def start_and_stop(hub, name: str, options: dict) -> str:
    """Start ``name``'s server through the REST API, wait until it runs, stop it; its job id."""
    r = hub.spawn(name, options=options)
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready(name)
    job_id = model["state"]["job_id"]
    hub.stop_server(name)
    return job_id


def test_alices_accounts_with_her_default_and_each_qos_with_its_limits(hub, page_for):
    page = page_for("alice")
    expect(page.locator("#field-account")).to_have_value("physics")
    assert sorted(options_of(page, "account")) == ["chemistry", "physics"]
    qos = page.locator("#field-qos")
    expect(qos.locator('option[value="short"]')).to_have_text(
        "short — at most 2:00:00, 2 CPUs, 4G, no GPU"
    )
    expect(qos.locator('option[value="long"]')).to_have_text(
        "long — at most 1-00:00:00, 4 CPUs, 8G, 1 GPU"
    )
    assert sorted(options_of(page, "qos")) == ["long", "normal", "short"]
    expect(page.locator("#hpc-accounting-stale")).to_have_count(0)
    screenshot(page, "spawn-page-accounting.png")
    # chemistry allows normal and short only: the page follows the account
    page.select_option("#field-account", "chemistry")
    assert sorted(options_of(page, "qos")) == ["normal", "short"]
    expect(qos.locator('option[value="long"]')).to_be_disabled()


def test_bob_is_offered_chemistry_only(hub, page_for):
    page = page_for("bob")
    expect(page.locator("#field-account")).to_have_value("chemistry")
    assert options_of(page, "account") == ["chemistry"]
    assert sorted(options_of(page, "qos")) == ["normal", "short"]


def test_over_the_qos_walltime_is_refused_on_the_page(hub, page_for):
    page = page_for("alice")
    page.check("#partition-compute")
    page.select_option("#field-qos", "short")
    page.fill("#field-runtime", "3:00:00")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#error-runtime")).to_contain_text("QOS short allows at most 2:00:00")
    expect(page.locator("#error-runtime")).not_to_contain_text("violates")
    screenshot(page, "spawn-page-accounting-refused.png")
    assert tagged_jobs(hub.job_tag, "alice") == []


def test_a_spawn_with_account_chemistry_is_charged_to_it(hub):
    hub.create_user("alice")
    job_id = start_and_stop(hub, "alice", {"account": "chemistry", "qos": "short"})
    assert sacct_account(job_id) == "chemistry"


def test_bob_may_not_charge_physics_through_the_api(hub):
    hub.create_user("bob")
    r = hub.spawn("bob", options={"account": "physics"})
    assert r.status_code == 400, r.text
    assert "you may not charge Slurm account 'physics' (your accounts: chemistry)" in r.text
    assert tagged_jobs(hub.job_tag, "bob") == []


def test_a_job_bigger_than_its_accounts_group_limit_is_refused(hub):
    """chemistry's GrpTRES gres/gpu=1 (make-site.sh) holds for all its jobs together: a job
    asking for 2 GPUs could never start (Slurm would keep it pending, AssocGrpGRES)."""
    hub.create_user("bob")
    r = hub.spawn("bob", options={"partition": "debug", "gpus": 2})
    assert r.status_code == 400, r.text
    assert "account chemistry allows at most 1 GPU for all its jobs at once" in r.text
    assert tagged_jobs(hub.job_tag, "bob") == []


def stop_slurmdbd() -> None:
    pid = int(SLURMDBD_PID.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)


def start_slurmdbd() -> None:
    result = run([SLURMDBD])
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 60
    while run(["sacctmgr", "-n", "show", "cluster"]).returncode != 0:
        assert time.monotonic() < deadline, "slurmdbd did not answer within 60 s of its start"
        time.sleep(0.5)


def test_slurmdbd_stopped_keeps_the_cached_accounts_and_spawns_work(hub, page_for):
    page = page_for("alice")  # the hub caches alice's associations and the QOS
    # her default, or the account of her last spawn (the form keeps the last choice)
    chosen = page.locator("#field-account").input_value()
    assert chosen in ("physics", "chemistry"), chosen
    stop_slurmdbd()
    try:
        assert run(["sacctmgr", "-n", "show", "cluster"]).returncode != 0
        time.sleep(6)  # past associations_ttl: the next views refresh, and the refresh fails
        deadline = time.monotonic() + 60
        while True:
            page.goto(f"{hub.url}/hub/spawn")
            if page.locator("#hpc-accounting-stale").count() or time.monotonic() > deadline:
                break
            time.sleep(1)
        expect(page.locator("#hpc-accounting-stale")).to_contain_text(OUTAGE)
        expect(page.locator("#hpc-accounting-stale")).to_contain_text(
            re.compile(r"the accounts shown are from [0-9]{2}:[0-9]{2}\.")
        )
        expect(page.locator("#field-account")).to_have_value(chosen)
        assert sorted(options_of(page, "account")) == ["chemistry", "physics"]
        screenshot(page, "spawn-page-accounting-outage.png")
        # Slurm itself still takes jobs: the spawn goes through
        job_id = start_and_stop(hub, "alice", {"account": "physics"})
        assert job_id.isdigit()
    finally:
        start_slurmdbd()
    # back: the next refresh catches up and the notice goes
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{hub.url}/hub/spawn")
        if not page.locator("#hpc-accounting-stale").count() or time.monotonic() > deadline:
            break
        time.sleep(1)
    expect(page.locator("#hpc-accounting-stale")).to_have_count(0)
