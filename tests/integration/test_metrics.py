"""/hub/metrics of a real hub after real Slurm jobs: two spawns, a failed spawn and two stops
(one by the user, one by the idle culler's service) move hpcspawner's metrics by exactly that.

Runs once per driver (``hub_driver``: local, ssh, rest; HPCSPAWNER_TEST_DRIVERS narrows
them). Prometheus' side is the how-to's (docs/howto/metrics.md): a service whose role has
only ``read:metrics`` scrapes; the idle culler is a service named ``idle-culler`` with the
scopes jupyterhub-idle-culler asks for, stopping a server with the REST API as it does.
The local driver's run saves a screenshot of the ``hpcspawner_`` lines
(.test-artifacts/metrics.png; docs/_static/screenshots/ with HPCSPAWNER_UPDATE_SCREENSHOTS=1).

tests/unit/test_metrics_lifecycle.py tells the same story on the in-memory Slurm.
"""

from __future__ import annotations

import html
import secrets
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import offcluster
from .browser import screenshot
from .hub import squeue_fields

pytestmark = pytest.mark.jupyterhub_floor  # who stopped a server is read from JupyterHub

METRICS_TOKEN = secrets.token_hex(16)
CULLER_TOKEN = secrets.token_hex(16)

EXTRA_CONFIG = f"""
c.SlurmSpawner.environments = {{
    "broken": {{
        "description": "a site prologue that fails after the job has run a while",
        "prologue": "sleep 4; echo 'simulated site failure' >&2; exit 3",
    }},
}}
c.JupyterHub.services.append({{"name": "prometheus", "api_token": {METRICS_TOKEN!r}}})
c.JupyterHub.services.append({{"name": "idle-culler", "api_token": {CULLER_TOKEN!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "metrics", "scopes": ["read:metrics"], "services": ["prometheus"]}}
)
c.JupyterHub.load_roles.append(
    {{
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }}
)
"""

OPTIONS = {"partition": "debug", "cpus": 1, "memory": "512M", "runtime": "0:10:00"}

#: Seconds the metrics may take to show what the REST API shows already.
SETTLE = 30


hub_driver = offcluster.hub_driver
hub = offcluster.module_hub(EXTRA_CONFIG)


def scrape(hub, token: str = METRICS_TOKEN) -> str:
    r = hub.session.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.text


def samples(text: str) -> dict[str, float]:
    """``name{label=value,...}`` -> value of every hpcspawner_ sample (counts only: no
    histogram buckets, sums or creation times)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if not name.startswith("hpcspawner_") or name.endswith(("_bucket", "_sum", "_created")):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{name}{{{labels}}}"] = sample.value
    return found


def changes(after: dict[str, float], before: dict[str, float], *prefixes: str) -> dict:
    keys = {k for k in after.keys() | before.keys() if k.startswith(prefixes)}
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in moved.items() if v}


def settled(hub, expected, *prefixes, since: dict[str, float]) -> dict[str, float]:
    """Scrape until the changes since ``since`` under ``prefixes`` are ``expected`` (the hub
    counts a server's end as it clears it; the poller may lag a look); at most SETTLE s."""
    deadline = time.monotonic() + SETTLE
    while True:
        now = samples(scrape(hub))
        moved = changes(now, since, *prefixes)
        if moved == expected or time.monotonic() > deadline:
            assert moved == expected, f"{moved} != {expected}\n{hub.log_tail(80)}"
            return now
        time.sleep(0.5)


def stop_with(hub, name: str, token: str, timeout: float = 60) -> None:
    """DELETE the user's server with ``token`` (the user's own, or the idle culler's)."""
    r = hub.api("DELETE", f"/users/{name}/server", token=token)
    assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + timeout
    while hub.server_model(name) is not None:
        assert time.monotonic() < deadline, f"{name}'s server did not stop"
        time.sleep(0.2)


def test_metrics_show_the_spawns_the_failure_and_the_stops_that_happened(hub, hub_driver, browser):
    driver = hub_driver.name
    # Prometheus' token reads the metrics and nothing else; without a token, no metrics
    assert hub.api("GET", "/users", token=METRICS_TOKEN).status_code == 403
    assert hub.session.get(f"{hub.url}/hub/metrics", timeout=30).status_code == 403
    before = samples(scrape(hub))
    assert before["hpcspawner_spawn_failures_total{reason=job-ended}"] >= 0  # the series exist

    tokens = {}
    for name in ("alice", "bob"):
        hub.create_user(name)
        tokens[name] = hub.user_token(name)
        r = hub.spawn(name, options=OPTIONS)
        assert r.status_code in (201, 202), r.text
    jobs = {name: hub.wait_ready(name)["state"]["job_id"] for name in ("alice", "bob")}
    running = samples(scrape(hub))
    assert changes(running, before, "hpcspawner_servers") == {
        "hpcspawner_servers{state=running}": 2
    }

    # a start that fails: its job runs its prologue for a few seconds, then exits 3
    # (on partition remote: alice's and bob's servers hold node vm's two CPUs)
    broken = {**OPTIONS, "partition": "remote", "environment": "broken"}
    r = hub.spawn("alice", "broken", options=broken)
    assert r.status_code in (201, 202, 500), r.text
    events = hub.progress_events("alice", "broken", timeout=120)
    assert events[-1].get("failed"), events
    assert "ended before the server started" in events[-1]["message"], events[-1]

    stop_with(hub, "alice", tokens["alice"])  # the user stops her server
    stop_with(hub, "bob", CULLER_TOKEN)  # the idle culler stops bob's
    for job_id in jobs.values():
        assert squeue_fields(job_id, "%i|%T", all_states=False) is None, job_id

    after = settled(
        hub,
        {
            "hpcspawner_spawn_failures_total{reason=job-ended}": 1,
            "hpcspawner_server_stops_total{reason=user}": 1,
            "hpcspawner_server_stops_total{reason=culled}": 1,
            # three jobs ran (the failing one too), two servers came up
            "hpcspawner_queue_wait_seconds_count{}": 3,
            "hpcspawner_server_startup_seconds_count{}": 2,
        },
        "hpcspawner_spawn_failures",
        "hpcspawner_server_stops",
        "hpcspawner_queue_wait",
        "hpcspawner_server_startup",
        "hpcspawner_servers",
        "hpcspawner_poller_jobs",  # every job let go again
        since=before,
    )
    moved = changes(after, before, "hpcspawner_scheduler", "hpcspawner_poller_cycle")
    requests = f"hpcspawner_scheduler_requests_total{{command=%s,driver={driver}}}"
    assert moved[requests % "sbatch"] == 3, moved
    assert moved[requests % "scancel"] == 2, moved  # the failed job had ended: not cancelled
    operations = f"hpcspawner_scheduler_operation_seconds_count{{driver={driver},operation=%s}}"
    assert moved[operations % "submit"] == 3, moved
    assert moved[operations % "cancel"] == 2, moved
    assert moved[operations % "query"] == moved["hpcspawner_poller_cycle_seconds_count{outcome=ok}"]
    assert moved[operations % "query"] >= 3, moved
    assert not [key for key in moved if "errors" in key or "outcome=failed" in key], moved

    if driver == "local":
        take_screenshot(
            browser,
            scrape(hub),
            f"# GET /hub/metrics of a test hub ({driver} driver, real Slurm), hpcspawner_ lines,"
            " after two spawns, a failed spawn and two stops (the user's, the idle culler's)",
        )


def shown_lines(text: str) -> list[str]:
    """The ``hpcspawner_`` lines worth a picture: help and type, the gauges, and the counts
    that are not zero, without histogram buckets and sums, and creation times."""
    lines = []
    for line in text.splitlines():
        if not line.startswith(("hpcspawner_", "# HELP hpcspawner_", "# TYPE hpcspawner_")):
            continue
        name = line.split()[2] if line.startswith("#") else line.split("{")[0].split(" ")[0]
        if name.endswith(("_bucket", "_sum", "_created")):
            continue
        zero = not line.startswith("#") and float(line.rsplit(" ", 1)[1]) == 0
        if zero and name.endswith("_total"):
            continue
        lines.append(line)
    return lines


def take_screenshot(browser, text: str, heading: str, name: str = "metrics.png") -> None:
    """The hpcspawner_ lines of a scrape as a page, into a screenshot (browser.screenshot)."""
    body = "\n".join(
        f'<span class="c">{html.escape(line)}</span>' if line.startswith("#") else html.escape(line)
        for line in [heading, "", *shown_lines(text)]
    )
    page = browser.new_page(viewport={"width": 1280, "height": 400})
    try:
        page.set_content(
            "<!doctype html><style>body{margin:0;background:#fff}"
            "pre{font:13px/1.45 'DejaVu Sans Mono',monospace;margin:16px;color:#1a1a1a}"
            ".c{color:#6a737d}</style><pre>" + body + "</pre>"
        )
        screenshot(page, name)
    finally:
        page.close()
