"""The side-by-side benchmark's parts that need no cluster: what it reads from sdiag, sshd
and slurmrestd, the login node's timing wrapper, the kinds of hub, the merge of results
and the report's driver tables.

The benchmark itself runs on the real cluster (tests/integration/test_benchmarks_smoke.py).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import kinds  # noqa: E402
import observe  # noqa: E402
import report  # noqa: E402
import run_all  # noqa: E402
import sidebyside  # noqa: E402

# sdiag of Slurm 22.05 (src/sdiag/sdiag.c), shortened; a name of 40 characters and more
# runs into its "(" without a space
SDIAG = """\
*******************************************************
sdiag output at Wed Dec 02 16:50:00 2026 (1796230200)
Data since      Wed Dec 02 16:49:00 2026 (1796230140)
*******************************************************
Server thread count:  1
Agent queue size:     0

Main schedule statistics (microseconds):
\tLast cycle:   123
\tTotal cycles: 4

Remote Procedure Call statistics by message type
\tREQUEST_JOB_INFO                        ( 2003) count:12     ave_time:151    total_time:1813
\tREQUEST_FED_INFO                        ( 2049) count:12     ave_time:20     total_time:240
\tMESSAGE_NODE_REGISTRATION_STATUS        ( 1002) count:3      ave_time:333    total_time:1000
\tREQUEST_STATS_INFO                      ( 2035) count:1      ave_time:90     total_time:90
\tREQUEST_A_MESSAGE_TYPE_NAME_LONGER_THAN_FORTY( 9999) count:2      ave_time:1      total_time:2

Remote Procedure Call statistics by user
\troot            (       0) count:4      ave_time:250    total_time:1000
\thpcspawner-hub  (     998) count:24     ave_time:85     total_time:2053

Pending RPC statistics
\tREQUEST_JOB_INFO                        ( 2003) count:7
"""


def test_sdiag_counts_by_type_and_by_user():
    found = observe.parse_sdiag(SDIAG)
    assert found["by_type"] == {
        "REQUEST_JOB_INFO": 12,
        "REQUEST_FED_INFO": 12,
        "MESSAGE_NODE_REGISTRATION_STATUS": 3,
        "REQUEST_STATS_INFO": 1,
        "REQUEST_A_MESSAGE_TYPE_NAME_LONGER_THAN_FORTY": 2,
    }
    assert found["by_user"] == {"root": 4, "hpcspawner-hub": 24}


def test_the_hubs_rpcs_leave_out_sdiag_and_the_daemons():
    by_type = observe.parse_sdiag(SDIAG)["by_type"]
    assert observe.hub_rpcs(by_type) == {
        "REQUEST_A_MESSAGE_TYPE_NAME_LONGER_THAN_FORTY": 2,
        "REQUEST_FED_INFO": 12,
        "REQUEST_JOB_INFO": 12,
    }


SSHD = """\
Server listening on 127.0.0.1 port 2222.
Accepted publickey for hpcspawner-hub from 127.0.0.1 port 40112 ssh2: ED25519 SHA256:abc
Accepted publickey for someone-else from 127.0.0.1 port 40113 ssh2: ED25519 SHA256:def
Accepted publickey for hpcspawner-hub from 127.0.0.1 port 40114 ssh2: ED25519 SHA256:abc
"""

RESTD = """\
slurmrestd: rest_auth/jwt: slurm_rest_auth_p_authenticate: [[localhost]:54256] attempting user_name slurm token authentication pass through
slurmrestd: operations_router: [[localhost]:54256] GET /slurm/v0.0.38/jobs
slurmrestd: operations_router: [[localhost]:54256] GET /slurm/v0.0.38/jobs
slurmrestd: operations_router: [[localhost]:54270] POST /slurm/v0.0.38/job/submit
slurmrestd: operations_router: [[localhost]:54270] DELETE /slurm/v0.0.38/job/7
slurmrestd: operations_router: [[localhost]:54270] GET /slurm/v0.0.38/job/12
"""


def test_ssh_logins_are_the_service_accounts():
    assert observe.ssh_logins(SSHD) == 2


def test_slurmrestd_requests_by_path_and_their_connections():
    assert observe.rest_requests(RESTD) == {
        "DELETE /slurm/v0.0.38/job/{id}": 1,
        "GET /slurm/v0.0.38/job/{id}": 1,
        "GET /slurm/v0.0.38/jobs": 2,
        "POST /slurm/v0.0.38/job/submit": 1,
    }
    assert observe.rest_connections(RESTD) == 2


def test_daemon_counts_read_what_the_logs_gained(tmp_path, monkeypatch):
    sshd, restd = tmp_path / "sshd.log", tmp_path / "slurmrestd.log"
    monkeypatch.setattr(observe, "SSHD_LOG", sshd)
    monkeypatch.setattr(observe, "RESTD_LOG", restd)
    sshd.write_text(SSHD)
    offsets = observe.log_offsets()  # slurmrestd's log does not exist yet: 0
    assert offsets == {"sshd": len(SSHD), "slurmrestd": 0}
    with sshd.open("a") as f:
        f.write("Accepted publickey for hpcspawner-hub from 127.0.0.1 port 40200 ssh2: x\n")
    restd.write_text(RESTD)
    counts = observe.daemon_counts(offsets)
    assert counts["ssh_logins"] == 1
    assert sum(counts["rest_requests"].values()) == 5
    assert counts["rest_connections"] == 2


def test_a_log_replaced_by_a_shorter_one_is_read_whole(tmp_path, monkeypatch):
    sshd = tmp_path / "sshd.log"
    monkeypatch.setattr(observe, "SSHD_LOG", sshd)
    monkeypatch.setattr(observe, "RESTD_LOG", tmp_path / "missing.log")
    sshd.write_text(SSHD * 3)
    offsets = observe.log_offsets()
    sshd.write_text(SSHD)  # a restarted daemon's new log
    assert observe.daemon_counts(offsets)["ssh_logins"] == 2


# ---------------------------------------------------------------- the login node's wrapper


@pytest.fixture
def login_sudo(tmp_path):
    """hpcbench-sudo with a fake sudo on PATH that logs its argv and exits 3."""
    shims, fake = tmp_path / "shims", tmp_path / "fake"
    shims.mkdir()
    fake.mkdir()
    calls, sudo_log = shims / "calls.log", tmp_path / "sudo.log"
    calls.touch()
    (fake / "sudo").write_text(f'#!/bin/sh\necho "$*" >> {sudo_log}\nexit 3\n')
    (fake / "sudo").chmod(0o755)
    commands = {"sbatch": "/opt/slurm/bin/sbatch", "scancel": "/opt/slurm/bin/scancel"}
    wrapper = sidebyside.make_login_sudo(shims, calls, commands)

    def run(*argv: str) -> tuple[int, list[str], list[observe.Call]]:
        env = {"PATH": f"{fake}:/usr/bin:/bin"}
        rc = subprocess.run([str(wrapper), *argv], env=env, timeout=30, check=False).returncode
        sudo = sudo_log.read_text().splitlines() if sudo_log.exists() else []
        return rc, sudo, observe.read_calls(calls)

    return shims, run


def test_a_shimmed_slurm_command_runs_for_real_under_sudo_and_is_timed(login_sudo):
    shims, run = login_sudo
    rc, sudo, calls = run("root", f"{shims}/sbatch", "--parsable", "--export-file=/tmp/x")
    assert rc == 3  # the command's exit code
    assert sudo == ["-n -u root -- /opt/slurm/bin/sbatch --parsable --export-file=/tmp/x"]
    [call] = calls
    assert (call.command, call.uid, call.rc, call.args) == (
        "sbatch",
        0,
        3,
        "--parsable --export-file=/tmp/x",
    )
    assert call.end >= call.start


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["mktemp", "-p", "/tmp", "hpcspawner-env.XXXXXXXXXX"], id="file-command"),
        pytest.param(["/usr/bin/scancel", "12"], id="unshimmed-slurm-command"),
    ],
)
def test_other_commands_go_to_sudo_as_they_are_and_are_not_timed(login_sudo, argv):
    _, run = login_sudo
    rc, sudo, calls = run("root", *argv)
    assert (rc, sudo, calls) == (3, ["-n -u root -- " + " ".join(argv)], [])


def test_only_sbatch_and_scancel_are_timed_as_the_user(tmp_path):
    wrapper = sidebyside.make_login_sudo(
        tmp_path, tmp_path / "calls.log", {"squeue": "/usr/bin/squeue", "sbatch": "/usr/bin/sbatch"}
    )
    text = wrapper.read_text()
    assert f"{tmp_path}/sbatch)" in text
    assert "squeue" not in text


# ---------------------------------------------------------------- kinds, options, merge


@pytest.mark.parametrize(
    "argv, expected",
    [
        pytest.param([], ["hpcspawner", "batchspawner"], id="default-local"),
        pytest.param(["--drivers", "ssh"], ["hpcspawner-ssh", "batchspawner-ssh"], id="ssh"),
        pytest.param(
            ["--drivers", "local,ssh,rest", "--spawners", "hpcspawner"],
            ["hpcspawner", "hpcspawner-ssh", "hpcspawner-rest"],
            id="hpcspawner-every-driver",
        ),
        pytest.param(
            ["--drivers", "rest"], ["hpcspawner-rest"], id="batchspawner-has-no-rest-driver"
        ),
    ],
)
def test_the_hubs_a_run_starts(argv, expected):
    assert run_all.parse_args(argv).kinds == expected


def test_smoke_sizes_are_tiny_unless_given():
    args = run_all.parse_args(["--smoke", "--drivers", "ssh,rest", "--sizes", "1"])
    assert (args.runs, args.sizes, args.storm, args.poll_interval) == (1, [1], [3], 2)
    args = run_all.parse_args([])
    assert (args.runs, args.sizes, args.storm, args.poll_interval) == (10, [1, 10, 50], [50], 5)


def test_a_run_of_no_hub_is_refused(capsys):
    with pytest.raises(SystemExit):
        run_all.parse_args(["--drivers", "rest", "--spawners", "batchspawner"])
    assert "batchspawner has no rest" in capsys.readouterr().err


def test_each_kind_is_compared_with_its_twins():
    assert kinds.local_twin("hpcspawner-ssh") == "hpcspawner"
    assert kinds.local_twin("batchspawner-ssh") == "batchspawner"
    assert kinds.batchspawner_twin("hpcspawner-ssh") == "batchspawner-ssh"
    assert kinds.batchspawner_twin("hpcspawner-rest") == "batchspawner"
    assert set(sidebyside.CONFIGS) == set(kinds.KINDS)


def _row(servers: int, **extra) -> dict:
    return {"servers": servers, "window_s": 30, "calls": {"squeue": 6}, "per_minute": 12.0, **extra}


def _load(measured: str, sizes: list[int], kinds_: list[str]) -> dict:
    load = {"measured": measured, "sizes": sizes, "poll_interval": 5}
    for kind in kinds_:
        rows = [_row(n, measured=measured) for n in sizes]
        load[kind] = {"rows": rows, "restart": copy.deepcopy(rows)}
    return load


def test_a_run_of_one_driver_keeps_the_other_drivers_results():
    previous = {
        "load": _load("old", [1, 50], ["hpcspawner", "batchspawner"]),
        "latency": {"measured": "old", "runs": 10, "hpcspawner": {"summary": {}, "runs": []}},
    }
    found = {
        "load": _load("new", [1], ["hpcspawner-ssh", "hpcspawner"]),
        "latency": {"measured": "new", "runs": 10, "hpcspawner-ssh": {"summary": {}, "runs": []}},
    }
    merged = run_all.merge(previous, found)
    load = merged["load"]
    assert [r["measured"] for r in load["hpcspawner"]["rows"]] == ["new", "old"]  # 1 new, 50 kept
    assert load["batchspawner"]["measured"] == "old"
    assert load["hpcspawner-ssh"]["rows"][0]["measured"] == "new"
    assert load["sizes"] == [1, 50]
    latency = merged["latency"]
    assert latency["measured"] == "new"
    assert latency["hpcspawner"]["measured"] == "old"
    assert "measured" not in latency["hpcspawner-ssh"]


# ---------------------------------------------------------------- the report


def _summary(**medians: float) -> dict:
    return {key: {"n": 3, "min": m, "median": m, "max": m} for key, m in medians.items()}


def _driver_results() -> dict:
    rows = {
        "hpcspawner": _row(10, hub_rpcs={"REQUEST_JOB_INFO": 6, "REQUEST_FED_INFO": 6}),
        "hpcspawner-ssh": _row(
            10, hub_rpcs={"REQUEST_JOB_INFO": 6, "REQUEST_FED_INFO": 6}, ssh_logins=0
        ),
        "hpcspawner-rest": _row(
            10,
            calls={},
            per_minute=0.0,
            hub_rpcs={"REQUEST_JOB_INFO": 6},
            rest_requests={"GET /slurm/v0.0.38/jobs": 6},
            rest_connections=1,
        ),
        "batchspawner": _row(10, hub_rpcs={"REQUEST_JOB_INFO_SINGLE": 60, "REQUEST_FED_INFO": 60}),
        "batchspawner-ssh": _row(
            10, hub_rpcs={"REQUEST_JOB_INFO_SINGLE": 60, "REQUEST_FED_INFO": 60}, ssh_logins=60
        ),
    }
    load = {"measured": "now", "poll_interval": 5, "sizes": [10]}
    latency = {"measured": "now", "runs": 3}
    for kind, row in rows.items():
        load[kind] = {"rows": [row], "restart": [], "idle_rss_mib": 140.0}
        share = 0.16 if kind == "hpcspawner" else 0.21
        latency[kind] = {"summary": _summary(hub_share_s=share, stop_api_gone_s=0.15)}
    return {"scenarios": {"load": load, "latency": latency}}


def test_the_driver_tables_give_rates_ratios_and_the_difference_to_local():
    text = report.render(_driver_results())
    assert "### Off the cluster: per driver" in text
    ssh = next(
        line for line in text.splitlines() if line.startswith("| 10 running | hpcspawner ssh")
    )
    assert "| 0.0 SSH logins (0) |" in ssh
    assert "| 10.0× (batchspawner ssh) |" in ssh  # 120 RPCs against 12
    rest = next(
        line for line in text.splitlines() if line.startswith("| 10 running | hpcspawner rest")
    )
    assert "12.0 (6 (GET /slurm/v0.0.38/jobs 6) in 30 s) requests on 1 connection" in rest
    assert "| 20.0× (batchspawner local) |" in rest  # 120 RPCs against 6
    share = next(line for line in text.splitlines() if line.startswith("| hub's share − "))
    # hpcspawner local, ssh, rest, batchspawner local, ssh
    assert share.split(" | ")[1:] == ["–", "+0.050 s", "+0.050 s", "–", "+0.000 s |"]


def test_local_results_alone_have_no_driver_section():
    results = _driver_results()
    for name in ("load", "latency"):
        for kind in ("hpcspawner-ssh", "hpcspawner-rest", "batchspawner-ssh"):
            del results["scenarios"][name][kind]
    assert "Off the cluster" not in report.render(results)


class FakeDaemon:
    """Daemon's interface (tests/integration/offcluster.py): pid, start, stop."""

    def __init__(self, running: bool):
        self.running, self.events = running, []

    def pid(self):
        return 4242 if self.running else None

    def start(self):
        self.running = True
        self.events.append("start")
        return 4242

    def stop(self, pid):
        self.running = False
        self.events.append(f"stop {pid}")


@pytest.mark.parametrize(
    "was_running, events", [(False, ["start", "stop 4242"]), (True, [])], ids=["absent", "running"]
)
def test_a_daemon_the_run_started_is_stopped_even_when_the_run_fails(was_running, events):
    daemon = FakeDaemon(was_running)
    with pytest.raises(RuntimeError), run_all.daemon_running(daemon):
        raise RuntimeError("a scenario failed")
    assert daemon.events == events
    assert daemon.running == was_running
