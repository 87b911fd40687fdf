"""Drill 6: hostile input through the real hub (hypothesis).

- the port callback body, posted with a running server's own token: only 400
  (invalid) or 409 (not waiting for a port), never 5xx, and the server's route
  never moves;
- ``user_options`` through the REST API: 400 with a message, or a real job
  within the admin's policy whose batch script parses (``bash -n``); never 5xx.

Bounded for CI; ``HYPOTHESIS_PROFILE=nightly`` runs more examples.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcspawner.resources.options import OPTION_FIELDS

from .drills import login_session, record
from .hub import job_environ, run, squeue_fields

# What JupyterHub does with the spawner here differs between its versions: runs under the
# lowest JupyterHub pyproject.toml allows too (scripts/test.sh).
pytestmark = pytest.mark.jupyterhub_floor

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
FUZZ = settings(
    max_examples=1000 if NIGHTLY else 120,
    deadline=None,
    derandomize=not NIGHTLY,
    suppress_health_check=[HealthCheck.too_slow],
)
SPAWN_FUZZ = settings(FUZZ, max_examples=200 if NIGHTLY else 40)

EXTRA_CONFIG = """
c.SlurmSpawner.partitions = {
    "debug": {"max_cpus": 2, "max_memory": "1G", "max_runtime": "0:30:00"},
    "compute": {"max_cpus": 1, "max_memory": "1G", "max_runtime": "0:30:00"},
}
c.SlurmSpawner.max_nodes = 1
c.SlurmSpawner.max_gpus = 0
c.SlurmSpawner.environments = {"plain": {"description": "nothing extra"}}
c.SlurmSpawner.profiles = {"tiny": {"description": "tiny", "options": {"cpus": 1, "memory": "512M"}}}
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory(extra_config=EXTRA_CONFIG)
    hub.create_user("alice")
    hub.create_user("bob")
    r = hub.spawn("bob", "cb", options={"memory": "512M"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("bob", "cb")
    hub.running_token = job_environ("bob", "cb", require="JUPYTERHUB_API_TOKEN")[
        "JUPYTERHUB_API_TOKEN"
    ]
    return hub


def route_target(hub, route):
    r = hub.session.get(
        f"http://127.0.0.1:{hub.proxy_api_port}/api/routes",
        headers={"Authorization": f"token {hub.proxy_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()[route]["target"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["port", "ip", "host", "job_id", "user_options"]) | st.text(max_size=8),
        json_values,
        max_size=3,
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(-(2**40), 2**40).map(lambda p: json.dumps({"port": p}).encode()),
    st.binary(min_size=1100, max_size=3000),
)


def test_callback_body_fuzz(hub):
    target = route_target(hub, "/user/bob/cb")
    seen = set()
    count = [0]

    @FUZZ
    @given(body=bodies)
    def post(body):
        r = hub.api(
            "POST",
            "/batchspawner",
            headers={"Authorization": f"token {hub.running_token}"},
            data=body,
        )
        assert r.status_code in (400, 409), (body[:100], r.status_code, r.text[:200])
        seen.add(r.status_code)
        count[0] += 1

    post()
    record("fuzz-callback", examples=count[0], statuses=sorted(seen))
    assert seen == {400, 409}
    assert route_target(hub, "/user/bob/cb") == target
    assert hub.server_model("bob", "cb")["ready"]


option_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.text(max_size=24),
    st.sampled_from(
        ["debug", "compute", "gpu", "plain", "tiny", "512M", "1G", "4G", "10", "0:30:00", "2:00:00"]
    ),
    st.sampled_from(["$(id)", "`id`", "a;b", "x\ny", "--wrap=id", "debug --qos=high", "../x"]),
    st.lists(st.integers(), max_size=2),
)
user_options = st.dictionaries(
    st.one_of(st.sampled_from(OPTION_FIELDS), st.text(max_size=10)), option_values, max_size=6
)


def test_user_options_fuzz_through_the_rest_api(hub):
    outcomes = {"rejected": 0, "spawned": 0}

    @SPAWN_FUZZ
    @given(options=user_options)
    def spawn(options):
        r = hub.spawn("alice", "fz", options=options)
        assert r.status_code < 500, (options, r.status_code, r.text)
        if r.status_code == 400:
            message = r.json()["message"]
            assert message and "Traceback" not in message, message
            assert hub.server_model("alice", "fz") is None
            outcomes["rejected"] += 1
            return
        assert r.status_code in (201, 202), (options, r.status_code, r.text)
        outcomes["spawned"] += 1
        model = hub.server_model("alice", "fz")
        if model is None:  # the job failed at once; its spawn reported it
            return
        try:
            check_job_within_policy(model["state"]["job_id"])
        finally:
            hub.stop_server("alice", "fz")

    spawn()
    assert outcomes["rejected"] > 0, outcomes
    record("fuzz-user-options", examples=sum(outcomes.values()), **outcomes)


form_values = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["debug", "compute", "gpu", "plain", "tiny", "512M", "1G", "4G", "0:30:00"]),
    st.sampled_from(["$(id)", "`id`", "a;b", "x\ny", "--wrap=id", "<script>x</script>", "../x"]),
)
form_data = st.dictionaries(
    st.one_of(st.sampled_from(OPTION_FIELDS), st.text(min_size=1, max_size=10)),
    form_values,
    max_size=6,
)


def test_spawn_form_fuzz_through_the_page(hub):
    """The HTML form path (options_from_form): no 5xx, no traceback on the page."""
    session = login_session(hub, "alice")
    outcomes = {"shown-again": 0, "spawned": 0}

    @SPAWN_FUZZ
    @given(fields=form_data)
    def post(fields):
        data = {**fields, "_xsrf": session.cookies.get("_xsrf", "")}
        r = session.post(f"{hub.url}/hub/spawn/alice/fzf", data=data, timeout=60)
        assert r.status_code < 500, (fields, r.status_code)
        assert "Traceback" not in r.text, fields
        assert "<script>x</script>" not in r.text, fields  # escaped if echoed
        model = hub.server_model("alice", "fzf")
        if model is None:
            outcomes["shown-again"] += 1
            return
        outcomes["spawned"] += 1
        try:
            if model.get("state", {}).get("job_id"):
                check_job_within_policy(model["state"]["job_id"])
        finally:
            hub.stop_server("alice", "fzf")

    post()
    assert outcomes["shown-again"] > 0, outcomes
    record("fuzz-spawn-form", examples=sum(outcomes.values()), **outcomes)


def check_job_within_policy(job_id: str) -> None:
    partition, cpus, memory, limit, nodes = squeue_fields(job_id, "%P|%C|%m|%l|%D")
    assert partition in ("debug", "compute"), partition
    assert int(cpus) <= (2 if partition == "debug" else 1), cpus
    assert memory.endswith("M") and int(memory[:-1]) <= 1024, memory
    assert nodes == "1"
    assert minutes(limit) <= 30, limit
    script = run(["scontrol", "write", "batch_script", job_id, "-"])
    assert script.returncode == 0, script.stderr
    parsed = subprocess.run(["bash", "-n"], input=script.stdout, capture_output=True, text=True)
    assert parsed.returncode == 0, (parsed.stderr, script.stdout)


def minutes(limit: str) -> float:
    """Slurm's ``%l`` (``[D-]HH:MM:SS``, ``MM:SS``) in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, mins, secs = parts
    return int(days or 0) * 1440 + hours * 60 + mins + secs / 60
