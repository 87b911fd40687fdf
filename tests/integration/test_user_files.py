"""Files the user controls, on the real hub and cluster (issue 10, findings 1, 5 and 6).

The hub reads the end of a job's output file when the job ends before its server
starts. The user controls that file: here the job itself (it runs as the user)
replaces it just before it exits, the way a user would by hand, with a FIFO, a
symlink to /dev/zero or a 200 MB file without a newline. Each spawn must fail with
a clear message within seconds of the job's end, and the hub must not grow for it
(before the fix: a 30 s stall for the FIFO and /dev/zero, ~670 MB held for a huge file).

And ``job_umask`` (default 077): the job's output file and what the server creates
are private to the user, whatever the hub's own umask.
"""

from __future__ import annotations

import pwd
import re
import stat
import time
from datetime import datetime
from pathlib import Path

import pytest

from .drills import singleuser_pid
from .hub import squeue_fields

#: The job replaces its output file ($out) as the user, then fails: the hub reads it next.
REPLACE_OUTPUT = {
    "fifo": 'rm -f -- "$out" && mkfifo -m 0600 -- "$out"',
    "devzero": 'rm -f -- "$out" && ln -s /dev/zero "$out"',
    # sparse: 200 MB of NULs, no newline anywhere, a marker at the very end
    "huge": 'rm -f -- "$out" && truncate -s 200M -- "$out" && printf THE-END >> "$out"',
    "plain": 'printf "line one\\nModuleNotFoundError: no module named x\\n"',
}

#: Where the hub's config puts each job's output (the default) and how the job finds it.
OUTPUT_PATH = "{home}/.jupyterhub-slurm-{job_id}.log"
FIND_OUTPUT = 'out="$(getent passwd "$(id -un)" | cut -d: -f6)/.jupyterhub-slurm-$SLURM_JOB_ID.log"'

EXTRA_CONFIG = f"""
c.SlurmSpawner.job_output = "{{home}}/.jupyterhub-slurm-%j.log"
c.SlurmSpawner.environments = {{
    name: {{"description": name, "prologue": {FIND_OUTPUT!r} + "\\n" + command + "\\nexit 3"}}
    for name, command in {REPLACE_OUTPUT!r}.items()
}}
"""

#: Seconds from the job's end (Slurm's EndTime, whole seconds) to the failed spawn.
#: The hub notices within startup_poll_interval (1 s) plus one squeue; before the fix a
#: FIFO or /dev/zero took the whole command timeout (30 s).
MAX_FAILURE_LAG = 8.0

#: How much the hub's peak memory may grow for one hostile file.
MAX_HUB_GROWTH_KB = 16 * 1024

USER = "alice"


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory(extra_config=EXTRA_CONFIG)
    hub.create_user(USER)
    hub.tokens = {USER: hub.user_token(USER)}
    # one plain failed start first: what a first spawn loads is not counted against a case
    _, job_id, _ = fail_with(hub, "warmup", "plain")
    Path(OUTPUT_PATH.format(home=home(), job_id=job_id)).unlink(missing_ok=True)
    return hub


def home() -> Path:
    return Path(pwd.getpwnam(USER).pw_dir)


def hub_peak_kb(hub) -> int:
    """The hub process's peak resident memory (VmHWM) in KiB."""
    with open(f"/proc/{hub.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def end_time(job_id: str) -> float:
    fields = squeue_fields(job_id, "%e")
    assert fields, f"job {job_id} unknown to Slurm"
    return datetime.fromisoformat(fields[0]).timestamp()  # local time, whole seconds


def fail_with(hub, server: str, environment: str) -> tuple[str, str, float]:
    """Spawn ``server`` whose job replaces its output as ``environment`` says and fails;
    return (the failed event's message, the job id, when the failure was seen)."""
    r = hub.spawn(USER, server, options={"environment": environment, "memory": "512M"})
    assert r.status_code in (201, 202, 500), r.text
    events = hub.progress_events(USER, server, timeout=60)
    seen = time.time()
    assert events and events[-1].get("failed"), events
    message = events[-1]["message"]
    match = re.search(r"Job (\d+) ended before the server started", message)
    assert match, message
    return message, match.group(1), seen


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        pytest.param("fifo", "is not a regular file (it is a FIFO).", id="fifo"),
        pytest.param("devzero", "is not a regular file (it is a character device).", id="dev-zero"),
        pytest.param("huge", "Last lines of", id="huge-no-newline"),
    ],
)
def test_hostile_output_file_fails_the_spawn_fast(hub, environment, expected):
    before = hub_peak_kb(hub)
    t0 = time.monotonic()
    message, job_id, seen = fail_with(hub, f"out-{environment}", environment)
    output = Path(OUTPUT_PATH.format(home=home(), job_id=job_id))
    try:
        assert time.monotonic() - t0 < 60
        lag = seen - end_time(job_id)
        assert lag <= MAX_FAILURE_LAG, (lag, message)
        assert "ended before the server started: the job failed" in message, message
        assert expected in message, message
        assert f"{output}" in message, message
        growth = hub_peak_kb(hub) - before
        assert growth <= MAX_HUB_GROWTH_KB, f"hub peak memory grew by {growth} KiB"
        if environment == "huge":
            # a bounded tail, escaped to text: NULs shown as \x00, cut, no 200 MB message
            assert "\\x00" in message and len(message) < 8000, message[:500]
        if environment != "huge":
            # the admin finds the reason in the hub's log
            log = hub.log_path.read_text(errors="replace")
            assert f"Not showing the output file {output} of {USER}: it" in log
    finally:
        output.unlink(missing_ok=True)


def test_plain_output_is_shown_as_lines(hub):
    message, job_id, _ = fail_with(hub, "out-plain", "plain")
    output = Path(OUTPUT_PATH.format(home=home(), job_id=job_id))
    try:
        assert message.endswith(
            f"Last lines of {output}:\nline one\nModuleNotFoundError: no module named x"
        ), message
        # umask: a failed job's output file too is the user's alone
        assert stat.S_IMODE(output.stat().st_mode) == 0o600
    finally:
        output.unlink(missing_ok=True)


def test_job_files_are_private(hub):
    """Finding 6: the output file (SLURM_UMASK) and the server's files (umask in the script)."""
    server = "umask"
    r = hub.spawn(USER, server, options={"memory": "512M"})
    assert r.status_code in (201, 202), r.text
    probe = home() / "hpcspawner-umask-probe.txt"
    try:
        model = hub.wait_ready(USER, server, timeout=60)
        job_id = model["state"]["job_id"]
        output = Path(OUTPUT_PATH.format(home=home(), job_id=job_id))
        assert stat.S_IMODE(output.stat().st_mode) == 0o600
        # the server process runs with the job's umask
        with open(f"/proc/{singleuser_pid(USER, server)}/status") as f:
            umask = next(line.split()[1] for line in f if line.startswith("Umask:"))
        assert umask == "0077"
        # and a file it creates through its contents API is private
        r = hub.session.put(
            f"{hub.url}/user/{USER}/{server}/api/contents/{probe.name}",
            headers={"Authorization": f"token {hub.tokens[USER]}"},
            json={"type": "file", "format": "text", "content": "x"},
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        assert probe.stat().st_uid == pwd.getpwnam(USER).pw_uid
        assert stat.S_IMODE(probe.stat().st_mode) == 0o600
    finally:
        if hub.server_model(USER, server) is not None:
            hub.stop_server(USER, server)
        probe.unlink(missing_ok=True)
