"""SSHSlurmDriver against a real asyncssh server on 127.0.0.1 (tests/unit/sshlogin.py).

What a login node receives is checked where it arrives: the fake commands record their
argv, stdin and the environment file sbatch was pointed at. The local driver runs the
same fakes for the parity cases. Every await is bounded; the node, the drivers and the
other servers a test starts are stopped by the fixtures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sshlogin import DATA, FreezableProxy, LoginNode, SilentServer, make_keys, refused_port
from traitlets import TraitError

from hpcspawner.slurm import (
    ConnectionFailed,
    ConnectionLost,
    ConnectTimeout,
    JobOutput,
    OutputTooLarge,
    SlurmError,
    SlurmTimeout,
    controller_unreachable,
    sshpool,
    submission_uncertain,
)
from hpcspawner.slurm import ssh as ssh_module
from hpcspawner.slurm.local import LocalSlurmDriver
from hpcspawner.slurm.records import SCONTROL_NODES_ARGS, SCONTROL_PARTITIONS_ARGS
from hpcspawner.slurm.ssh import (
    REFUSED_RETRY_DELAYS,
    LoginHost,
    SSHSlurmDriver,
    UserCredentials,
    export_file_content,
)

TOKEN = "secret-token-0123456789abcdef"
SCRIPT = "#!/bin/bash\n#SBATCH --job-name=jupyterhub\nexec hpcspawner-singleuser\n"
SUDO = ["sudo", "-n", "-u", "{username}", "--"]


def bounded(awaitable, timeout: float = 20):
    return asyncio.wait_for(awaitable, timeout)


@pytest.fixture
async def node(tmp_path):
    node = await LoginNode(tmp_path / "login", make_keys(tmp_path)).start()
    yield node
    await bounded(node.stop())


@pytest.fixture
def known_hosts(tmp_path, node) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(node.known_hosts_line())
    return path


@pytest.fixture
def env_dir(tmp_path) -> Path:
    path = tmp_path / "envfiles"
    path.mkdir()
    return path


@pytest.fixture
async def make_driver(node, known_hosts, env_dir):
    drivers = []

    def make(cls=SSHSlurmDriver, **settings) -> SSHSlurmDriver:
        # the transport's tests pin the one listing; "each" and "auto" have their own below
        settings.setdefault("job_query", "batch")
        settings.setdefault("hosts", [node.address])
        settings.setdefault("known_hosts", str(known_hosts))
        settings.setdefault("client_keys", [str(node.keys.client_file)])
        settings.setdefault("login_user", "hubsvc")
        settings.setdefault("env_file_dir", str(env_dir))
        driver = cls(**settings)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        await bounded(driver.close())


@pytest.fixture
def make_local_driver(node):
    """The local driver on the same fake commands (resolved from the node's bin/)."""

    def make(**settings) -> LocalSlurmDriver:
        settings.setdefault("job_query", "batch")
        return LocalSlurmDriver(
            commands_path=f"{node.bin}:/usr/bin:/bin", user_command_prefix=list(SUDO), **settings
        )

    return make


@pytest.fixture
def local_driver(make_local_driver) -> LocalSlurmDriver:
    return make_local_driver()


def all_argv(node: LoginNode) -> list[str]:
    return [" ".join(call["argv"]) for call in node.calls()]


# ---------------------------------------------------------------- parity with the local driver


def recorded(name: str) -> str:
    return (DATA / name).read_text()


PARITY = [
    pytest.param(
        lambda n: n.answer("squeue", stdout=recorded("squeue_mix.txt")),
        lambda d: d.query(["21", "22", "23", "24", "25", "26", "27"]),
        id="query-mix",
    ),
    pytest.param(
        lambda n: n.answer("squeue", stdout=recorded("squeue_running_2nodes.txt")),
        lambda d: d.query(["27"]),
        id="query-2nodes",
    ),
    pytest.param(
        lambda n: n.answer("squeue", stdout=recorded("squeue_purged.txt")),
        lambda d: d.query(["1", "2", "3"]),
        id="query-purged",
    ),
    pytest.param(
        lambda n: n.answer("squeue", stderr=recorded("squeue_invalid_id.stderr"), rc=1),
        lambda d: d.query(["5"]),
        id="query-invalid-id-is-gone",
    ),
    pytest.param(
        lambda n: n.answer("squeue", stderr=recorded("squeue_controller_down.stderr"), rc=1),
        lambda d: d.query(["5", "6", "7"]),
        id="query-controller-down-raises",
    ),
    pytest.param(
        lambda n: n.answer("squeue", stdout="31|hpcspawner-x\n32|other\n33|hpcspawner-x\n"),
        lambda d: d.find_jobs("alice", "hpcspawner-x"),
        id="find-jobs",
    ),
    pytest.param(lambda n: None, lambda d: d.cancel("alice", "31"), id="cancel"),
    pytest.param(
        lambda n: n.answer("scancel", stderr="scancel: error: Invalid job id specified\n", rc=1),
        lambda d: d.cancel("alice", "31"),
        id="cancel-purged-is-no-error",
    ),
    pytest.param(
        lambda n: (
            n.answer("scontrol", match="partition", stdout=recorded("scontrol_partitions.txt")),
            n.answer("scontrol", match="node", stdout=recorded("scontrol_nodes_busy.txt")),
        ),
        lambda d: d.cluster_snapshot(),
        id="cluster-snapshot",
    ),
    pytest.param(
        lambda n: n.answer("sacctmgr", stdout=recorded("sacctmgr_assoc_several.txt")),
        lambda d: d.user_associations("alice"),
        id="associations",
    ),
    pytest.param(
        lambda n: n.answer("sacctmgr", stderr=recorded("sacctmgr_no_dbd.stderr"), rc=1),
        lambda d: d.user_associations("alice"),
        id="no-accounting",
    ),
    pytest.param(
        lambda n: n.answer("sacctmgr", stderr="sh: 1: sacctmgr: not found\n", rc=127),
        lambda d: d.user_associations("alice"),
        id="no-sacctmgr",
    ),
    pytest.param(
        lambda n: n.answer("sacctmgr", stdout=recorded("accounting/sacctmgr_qos.txt")),
        lambda d: d.qos_limits(),
        id="qos-limits",
    ),
    pytest.param(
        lambda n: (
            n.answer(
                "sacctmgr",
                match="format=user,account,qos,defaultqos,partition,grptres",
                stdout=recorded("accounting/sacctmgr_assoc_limits_alice.txt"),
            ),
            n.answer(
                "sacctmgr",
                match="withassoc",
                stdout=recorded("accounting/sacctmgr_user_alice.txt"),
            ),
            n.answer(
                "sacctmgr",
                match="accounts=chemistry,physics users=",
                stdout=recorded("accounting/sacctmgr_account_rows_chemistry_physics.txt"),
            ),
            n.answer(
                "sacctmgr",
                match="accounts=root users=",
                stdout=recorded("accounting/sacctmgr_account_rows_root.txt"),
            ),
        ),
        lambda d: d.user_accounting("alice"),
        id="user-accounting",
    ),
    pytest.param(
        lambda n: n.answer(
            "sacctmgr", stderr=recorded("accounting/sacctmgr_dbd_down.stderr"), rc=1
        ),
        lambda d: d.user_accounting("alice"),
        id="slurmdbd-down-is-an-error",
    ),
    pytest.param(
        lambda n: n.answer("sacctmgr", stderr=recorded("sacctmgr_no_dbd.stderr"), rc=1),
        lambda d: d.qos_limits(),
        id="qos-no-accounting",
    ),
    pytest.param(
        lambda n: n.answer("sbatch", stdout="4242\n"),
        lambda d: d.submit("alice", SCRIPT, {"PATH": "/usr/bin:/bin"}),
        id="submit",
    ),
    pytest.param(
        lambda n: n.answer("sbatch", stdout="4243;cluster2\n"),
        lambda d: d.submit("alice", SCRIPT, {}),
        id="submit-federated",
    ),
    pytest.param(
        lambda n: n.answer("sbatch", stderr=recorded("sbatch_reject_partition.stderr"), rc=1),
        lambda d: d.submit("alice", SCRIPT, {}),
        id="submit-rejected",
    ),
    pytest.param(
        lambda n: n.answer("sbatch", stdout="Submitted nothing\n"),
        lambda d: d.submit("alice", SCRIPT, {}),
        id="submit-no-job-id",
    ),
]


async def outcome(awaitable):
    """The result (a snapshot without its time), or the error's type and Slurm's own words
    (argv differs by transport)."""
    try:
        result = await bounded(awaitable)
        if hasattr(result, "taken_at"):
            result = dataclasses.replace(result, taken_at=0.0)
        return result
    except SlurmError as e:
        return type(e), e.returncode, e.slurm_message


@pytest.mark.parametrize("setup, call", PARITY)
async def test_the_ssh_driver_answers_as_the_local_driver(
    node, make_driver, local_driver, setup, call
):
    setup(node)
    expected = await outcome(call(local_driver))
    assert await outcome(call(make_driver())) == expected


async def test_read_output_answers_as_the_local_driver(node, make_driver, local_driver, tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    driver = make_driver()
    for path, max_bytes in ((log, 50), (log, 100_000), (fifo, 100), (tmp_path / "none", 100)):
        expected = await bounded(local_driver.read_output("alice", str(path), max_bytes))
        got = await bounded(driver.read_output("alice", str(path), max_bytes))
        assert got == expected
    assert got == JobOutput(problem="does not exist")
    assert [c["argv"][0] for c in node.calls() if c["argv"][0] != "sudo"] == []  # real stat/tail
    assert {tuple(c["argv"][:5]) for c in node.calls()} == {("sudo", "-n", "-u", "alice", "--")}


# ---------------------------------------------------------------- one listing or per-job lookups

MIX_IDS = ["21", "22", "23", "24", "25", "26", "27"]

#: what sdiag says when slurmctld does not answer
SDIAG_DOWN = "slurm_get_statistics: Unable to contact slurm controller (connect failure)\n"


def answer_each(node: LoginNode, output: str) -> None:
    """``squeue --jobs=ID`` prints ID's line of a recorded listing, as Slurm's single
    lookup does; an id not in it gets the fakes' default (nothing, rc 0)."""
    for line in output.splitlines():
        node.answer("squeue", match=f"--jobs={line.split('|')[0]} ", stdout=line + "\n")


def fail_lookup(node: LoginNode, job_id: str, stderr_file: str) -> None:
    node.answer("squeue", match=f"--jobs={job_id} ", stderr=recorded(stderr_file), rc=1)


def mix_but(job_id: str, stderr_file: str):
    """Per-job answers from squeue_mix.txt, but ``job_id``'s lookup fails with a recording."""
    return lambda n: (
        answer_each(n, recorded("squeue_mix.txt")),
        fail_lookup(n, job_id, stderr_file),
    )


EACH_PARITY = [
    pytest.param(lambda n: answer_each(n, recorded("squeue_mix.txt")), MIX_IDS, id="mix"),
    pytest.param(
        mix_but("5", "squeue_invalid_id.stderr"), ["5", "21", "23"], id="invalid-id-is-gone"
    ),
    pytest.param(
        mix_but("23", "squeue_controller_down.stderr"),
        ["21", "23", "25"],
        id="one-failed-lookup-fails-the-query",
    ),
]


@pytest.mark.parametrize("setup, ids", EACH_PARITY)
async def test_per_job_lookups_answer_as_the_local_driver(
    node, make_driver, make_local_driver, setup, ids
):
    setup(node)
    expected = await outcome(make_local_driver(job_query="each").query(ids))
    assert await outcome(make_driver(job_query="each").query(ids)) == expected


async def test_per_job_lookups_find_what_the_listing_finds(node, make_driver):
    ids = [*MIX_IDS, "5"]
    node.answer("squeue", match="--jobs=5,21,", stdout=recorded("squeue_mix.txt"))
    answer_each(node, recorded("squeue_mix.txt"))
    fail_lookup(node, "5", "squeue_invalid_id.stderr")
    listing, lookups = make_driver(job_query="batch"), make_driver(job_query="each")
    listed = await bounded(listing.query(ids))
    assert sorted(listed) == sorted(MIX_IDS)  # 5 is gone
    assert await bounded(lookups.query(ids)) == listed
    assert (listing.calls, lookups.calls) == ({"squeue": 1}, {"squeue_job": 8})
    asked = sorted(call["argv"][3] for call in node.calls("squeue")[1:])
    assert asked == sorted(f"--jobs={job_id}" for job_id in ids)
    assert {call["login"] for call in node.calls()} == {"hubsvc"}


async def test_per_job_lookups_share_the_one_connection(node, make_driver):
    driver = make_driver(job_query="each", job_query_concurrency=4)
    await bounded(driver.query([str(job_id) for job_id in range(1, 31)]))
    assert driver.connections_opened == 1 and len(node.connections) == 1
    assert len(node.calls("squeue")) == 30


@pytest.fixture(params=["local", "ssh"])
def make_command_driver(request, make_driver, make_local_driver):
    return make_local_driver if request.param == "local" else make_driver


@pytest.mark.parametrize(
    "sdiag, ids, calls",
    [
        pytest.param(
            {"stdout": recorded("sdiag_busy_synthetic.txt")},
            2,
            {"sdiag": 1, "squeue_job": 2},
            id="busy-cluster-looks-up",
        ),
        pytest.param(
            {"stdout": recorded("sdiag_busy_synthetic.txt")},
            90,
            {"sdiag": 1, "squeue": 1},
            id="busy-cluster-many-jobs-listed",
        ),
        pytest.param(
            {"stdout": recorded("sdiag_idle.txt")}, 2, {"sdiag": 1, "squeue": 1}, id="quiet-lists"
        ),
        pytest.param(
            {"stderr": SDIAG_DOWN, "rc": 1}, 2, {"sdiag": 1, "squeue_job": 2}, id="refused-few"
        ),
        pytest.param(
            {"stderr": SDIAG_DOWN, "rc": 1}, 21, {"sdiag": 1, "squeue": 1}, id="refused-many"
        ),
        pytest.param({"stdout": "Usage: sdiag\n"}, 2, {"sdiag": 1, "squeue_job": 2}, id="unread"),
    ],
)
async def test_auto_chooses_by_the_queue_sdiag_reports(
    node, make_command_driver, sdiag, ids, calls
):
    node.answer("sdiag", **sdiag)
    driver = make_command_driver(job_query="auto")
    job_ids = [str(1000 + number) for number in range(ids)]
    assert await bounded(driver.query(job_ids)) == {}  # a failed sdiag fails nothing
    assert driver.calls == calls
    await bounded(driver.query(job_ids))  # within queue_size_interval: no second sdiag
    assert driver.calls["sdiag"] == 1
    (sdiag_call,) = node.calls("sdiag")
    assert sdiag_call["argv"] == ["sdiag"]


async def test_sdiag_runs_like_squeue(node, make_driver):
    """As the login account, through query_command_prefix, from slurm_bin_dir."""
    driver = make_driver(
        job_query="auto",
        slurm_bin_dir=str(node.bin),
        query_command_prefix=["sudo", "-n", "-u", "slurm", "--"],
    )
    await bounded(driver.query(["7"]))
    sudo, sdiag = node.calls()[:2]
    assert sudo["argv"] == ["sudo", "-n", "-u", "slurm", "--", f"{node.bin}/sdiag"]
    assert sdiag["argv0"] == f"{node.bin}/sdiag" and sdiag["login"] == "hubsvc"


@pytest.mark.parametrize(
    "settings, problem",
    [
        pytest.param({"job_query_concurrency": 8}, True, id="as-many-as-sessions"),
        pytest.param({"job_query_concurrency": 3, "max_sessions_per_host": 3}, True, id="few"),
        pytest.param({}, False, id="defaults"),
        pytest.param({"job_query_concurrency": 8, "job_query": "batch"}, False, id="no-lookups"),
    ],
)
def test_lookups_that_would_take_every_ssh_channel_are_a_config_problem(
    known_hosts, settings, problem
):
    driver = SSHSlurmDriver(hosts=["login1"], known_hosts=str(known_hosts), **settings)
    found = [text for text in driver.config_problems() if "job_query_concurrency" in text]
    assert bool(found) == problem
    if problem:
        assert "max_sessions_per_host" in found[0] and "lower it" in found[0]


# ---------------------------------------------------------------- what the login node receives


async def test_queries_run_as_the_login_account_and_user_commands_through_sudo(node, make_driver):
    driver = make_driver()
    await bounded(driver.query(["7", "8"]))
    await bounded(driver.cancel("alice", "7"))
    squeue, sudo, scancel = node.calls()
    assert squeue["argv"][:4] == ["squeue", "--noheader", "--states=all", "--jobs=7,8"]
    assert sudo["argv"] == ["sudo", "-n", "-u", "alice", "--", "scancel", "7"]
    assert scancel["argv"] == ["scancel", "7"]
    assert {call["login"] for call in node.calls()} == {"hubsvc"}
    assert driver.calls == {"squeue": 1, "scancel": 1}


async def test_slurm_bin_dir_names_slurms_commands_only(node, make_driver):
    driver = make_driver(slurm_bin_dir=str(node.bin) + "/")
    await bounded(driver.query(["7"]))
    await bounded(driver.remove_file("alice", str(node.home / "nothing")))
    squeue, sudo = node.calls()
    assert squeue["argv0"] == f"{node.bin}/squeue"
    assert sudo["argv"][5:] == ["rm", "-f", "--", str(node.home / "nothing")]


async def test_runuser_as_root(node, make_driver):
    driver = make_driver(
        login_user="root", user_command_prefix=["runuser", "-u", "{username}", "--"]
    )
    node.answer("sbatch", stdout="9\n")
    assert await bounded(driver.submit("alice", SCRIPT, {})) == "9"
    wrappers = [call["argv"][:5] for call in node.calls("runuser")]
    assert wrappers == [
        ["runuser", "-u", "alice", "--", cmd] for cmd in ("mktemp", "dd", "sbatch", "rm")
    ]
    assert {call["login"] for call in node.calls()} == {"root"}


async def test_the_jobs_environment_travels_in_a_private_file_never_in_argv(
    node, make_driver, env_dir, caplog
):
    env = {
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "PATH": "/opt/jupyter/bin:/usr/bin:/bin",
        "TRICKY": "a 'quoted' \"value\"\nwith $(id) `id` ; | & > and a newline",
        "EMPTY": "",
        "UNICODE": "päth ü \u202e",
    }
    node.answer("sbatch", stdout="77\n")
    driver = make_driver()
    with caplog.at_level(logging.DEBUG):
        assert await bounded(driver.submit("alice", SCRIPT, env)) == "77"
    (sbatch,) = node.calls("sbatch")
    assert sbatch["stdin"] == SCRIPT
    assert sbatch["export_mode"] == "0o600"  # when sbatch read it
    entries = sbatch["export"].split("\0")
    assert entries[-1] == ""  # every entry ends with NUL, as Slurm's parser needs
    assert dict(entry.split("=", 1) for entry in entries[:-1]) == env
    path = sbatch["export_file"]
    assert path.startswith(f"{env_dir}/hpcspawner-env.")
    assert list(env_dir.iterdir()) == []  # removed after sbatch
    # nothing of the environment is in any argv (what `ps` on the login node shows) or the log
    for value in (TOKEN, "quoted", "/opt/jupyter/bin"):
        assert not any(value in argv for argv in all_argv(node))
        assert value not in caplog.text
    assert driver.calls == {"env_file": 3, "sbatch": 1}


async def test_the_environment_file_is_removed_when_sbatch_fails(node, make_driver, env_dir):
    node.answer("sbatch", stderr=recorded("sbatch_reject_time.stderr"), rc=1)
    with pytest.raises(SlurmError) as caught:
        await bounded(make_driver().submit("alice", SCRIPT, {"JUPYTERHUB_API_TOKEN": TOKEN}))
    assert caught.value.returncode == 1 and not controller_unreachable(caught.value)
    assert TOKEN not in str(caught.value)
    assert list(env_dir.iterdir()) == []


@pytest.mark.parametrize(
    "env, words",
    [
        pytest.param(
            {"SBATCH_PARTITION": "gpu"}, "SBATCH_PARTITION is an sbatch option", id="sbatch-input"
        ),
        pytest.param({"A-B": "x"}, "'A-B' is not a variable name", id="bad-name"),
        pytest.param({"X": f"{TOKEN}\0"}, "the value of X is not text", id="nul"),
        pytest.param({"X": "x" * 300_000}, "the value of X is longer", id="too-long"),
    ],
)
async def test_an_environment_the_file_cannot_carry_is_refused_before_anything_runs(
    node, make_driver, env, words
):
    with pytest.raises(SlurmError) as caught:
        await bounded(make_driver().submit("alice", SCRIPT, env))
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert node.calls() == [] and node.connections == []


@pytest.mark.parametrize("name", ["root", "ROOT", "-x", "../etc", "a b", ""])
async def test_never_acts_as_root_or_a_non_name(node, make_driver, name):
    driver = make_driver()
    for call in (
        driver.submit(name, SCRIPT, {}),
        driver.cancel(name, "5"),
        driver.install_files(name, "/tmp/x", {"f": b"x"}),
        driver.remove_file(name, "/tmp/x"),
    ):
        with pytest.raises(SlurmError, match="refusing to run"):
            await bounded(call)
    assert await bounded(driver.read_output(name, "/tmp/x")) == JobOutput(problem="cannot be read")
    assert node.calls() == [] and node.connections == []


async def test_a_hostile_path_reaches_the_login_node_as_one_word(node, make_driver, tmp_path):
    """The real rm on the far side removes exactly the file named, nothing the name spells."""
    victim = node.home / "victim"  # in the remote shell's working directory
    victim.write_text("keep me")
    hostile = tmp_path / "job $(rm victim) `rm victim`; rm victim 'it''s' * \n.log"
    hostile.write_text("x")
    await bounded(make_driver().remove_file("alice", str(hostile)))
    assert not hostile.exists() and victim.read_text() == "keep me"
    (sudo,) = node.calls("sudo")
    assert sudo["argv"][5:] == ["rm", "-f", "--", str(hostile)]


async def test_install_files_content_goes_through_stdin(node, make_driver, tmp_path):
    directory = tmp_path / "certs"
    key = b"-----BEGIN PRIVATE KEY-----\nkey-material\n-----END PRIVATE KEY-----\n"
    await bounded(make_driver().install_files("alice", str(directory), {"server.key": key}))
    assert (directory / "server.key").read_bytes() == key
    assert (directory / "server.key").stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    assert not any("key-material" in argv for argv in all_argv(node))


# ---------------------------------------------------------------- the pooled connection


async def test_many_queries_share_one_connection(node, make_driver):
    node.answer("squeue", stdout=recorded("squeue_running.txt"))
    driver = make_driver(max_sessions_per_host=4)
    for _ in range(10):
        await bounded(driver.query(["23"]))
    # more at once than sessions allowed on the connection: they wait for a slot
    await bounded(asyncio.gather(*(driver.query(["23"]) for _ in range(20))))
    assert len(node.connections) == 1 and driver.connections_opened == 1
    assert len(node.calls("squeue")) == 30 and driver.calls == {"squeue": 30}


def refuse_channels(monkeypatch, times: int) -> list[float]:
    """The login node refuses the next ``times`` channels (sshd's "no more sessions": the
    connection stays up); the delays the driver slept between tries are recorded."""
    real_run, real_sleep = sshpool.ConnectionPool.run, asyncio.sleep
    slept: list[float] = []
    left = [times]

    async def run(self, *args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise sshpool.NotStarted("could not start a command: open failed", refused=True)
        return await real_run(self, *args, **kwargs)

    async def sleep(delay, *args):
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(sshpool.ConnectionPool, "run", run)
    monkeypatch.setattr(ssh_module.asyncio, "sleep", sleep)
    return slept


async def test_a_refused_channel_is_tried_again_on_the_same_connection(
    node, make_driver, monkeypatch
):
    node.answer("squeue", stdout=recorded("squeue_running.txt"))
    slept = refuse_channels(monkeypatch, 3)
    driver = make_driver()
    assert "23" in await bounded(driver.query(["23"]))
    assert slept == list(REFUSED_RETRY_DELAYS[:3])
    assert driver.connections_opened == 1 and len(node.calls("squeue")) == 1


async def test_a_node_that_keeps_refusing_channels_is_unreachable(node, make_driver, monkeypatch):
    slept = refuse_channels(monkeypatch, 100)
    driver = make_driver()
    with pytest.raises(ConnectionFailed, match="open failed") as caught:
        await bounded(driver.query(["23"]))
    assert controller_unreachable(caught.value) and not submission_uncertain(caught.value)
    assert slept == list(REFUSED_RETRY_DELAYS) and node.calls("squeue") == []


async def test_a_dropped_connection_is_opened_again(node, make_driver):
    driver = make_driver()
    await bounded(driver.query(["1"]))
    await bounded(node.drop_connections())
    await bounded(driver.query(["1"]))
    assert len(node.connections) == 2 and node.live_connections == 1
    assert len(node.calls("squeue")) == 2


async def test_a_connection_lost_during_a_command_is_unknown_not_gone(node, make_driver):
    node.answer("sbatch", hang=True)
    driver = make_driver()
    submit = asyncio.ensure_future(driver.submit("alice", SCRIPT, {}))
    await bounded(node.command_started(3))  # mktemp, dd, then sbatch hangs
    await bounded(node.drop_connections())
    with pytest.raises(ConnectionLost) as caught:
        await bounded(submit)
    assert controller_unreachable(caught.value) and submission_uncertain(caught.value)
    await bounded(node.idle())  # the server killed the command with the channel
    node.answer("squeue", stdout="")
    assert await bounded(driver.query(["5"])) == {}  # and service resumes


async def test_keepalive_drops_a_hung_node_and_the_next_query_fails_over(
    node, make_driver, known_hosts
):
    proxy = await FreezableProxy(node.port).start()
    try:
        line = node.known_hosts_line().replace(f":{node.port} ", f":{proxy.port} ")
        known_hosts.write_text(known_hosts.read_text() + line)
        driver = make_driver(
            hosts=[f"127.0.0.1:{proxy.port}", node.address],
            keepalive_interval=0.2,
            keepalive_count_max=2,
            connect_timeout=0.5,
        )
        await bounded(driver.query(["1"]))  # through the relay
        proxy.freeze()  # the node hangs: no answer, no close
        await bounded(proxy.client_gone.wait(), 10)  # the keepalives went unanswered
        await bounded(driver.query(["1"]), 10)  # the hung node times out; the next one answers
        assert len(node.connections) == 2 and len(node.calls("squeue")) == 2
    finally:
        await bounded(proxy.stop())


async def test_failover_to_the_next_login_node(node, make_driver):
    dead = f"127.0.0.1:{refused_port()}"
    driver = make_driver(hosts=[dead, node.address])
    await bounded(driver.query(["1"]))
    await bounded(driver.query(["1"]))
    assert len(node.connections) == 1 and len(node.calls("squeue")) == 2


async def test_no_login_node_answers(make_driver):
    dead = [f"127.0.0.1:{refused_port()}", f"127.0.0.1:{refused_port()}"]
    with pytest.raises(ConnectionFailed) as caught:
        await bounded(make_driver(hosts=dead).query(["1"]))
    assert all(host in str(caught.value) for host in dead)
    assert controller_unreachable(caught.value) and not submission_uncertain(caught.value)


@pytest.fixture
async def silent():
    server = await SilentServer().start()
    yield server
    await bounded(server.stop())


async def test_a_node_that_never_answers_is_a_connect_timeout(make_driver, silent):
    driver = make_driver(hosts=[f"127.0.0.1:{silent.port}"], connect_timeout=0.5)
    with pytest.raises(SlurmTimeout) as caught:
        await bounded(driver.query(["1"]), 10)
    assert isinstance(caught.value, ConnectTimeout)
    assert f"127.0.0.1:{silent.port}" in str(caught.value) and "0.5 s" in str(caught.value)
    # unknown, not gone; and a submission that never started is not uncertain
    assert controller_unreachable(caught.value) and not submission_uncertain(caught.value)


async def test_a_silent_node_then_a_working_one(node, make_driver, silent):
    driver = make_driver(hosts=[f"127.0.0.1:{silent.port}", node.address], connect_timeout=0.5)
    await bounded(driver.query(["1"]), 10)
    assert len(node.calls("squeue")) == 1


async def test_a_slow_command_is_a_timeout_and_is_killed(node, make_driver):
    node.answer("squeue", hang=True)
    driver = make_driver(command_timeout=0.5)
    with pytest.raises(SlurmTimeout) as caught:
        await bounded(driver.query(["1"]), 10)
    assert not isinstance(caught.value, ConnectTimeout)
    assert controller_unreachable(caught.value) and submission_uncertain(caught.value)
    await bounded(node.idle())  # the remote command was killed, not left running
    node.answer("squeue", stdout="")
    assert await bounded(driver.query(["1"])) == {}
    assert len(node.connections) == 1  # the connection survived the timeout


async def test_output_beyond_the_cap_is_refused(node, make_driver):
    node.answer("squeue", stdout="x" * 5000)
    with pytest.raises(OutputTooLarge):
        await bounded(make_driver().run(["squeue"], kind="squeue", max_output=1000))
    await bounded(node.idle())


async def test_close_closes_the_connections(node, make_driver):
    driver = make_driver()
    await bounded(driver.query(["1"]))
    await bounded(driver.close())
    while node.live_connections:
        node.changed.clear()
        await bounded(node.changed.wait())
    await bounded(driver.query(["1"]))  # usable again afterwards
    assert len(node.connections) == 2


# ---------------------------------------------------------------- host keys


async def test_an_unknown_host_key_is_refused_naming_the_host_and_the_file(
    node, make_driver, tmp_path, caplog
):
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{refused_port()} {node.keys.host.export_public_key().decode()}")
    with caplog.at_level(logging.ERROR), pytest.raises(ConnectionFailed) as caught:
        await bounded(make_driver(known_hosts=str(other)).query(["1"]))
    message = str(caught.value)
    assert f"127.0.0.1:{node.port}" in message and str(other) in message
    assert "is unknown" in message and "Refusing" in message
    assert "is unknown" in caplog.text
    assert node.calls() == []


async def test_a_changed_host_key_is_refused(node, make_driver, tmp_path, caplog):
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(node.known_hosts_line(asyncssh.generate_private_key("ssh-ed25519")))
    with caplog.at_level(logging.ERROR), pytest.raises(ConnectionFailed) as caught:
        await bounded(make_driver(known_hosts=str(changed)).query(["1"]))
    assert "does not match the key recorded" in str(caught.value)
    assert str(changed) in str(caught.value) and f"127.0.0.1:{node.port}" in caplog.text
    assert node.calls() == []


async def test_the_known_hosts_file_is_read_again_when_it_changes(node, make_driver, known_hosts):
    good = known_hosts.read_text()
    known_hosts.write_text(node.known_hosts_line(asyncssh.generate_private_key("ssh-ed25519")))
    driver = make_driver()
    with pytest.raises(ConnectionFailed):
        await bounded(driver.query(["1"]))
    known_hosts.write_text(good + "# fixed\n")
    await bounded(driver.query(["1"]))


async def test_a_host_certificate_from_the_trusted_ca(tmp_path, make_driver):
    ca = asyncssh.generate_private_key("ssh-ed25519")
    keys = make_keys(tmp_path)
    cert = ca.generate_host_certificate(keys.host, "login", principals=["127.0.0.1"])
    node = await LoginNode(tmp_path / "ca-login", keys, host_certs=[cert]).start()
    try:
        known = tmp_path / "ca_known_hosts"
        known.write_text(f"@cert-authority * {ca.export_public_key().decode()}")
        driver = make_driver(hosts=[node.address], known_hosts=str(known))
        await bounded(driver.query(["1"]))
        assert len(node.calls("squeue")) == 1
        # a key the CA did not sign, for the same address: refused, naming the CA
        (tmp_path / "unsigned-keys").mkdir()
        unsigned = make_keys(tmp_path / "unsigned-keys")
        cert_node = await LoginNode(tmp_path / "unsigned", unsigned).start()
        try:
            with pytest.raises(ConnectionFailed, match="certificate authority"):
                await bounded(
                    make_driver(hosts=[cert_node.address], known_hosts=str(known)).query(["1"])
                )
        finally:
            await bounded(cert_node.stop())
    finally:
        await bounded(node.stop())


async def test_host_key_checking_off_works_and_says_so_loudly(node, make_driver, caplog):
    driver = make_driver(known_hosts="", disable_host_key_checking=True)
    with caplog.at_level(logging.WARNING):
        await bounded(driver.query(["1"]))
    assert "SSH host key checking is OFF" in caplog.text


async def test_no_known_hosts_is_a_clear_error(node, make_driver):
    hosts = [node.address, f"127.0.0.1:{refused_port()}"]
    with pytest.raises(ConnectionFailed) as caught:
        await bounded(make_driver(known_hosts="", hosts=hosts).query(["1"]))
    assert str(caught.value).count("c.SSHSlurmDriver.known_hosts is not set") == 1
    assert node.connections == []


async def test_a_key_the_node_does_not_accept(node, make_driver, tmp_path):
    (tmp_path / "other").mkdir()
    other = make_keys(tmp_path / "other")  # a key of its own, not authorized on the node
    with pytest.raises(ConnectionFailed, match="login refused"):
        await bounded(make_driver(client_keys=[str(other.client_file)]).query(["1"]))


# ---------------------------------------------------------------- per-user credentials


class PerUserDriver(SSHSlurmDriver):
    """A site's subclass: users with a certificate log in as themselves."""

    keys: dict = {}

    def user_credentials(self, username):
        key = self.keys.get(username)
        return UserCredentials(client_keys=[key]) if key else None


async def test_per_user_credentials_log_in_as_the_user_without_sudo(node, make_driver):
    PerUserDriver.keys = {"alice": node.keys.client}
    driver = make_driver(cls=PerUserDriver)
    node.answer("sbatch", stdout="12\n")
    assert await bounded(driver.submit("alice", SCRIPT, {"JUPYTERHUB_API_TOKEN": TOKEN})) == "12"
    await bounded(driver.cancel("bob", "3"))  # bob has none: the service account and sudo
    await bounded(driver.query(["12"]))
    by_login = {}
    for call in node.calls():
        by_login.setdefault(call["login"], []).append(call["argv"][0])
    assert by_login == {
        "alice": ["sbatch"],  # mktemp, dd and rm are real commands: they record nothing
        "hubsvc": ["sudo", "scancel", "squeue"],
    }
    assert len(node.connections) == 2  # one pool per login name


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "settings, words",
    [
        pytest.param({"user_command_prefix": []}, "does not name", id="empty-prefix"),
        pytest.param({"user_command_prefix": ["sudo", "-n", "--"]}, "does not name", id="no-user"),
        pytest.param({"hosts": ["login1:99999"]}, "port", id="bad-port"),
        pytest.param({"hosts": ["-oProxyCommand=x"]}, "not a host", id="option-as-host"),
        pytest.param({"hosts": ["user@login1"]}, "not a host", id="user-in-host"),
        pytest.param({"env_file_dir": "tmp"}, "absolute path", id="relative-env-dir"),
        pytest.param({"slurm_bin_dir": "bin"}, "absolute path", id="relative-bin-dir"),
    ],
)
def test_bad_settings_are_refused_naming_the_fix(settings, words):
    with pytest.raises((TraitError, ValueError), match=words):
        SSHSlurmDriver(**settings)


@pytest.mark.parametrize(
    "text, host",
    [
        ("login1", LoginHost("login1", 22)),
        ("login1:2222", LoginHost("login1", 2222)),
        ("10.0.0.5", LoginHost("10.0.0.5", 22)),
        ("[fe80::1]:2200", LoginHost("fe80::1", 2200)),
        ("[fe80::1]", LoginHost("fe80::1", 22)),
        ("fe80::1", LoginHost("fe80::1", 22)),
    ],
)
def test_login_host_forms(text, host):
    assert LoginHost.parse(text) == host


def test_the_driver_is_configured_like_the_local_one():
    """SSHSlurmDriver(config=..., log=...) as hpcspawner.spawner.shared builds drivers."""
    from traitlets.config import Config

    config = Config()
    config.SSHSlurmDriver.hosts = ["login1", "login2:2222"]
    config.SSHSlurmDriver.known_hosts = "/etc/jupyterhub/known_hosts"
    config.CommandDriver.max_jobs_per_query = 100
    config.SlurmDriver.command_timeout = 12.0
    driver = SSHSlurmDriver(config=config, log=logging.getLogger("test"))
    assert driver._host_order() == [LoginHost("login1", 22), LoginHost("login2", 2222)]
    assert (driver.max_jobs_per_query, driver.command_timeout) == (100, 12.0)
    assert driver.user_command_prefix == SUDO


# ---------------------------------------------------------------- the environment file


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True).filter(
            lambda name: not name.startswith("SBATCH_")
        ),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
    )
)
def test_the_environment_file_reads_back_as_slurm_reads_it(env):
    content = export_file_content(env)
    # Slurm's env_array_from_file: entries up to each NUL, until an empty one
    entries = []
    for entry in content.split("\0"):
        if not entry:
            break
        entries.append(entry)
    assert dict(entry.split("=", 1) for entry in entries) == env


def test_scontrol_is_asked_the_same_way():
    # the fake login node tells the two scontrol calls apart by these words
    assert "partition" in SCONTROL_PARTITIONS_ARGS and "node" in SCONTROL_NODES_ARGS
