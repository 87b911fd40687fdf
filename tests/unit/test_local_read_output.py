"""LocalSlurmDriver.read_output: the user's output file is read bounded, only if regular.

Runs the real ``stat`` and ``tail`` (no Slurm needed) as the current user (prefix ``[]``)
on files made the way a hostile user would: a FIFO, a symlink to /dev/zero, a huge file
with no newline, a file swapped for a FIFO between the check and the read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from hpcspawner.slurm import OUTPUT_TAIL_BYTES, JobOutput
from hpcspawner.slurm.local import USER_FILE_OUTPUT_CAP, LocalSlurmDriver

#: Upper bound of each read here. Reading the hostile files before the fix took the whole
#: command timeout (30 s) or held the whole file: each case must answer well within this.
FAST = 3.0


def spied_driver(**settings) -> tuple[LocalSlurmDriver, list[tuple[list[str], dict]]]:
    """A driver running commands as the current user, recording argv and run() options."""
    driver = LocalSlurmDriver(user_command_prefix=[], **settings)
    calls: list[tuple[list[str], dict]] = []
    real_run = driver.run

    async def spy(argv, **kwargs):
        calls.append((list(argv), kwargs))
        return await real_run(argv, **kwargs)

    driver.run = spy
    return driver, calls


def read(driver: LocalSlurmDriver, path, **kwargs) -> tuple[JobOutput, float]:
    async def bounded():
        return await asyncio.wait_for(driver.read_output("nobody", str(path), **kwargs), FAST)

    t0 = time.monotonic()
    result = asyncio.run(bounded())
    return result, time.monotonic() - t0


def test_regular_file_gives_its_last_bytes_whole_lines_only(tmp_path):
    path = tmp_path / "job.log"
    lines = [f"line {i:04d}" for i in range(2000)]  # 10 bytes + newline each: 22 000 bytes
    path.write_text("\n".join(lines) + "\n")
    driver, calls = spied_driver()
    output, _ = read(driver, path, max_bytes=100)
    assert output == JobOutput(text="\n".join(lines[-9:]) + "\n")  # the cut first line dropped
    for argv, kwargs in calls:
        assert argv[0].endswith(("/stat", "/tail")), argv
        assert argv[-2:] == ["--", str(path)]
        assert kwargs["max_output"] <= 100 + USER_FILE_OUTPUT_CAP
        assert kwargs["timeout"] <= driver.read_output_timeout


def test_short_file_is_read_whole(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("Traceback (most recent call last):\nModuleNotFoundError: x\n")
    output, _ = read(spied_driver()[0], path)
    assert output.text == "Traceback (most recent call last):\nModuleNotFoundError: x\n"
    assert output.problem == ""


def test_huge_file_without_newline_costs_only_the_tail(tmp_path):
    path = tmp_path / "job.log"
    with open(path, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # 200 MB of NULs, sparse, no newline
        f.seek(-5, os.SEEK_END)
        f.write(b"THE-END"[:5])
    driver, calls = spied_driver()
    output, elapsed = read(driver, path)
    assert len(output.text) == OUTPUT_TAIL_BYTES
    assert output.text.endswith("THE-E")
    assert elapsed < FAST
    assert all(
        kwargs["max_output"] <= OUTPUT_TAIL_BYTES + USER_FILE_OUTPUT_CAP for _, kwargs in calls
    )


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(os.mkfifo, "is not a regular file (it is a FIFO)", id="fifo"),
        pytest.param(
            lambda path: os.symlink("/dev/zero", path),
            "is not a regular file (it is a character device)",
            id="symlink-to-dev-zero",
        ),
        pytest.param(os.mkdir, "is not a regular file (it is a directory)", id="directory"),
        pytest.param(lambda path: None, "does not exist", id="missing"),
        pytest.param(
            lambda path: os.symlink(path.parent / "nowhere", path),
            "does not exist",
            id="dangling-symlink",
        ),
    ],
)
def test_not_a_regular_file_is_refused_without_opening_it(tmp_path, caplog, make, problem):
    path = tmp_path / "job.log"
    make(path)
    driver, calls = spied_driver()
    with caplog.at_level(logging.WARNING):
        output, elapsed = read(driver, path)
    assert output == JobOutput(problem=problem)
    assert elapsed < FAST
    assert [argv[0].rsplit("/", 1)[-1] for argv, _ in calls] == ["stat"]  # never opened
    assert f"Not showing the output file {path} of nobody: it {problem}" in caplog.text


def test_file_swapped_for_a_fifo_after_the_check_times_out_quickly(tmp_path, caplog):
    """The user wins the race between stat and tail: the short timeout still bounds it."""
    path = tmp_path / "job.log"
    path.write_text("harmless\n")
    # the privilege wrapper stands in for the user's race: before tail, the file becomes a FIFO
    swap = 'for a; do last=$a; done; case "$1" in */tail) rm -f -- "$last"; mkfifo -- "$last";; esac; exec "$@"'
    driver = LocalSlurmDriver(user_command_prefix=["sh", "-c", swap, "sh"], read_output_timeout=1.0)
    with caplog.at_level(logging.WARNING):
        output, elapsed = read(driver, path)
    assert output == JobOutput(problem="could not be read within 1 s")
    assert elapsed < 2.5  # the one deadline covers both commands, and the reap
    assert "could not be read within 1 s" in caplog.text


def test_unreadable_file_is_a_problem_not_an_error(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("x\n")
    # a wrapper that fails the way sudo does when the rule is missing
    driver = LocalSlurmDriver(user_command_prefix=["false"])
    output, _ = read(driver, path)
    assert output == JobOutput(problem="cannot be read")


def test_never_reads_as_root(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("x\n")
    driver, calls = spied_driver()

    async def as_root():
        return await asyncio.wait_for(driver.read_output("root", str(path)), FAST)

    assert asyncio.run(as_root()) == JobOutput(problem="cannot be read")
    assert calls == []


@pytest.mark.parametrize("max_bytes", [0, -5])
def test_max_bytes_must_be_positive(tmp_path, max_bytes):
    with pytest.raises(ValueError, match="at least 1"):
        read(spied_driver()[0], tmp_path / "x", max_bytes=max_bytes)


def test_hostile_bytes_come_back_as_text_for_the_caller_to_escape(tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(b"\x1b[2J\xff\xfe\n\xe2\x80\xaeevil\n")
    output, _ = read(spied_driver()[0], path)
    assert output.text == "\x1b[2J\ufffd\ufffd\n\u202eevil\n"
