"""The job's clock in JupyterLab, used as a person would: a real job with a 3-minute
limit on the local Slurm cluster, JupyterLab in Debian's Chromium (Playwright), a real hub
and proxy.

One test follows one server to its end (about 4 minutes):

- the job's server extension answers through the proxy with what Slurm says of the job
  (read by the job's own ``squeue``);
- the status bar shows the time left, with the job, partition and node on hover, and
  counts down;
- a warning appears when a threshold (``c.SlurmSpawner.walltime_warnings``) is reached;
- a notebook edited but not saved (JupyterLab's autosave is off for this server) is
  saved before the end (``save_before_end``), on the page's count-down or on Slurm's
  ``--signal=B:USR1@N``, which the launcher relays to the server (both in the job's log);
- after the end the hub says the job reached its time limit.

Screenshots for the user guide: ``HPCSPAWNER_UPDATE_SCREENSHOTS=1`` copies them to
docs/_static/screenshots/ (job-clock-warning.png, job-clock-saved.png).
"""

from __future__ import annotations

import json
import pwd
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .browser import screenshot
from .drills import login_session
from .hub import squeue_fields
from .test_spawn_page import page_for  # noqa: F401 - a fixture: a logged-in browser page

USER = "alice"
SERVER = "clock"
LIMIT = "0:03:00"
WARNINGS = [150, 100]
SAVE_BEFORE_END = 75
#: JupyterLab's settings for this server: no autosave, so that only the clock saves
SETTINGS_DIR = Path("/tmp") / f"hpcspawner-clock-test-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def lab_settings():
    """A settings directory the job's JupyterLab reads (the node is this host: partition
    debug, node vm): autosave off, no news. Removed at the end."""
    settings = {
        "docmanager-extension/plugin": {"autosave": False},
        # no question about Jupyter's news: it would answer into this read-only directory
        "apputils-extension/notification": {"fetchNews": "false"},
    }
    for name, values in settings.items():
        path = SETTINGS_DIR / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    for path in [SETTINGS_DIR, *SETTINGS_DIR.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield SETTINGS_DIR
    shutil.rmtree(SETTINGS_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(hub_factory, lab_settings):
    config = f"""
c.SlurmSpawner.walltime_warnings = {WARNINGS!r}
c.SlurmSpawner.save_before_end = {SAVE_BEFORE_END}
c.SlurmSpawner.walltime_refresh_interval = 10
c.Spawner.environment = {{"JUPYTERLAB_SETTINGS_DIR": {str(lab_settings)!r}}}
c.Spawner.default_url = "/lab"
"""
    hub = hub_factory(extra_config=config, poll_interval=5)
    yield hub
    hub_factory.stop(hub)


def clock_text(page: Page) -> str:
    return page.locator(".hpcspawner-JobClock").inner_text()


def shot(page: Page, name: str) -> None:
    time.sleep(1)  # the notifications slide in
    screenshot(page, f"{name}.png")


def test_the_clock_counts_down_warns_and_saves_before_the_walltime(hub, page_for):  # noqa: F811
    page = page_for(USER)  # logged in, on the hub's spawn page
    r = hub.spawn(USER, SERVER, options={"partition": "debug", "memory": "512M", "runtime": LIMIT})
    assert r.status_code in (201, 202), r.text
    model = hub.wait_ready(USER, SERVER)
    job_id, node = model["state"]["job_id"], model["state"]["job_host"]
    started = time.monotonic()
    assert squeue_fields(job_id, "%l|%P") == ["3:00", "debug"]

    # the server extension, through the proxy, with the user's token: Slurm's answer
    token = hub.user_token(USER)
    r = hub.session.get(
        f"{hub.url}/user/{USER}/{SERVER}/hpcspawner/job/clock",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    status = r.json()
    assert (status["in_job"], status["job_id"], status["partition"], status["nodes"]) == (
        True,
        job_id,
        "debug",
        node,
    )
    assert status["time_limit"] == "3:00"
    assert 0 < status["seconds_left"] <= 180
    assert status["error"] is None, status
    assert (status["warnings"], status["save_before_end"]) == (WARNINGS, SAVE_BEFORE_END)
    # and without a token the proxy's server refuses it
    r = hub.session.get(
        f"{hub.url}/user/{USER}/{SERVER}/hpcspawner/job/clock", timeout=30, allow_redirects=False
    )
    assert r.status_code in (302, 403), r.status_code
    assert "seconds_left" not in r.text

    # the status bar: the time left, counting down; the job on hover
    page.goto(f"{hub.url}/user/{USER}/{SERVER}/lab?reset")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    clock = page.locator(".hpcspawner-JobClock")
    expect(clock).to_have_text(re.compile(r"Time left: 0:0[0-2]:\d\d"), timeout=30_000)
    first = clock_text(page)
    time.sleep(3)
    second = clock_text(page)
    assert first != second, "the clock does not count down"
    assert second < first  # "0:02:31" < "0:02:34": the same width, so text order is time order
    title = clock.get_attribute("title")
    assert f"Slurm job {job_id}, partition debug, node {node}" in title
    assert "Time limit 3:00" in title

    # a notebook, edited and not saved
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    kernel_dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    cell = page.locator(".jp-NotebookPanel .jp-Cell .cm-content >> visible=true").first
    expect(cell.or_(kernel_dialog).first).to_be_visible(timeout=60_000)
    if kernel_dialog.is_visible():
        kernel_dialog.get_by_role("button", name="Select").click()
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    notebook = Path(pwd.getpwnam(USER).pw_dir) / tab.inner_text()
    assert notebook.suffix == ".ipynb", tab.inner_text()
    marker = f"saved before the walltime {secrets.token_hex(4)}"
    cell.click()
    page.keyboard.type(f"print({marker!r})")
    expect(page.locator(".jp-mod-dirty")).not_to_have_count(0)
    time.sleep(2)
    assert marker not in notebook.read_text(), "saved before the clock did it (autosave?)"

    # a warning at a threshold: 150 s before the end, or 100 s if the page came late
    warning = page.locator(".Toastify__toast", has_text=f"Slurm job {job_id} ends in")
    expect(warning.first).to_be_visible(timeout=120_000)
    text = warning.first.inner_text()
    assert re.search(r"ends in (\d+ minutes?)?( ?\d+ seconds?)?: save your work", text), text
    assert "open documents are saved 1 minute 15 seconds before the end" in text, text
    expect(clock).to_have_class(re.compile("hpcspawner-JobClock-warning"))
    shot(page, "job-clock-warning")

    # the save before the end: on the count-down (75 s) or Slurm's signal (75 to 135 s)
    saved = page.locator(
        ".Toastify__toast",
        has_text=re.compile(
            r"(The job ends in .*|Slurm announced the end of the job): saved 1 open document"
        ),
    )
    expect(saved.first).to_be_visible(timeout=150_000)
    saved_at = time.monotonic() - started
    assert marker in notebook.read_text(), "the notebook on disk does not have the edit"
    assert json.loads(notebook.read_text())["cells"][0]["source"] in (
        f"print({marker!r})",
        [f"print({marker!r})"],
    )
    expect(page.locator(".jp-mod-dirty")).to_have_count(0)
    shot(page, "job-clock-saved")
    assert saved_at < 180, f"saved {saved_at:.0f} s after the start: after the limit?"

    # the end: Slurm ends the job at its limit, the hub notices and says why
    deadline = time.monotonic() + 180
    while hub.server_model(USER, SERVER) is not None:
        assert time.monotonic() < deadline, "the server outlived its job"
        time.sleep(1)
    # Slurm's word for it (COMPLETING while the job's processes end)
    while squeue_fields(job_id, "%T") == ["COMPLETING"]:
        assert time.monotonic() < deadline, "the job is still completing"
        time.sleep(1)
    assert squeue_fields(job_id, "%T") in (None, ["TIMEOUT"])
    spawn_page = login_session(hub, USER).get(f"{hub.url}/hub/spawn/{USER}/{SERVER}", timeout=30)
    assert "hpcspawner-last-end" in spawn_page.text, spawn_page.text[:2000]
    assert "the job reached its time limit" in spawn_page.text

    # Slurm's signal came, the launcher relayed it, the server's clock took it
    output = Path(pwd.getpwnam(USER).pw_dir, f".jupyterhub-slurm-{job_id}.log").read_text()
    assert "SIGUSR1: the job's time limit is near; relayed to the server" in output, output[-3000:]
    assert f"hpcspawner clock: Slurm's signal SIGUSR1 ahead of job {job_id}'s limit" in output
    assert f"hpcspawner clock: job {job_id}, warnings at {WARNINGS} s before the end" in output
