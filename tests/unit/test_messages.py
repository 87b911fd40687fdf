"""What a start tells the user (hpcspawner.spawner.messages): pure text, tested as tables.

The lifecycle tests pin the queued line and the end-of-job message through the spawner;
here are the words no other test pins: the scheduler not answering, a running job, the
queue timeout, the request in a few words, durations and times.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from test_batchscript import make_request as request

from hpcspawner.slurm import JobInfo, JobOutput, Liveness
from hpcspawner.spawner import messages
from hpcspawner.spawner.poller import JobStatus

#: seconds -> words: seconds up to two minutes, then minutes
DURATIONS = {0: "0 seconds", 90: "90 seconds", 119.4: "119 seconds", 120: "2 minutes"}


@pytest.mark.parametrize(("seconds", "text"), [*DURATIONS.items(), (3600, "60 minutes")])
def test_format_duration(seconds, text):
    assert messages.format_duration(seconds) == text


def test_format_time_to_the_minute():
    assert messages.format_time(datetime(2030, 1, 2, 3, 4, 59)) == "2030-01-02 03:04"


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        pytest.param({}, "partition debug, 1 node, 2 CPUs, 4G, 1:00:00", id="plain"),
        pytest.param(
            {"partition": None, "cpus": 1}, "1 node, 1 CPU, 4G, 1:00:00", id="no-partition"
        ),
        pytest.param(
            {"nodes": 2, "gpus": 1},
            "partition debug, 2 nodes, 2 CPUs, 4G, 1 GPU, 1:00:00",
            id="one-gpu",
        ),
        pytest.param(
            {"gpus": 2}, "partition debug, 1 node, 2 CPUs, 4G, 2 GPUs, 1:00:00", id="gpus"
        ),
    ],
)
def test_describe_request(fields, text):
    assert messages.describe_request(request(**fields)) == text


NEXT_YEAR = datetime(2030, 1, 2, 3, 4)


def alive(state: str, **info) -> JobStatus:
    return JobStatus("7", Liveness.ALIVE, JobInfo("7", state, **info))


@pytest.mark.parametrize(
    ("status", "text", "percent"),
    [
        (
            JobStatus("7", Liveness.UNKNOWN),
            "Job 7: the scheduler is not answering, still trying",
            20,
        ),
        (JobStatus("7", Liveness.ALIVE), "Job 7 is queued", 20),
        (alive("PENDING", reason="None"), "Job 7 is queued: waiting for the scheduler", 20),
        (
            alive("PENDING", reason="Resources", start_time=NEXT_YEAR),
            "Job 7 is queued: waiting for resources to become free; expected start 2030-01-02 03:04",
            20,
        ),
        (alive("RUNNING", batch_host="c1"), "Job 7 is running on c1; waiting for the server", 50),
        (alive("CONFIGURING"), "Job 7 is CONFIGURING", 30),
    ],
    ids=["unknown", "not-listed-yet", "pending", "pending-with-expected-start", "running", "other"],
)
def test_start_progress(status, text, percent):
    assert messages.start_progress("7", status) == (text, percent)


@pytest.mark.parametrize(
    ("info", "waited", "text"),
    [
        pytest.param(
            JobInfo("7", "PENDING", reason="Priority"),
            600,
            "Job 7 waited in the queue for more than 10 minutes (other jobs have a higher "
            "priority) and was cancelled. Try fewer resources, a shorter runtime or another "
            "partition.",
            id="with-reason",
        ),
        pytest.param(
            None,
            60,
            "Job 7 waited in the queue for more than 60 seconds and was cancelled. Try fewer "
            "resources, a shorter runtime or another partition.",
            id="never-listed",
        ),
    ],
)
def test_queue_timeout(info, waited, text):
    assert messages.queue_timeout("7", info, waited) == text


@pytest.mark.parametrize(
    ("info", "text"),
    [
        pytest.param(None, "the job is no longer known to Slurm", id="purged"),
        pytest.param(JobInfo("7", "CANCELLED"), "the job was cancelled", id="ended"),
    ],
)
def test_end_reason(info, text):
    assert messages.end_reason(info) == text


def test_job_ended_with_an_empty_or_unread_output_names_the_file():
    path = "/home/alice/.jupyterhub-slurm-7.log"
    empty = messages.job_ended("7", "the job failed", path, JobOutput())
    assert empty == (
        f"Job 7 ended before the server started: the job failed. Its output file {path} is empty.",
        f"{path}: its output file is empty",
    )
    missing = messages.job_ended("7", "x", path, JobOutput(problem="does not exist"))
    assert missing[0].endswith(f"Its output file {path} does not exist.")


def test_job_ended_logs_the_end_of_the_output_on_one_escaped_line():
    text = "a" * 3000 + "\nlast\x1b[2J line\n"
    message, logged = messages.job_ended("7", "the job failed", "/o", JobOutput(text=text))
    first, last = message.split("Last lines of /o:\n")[1].split("\n")
    assert first.startswith("a" * 100) and first.endswith("[3000 characters in all]")
    assert len(first) < 400 and last == "last\\x1b[2J line"
    assert logged.startswith("/o: its output ends: ") and "\n" not in logged
    assert logged.endswith("[2000 characters in all]")  # the last 2000 characters, cut
