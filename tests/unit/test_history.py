"""Why a job ended, from Slurm's accounting: the parsers of ``sacct`` and slurmrestd's
``dbv0.0.38`` job answers (hpcspawner/slurm/history.py) on the recorded and synthetic
answers of tests/unit/data/accounting/ (README.md there), the words the user reads
(messages.history_reason), and each driver's ``job_history``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest
import test_rest_driver as rest_tests
from restserver import answer, recorded_json, slurmrestd_routes

from hpcspawner.slurm import ParseError, SlurmError
from hpcspawner.slurm.cli import CommandDriver
from hpcspawner.slurm.history import (
    JobEnd,
    from_rest_job,
    parse_rest_jobs,
    parse_sacct,
    sacct_args,
)
from hpcspawner.spawner import messages

ACCOUNTING = Path(__file__).parent / "data" / "accounting"

# the REST driver's fixtures: a fake slurmrestd replaying recorded answers, drivers on it
servers = rest_tests.servers
drivers = rest_tests.drivers
key_file = rest_tests.key_file


def recorded(name: str) -> str:
    return (ACCOUNTING / name).read_text()


def one(name: str) -> JobEnd:
    (end,) = parse_sacct(recorded(name)).values()
    return end


# ---------------------------------------------------------------- sacct's lines


@pytest.mark.parametrize(
    ("name", "job_id", "user", "state", "cancelled_by", "exit_code", "signal"),
    [
        pytest.param(
            "sacct_completed.txt", "317", "alice", "COMPLETED", None, 0, 0, id="completed"
        ),
        pytest.param("sacct_failed.txt", "318", "alice", "FAILED", None, 3, 0, id="failed"),
        pytest.param("sacct_timeout.txt", "322", "carol", "TIMEOUT", None, 0, 0, id="timeout"),
        pytest.param(
            "sacct_cancelled_by_user.txt", "319", "alice", "CANCELLED", "1001", 0, 0, id="by-user"
        ),
        pytest.param(
            "sacct_cancelled_by_root.txt", "320", "bob", "CANCELLED", "0", 0, 0, id="by-root"
        ),
        pytest.param(
            "sacct_cancelled_pending.txt", "321", "bob", "CANCELLED", "0", 0, 0, id="pending"
        ),
        pytest.param(
            "sacct_out_of_memory_synthetic.txt",
            "323",
            "alice",
            "OUT_OF_MEMORY",
            None,
            0,
            125,
            id="oom-synthetic",
        ),
        pytest.param(
            "sacct_node_fail_synthetic.txt", "324", "alice", "NODE_FAIL", None, 0, 0, id="node-fail"
        ),
        pytest.param(
            "sacct_preempted_synthetic.txt", "325", "alice", "PREEMPTED", None, 0, 15, id="preempt"
        ),
    ],
)
def test_one_recorded_end(name, job_id, user, state, cancelled_by, exit_code, signal):
    end = one(name)
    assert (end.job_id, end.user, end.state, end.cancelled_by) == (
        job_id,
        user,
        state,
        cancelled_by,
    )
    assert (end.exit_code, end.signal) == (exit_code, signal)
    assert end.ended


def test_the_timeout_keeps_its_limit_and_times():
    end = one("sacct_timeout.txt")
    assert end.time_limit == "00:01:00"
    assert end.submit == datetime(2026, 12, 3, 8, 9, 5)
    assert end.end == datetime(2026, 12, 3, 8, 10, 27)


def test_several_jobs_in_one_answer_and_none_for_an_unknown_id():
    found = parse_sacct(recorded("sacct_several.txt"))
    assert {job_id: end.state for job_id, end in found.items()} == {
        "317": "COMPLETED",
        "318": "FAILED",
        "319": "CANCELLED",
        "322": "TIMEOUT",
    }
    assert parse_sacct(recorded("sacct_unknown.txt")) == {}


def test_another_users_job_is_answered_with_its_owner():
    # bob may see alice's job (no PrivateData): the hub checks the owner (JobHistory)
    assert one("sacct_other_users_job_as_bob.txt").user == "alice"


def test_a_reused_id_counts_its_newest_job_and_a_comment_may_hold_the_separator():
    old = recorded("sacct_completed.txt").strip()
    newer = old.replace("2026-12-03T08:09:03", "2026-12-04T10:00:00").replace(
        "COMPLETED", "TIMEOUT"
    )
    newer = newer[: newer.rindex("|") + 1] + "hpcspawner:x|y"
    assert parse_sacct(f"{newer}\n{old}\n")["317"].state == "TIMEOUT"
    assert parse_sacct(f"{old}\n{newer}\n")["317"].state == "TIMEOUT"


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("317|wrap|alice|COMPLETED\n", id="too-few-fields"),
        pytest.param("|" * 17 + "\n", id="no-id"),
        pytest.param(
            "root||||0|0.000000|\n", id="another-commands-output"
        ),  # sshare_all.txt's first line
    ],
)
def test_what_is_no_sacct_line_is_an_error(output):
    with pytest.raises(ParseError):
        parse_sacct(output)


def test_sacct_args_take_only_job_ids():
    assert sacct_args(["7", "12"])[3] == "--jobs=7,12"
    for bad in ("7,8", "-j", "7 "):
        with pytest.raises(ValueError):
            sacct_args([bad])


# ---------------------------------------------------------------- slurmrestd's dbv0.0.38


def rest_recorded(name: str) -> dict:
    return json.loads(recorded(f"{name}.json"))


def test_rest_answers_read_like_sacct_lines():
    timeout = parse_rest_jobs(rest_recorded("rest_job_timeout"))["322"]
    assert (timeout.user, timeout.state, timeout.time_limit) == ("carol", "TIMEOUT", "00:01:00")
    assert timeout.end == datetime.fromtimestamp(1796285427)
    by_user = parse_rest_jobs(rest_recorded("rest_job_cancelled_by_user"))["319"]
    assert (by_user.state, by_user.cancelled_by) == ("CANCELLED", "alice")
    assert (by_user.exit_code, by_user.signal) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"jobs": [{"job_id": 7}]}, id="no-state"),
        pytest.param({"jobs": [{"state": {"current": "FAILED"}}]}, id="no-id"),
        pytest.param({"jobs": ["7"]}, id="not-an-object"),
        pytest.param({"errors": []}, id="no-jobs"),
    ],
)
def test_rest_answers_not_understood_are_errors(body):
    with pytest.raises(ParseError):
        parse_rest_jobs(body)


def test_a_rest_signal_and_a_day_long_limit():
    job = rest_recorded("rest_job_timeout")["jobs"][0] | {
        "state": {"current": "FAILED", "reason": "None"},
        "exit_code": {"status": "SIGNALED", "return_code": 0, "signal": {"signal_id": 9}},
        "time": {"limit": 1440 + 90},
    }
    end = from_rest_job(job)
    assert (end.state, end.signal, end.time_limit) == ("FAILED", 9, "1-01:30:00")


# ---------------------------------------------------------------- what the user reads


def names(uid: str) -> str | None:
    """The hub host's users in these tests: alice is 1001, bob 1002 (as on the cluster)."""
    return {"0": "root", "1001": "alice", "1002": "bob", "alice": "alice"}.get(uid)


@pytest.mark.parametrize(
    ("name", "user", "expected"),
    [
        pytest.param(
            "sacct_timeout.txt",
            "carol",
            "the job reached its time limit (walltime 00:01:00)",
            id="timeout",
        ),
        pytest.param("sacct_failed.txt", "alice", "the job failed with exit code 3", id="failed"),
        pytest.param(
            "sacct_completed.txt", "alice", "the job finished (the server exited)", id="completed"
        ),
        pytest.param("sacct_cancelled_by_user.txt", "alice", "you cancelled the job", id="by-you"),
        pytest.param(
            "sacct_cancelled_by_root.txt",
            "bob",
            "the job was cancelled by an administrator (root)",
            id="by-root",
        ),
        pytest.param(
            "sacct_out_of_memory_synthetic.txt",
            "alice",
            "the job ran out of memory (ask for more memory next time)",
            id="oom",
        ),
        pytest.param(
            "sacct_node_fail_synthetic.txt",
            "alice",
            "the node running the job failed",
            id="node-fail",
        ),
        pytest.param(
            "sacct_preempted_synthetic.txt",
            "alice",
            "the job was preempted (a job of higher priority took its resources)",
            id="preempted",
        ),
    ],
)
def test_why_a_recorded_job_ended_in_words(name, user, expected):
    assert messages.history_reason(one(name), user, names) == expected


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        pytest.param(
            JobEnd("7", "bob", "CANCELLED", cancelled_by="1001"),
            "the job was cancelled by an administrator",
            id="by-another-user-unnamed",
        ),
        pytest.param(
            JobEnd("7", "bob", "CANCELLED", cancelled_by="4242"),
            "the job was cancelled by user id 4242",
            id="by-an-unknown-uid",
        ),
        pytest.param(
            JobEnd("7", "alice", "CANCELLED", cancelled_by="alice"),
            "you cancelled the job",
            id="by-you-rest",
        ),
        pytest.param(JobEnd("7", "alice", "CANCELLED"), "the job was cancelled", id="by-nobody"),
        pytest.param(
            JobEnd("7", "alice", "FAILED", exit_code=0, signal=9),
            "the job failed: it was killed by signal 9",
            id="signal",
        ),
        pytest.param(JobEnd("7", "alice", "TIMEOUT"), "the job reached its time limit (walltime)"),
        pytest.param(JobEnd("7", "alice", "DEADLINE"), "the job reached its deadline"),
        pytest.param(JobEnd("7", "alice", "WEIRD"), "the job ended (WEIRD)", id="unknown-state"),
    ],
)
def test_why_a_job_ended_in_words(end, expected):
    text = messages.history_reason(end, end.user, names)
    assert text == expected
    assert "alice" not in text and "bob" not in text  # nobody's name is ever shown


# ---------------------------------------------------------------- the drivers


class Canned(CommandDriver):
    """A command driver whose commands answer from ``answers`` (argv[0] -> (rc, out, err))."""

    def __init__(self, answers, **kwargs):
        super().__init__(**kwargs)
        self.answers = answers
        self.argvs: list[list[str]] = []

    def _which(self, command):
        return command

    def _user_prefix(self, username):
        return ["runuser", "-u", username, "--"]

    async def _execute(self, argv, as_user, env, stdin, timeout, max_output):
        self.argvs.append(argv)
        return self.answers[argv[0]]


def bounded(awaitable):
    return asyncio.wait_for(awaitable, 5)


async def test_the_command_driver_asks_sacct_once_for_several_jobs():
    driver = Canned({"sacct": (0, recorded("sacct_several.txt"), "")})
    found = await bounded(driver.job_history(["317", "318", "319", "322"]))
    assert sorted(found) == ["317", "318", "319", "322"]
    assert driver.argvs == [["sacct", *sacct_args(["317", "318", "319", "322"])]]
    assert driver.calls == {"sacct": 1}
    assert await bounded(driver.job_history([])) == {}
    assert driver.calls == {"sacct": 1}


async def test_the_command_driver_with_slurmdbd_down_raises_and_without_accounting_says_none():
    rc = int(recorded("sacct_dbd_down.rc").split()[0].removeprefix("rc="))
    down = Canned(
        {"sacct": (rc, recorded("sacct_dbd_down.stdout"), recorded("sacct_dbd_down.stderr"))}
    )
    with pytest.raises(SlurmError, match="Problem talking to the database"):
        await bounded(down.job_history(["317"]))
    none = Canned({"sacct": (1, "", "sacct: error: Slurm accounting storage is disabled\n")})
    assert await bounded(none.job_history(["317"])) is None
    missing = Canned({"sacct": (127, "", "sh: 1: sacct: not found\n")})
    assert await bounded(missing.job_history(["317"])) is None


async def test_the_command_driver_with_a_prefix_runs_sacct_through_it():
    driver = Canned(
        {"sudo": (0, recorded("sacct_timeout.txt"), "")},
        query_command_prefix=["sudo", "-n", "-u", "slurm", "--"],
    )
    assert (await bounded(driver.job_history(["322"])))["322"].state == "TIMEOUT"
    assert driver.argvs[0][:6] == ["sudo", "-n", "-u", "slurm", "--", "sacct"]


async def test_the_rest_driver_reads_dbv0038_jobs_and_has_none_without_the_plugin(servers, drivers):
    server = await servers()
    driver = drivers(server.url)
    # the recorded spec (slurmrestd without dbv0.0.38): no accounting
    assert await bounded(driver.job_history(["322"])) is None
    spec = recorded_json("openapi_v3")
    spec["paths"].append("/slurmdb/v0.0.38/associations/")
    routes = slurmrestd_routes() | {
        ("GET", "/openapi/v3"): answer(200, spec),
        ("GET", "/slurmdb/v0.0.38/job/322"): answer(200, rest_recorded("rest_job_timeout")),
        ("GET", "/slurmdb/v0.0.38/job/319"): answer(
            200, rest_recorded("rest_job_cancelled_by_user")
        ),
        # not recorded: dbv0.0.38 (jobs.c) lists what slurmdbd has for the id, none here
        ("GET", "/slurmdb/v0.0.38/job/999999"): answer(200, {"errors": [], "jobs": []}),
        ("GET", "/slurmdb/v0.0.38/job/9"): answer(
            500, {"errors": [{"error_number": 7000, "error": "Unable to connect to database"}]}
        ),
    }
    server = await servers(routes)
    driver = drivers(server.url)
    found = await bounded(driver.job_history(["322", "319"]))
    assert {job_id: end.state for job_id, end in found.items()} == {
        "322": "TIMEOUT",
        "319": "CANCELLED",
    }
    assert [r.path for r in server.requests[-2:]] == [
        "/slurmdb/v0.0.38/job/322",
        "/slurmdb/v0.0.38/job/319",
    ]
    assert await bounded(driver.job_history(["999999"])) == {}
    with pytest.raises(SlurmError, match="Unable to connect to database"):
        await bounded(driver.job_history(["9"]))
    with pytest.raises(SlurmError):
        await bounded(driver.job_history(["9;x"]))
