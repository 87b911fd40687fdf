"""hpcspawner.job.clock.JobClock: the job's times read from a stand-in ``squeue`` (a script
that answers what the test writes and counts its calls), on a clock the test moves.

- one read serves every request within the refresh interval, and concurrent requests
  share one read;
- a failed read (exit code, timeout, a job Slurm does not list, output it cannot read)
  keeps the last answer, says why (``stale``) and is tried again after the interval;
- Slurm's end signal makes the save due at once and the next request read again;
- the signal handler records it and still calls jupyter_server's own handler;
- outside a Slurm job there is no clock; nonsense from the hub gives the defaults.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from hpcspawner.job import walltime
from hpcspawner.job.clock import JobClock, clock_from_env, install_end_signal

LINE = "4242|debug|RUNNING|3:00|2:45|2030-01-02T03:04:05|vm\n"
SETTINGS = walltime.ClockSettings(warnings=(120, 60), save_before_end=30, refresh_interval=60)


class FakeSqueue:
    """A ``squeue`` script: prints ``answer``, exits with ``rc``, sleeps ``delay`` first."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.path = directory / "squeue"
        self.calls = directory / "calls"
        self.answer(LINE)
        self.path.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {self.calls}\n'
            f"sleep $(cat {directory}/delay)\n"
            f"cat {directory}/stdout\n"
            f"cat {directory}/stderr >&2\n"
            f"exit $(cat {directory}/rc)\n"
        )
        self.path.chmod(0o755)

    def answer(self, stdout: str, rc: int = 0, stderr: str = "", delay: float = 0) -> None:
        (self.dir / "stdout").write_text(stdout)
        (self.dir / "stderr").write_text(stderr)
        (self.dir / "rc").write_text(str(rc))
        (self.dir / "delay").write_text(str(delay))

    def argvs(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


class Clock:
    """monotonic() and time() the test moves."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now


@pytest.fixture
def squeue(tmp_path):
    return FakeSqueue(tmp_path)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def job_clock(squeue, clock):
    return JobClock(
        "4242",
        SETTINGS,
        squeue=str(squeue.path),
        timeout=5,
        monotonic=clock.monotonic,
        wall=clock.wall,
    )


async def status(job_clock) -> dict:
    return await asyncio.wait_for(job_clock.status(), 20)


async def test_first_request_reads_squeue(job_clock, squeue, clock):
    answer = await status(job_clock)
    assert squeue.argvs() == [f"--noheader --jobs=4242 --format={walltime.SQUEUE_FORMAT}"]
    assert answer["in_job"] is True
    assert (answer["job_id"], answer["partition"], answer["nodes"]) == ("4242", "debug", "vm")
    assert answer["seconds_left"] == 165
    assert answer["ends_at"] == clock.wall() + 165
    assert answer["warning"] is None and answer["save_due"] is False
    assert answer["stale"] is False and answer["error"] is None


async def test_requests_within_the_interval_count_down_without_squeue(job_clock, squeue, clock):
    await status(job_clock)
    clock.now += 50
    answer = await status(job_clock)
    assert len(squeue.argvs()) == 1
    assert answer["seconds_left"] == 115
    assert answer["warning"] == 120
    clock.now += 9.9
    assert (await status(job_clock))["seconds_left"] == 105
    assert len(squeue.argvs()) == 1
    # the interval is over: read again (an admin raised the limit meanwhile)
    clock.now += 0.1
    squeue.answer("4242|debug|RUNNING|20:00|19:00|2030-01-02T03:21:05|vm\n")
    answer = await status(job_clock)
    assert len(squeue.argvs()) == 2
    assert answer["seconds_left"] == 1140
    assert answer["time_limit"] == "20:00"
    assert answer["warning"] is None


async def test_concurrent_requests_share_one_read(job_clock, squeue):
    squeue.answer(LINE, delay=0.5)
    answers = await asyncio.wait_for(asyncio.gather(*(job_clock.status() for _ in range(5))), 20)
    assert len(squeue.argvs()) == 1
    assert {a["seconds_left"] for a in answers} == {165}


@pytest.mark.parametrize(
    ("stdout", "rc", "stderr", "delay", "error"),
    [
        pytest.param(
            "",
            1,
            "slurm_load_jobs error: Unable to contact slurm controller",
            0,
            "squeue exited with 1: slurm_load_jobs error: Unable to contact slurm controller",
            id="controller-away",
        ),
        pytest.param("", 0, "", 0, "Slurm does not list job 4242", id="not-listed"),
        pytest.param("garbage\n", 0, "", 0, "not %i|%P", id="unreadable"),
        pytest.param(LINE, 0, "", 3, "squeue did not answer within 1 s", id="hung"),
    ],
)
async def test_a_failed_read_keeps_the_last_answer_and_says_why(
    job_clock, squeue, clock, caplog, stdout, rc, stderr, delay, error
):
    await status(job_clock)
    clock.now += 60
    job_clock.timeout = 1
    squeue.answer(stdout, rc=rc, stderr=stderr, delay=delay)
    with caplog.at_level(logging.WARNING, logger="hpcspawner.job.clock"):
        answer = await status(job_clock)
    assert len(squeue.argvs()) == 2
    assert answer["stale"] is True
    assert error in answer["error"]
    # the last answer, counted down
    assert answer["seconds_left"] == 105
    assert answer["partition"] == "debug"
    assert "cannot read job 4242's time left" in caplog.text
    # not again before the interval is over; then it answers again
    clock.now += 30
    assert (await status(job_clock))["seconds_left"] == 75
    assert len(squeue.argvs()) == 2
    clock.now += 30
    squeue.answer("4242|debug|RUNNING|3:00|0:40|2030-01-02T03:04:05|vm\n")
    answer = await status(job_clock)
    assert (answer["stale"], answer["error"], answer["seconds_left"]) == (False, None, 40)


async def test_a_missing_squeue_is_an_error_not_a_crash(clock):
    job_clock = JobClock("4242", SETTINGS, squeue="/nonexistent/squeue", monotonic=clock.monotonic)
    answer = await status(job_clock)
    assert answer["seconds_left"] is None
    assert answer["error"].startswith("cannot run /nonexistent/squeue")


async def test_the_end_signal_makes_the_save_due_and_reads_again(job_clock, squeue, clock):
    await status(job_clock)
    clock.now += 5
    job_clock.end_signal()
    squeue.answer("4242|debug|RUNNING|3:00|1:30|2030-01-02T03:04:05|vm\n")
    answer = await status(job_clock)
    assert len(squeue.argvs()) == 2, "the signal makes the next request read squeue"
    assert answer["end_signal"] is True
    assert answer["end_signal_at"] == clock.wall()
    assert answer["seconds_left"] == 90
    assert answer["save_due"] is True, "the signal makes the save due before the clock does"


async def test_the_signal_handler_records_and_chains(job_clock, squeue):
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda sig, frame: seen.append(sig))
    try:
        install_end_signal(job_clock)
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [signal.SIGUSR1], "jupyter_server's own handler still runs"
        assert (await status(job_clock))["end_signal"] is True
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_no_clock_outside_a_slurm_job():
    assert clock_from_env({}) is None
    assert clock_from_env({"SLURM_JOB_ID": " "}) is None


def test_the_hubs_settings_reach_the_clock():
    env = {"SLURM_JOB_ID": "4242", **walltime.clock_environment(SETTINGS)}
    job_clock = clock_from_env(env)
    assert (job_clock.job_id, job_clock.settings) == ("4242", SETTINGS)


def test_nonsense_from_the_hub_gives_the_defaults(caplog):
    env = {"SLURM_JOB_ID": "4242", walltime.WARNINGS_VARIABLE: "soon"}
    with caplog.at_level(logging.WARNING, logger="hpcspawner.job.clock"):
        job_clock = clock_from_env(env)
    assert job_clock.settings == walltime.ClockSettings()
    assert "'soon' is not a whole number" in caplog.text and "using the defaults" in caplog.text
