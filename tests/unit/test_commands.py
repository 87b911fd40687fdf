"""hpcspawner.slurm.commands.run_argv: output cap, timeout, group kill, stdin (real processes, no Slurm)."""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from hpcspawner.slurm.commands import DEFAULT_MAX_OUTPUT, run_argv
from hpcspawner.slurm.errors import OutputTooLarge, SlurmError, SlurmTimeout

MB = 1024 * 1024


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def gone_or_zombie(pid: int) -> bool:
    """True when ``pid`` has ended (a zombie waiting for a reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.parametrize(
    ("stdout_bytes", "stderr_bytes", "too_large"),
    [
        pytest.param(99, 0, False, id="under-cap"),
        pytest.param(100, 0, False, id="exactly-cap"),
        pytest.param(60, 40, False, id="both-streams-exactly-cap"),
        pytest.param(101, 0, True, id="one-over-cap"),
        pytest.param(60, 60, True, id="stdout-and-stderr-together"),
        pytest.param(0, 200, True, id="stderr-only"),
    ],
)
async def test_cap_counts_stdout_and_stderr(stdout_bytes, stderr_bytes, too_large):
    argv = python(
        f"import sys; sys.stdout.write('o' * {stdout_bytes}); sys.stderr.write('e' * {stderr_bytes})"
    )
    if too_large:
        with pytest.raises(OutputTooLarge) as caught:
            await run_argv(argv, timeout=30, max_output=100)
        assert caught.value.argv == argv
        assert "more than 100 bytes" in str(caught.value)
    else:
        result = await run_argv(argv, timeout=30, max_output=100)
        assert result == (0, "o" * stdout_bytes, "e" * stderr_bytes)


async def test_50_mb_of_output_is_killed_with_the_hub_memory_bounded():
    argv = python(
        "import sys\nchunk = b'z' * 65536\nfor _ in range(800):\n    sys.stdout.buffer.write(chunk)"
    )  # 50 MB, no newline
    tracemalloc.start()
    try:
        started = time.monotonic()
        with pytest.raises(OutputTooLarge) as caught:
            await run_argv(argv, timeout=60, max_output=1 * MB)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.argv == argv
    assert "more than 1048576 bytes" in str(caught.value)
    assert "killed" in str(caught.value)
    assert peak < 4 * MB, f"the hub held {peak / MB:.1f} MB for a 1 MB cap"
    assert elapsed < 20


async def test_overflow_kills_the_whole_process_group():
    # the shell's background child would keep the pipes open if only the shell died
    argv = ["/bin/sh", "-c", "sleep 300 & echo $! >&2; exec yes"]
    with pytest.raises(OutputTooLarge) as caught:
        await run_argv(argv, timeout=60, max_output=256 * 1024)
    child = int(caught.value.stderr.split()[-1])
    deadline = time.monotonic() + 10
    while not gone_or_zombie(child) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling for the kernel to finish the kill, not for sync
    assert gone_or_zombie(child)


async def test_timeout_kills_the_whole_process_group():
    argv = ["/bin/sh", "-c", "sleep 300 & echo $! >&2; sleep 300"]
    started = time.monotonic()
    with pytest.raises(SlurmTimeout) as caught:
        await run_argv(argv, timeout=1, max_output=1024)
    assert caught.value.argv == argv
    assert time.monotonic() - started < 10


async def test_stdin_is_fed_and_output_returned():
    rc, out, err = await run_argv(
        python(
            "import sys; data = sys.stdin.read(); print(len(data)); print('e', file=sys.stderr)"
        ),
        timeout=30,
        stdin="a" * 300_000,
    )
    assert (rc, out.strip(), err.strip()) == (0, "300000", "e")


async def test_a_command_that_ignores_its_stdin_is_no_error():
    rc, out, _ = await run_argv(
        python("import sys; print('done'); sys.exit(3)"), timeout=30, stdin="a" * 2_000_000
    )
    assert (rc, out.strip()) == (3, "done")


async def test_a_command_that_cannot_start_is_a_slurm_error():
    with pytest.raises(SlurmError) as caught:
        await run_argv(["/nonexistent/command"], timeout=5)
    assert caught.value.argv == ["/nonexistent/command"]
    assert not isinstance(caught.value, OutputTooLarge | SlurmTimeout)


def test_default_cap_fits_a_big_squeue():
    # squeue of thousands of jobs and scontrol of thousands of nodes are a few MB
    assert 16 * MB <= DEFAULT_MAX_OUTPUT <= 256 * MB
