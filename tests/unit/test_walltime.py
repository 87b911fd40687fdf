"""hpcspawner.job.walltime: the job's clock, pure: the admin's settings on their way to the
job, what squeue says about the job's end, and which warning and whether the save are due.
"""

from __future__ import annotations

import pytest

from hpcspawner.job.walltime import (
    DEFAULT_REFRESH_INTERVAL,
    DEFAULT_SAVE_BEFORE_END,
    DEFAULT_WARNINGS,
    REFRESH_VARIABLE,
    SAVE_VARIABLE,
    SQUEUE_FORMAT,
    WARNINGS_VARIABLE,
    ClockSettings,
    JobTimes,
    check_refresh_interval,
    check_save_before_end,
    check_warnings,
    clock_environment,
    clock_status,
    due_warning,
    parse_duration,
    parse_end_time,
    parse_squeue,
    save_due,
    settings_from_env,
    squeue_argv,
)

# ---------------------------------------------------------------- squeue's answer


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2:45", 165, id="minutes-seconds"),
        pytest.param("0:07", 7, id="seconds"),
        pytest.param("59:59", 3599, id="under-an-hour"),
        pytest.param("1:00:00", 3600, id="hours"),
        pytest.param("23:59:59", 86399, id="under-a-day"),
        pytest.param("1-00:00:00", 86400, id="a-day"),
        pytest.param("7-01:02:03", 7 * 86400 + 3723, id="days"),
        pytest.param(" 4:05 ", 245, id="padded"),
        pytest.param("UNLIMITED", None, id="unlimited"),
        pytest.param("NOT_SET", None, id="not-set"),
        pytest.param("INVALID", None, id="invalid"),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "1:2", "a:bc", "1-2", "-1:00", "1:00:00:00", "1.5:00"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="is not a Slurm duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2030-01-02T03:04:05", "2030-01-02T03:04:05", id="time"),
        pytest.param("N/A", None, id="n/a"),
        pytest.param("Unknown", None, id="unknown"),
        pytest.param("NONE", None, id="none"),
    ],
)
def test_parse_end_time(text, expected):
    assert parse_end_time(text) == expected


def test_parse_end_time_refuses():
    with pytest.raises(ValueError, match="is not a time"):
        parse_end_time("tomorrow")


def test_squeue_argv_asks_for_one_job_without_header():
    assert squeue_argv("4242") == [
        "squeue",
        "--noheader",
        "--jobs=4242",
        f"--format={SQUEUE_FORMAT}",
    ]
    assert SQUEUE_FORMAT == "%i|%P|%T|%l|%L|%e|%N"
    assert squeue_argv("7", "/opt/slurm/bin/squeue")[0] == "/opt/slurm/bin/squeue"


RUNNING = JobTimes(
    job_id="4242",
    partition="debug",
    state="RUNNING",
    time_limit="3:00",
    seconds_left=165,
    end_time="2030-01-02T03:04:05",
    nodes="vm",
)


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        pytest.param(
            "4242|debug|RUNNING|3:00|2:45|2030-01-02T03:04:05|vm\n", RUNNING, id="running"
        ),
        pytest.param(
            "4242|remote|RUNNING|1:00:00|59:58|2030-01-02T03:04:05|n[1-2],n4\n",
            JobTimes(
                "4242", "remote", "RUNNING", "1:00:00", 3598, "2030-01-02T03:04:05", "n[1-2],n4"
            ),
            id="node-list",
        ),
        pytest.param(
            "4242|long|RUNNING|UNLIMITED|UNLIMITED|Unknown|vm\n",
            JobTimes("4242", "long", "RUNNING", "UNLIMITED", None, None, "vm"),
            id="no-limit",
        ),
        pytest.param(
            "4243|debug|RUNNING|3:00|0:10|2030-01-02T03:00:00|vm\n"
            "4242|debug|RUNNING|3:00|2:45|2030-01-02T03:04:05|vm\n",
            RUNNING,
            id="among-others",
        ),
        pytest.param("\n4242|debug|RUNNING|3:00|2:45|2030-01-02T03:04:05|vm", RUNNING, id="blank"),
        pytest.param("", None, id="not-listed"),
        pytest.param("4243|debug|RUNNING|3:00|0:10|2030-01-02T03:00:00|vm\n", None, id="other-job"),
    ],
)
def test_parse_squeue(stdout, expected):
    assert parse_squeue(stdout, "4242") == expected


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        pytest.param("4242 debug RUNNING\n", "not %i", id="another-format"),
        pytest.param("4242|debug|RUNNING|3:00|soon|N/A|vm\n", "not a Slurm duration", id="left"),
        pytest.param("4242|debug|RUNNING|3:00|2:45|later|vm\n", "is not a time", id="end"),
    ],
)
def test_parse_squeue_refuses(stdout, message):
    with pytest.raises(ValueError, match=message):
        parse_squeue(stdout, "4242")


# ---------------------------------------------------------------- what is due


@pytest.mark.parametrize(
    ("seconds_left", "warnings", "expected"),
    [
        pytest.param(3600, (900, 300), None, id="far-from-the-end"),
        pytest.param(901, (900, 300), None, id="just-before-the-first"),
        pytest.param(900, (900, 300), 900, id="at-the-first"),
        pytest.param(600, (900, 300), 900, id="between"),
        pytest.param(300, (900, 300), 300, id="at-the-second"),
        pytest.param(0, (900, 300), 300, id="at-the-end"),
        pytest.param(100, (), None, id="no-warnings"),
        pytest.param(None, (900, 300), None, id="no-limit"),
    ],
)
def test_due_warning(seconds_left, warnings, expected):
    assert due_warning(seconds_left, warnings) == expected


@pytest.mark.parametrize(
    ("seconds_left", "save_before_end", "end_signal", "expected"),
    [
        pytest.param(600, 120, False, False, id="not-yet"),
        pytest.param(121, 120, False, False, id="a-second-before"),
        pytest.param(120, 120, False, True, id="on-the-clock"),
        pytest.param(0, 120, False, True, id="at-the-end"),
        # the limit changed since the last read: Slurm's signal says the end is near
        pytest.param(3000, 120, True, True, id="slurms-signal"),
        pytest.param(None, 120, True, True, id="signal-without-a-clock"),
        pytest.param(None, 120, False, False, id="no-limit"),
        pytest.param(10, 0, True, False, id="turned-off"),
    ],
)
def test_save_due(seconds_left, save_before_end, end_signal, expected):
    assert save_due(seconds_left, save_before_end, end_signal) is expected


def test_clock_status_counts_down_from_the_last_read():
    settings = ClockSettings((900, 300), 120, 60.0)
    status = clock_status(
        "4242", settings, RUNNING, age=50.4, now=1000.0, end_signal_at=None, error=None
    )
    assert status == {
        "in_job": True,
        "job_id": "4242",
        "partition": "debug",
        "nodes": "vm",
        "state": "RUNNING",
        "time_limit": "3:00",
        "end_time": "2030-01-02T03:04:05",
        "seconds_left": 115,
        "ends_at": 1115.0,
        "warnings": [900, 300],
        "warning": 300,
        "save_before_end": 120,
        "save_due": True,
        "end_signal": False,
        "end_signal_at": None,
        "refresh_interval": 60.0,
        "read_at": 1000.0 - 50.4,
        "stale": False,
        "error": None,
    }


def test_clock_status_before_any_read_and_after_a_failed_one():
    status = clock_status(
        "4242", ClockSettings(), None, age=0, now=1000.0, end_signal_at=990.0, error="boom"
    )
    assert status["seconds_left"] is None
    assert status["ends_at"] is None
    assert status["partition"] is None
    assert status["read_at"] is None
    assert status["stale"] is True
    assert status["error"] == "boom"
    assert status["end_signal"] is True and status["end_signal_at"] == 990.0
    assert status["save_due"] is True


def test_clock_status_never_goes_below_zero():
    status = clock_status(
        "4242", ClockSettings(), RUNNING, age=500, now=0.0, end_signal_at=None, error=None
    )
    assert status["seconds_left"] == 0


# ---------------------------------------------------------------- the admin's settings


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([300, 900], (900, 300), id="sorted-largest-first"),
        pytest.param([300, 300, 60], (300, 60), id="duplicates"),
        pytest.param([], (), id="none"),
        pytest.param((1, 7 * 24 * 3600), (604800, 1), id="bounds"),
    ],
)
def test_check_warnings(values, expected):
    assert check_warnings(values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param([0], "between 1 second and a week", id="zero"),
        pytest.param([-5], "between 1 second and a week", id="negative"),
        pytest.param([8 * 24 * 3600], "between 1 second and a week", id="too-far"),
        pytest.param([1.5], "not a whole number", id="fraction"),
        pytest.param(["15m"], "not a whole number", id="text"),
        pytest.param([True], "not a whole number", id="bool"),
        pytest.param("900", "must be a list", id="a-string"),
        pytest.param(900, "must be a list", id="a-number"),
    ],
)
def test_check_warnings_refuses(values, message):
    with pytest.raises(ValueError, match=message):
        check_warnings(values)


@pytest.mark.parametrize("value", [0, 1, 120, 65535])
def test_check_save_before_end(value):
    assert check_save_before_end(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(-1, "between 0 \\(off\\) and 65535", id="negative"),
        pytest.param(65536, "between 0 \\(off\\) and 65535", id="beyond-sbatch"),
        pytest.param(1.5, "not a whole number", id="fraction"),
        pytest.param("120", "not a whole number", id="text"),
        pytest.param(False, "not a whole number", id="bool"),
    ],
)
def test_check_save_before_end_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        check_save_before_end(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(9.9, "below 10 seconds", id="too-often"),
        pytest.param(float("nan"), "below 10 seconds", id="nan"),
        pytest.param("60", "not a number", id="text"),
    ],
)
def test_check_refresh_interval_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        check_refresh_interval(value)


def test_the_settings_travel_to_the_job_and_back():
    settings = ClockSettings((1800, 600, 60), 300, 120.0)
    env = clock_environment(settings)
    assert env == {WARNINGS_VARIABLE: "1800,600,60", SAVE_VARIABLE: "300", REFRESH_VARIABLE: "120"}
    assert settings_from_env(env) == settings
    assert settings_from_env(clock_environment(ClockSettings((), 0, 10))) == ClockSettings(
        (), 0, 10.0
    )


def test_a_job_without_the_variables_uses_the_defaults():
    assert settings_from_env({}) == ClockSettings(
        DEFAULT_WARNINGS, DEFAULT_SAVE_BEFORE_END, DEFAULT_REFRESH_INTERVAL
    )
    assert DEFAULT_WARNINGS == (900, 300)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({WARNINGS_VARIABLE: "900,soon"}, "'soon' is not a whole number", id="word"),
        pytest.param({WARNINGS_VARIABLE: "-60"}, "'-60' is not a whole number", id="negative"),
        pytest.param({SAVE_VARIABLE: "2m"}, "'2m' is not a whole number", id="save"),
        pytest.param({SAVE_VARIABLE: "70000"}, "65535", id="save-too-long"),
        pytest.param({REFRESH_VARIABLE: "1"}, "below 10 seconds", id="refresh"),
    ],
)
def test_settings_from_env_refuses(env, message):
    with pytest.raises(ValueError, match=message) as caught:
        settings_from_env(env)
    assert str(caught.value).startswith("the job's clock settings from the hub: ")
