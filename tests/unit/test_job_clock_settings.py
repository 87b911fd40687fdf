"""The job's clock on the hub's side, on the in-memory Slurm (fakeslurm.py): the admin's
``walltime_warnings``, ``save_before_end`` and ``walltime_refresh_interval`` are checked
when the hub loads them, reach the job in its environment (where the job's clock reads
them back), and ``save_before_end`` becomes the batch script's ``--signal=B:USR1@N``.
"""

from __future__ import annotations

import asyncio

import pytest
import test_lifecycle as lifecycle

from hpcspawner.job import walltime

# the lifecycle tests' fixtures: one in-memory Slurm, hubs and spawners on it
bounded = lifecycle.bounded
cluster = lifecycle.cluster
db = lifecycle.db
new_hub = lifecycle.new_hub
new_spawner = lifecycle.new_spawner


async def submitted(cluster, spawner):
    """The job ``spawner.start()`` submits (the start is then cancelled)."""
    task = asyncio.ensure_future(spawner.start())
    try:
        return await bounded(cluster.next_job())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    ("settings", "env", "directive"),
    [
        pytest.param(
            {},
            {
                walltime.WARNINGS_VARIABLE: "900,300",
                walltime.SAVE_VARIABLE: "120",
                walltime.REFRESH_VARIABLE: "60",
            },
            "#SBATCH --signal=B:USR1@120",
            id="defaults",
        ),
        pytest.param(
            {
                "walltime_warnings": [60, 30 * 60, 600],
                "save_before_end": 300,
                "walltime_refresh_interval": 120.0,
            },
            {
                walltime.WARNINGS_VARIABLE: "1800,600,60",
                walltime.SAVE_VARIABLE: "300",
                walltime.REFRESH_VARIABLE: "120",
            },
            "#SBATCH --signal=B:USR1@300",
            id="set",
        ),
        pytest.param(
            {"walltime_warnings": [], "save_before_end": 0},
            {walltime.WARNINGS_VARIABLE: "", walltime.SAVE_VARIABLE: "0"},
            None,
            id="turned-off",
        ),
    ],
)
async def test_the_settings_reach_the_job(cluster, new_hub, new_spawner, settings, env, directive):
    job = await submitted(cluster, new_spawner(hub=new_hub(**settings)))
    for name, value in env.items():
        assert job.env[name] == value, name
    signal_lines = [line for line in job.script.splitlines() if "--signal" in line]
    assert signal_lines == ([directive] if directive else [])
    # what the job's clock reads back is what the admin set
    expected = walltime.ClockSettings(
        tuple(sorted(settings.get("walltime_warnings", [900, 300]), reverse=True)),
        settings.get("save_before_end", 120),
        settings.get("walltime_refresh_interval", 60.0),
    )
    assert walltime.settings_from_env(job.env) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            {"walltime_warnings": [0]},
            r"c\.SlurmSpawner\.walltime_warnings: 0 is not between 1 second and a week",
            id="zero-warning",
        ),
        pytest.param(
            {"walltime_warnings": [15 * 24 * 3600]},
            r"c\.SlurmSpawner\.walltime_warnings: 1296000 is not between",
            id="warning-too-far",
        ),
        pytest.param(
            {"save_before_end": 70000},
            r"c\.SlurmSpawner\.save_before_end 70000 must be between 0 \(off\) and 65535",
            id="lead-beyond-sbatch",
        ),
        pytest.param(
            {"save_before_end": -1},
            r"c\.SlurmSpawner\.save_before_end -1 must be between",
            id="negative-lead",
        ),
        pytest.param(
            {"walltime_refresh_interval": 1.0},
            r"c\.SlurmSpawner\.walltime_refresh_interval 1\.0 is below 10 seconds",
            id="squeue-too-often",
        ),
    ],
)
def test_the_settings_are_checked(new_spawner, new_hub, settings, message):
    with pytest.raises(ValueError, match=message):
        new_spawner(hub=new_hub(**settings))


async def test_no_signal_when_the_driver_cannot_ask_for_one(cluster, new_hub, new_spawner):
    """slurmrestd 22.05 refuses ``B:`` (RESTSlurmDriver.batch_signal): the script asks for no
    signal then, and the job's clock saves on its own count-down (its settings still go)."""
    spawner = new_spawner(hub=new_hub(save_before_end=300))
    spawner.driver.batch_signal = False
    try:
        job = await submitted(cluster, spawner)
    finally:
        del spawner.driver.batch_signal  # the class's again
    assert "--signal" not in job.script
    assert job.env[walltime.SAVE_VARIABLE] == "300"
