"""The spawn options page, used as a person would: Chromium (Playwright) against a real
hub + proxy + the real local Slurm cluster.

Each test runs once per driver (``hub_driver``: local, ssh, rest; HPCSPAWNER_TEST_DRIVERS
narrows them): the hub on the cluster, then off it through the login node's sshd and
through slurmrestd (tests/integration/offcluster.py). squeue and sbatch in the tests
themselves run here, on the cluster, whatever the hub's driver.

Screenshots of what the user sees go to docs/_static/screenshots/ for the user guide (each
driver's run takes them again: the page is the same).
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from . import offcluster
from .browser import screenshot
from .drills import login_session
from .hub import run, squeue_fields

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

EXTRA_CONFIG = """
c.SlurmSpawner.partitions = {
    "debug": {"description": "Quick tests on node vm", "max_runtime": "1:00:00"},
    "remote": {"description": "The extra nodes n1 and n2", "max_runtime": "2:00:00"},
    "gpu": {"description": "Node vm with its two GPUs", "max_runtime": "1:00:00"},
}
c.SlurmSpawner.max_nodes = 2
c.SlurmSpawner.environments = {
    "jupyter": {"description": "JupyterLab (site default)"},
    "jupyter-debug": {"description": "JupyterLab, verbose start-up", "prologue": "set -x"},
}
c.SlurmSpawner.profiles = {
    "small": {"description": "1 CPU, 512 MB, 20 minutes on debug",
              "options": {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:20:00"}},
}
c.SlurmSpawner.cluster_info_ttl = 5
"""


#: One request for the cluster's partitions or nodes in the hub's (debug) log, by driver.
#: The command drivers log each argv they run ("Running [...]", hpcspawner.slurm.cli):
#: the local one names scontrol by its path on the hub's host, the SSH one by name, for
#: the login node's PATH (no c.SSHSlurmDriver.slurm_bin_dir here). The REST driver logs
#: each request to slurmrestd ("slurmrestd GET ...", hpcspawner.slurm.rest).
CLUSTER_REQUEST = {
    "local": re.compile(r"Running \['/\S+/scontrol'"),
    "ssh": re.compile(r"Running \['scontrol'"),
    "rest": re.compile(r"slurmrestd GET /slurm/v[0-9.]+/(partitions|nodes) "),
}

hub_driver = offcluster.hub_driver


@pytest.fixture(scope="module")
def hub(hub_driver, hub_factory):
    hub = hub_factory(
        extra_config=EXTRA_CONFIG + hub_driver.config, command_prefix=hub_driver.prefix
    )
    yield hub
    hub_factory.stop(hub)  # before the driver's daemon stops and the hub's side is checked


@pytest.fixture
def page_for(browser, hub):
    """A logged-in browser page for a user (the test hub's DummyAuthenticator)."""
    contexts = []

    def login(name: str) -> Page:
        hub.create_user(name)
        # the test hub's certificate is self-signed
        context = browser.new_context(
            ignore_https_errors=True, viewport={"width": 1280, "height": 900}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", "any")
        page.click("#login_submit")
        page.wait_for_url(re.compile(r".*/hub/.*"))
        page.goto(f"{hub.url}/hub/spawn")
        return page

    yield login
    for context in contexts:
        context.close()


def shot(page: Page, name: str) -> None:
    screenshot(page, f"{name}.png")


def run_cell(page: Page, code: str, timeout: float = 60_000) -> str:
    """In JupyterLab, open a new notebook from the launcher, run ``code``, return its output."""
    # start from a clean workspace: notebooks left open by earlier sessions would be restored
    page.goto(page.url.split("/lab")[0] + "/lab?reset")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=timeout)
    card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
    if not card.is_visible():
        page.locator('[data-command="launcher:create"]').first.click()
    card.click()
    kernel_dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    cell = page.locator(".jp-NotebookPanel .jp-Cell .cm-content >> visible=true").first
    expect(cell.or_(kernel_dialog).first).to_be_visible(timeout=timeout)
    if kernel_dialog.is_visible():
        kernel_dialog.get_by_role("button", name="Select").click()
    # code sent before the kernel is connected is lost: wait until it is idle
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=timeout)
    cell.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output >> visible=true").first
    try:
        expect(output).not_to_be_empty(timeout=timeout)
    except AssertionError:
        shot(page, "debug-cell")
        raise
    return output.inner_text()


def alice_jobs(hub) -> list[str]:
    """alice's jobs started by this hub (other hubs may share the cluster)."""
    out = run(["squeue", "--noheader", "--states=all", "--user=alice", "--format=%i|%k"]).stdout
    return [
        line.split("|", 1)[0]
        for line in out.splitlines()
        if line.partition("|")[2].startswith(f"hpcspawner:{hub.job_tag}:")
    ]


def test_pick_resources_start_use_and_stop(hub, page_for):
    page = page_for("alice")
    expect(page.locator("#hpc-partitions")).to_be_visible()
    rows = page.locator("#hpc-partitions tbody tr")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.partition)")) == [
        "debug",
        "gpu",
        "remote",
    ]
    debug = page.locator('#hpc-partitions tr[data-partition="debug"]')
    # limits: the admin's walltime, Slurm's node size; free resources from Slurm
    expect(debug).to_contain_text("1:00:00")
    expect(debug.locator("td").nth(4)).to_have_text("2")
    expect(debug.locator(".hpc-free")).to_contain_text("idle node")
    expect(page.locator('#hpc-partitions tr[data-partition="gpu"]')).to_contain_text("2 fake")
    shot(page, "spawn-page")

    page.check("#partition-debug")
    page.fill("#field-cpus", "2")
    page.fill("#field-memory", "1G")
    page.fill("#field-runtime", "0:25:00")
    page.select_option("#field-environment", "jupyter-debug")
    page.get_by_role("button", name="Start").click()

    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=120_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    shot(page, "jupyterlab")
    model = hub.server_model("alice")
    job_id = model["state"]["job_id"]
    assert squeue_fields(job_id, "%u|%P|%C|%m|%l|%T") == [
        "alice",
        "debug",
        "2",
        "1G",
        "25:00",
        "RUNNING",
    ]
    output = run_cell(
        page,
        "import os; print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_CPUS_ON_NODE'],"
        " os.environ['SLURM_MEM_PER_NODE'])",
    )
    assert output.split() == [job_id, "2", "1024"], output

    # networkidle: JupyterHub 5's home page binds Stop's handler from a script require.js loads
    # after "load"; a click before that does nothing (seen on a loaded CI machine)
    page.goto(f"{hub.url}/hub/home", wait_until="networkidle")
    page.click("#stop")
    # the hub page hides Stop once the hub says the server has stopped
    expect(page.locator("#stop")).to_be_hidden(timeout=60_000)
    expect(page.locator("#start")).to_contain_text("Start My Server")
    assert squeue_fields(job_id, "%i", all_states=False) is None

    # the next visit offers the last choice again
    page.goto(f"{hub.url}/hub/spawn")
    expect(page.locator("#partition-debug")).to_be_checked()
    expect(page.locator("#field-cpus")).to_have_value("2")
    expect(page.locator("#field-memory")).to_have_value("1G")
    expect(page.locator("#field-runtime")).to_have_value("0:25:00")
    expect(page.locator("#field-environment")).to_have_value("jupyter-debug")


def test_form_errors_are_shown_next_to_the_fields(hub, page_for):
    page = page_for("alice")
    before = alice_jobs(hub)
    page.check("#partition-debug")
    page.fill("#field-runtime", "2:00:00")
    page.fill("#field-memory", "lots")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#error-runtime")).to_have_text(
        "Walltime 2:00:00 exceeds the 1:00:00 limit of partition debug"
    )
    expect(page.locator("#error-memory")).to_contain_text("is not a size such as 4G")
    expect(page.locator("#field-runtime")).to_have_value("2:00:00")
    shot(page, "spawn-page-errors")

    # a partition the page does not offer, posted from the form anyway
    page.locator("#partition-debug").evaluate("radio => { radio.value = 'nosuch'; }")
    page.check("#partition-debug")
    page.fill("#field-runtime", "0:10:00")
    page.fill("#field-memory", "512M")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#error-partition")).to_contain_text(
        "'nosuch' is not an available partition"
    )
    assert "Traceback" not in page.content()
    assert alice_jobs(hub) == before, "a rejected form reached sbatch"


def test_two_node_server_spans_the_extra_nodes(hub, page_for):
    page = page_for("bob")
    page.check("#partition-remote")
    page.fill("#field-nodes", "2")
    page.fill("#field-memory", "512M")
    page.fill("#field-runtime", "0:15:00")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r".*/user/bob/lab.*"), timeout=120_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    output = run_cell(page, "!srun hostname | sort")
    assert output.split() == ["n1", "n2"], output
    hub.stop_server("bob")


def test_queued_server_shows_reason_and_expected_start_and_stop_cancels(hub, page_for):
    blocker = run(
        [
            "runuser", "-u", "carol", "--", "sbatch", "--parsable", "--chdir=/tmp",
            "--partition=debug", "--cpus-per-task=2", "--mem=100M", "--time=10",
            f"--comment=hpcspawner:{hub.job_tag}:carol:blocker", "--output=/dev/null",
            "--wrap=sleep 600",
        ]
    )  # fmt: skip
    assert blocker.returncode == 0, blocker.stderr
    try:
        page = page_for("alice")
        page.check("#profile-small")
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r".*/hub/spawn-pending/alice.*"))
        message = page.locator("#progress-message")
        expect(message).to_contain_text("is queued", timeout=30_000)
        # Resources, or Priority when other jobs wait too
        expect(message).to_contain_text(
            re.compile("waiting for resources|other jobs have a higher priority")
        )
        # the backfill scheduler estimates a start time (bf_interval=5 on the test cluster)
        expect(message).to_contain_text("expected start", timeout=60_000)
        shot(page, "pending-queued")
        job_id = re.search(r"Job (\d+) is queued", message.inner_text()).group(1)
        assert squeue_fields(job_id, "%T") == ["PENDING"]

        if page.locator("#stop-server-btn").count():
            page.click("#stop-server-btn")  # JupyterHub 6's pending page
        else:  # JupyterHub 5's has none: the hub's REST API, as its home page does
            r = hub.api("DELETE", "/users/alice/server")
            assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + 60
        while squeue_fields(job_id, "%T") not in (None, ["CANCELLED"]) or hub.server_model("alice"):
            assert time.monotonic() < deadline, (
                squeue_fields(job_id, "%T"),
                hub.server_model("alice"),
            )
            time.sleep(0.5)
    finally:
        run(["scancel", blocker.stdout.strip()])


def test_spawn_page_views_within_the_ttl_cost_no_scheduler_call(hub, hub_driver, page_for):
    """Page views share one cached cluster view: at most one refresh per TTL."""
    page = page_for("carol")
    request = CLUSTER_REQUEST[hub_driver.name]
    scontrol_runs = lambda: sum(  # noqa: E731
        1 for line in hub.log_path.read_text().splitlines() if request.search(line)
    )
    before = scontrol_runs()
    # the page shown has the partitions: a refresh so far, which the pattern must find
    assert before >= 2, f"no {hub_driver.name} request for partitions and nodes in the log"
    t0 = time.monotonic()
    views = 10
    for _ in range(views):
        page.goto(f"{hub.url}/hub/spawn")
        expect(page.locator("#hpc-partitions")).to_be_visible()
    elapsed = time.monotonic() - t0
    # one refresh = 2 scontrol calls (partitions, nodes); cluster_info_ttl is 5 s here
    refreshes_allowed = 1 + int(elapsed // 5)
    made = scontrol_runs() - before
    assert made <= 2 * refreshes_allowed, (made, elapsed)
    assert made < 2 * views


def test_spawn_url_with_opt_parameters_starts_a_named_server(hub, page_for):
    # typed into the address bar (or a bookmark): the browser sends Sec-Fetch-Site: none,
    # and the link starts the server at once (a link on another site does not, see below)
    page = page_for("carol")
    page.goto(
        f"{hub.url}/hub/spawn/carol/fromlink?opt-partition=remote&opt-runtime=0:12:00"
        "&opt-memory=512M&opt-environment=jupyter"
    )
    page.wait_for_url(re.compile(r".*/user/carol/fromlink/lab.*"), timeout=120_000)
    model = hub.server_model("carol", "fromlink")
    assert squeue_fields(model["state"]["job_id"], "%P|%l|%m") == ["remote", "12:00", "512M"]
    hub.stop_server("carol", "fromlink")


def carol_jobs(hub, server: str) -> list[str]:
    """carol's jobs for ``server`` started by this hub."""
    out = run(["squeue", "--noheader", "--states=all", "--user=carol", "--format=%i|%k"]).stdout
    prefix = f"hpcspawner:{hub.job_tag}:carol:{server}:"
    return [line.split("|", 1)[0] for line in out.splitlines() if prefix in line]


def test_a_spawn_link_from_another_site_shows_the_filled_form_and_starts_nothing(hub, page_for):
    """Finding 9: ``GET /hub/spawn/...?opt-...`` from another site (or from nowhere the hub
    can tell) starts nothing; the form comes, filled with the link's values, and one
    click on Start (on the hub's own page) starts the server."""
    server = "crosslink"
    query = "opt-partition=remote&opt-runtime=0:12:00&opt-memory=512M&opt-environment=jupyter"
    link = f"{hub.url}/hub/spawn/carol/{server}?{query}"

    # without a browser: the headers an old browser or another site's request carries
    session = login_session(hub, "carol")
    for headers in (
        {},  # no Sec-Fetch-Site, no Referer
        {"Referer": "https://evil.example/"},
        {"Sec-Fetch-Site": "same-site", "Referer": "https://sub.127.0.0.1/"},
    ):
        r = session.get(link, headers=headers, timeout=60, allow_redirects=False)
        assert r.status_code == 200, (headers, r.status_code, r.headers.get("Location"))
        assert "hpcspawner-link-notice" in r.text, headers
        assert "Traceback" not in r.text
    assert carol_jobs(hub, server) == []

    # a real browser following a link on another site's page
    page = page_for("carol")
    page.route(
        re.compile(r"https://evil\.example/.*"),
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            body=f'<html><body><a id="go" href="{link}">free GPU hours</a></body></html>',
        ),
    )
    page.goto("https://evil.example/")
    log_before = len(hub.log_path.read_bytes())
    page.click("#go")
    page.wait_for_url(re.compile(rf".*/hub/spawn/carol/{server}\?.*"))
    expect(page.locator(".hpcspawner-link-notice")).to_contain_text("came from another web site")
    # the hub saw the browser's own word for it
    seen = hub.log_path.read_bytes()[log_before:].decode(errors="replace")
    assert "from a link from another site (Sec-Fetch-Site cross-site" in seen, seen[-2000:]
    expect(page.locator("#partition-remote")).to_be_checked()
    expect(page.locator("#field-runtime")).to_have_value("0:12:00")
    expect(page.locator("#field-memory")).to_have_value("512M")
    expect(page.locator(".spawn-error-msg")).to_have_count(0)
    shot(page, "spawn-page-cross-site-link")
    assert carol_jobs(hub, server) == [], "a link from another site reached sbatch"
    model = hub.server_model("carol", server)
    assert model is None or not (model["ready"] or model["pending"]), model

    # the user's own click on the hub's page starts it, with the link's values
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(rf".*/user/carol/{server}/lab.*"), timeout=120_000)
    model = hub.server_model("carol", server)
    assert squeue_fields(model["state"]["job_id"], "%P|%l|%m") == ["remote", "12:00", "512M"]
    hub.stop_server("carol", server)
