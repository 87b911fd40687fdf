"""hpcspawner.slurm.rest_v0038 on slurmrestd 22.05's recorded answers (tests/unit/data/rest).

The records must be the ones the command drivers make: the cluster snapshot from
``/partitions`` + ``/nodes`` is compared with the one from the ``scontrol`` recordings of
the same cluster, and job records follow ``squeue``'s conventions field by field.
``associations_from_schema.json`` is written by hand from the dbv0.0.38 schema (the test
cluster has no slurmdbd), as its name says; so is ``diag_by_hand.json``, slurmctld's
statistics with 10,006 jobs pending, in the answer's shape (record.sh does not ask for it).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
from restserver import REST_DATA, recorded, recorded_json

from hpcspawner.slurm import Liveness, liveness_of, summarize
from hpcspawner.slurm import rest_v0038 as api
from hpcspawner.slurm.jobstate import parse_squeue
from hpcspawner.slurm.records import ParseError, parse_nodes, parse_partitions

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"

#: Every recording record.sh makes, with its HTTP status.
RECORDINGS = {
    "openapi_v3": 200,
    "ping": 200,
    "partitions": 200,
    "nodes": 200,
    "jobs": 200,
    "job_running": 200,
    "job_unknown": 500,
    "submit": 200,
    "submit_pending": 200,
    "submit_rejected": 500,
    "cancel": 200,
    "cancel_pending": 200,
    "cancel_unknown": 500,
    "bad_token": 500,
    "jobs_with_a_users_token": 200,
}


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_every_recording_is_there_with_its_status(name):
    status, body = recorded(name)
    assert status == RECORDINGS[name]
    assert body.strip().startswith(b"{")


def test_the_daemon_offers_v0038_and_no_accounting():
    paths = recorded_json("openapi_v3")["paths"]
    assert api.offered(paths)
    assert not api.offered([p for p in paths if not p.endswith("/jobs")])
    assert not api.has_accounting(paths)
    assert api.has_accounting([*paths, "/slurmdb/v0.0.38/associations/"])


# ---------------------------------------------------------------- jobs


def test_jobs_are_read_like_squeue():
    jobs = api.parse_jobs(recorded_json("jobs"))
    assert sorted(jobs) == ["310", "311", "312", "313", "314"]
    running, pending = jobs["313"], jobs["314"]
    assert (running.state, running.reason, running.batch_host, running.node_list) == (
        "RUNNING",
        None,  # squeue prints "None": parse_squeue reads it as None too
        "vm",
        "vm",
    )
    assert running.start_time == datetime.fromtimestamp(1796211805)  # naive local, like %S
    assert (running.partition, running.user, running.num_nodes) == ("debug", "alice", 1)
    assert running.time_limit == "2:00"  # minutes as squeue's %l prints them
    # pending: no batch host ("n/a" in squeue), no nodes, the reason kept
    assert (pending.state, pending.reason, pending.batch_host, pending.node_list) == (
        "PENDING",
        "BeginTime",
        None,
        None,
    )
    assert pending.describe_reason() == "waiting for its start time"
    assert liveness_of("313", jobs) is Liveness.ALIVE
    assert liveness_of("314", jobs) is Liveness.ALIVE
    assert liveness_of("310", jobs) is Liveness.GONE  # CANCELLED
    assert liveness_of("999999", jobs) is Liveness.GONE  # not in a successful answer


def test_a_job_record_equals_squeues_for_the_same_values():
    """The fields squeue prints for job 313, as parse_squeue reads them, are the REST record's
    (time_used aside: v0.0.38 does not report it)."""
    job = recorded_json("job_running")["jobs"][0]
    start = datetime.fromtimestamp(job["start_time"]).strftime("%Y-%m-%dT%H:%M:%S")
    line = f"313|RUNNING|None|vm|vm|{start}|debug|alice|2:00|0:05|1"
    from_squeue = parse_squeue(line)["313"]
    from_rest = api.parse_jobs(recorded_json("job_running"))["313"]
    assert from_rest == dataclasses.replace(from_squeue, time_used=None)


@pytest.mark.parametrize(
    ("minutes", "squeue"),
    [
        pytest.param(1, "1:00", id="one-minute"),  # squeue_timeout.txt
        pytest.param(10, "10:00", id="ten"),  # squeue_mix.txt
        pytest.param(30, "30:00", id="thirty"),
        pytest.param(60, "1:00:00", id="hour"),
        pytest.param(1440, "1-00:00:00", id="day"),
        pytest.param(2190, "1-12:30:00", id="day-and-a-half"),
        pytest.param(api.INFINITE, "UNLIMITED", id="infinite"),
        pytest.param(None, None, id="not-set"),
        pytest.param(api.NO_VAL, None, id="no-val"),
    ],
)
def test_time_limits_are_printed_as_squeue_prints_them(minutes, squeue):
    assert api.format_minutes(minutes) == squeue


def test_the_recorded_squeue_limits_use_the_same_format():
    limits = {
        info.time_limit for info in parse_squeue((DATA / "squeue_mix.txt").read_text()).values()
    }
    assert limits <= {api.format_minutes(m) for m in (1, 10, 30)}


def test_a_user_token_sees_the_same_jobs_and_comments_are_matched_exactly():
    body = recorded_json("jobs_with_a_users_token")
    assert set(api.parse_jobs(body)) == set(api.parse_jobs(recorded_json("jobs")))
    comment = "hpcspawner:tb68b4287:alice:umask:7fdf396af38d"
    assert api.comment_matches(body, "alice", comment) == ["310"]
    assert api.comment_matches(body, "bob", comment) == []
    assert api.comment_matches(body, "alice", comment[:-1]) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"errors": []}, id="no-jobs-key"),
        pytest.param({"jobs": [{"job_id": 1}]}, id="no-state"),
        pytest.param({"jobs": [{"job_state": "RUNNING"}]}, id="no-id"),
        pytest.param({"jobs": "x"}, id="not-a-list"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_an_answer_without_jobs_is_an_error_never_no_jobs(body):
    with pytest.raises(ParseError):
        api.parse_jobs(body)


# ---------------------------------------------------------------- errors


def test_slurmrestds_error_answers():
    assert api.token_rejected(500, recorded_json("bad_token"))
    assert not api.token_rejected(200, recorded_json("jobs"))
    assert not api.token_rejected(500, recorded_json("cancel_unknown"))
    assert api.job_unknown(recorded_json("cancel_unknown"))
    assert api.job_unknown(recorded_json("job_unknown"))
    assert not api.job_unknown(recorded_json("cancel"))
    assert api.errors_of(recorded_json("submit_rejected")) == [
        (2000, "Invalid partition name specified")
    ]
    assert api.submitted_job_id(recorded_json("submit")) == "313"
    assert api.submitted_job_id(recorded_json("submit_pending")) == "314"
    with pytest.raises(ParseError):
        api.submitted_job_id(recorded_json("submit_rejected"))


# ---------------------------------------------------------------- the submission


def test_the_scripts_directives_become_the_job_object():
    """slurmrestd 22.05 ignores #SBATCH lines (the recorded submission's --comment line
    left the job's comment empty), so every directive travels as a key."""
    script = (GOLDEN / "full.sh").read_text()
    body = api.submit_body(script, {"PATH": "/usr/bin:/bin", "JUPYTERHUB_API_TOKEN": "s3cret"})
    assert body["script"] == script
    assert body["job"] == {
        "name": "jupyter-alice-gpu",
        "comment": "hpcspawner:alice:gpu",
        "current_working_directory": "/scratch/alice",
        "standard_output": "/scratch/alice/jupyter-%j.log",
        "partition": "gpu",
        "account": "proj-a",
        "qos": "high",
        "reservation": "course",
        "nodes": "2",
        "tasks_per_node": "1",
        "cpus_per_task": "8",
        "memory_per_node": "16G",
        "time_limit": "1-12:00:00",
        "gres": "gpu:2",
        # Slurm's signal ahead of the limit (save_before_end): slurmrestd takes it as a key too
        "signal": "B:USR1@300",
        "constraints": "ib",
        "exclusive": "true",
        "environment": {"PATH": "/usr/bin:/bin", "JUPYTERHUB_API_TOKEN": "s3cret"},
    }
    typical = api.job_properties((GOLDEN / "typical.sh").read_text(), {"A": "1"})
    assert typical["no_requeue"] is True
    assert "exclusive" not in typical


def test_the_recorded_comment_was_not_taken_from_the_script():
    job = recorded_json("job_running")["jobs"][0]
    assert job["job_id"] == 313 and job["comment"] == ""  # the script said --comment=...


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param(
            "#!/bin/sh\n#SBATCH -p gpu -J x\n#SBATCH -D /tmp -t 5\n",
            {
                "partition": "gpu",
                "name": "x",
                "current_working_directory": "/tmp",
                "time_limit": "5",
            },
            id="short-options-several-per-line",
        ),
        pytest.param(
            "#!/bin/sh\n#SBATCH --chdir /tmp --comment 'a b'\n",
            {"current_working_directory": "/tmp", "comment": "a b"},
            id="value-as-next-word-quoted",
        ),
        pytest.param(
            "#!/bin/sh\n#SBATCH --chdir=/tmp\necho hi\n#SBATCH --partition=late\n",
            {"current_working_directory": "/tmp"},
            id="none-after-the-first-command",
        ),
        pytest.param(
            "#!/bin/sh\n# comment\n\n#SBATCHX --partition=no\n#SBATCH --chdir=/tmp # note\n",
            {"current_working_directory": "/tmp"},
            id="comments-and-lookalikes",
        ),
        pytest.param(
            "#!/bin/sh\n  #SBATCH --partition=indented\n#SBATCH --chdir=/tmp\r\n",
            {"current_working_directory": "/tmp"},
            id="indented-is-a-comment-crlf-ends",
        ),
    ],
)
def test_directives_are_read_as_sbatch_reads_them(script, expected):
    job = api.job_properties(script, {"A": "1"})
    del job["environment"]
    assert job == expected


@pytest.mark.parametrize(
    ("script", "env", "message"),
    [
        pytest.param("#SBATCH --chdir=/t\n#SBATCH --uid=0\n", {"A": "1"}, "--uid", id="unknown"),
        pytest.param(
            "#SBATCH --chdir=/t\n#SBATCH --export=NONE\n", {"A": "1"}, "export", id="export"
        ),
        pytest.param(
            "#SBATCH --chdir=/t\n#SBATCH --no-requeue=1\n", {"A": "1"}, "no value", id="flag"
        ),
        pytest.param(
            "#SBATCH --chdir=/t\n#SBATCH --partition\n", {"A": "1"}, "needs a value", id="no-value"
        ),
        pytest.param("#SBATCH --chdir=/t\n#SBATCH plain\n", {"A": "1"}, "not an option", id="word"),
        pytest.param("#SBATCH --comment='x\n", {"A": "1"}, "cannot read", id="quote"),
        pytest.param("#SBATCH --partition=a\n", {"A": "1"}, "--chdir", id="no-chdir"),
        pytest.param("#SBATCH --chdir=/t\n", {}, "empty", id="no-environment"),
        pytest.param("#SBATCH --chdir=/t\n", {"A=B": "1"}, "name", id="bad-name"),
        pytest.param("#SBATCH --chdir=/t\n", {"A": "a\0b"}, "NUL", id="nul"),
    ],
)
def test_what_cannot_be_passed_on_is_refused_by_name(script, env, message):
    with pytest.raises(ValueError, match=message):
        api.job_properties(script, env)


def test_a_job_path_takes_only_a_job_id():
    assert api.job_path("313") == "/slurm/v0.0.38/job/313"
    for bad in ("", "31/3", "../jobs", "313?x=1", "-1"):
        with pytest.raises(ValueError):
            api.job_path(bad)


# ---------------------------------------------------------------- the cluster


def test_the_rest_snapshot_and_the_scontrol_snapshot_describe_the_same_cluster():
    """Recorded on the same cluster (idle): partitions, limits, nodes, CPUs, memory, GPUs."""
    rest = summarize(
        api.parse_partitions(recorded_json("partitions")),
        api.parse_nodes(recorded_json("nodes")),
        taken_at=0,
    )
    scontrol = summarize(
        parse_partitions((DATA / "scontrol_partitions.txt").read_text()),
        parse_nodes((DATA / "scontrol_nodes_idle.txt").read_text()),
        taken_at=0,
    )
    assert (
        list(rest.partitions) == list(scontrol.partitions) == ["debug", "compute", "gpu", "remote"]
    )
    assert rest.partition_info == scontrol.partition_info
    assert rest.nodes == scontrol.nodes
    assert rest == scontrol
    assert rest.default_partition == "debug"
    assert rest.partitions["gpu"].gpus_per_node == {"fake": 2}
    assert rest.partitions["compute"].max_runtime_minutes == 1440


def test_node_states_and_flags_follow_scontrols_rules():
    node = recorded_json("nodes")["nodes"][0] | {
        "state": "idle",
        "state_flags": ["DRAIN"],
        "alloc_cpus": 1,
        "reason": "bad dimm",
    }
    info = api.parse_node_entry(node)
    assert (info.state, info.drain, info.usable, info.reason) == ("idle", True, False, "bad dimm")
    with pytest.raises(ParseError):
        api.parse_node_entry(node | {"state": "sideways"})


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        pytest.param({"max_time_limit": -1}, "max_time_minutes", None, id="unlimited-time"),
        pytest.param({"max_time_limit": api.INFINITE}, "max_time_minutes", None, id="infinite"),
        pytest.param({"maximum_nodes_per_job": 4}, "max_nodes", 4, id="max-nodes"),
        pytest.param({"flags": ["hidden"]}, "hidden", True, id="hidden"),
        pytest.param({"flags": ["root_only"]}, "root_only", True, id="root-only"),
        pytest.param(
            {"allowed_groups": "hpc,staff"}, "allow_groups", ("hpc", "staff"), id="groups"
        ),
        pytest.param({"default_memory_per_cpu": 512}, "def_mem_per_cpu_mb", 512, id="def-mem"),
    ],
)
def test_partition_fields(change, field, value):
    partition = recorded_json("partitions")["partitions"][0] | change
    assert getattr(api.parse_partition(partition), field) == value


def test_a_partition_that_does_not_add_up_is_an_error():
    partition = recorded_json("partitions")["partitions"][1]
    for change in ({"total_nodes": 5}, {"state": "WEIRD"}, {"nodes": "n[1-"}, {"name": ""}):
        with pytest.raises(ParseError):
            api.parse_partition(partition | change)


def test_associations_from_the_schema():
    body = recorded_json("associations_from_schema")
    associations = api.parse_associations(body, "alice")
    assert [(a.account, a.qos, a.default_qos, a.partition) for a in associations] == [
        ("physics", ("normal", "long"), "normal", None),
        ("gpu-course", ("course",), None, "gpu"),
    ]
    with pytest.raises(ParseError, match="not 'bob'"):
        api.parse_associations(body, "bob")


@pytest.mark.parametrize("name", ["associations_from_schema", "diag_by_hand"])
def test_the_fixtures_written_by_hand_say_so(name):
    assert (REST_DATA / f"{name}.json").exists()
    assert not (REST_DATA / f"{name}.status").exists()


# ---------------------------------------------------------------- one job, the queue's size


def test_a_jobs_lookup_is_read_like_the_listing():
    body = recorded_json("job_running")
    assert api.parse_job_lookup(body, "313") == api.parse_jobs(body)["313"]
    assert api.parse_job_lookup(body, "314") is None  # answered without it: gone
    assert api.job_path("313") == "/slurm/v0.0.38/job/313"
    with pytest.raises(ParseError):
        api.parse_job_lookup({"errors": []}, "313")


def test_the_queue_is_pending_plus_running():
    assert api.parse_diag(recorded_json("diag_by_hand")) == 10_006
    assert api.has_diag(recorded_json("openapi_v3")["paths"])
    assert not api.has_diag(["/slurm/v0.0.38/jobs"])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"errors": []}, id="no-statistics"),
        pytest.param({"statistics": {"jobs_pending": 3}}, id="no-running"),
        pytest.param({"statistics": {"jobs_pending": "3", "jobs_running": 0}}, id="text"),
        pytest.param({"statistics": {"jobs_pending": -1, "jobs_running": 0}}, id="negative"),
        pytest.param({"statistics": {"jobs_pending": True, "jobs_running": 0}}, id="bool"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_statistics_without_the_counts_are_an_error(body):
    with pytest.raises(ParseError):
        api.parse_diag(body)
