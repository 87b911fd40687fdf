"""hpcspawner.slurm.jobstate: squeue parsing and the Slurm state table.

``tests/unit/data`` holds outputs recorded from the real local cluster by
``tests/unit/data/record.sh`` (see the README there); synthetic lines cover what a
quiet test cluster does not print.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hpcspawner.slurm.errors import SlurmError, controller_unreachable
from hpcspawner.slurm.jobstate import (
    ALIVE_STATES,
    ENDED_EXPLANATIONS,
    ENDED_STATES,
    FIELD_SEPARATOR,
    INVALID_JOB_ID_RE,
    PENDING_REASONS,
    SQUEUE_FIELDS,
    SQUEUE_FORMAT,
    JobInfo,
    Liveness,
    SqueueParseError,
    classify_state,
    liveness_of,
    parse_slurm_time,
    parse_squeue,
)

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> str:
    path = DATA / name
    # a missing recording is a failure, never a skip: the parser would go untested
    assert path.exists(), f"{name} is missing: record it with tests/unit/data/record.sh"
    return path.read_text()


def line(**fields) -> str:
    """One squeue line in SQUEUE_FORMAT; unspecified fields as Slurm prints them for a pending job."""
    values = {
        "job_id": "42",
        "state": "PENDING",
        "reason": "Priority",
        "batch_host": "",
        "node_list": "",
        "start_time": "N/A",
        "partition": "debug",
        "user": "alice",
        "time_limit": "1:00:00",
        "time_used": "0:00",
        "num_nodes": "1",
    }
    values.update(fields)
    assert set(values) == {name for name, _ in SQUEUE_FIELDS}
    return FIELD_SEPARATOR.join(values[name] for name, _ in SQUEUE_FIELDS)


def test_squeue_format_matches_fields():
    assert SQUEUE_FORMAT == "%i|%T|%r|%B|%N|%S|%P|%u|%l|%M|%D"


# ---------------------------------------------------------------- recorded outputs

#: file -> (expected states of its jobs, liveness of every job in it)
RECORDED_SINGLE = [
    pytest.param("squeue_running.txt", "RUNNING", Liveness.ALIVE, id="running"),
    pytest.param("squeue_running_2nodes.txt", "RUNNING", Liveness.ALIVE, id="running-2nodes"),
    pytest.param("squeue_pending_resources.txt", "PENDING", Liveness.ALIVE, id="pending-resources"),
    pytest.param("squeue_pending_priority.txt", "PENDING", Liveness.ALIVE, id="pending-priority"),
    pytest.param("squeue_completed.txt", "COMPLETED", Liveness.GONE, id="completed"),
    pytest.param("squeue_failed.txt", "FAILED", Liveness.GONE, id="failed"),
    pytest.param("squeue_completing.txt", "COMPLETING", Liveness.GONE, id="completing"),
    pytest.param("squeue_cancelled.txt", "CANCELLED", Liveness.GONE, id="cancelled"),
    pytest.param(
        "squeue_cancelled_pending.txt", "CANCELLED", Liveness.GONE, id="cancelled-pending"
    ),
    pytest.param("squeue_timeout.txt", "TIMEOUT", Liveness.GONE, id="timeout"),
]


@pytest.mark.parametrize(("name", "state", "liveness"), RECORDED_SINGLE)
def test_recorded_single_job(name, state, liveness):
    jobs = parse_squeue(recorded(name))
    assert len(jobs) == 1
    (job_id, info), *_ = jobs.items()
    assert job_id.isdigit()
    assert info.state.split()[0] == state
    assert info.liveness is liveness
    assert liveness_of(job_id, jobs) is liveness
    assert info.user in {"alice", "bob", "carol"}
    assert info.partition
    assert info.time_limit


def test_recorded_running():
    (info,) = parse_squeue(recorded("squeue_running.txt")).values()
    assert info.running and not info.pending
    assert info.batch_host and info.node_list
    assert isinstance(info.start_time, datetime)
    assert (info.partition, info.user, info.num_nodes) == ("debug", "alice", 1)
    assert info.time_limit == "10:00"
    assert info.describe_reason() is None


def test_recorded_running_on_two_nodes():
    (info,) = parse_squeue(recorded("squeue_running_2nodes.txt")).values()
    assert (info.partition, info.num_nodes) == ("remote", 2)
    assert info.batch_host in info.node_list or "[" in info.node_list


@pytest.mark.parametrize(
    ("name", "reason", "text"),
    [
        pytest.param(
            "squeue_pending_resources.txt",
            "Resources",
            "waiting for resources to become free",
            id="resources",
        ),
        pytest.param(
            "squeue_pending_priority.txt",
            "Priority",
            "other jobs have a higher priority",
            id="priority",
        ),
    ],
)
def test_recorded_pending(name, reason, text):
    (info,) = parse_squeue(recorded(name)).values()
    assert info.pending and not info.running
    assert info.reason == reason
    assert info.describe_reason() == text
    assert info.batch_host is None
    assert info.node_list is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("squeue_completed.txt", "the job finished", id="completed"),
        pytest.param("squeue_failed.txt", "the job failed (non-zero exit code)", id="failed"),
        pytest.param("squeue_cancelled.txt", "the job was cancelled", id="cancelled"),
        pytest.param("squeue_timeout.txt", "the job reached its time limit", id="timeout"),
    ],
)
def test_recorded_describe_end(name, text):
    (info,) = parse_squeue(recorded(name)).values()
    assert info.describe_end().startswith(text)


def test_recorded_cancelled_while_pending():
    """Never ran: no node (squeue prints n/a), and the pending reason stays on the record."""
    (info,) = parse_squeue(recorded("squeue_cancelled_pending.txt")).values()
    assert info.state == "CANCELLED"
    assert info.batch_host is None
    assert info.node_list is None
    assert info.describe_end().startswith("the job was cancelled")


def test_recorded_mix():
    jobs = parse_squeue(recorded("squeue_mix.txt"))
    assert len(jobs) == 7
    states = {info.state for info in jobs.values()}
    assert {"RUNNING", "PENDING", "COMPLETED", "FAILED"} <= states
    for job_id, info in jobs.items():
        assert info.job_id == job_id
        assert liveness_of(job_id, jobs) is classify_state(info.state)


def test_recorded_purged_is_empty_and_gone():
    jobs = parse_squeue(recorded("squeue_purged.txt"))
    assert jobs == {}
    assert liveness_of("12345", jobs) is Liveness.GONE


def test_recorded_mix_purged_lists_only_the_known_job():
    jobs = parse_squeue(recorded("squeue_mix_purged.txt"))
    assert len(jobs) == 1
    (info,) = jobs.values()
    assert info.state == "COMPLETED"


def test_recorded_invalid_id_matches():
    stderr = recorded("squeue_invalid_id.stderr")
    assert INVALID_JOB_ID_RE.search(stderr)
    assert not controller_unreachable(SlurmError(["squeue"], 1, stderr))


def test_recorded_controller_down_is_not_invalid_id():
    """The controller being down must never read as "the job is gone"."""
    stderr = recorded("squeue_controller_down.stderr")
    assert stderr.strip()
    assert not INVALID_JOB_ID_RE.search(stderr)
    assert controller_unreachable(SlurmError(["squeue"], 1, stderr))


def _recorded_squeue_files():
    files = sorted(DATA.glob("squeue_*.txt"))
    # none found is a failure (the test asserts a path), never a skip
    return [pytest.param(path, id=path.stem) for path in files] or [
        pytest.param(None, id="none-recorded")
    ]


def test_a_missing_recording_fails_instead_of_skipping():
    with pytest.raises(BaseException) as info:  # noqa: PT011 - pytest.skip raises BaseException
        recorded("squeue_never_recorded.txt")
    assert isinstance(info.value, AssertionError), type(info.value)
    assert "record.sh" in str(info.value)


@pytest.mark.parametrize("path", _recorded_squeue_files())
def test_every_recorded_squeue_output_parses(path):
    assert path is not None, "no squeue_*.txt in tests/unit/data: record them with record.sh"
    for info in parse_squeue(path.read_text()).values():
        assert info.job_id.isdigit()
        assert info.state.split()[0] in ALIVE_STATES | ENDED_STATES, info.state
        assert info.num_nodes is None or info.num_nodes >= 1


# ---------------------------------------------------------------- synthetic output


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("", id="empty"),
        pytest.param("\n", id="newline"),
        pytest.param("\n  \n\t\n", id="blank-lines"),
    ],
)
def test_parse_empty(output):
    assert parse_squeue(output) == {}


def test_parse_full_line():
    output = line(
        job_id="7",
        state="RUNNING",
        reason="None",
        batch_host="c1",
        node_list="c[1-2]",
        start_time="2026-11-21T22:47:50",
        partition="remote",
        user="bob",
        time_limit="1-00:00:00",
        time_used="1:02:03",
        num_nodes="2",
    )
    assert parse_squeue(output + "\n") == {
        "7": JobInfo(
            job_id="7",
            state="RUNNING",
            reason=None,
            batch_host="c1",
            node_list="c[1-2]",
            start_time=datetime(2026, 11, 21, 22, 47, 50),
            partition="remote",
            user="bob",
            time_limit="1-00:00:00",
            time_used="1:02:03",
            num_nodes=2,
        )
    }


def test_parse_blank_lines_between_jobs():
    output = "\n" + line(job_id="1") + "\n\n   \n" + line(job_id="2", state="RUNNING") + "\n\n"
    jobs = parse_squeue(output)
    assert list(jobs) == ["1", "2"]
    assert jobs["2"].running


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("N/A", id="N/A"),
        pytest.param("n/a", id="n/a"),
        pytest.param("(null)", id="null"),
        pytest.param("None", id="None"),
        pytest.param("Unknown", id="Unknown"),
        pytest.param("  N/A  ", id="padded"),
    ],
)
def test_parse_missing_values(value):
    (info,) = parse_squeue(
        line(
            reason=value,
            batch_host=value,
            node_list=value,
            start_time=value,
            partition=value,
            user=value,
            time_limit=value,
            time_used=value,
            num_nodes=value,
        )
    ).values()
    assert info == JobInfo(job_id="42", state="PENDING")


def test_parse_padded_fields():
    (info,) = parse_squeue(line(job_id=" 42 ", state=" RUNNING ", num_nodes=" 3 ")).values()
    assert (info.job_id, info.state, info.num_nodes) == ("42", "RUNNING", 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-21T22:47:50", datetime(2026, 11, 21, 22, 47, 50), id="iso"),
        pytest.param("N/A", None, id="N/A"),
        pytest.param("Unknown", None, id="unknown"),
        pytest.param("tomorrow", None, id="garbage"),
        pytest.param("2026-11-21 22:47:50", None, id="space-separated"),
    ],
)
def test_parse_slurm_time(text, expected):
    assert parse_slurm_time(text) == expected


def test_state_with_extra_words():
    (info,) = parse_squeue(line(state="CANCELLED by 1001", reason="None")).values()
    assert info.state == "CANCELLED by 1001"
    assert info.liveness is Liveness.GONE
    assert liveness_of("42", {"42": info}) is Liveness.GONE


def test_describe_end_of_state_with_extra_words():
    info = JobInfo(job_id="42", state="CANCELLED by 1001", reason="None")
    assert info.describe_end() == "the job was cancelled"


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("42|RUNNING", id="too-few"),
        pytest.param(line() + "|extra", id="too-many"),
        pytest.param(line().replace("|", " "), id="other-separator"),
        pytest.param("JOBID PARTITION NAME USER ST TIME NODES", id="header"),
        pytest.param(line(job_id="1") + "\n" + "garbage", id="good-then-bad"),
        pytest.param("squeue: error: Invalid job id specified", id="error-on-stdout"),
    ],
)
def test_wrong_number_of_fields_raises(output):
    with pytest.raises(SqueueParseError, match=r"expected 11 fields separated by '\|', got \d+"):
        parse_squeue(output)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"job_id": ""}, id="no-job-id"),
        pytest.param({"state": "  "}, id="no-state"),
    ],
)
def test_missing_id_or_state_raises(fields):
    with pytest.raises(SqueueParseError, match="missing job id or state"):
        parse_squeue(line(**fields))


# ---------------------------------------------------------------- the state table


def test_state_tables_disjoint_and_explained():
    assert not ALIVE_STATES & ENDED_STATES
    assert set(ENDED_EXPLANATIONS) == ENDED_STATES


@pytest.mark.parametrize("state", sorted(ALIVE_STATES))
def test_alive_states(state):
    assert classify_state(state) is Liveness.ALIVE
    assert JobInfo("1", state).liveness is Liveness.ALIVE


@pytest.mark.parametrize("state", sorted(ENDED_STATES))
def test_ended_states(state):
    assert classify_state(state) is Liveness.GONE
    assert classify_state(f"{state} by 1001") is Liveness.GONE
    info = JobInfo("1", state)
    assert info.liveness is Liveness.GONE
    assert info.describe_end() == ENDED_EXPLANATIONS[state]


@pytest.mark.parametrize(
    "state",
    [
        pytest.param("SOME_NEW_STATE", id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("completed", id="lower-case"),
        pytest.param("RUNNING+", id="suffix"),
    ],
)
def test_unknown_state_is_alive(state):
    """Ending a user's server needs a positive answer."""
    assert classify_state(state) is Liveness.ALIVE


@pytest.mark.parametrize(
    ("answer", "liveness"),
    [
        pytest.param({}, Liveness.GONE, id="empty-answer"),
        pytest.param({"7": JobInfo("7", "RUNNING")}, Liveness.GONE, id="other-job-only"),
        pytest.param({"42": JobInfo("42", "RUNNING")}, Liveness.ALIVE, id="running"),
        pytest.param({"42": JobInfo("42", "PENDING")}, Liveness.ALIVE, id="pending"),
        pytest.param({"42": JobInfo("42", "TIMEOUT")}, Liveness.GONE, id="timeout"),
    ],
)
def test_liveness_of(answer, liveness):
    assert liveness_of("42", answer) is liveness


@pytest.mark.parametrize(("reason", "text"), sorted(PENDING_REASONS.items()))
def test_describe_known_reasons(reason, text):
    assert JobInfo("1", "PENDING", reason=reason).describe_reason() == text


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("QOSGrpGRES", "QOSGrpGRES", id="unknown-shown-as-is"),
    ],
)
def test_describe_other_reasons(reason, text):
    assert JobInfo("1", "PENDING", reason=reason).describe_reason() == text


@pytest.mark.parametrize(
    ("state", "reason", "text"),
    [
        pytest.param("COMPLETED", None, "the job finished", id="completed"),
        pytest.param("COMPLETED", "None", "the job finished", id="reason-None"),
        pytest.param(
            "FAILED", "NonZeroExitCode", "the job failed (non-zero exit code)", id="non-zero"
        ),
        pytest.param(
            "NODE_FAIL", "NodeDown", "the node running the job failed (NodeDown)", id="reason"
        ),
        pytest.param("TIMEOUT", "TimeLimit", "the job reached its time limit (TimeLimit)", id="t"),
        pytest.param("WEIRD", None, "the job is WEIRD", id="unknown-state"),
    ],
)
def test_describe_end(state, reason, text):
    assert JobInfo("1", state, reason=reason).describe_end() == text


@pytest.mark.parametrize(
    ("stderr", "matches"),
    [
        pytest.param(
            "slurm_load_jobs error: Invalid job id specified\n", True, id="slurm_load_jobs"
        ),
        pytest.param("squeue: error: Invalid job id specified", True, id="squeue-prefix"),
        pytest.param(
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
            False,
            id="controller-down",
        ),
        pytest.param("", False, id="empty"),
    ],
)
def test_invalid_job_id_re(stderr, matches):
    assert bool(INVALID_JOB_ID_RE.search(stderr)) is matches
