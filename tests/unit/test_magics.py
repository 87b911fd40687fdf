"""The Slurm magics (hpcspawner.job.magics) in a real IPython shell, against fake commands.

Each fake ``squeue``/``sbatch``/``scancel``/``sinfo``/``scontrol`` is a Python script the test
writes into a directory that is the whole of ``PATH`` (no real Slurm command can run): it
records its argv, its stdin and the environment variables of interest, then prints what the
test told it to, on stdout or stderr, with the exit code asked for (or sleeps, for timeouts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import tomllib
from IPython.core.interactiveshell import InteractiveShell

from hpcspawner.job import magics
from hpcspawner.job.magics import SlurmCommandError, SlurmMagicError, squeue_argv

REPO = Path(__file__).resolve().parents[2]
STARTUP_FILE = REPO / "share/ipython/startup/50-hpcspawner-magics.py"
#: what each fake reports of its environment
WATCHED_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "SLURM_MEM_PER_NODE", "SLURM_CONF")

SQUEUE_OUT = """\
             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)
                41     debug  jupyter    alice  R       5:02      1 n1
                42     debug   sbatch    alice PD       0:00      1 (Priority)
"""
SINFO_OUT = """\
PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST
debug*       up    1:00:00      2   idle n[1-2]
"""
SCONTROL_OUT = """\
JobId=41 JobName=jupyterhub-spawner
   UserId=alice(1001) GroupId=alice(1001) MCS_label=N/A
   JobState=RUNNING Reason=None Dependency=(null)
   RunTime=00:05:02 TimeLimit=01:00:00 TimeMin=N/A
   Partition=debug AllocNode:Sid=hub:1234
   NodeList=n1
"""

FAKE = """\
#!{python}
import json, os, sys, time
stdin = sys.stdin.read()
with open({log!r}, "a") as log:
    watched = {{k: os.environ[k] for k in {watched!r} if k in os.environ}}
    log.write(json.dumps({{"name": {name!r}, "argv": sys.argv[1:], "stdin": stdin, "env": watched}}) + "\\n")
time.sleep({sleep!r})
sys.stdout.write({stdout!r})
sys.stderr.write({stderr!r})
sys.exit({rc!r})
"""


class FakeSlurm:
    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.jsonl"

    def add(self, name, stdout="", stderr="", rc=0, sleep=0):
        path = self.bin / name
        path.write_text(
            FAKE.format(
                python=sys.executable,
                log=str(self.log),
                watched=WATCHED_ENV,
                name=name,
                stdout=stdout,
                stderr=stderr,
                rc=rc,
                sleep=sleep,
            )
        )
        path.chmod(0o755)

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argv(self, name):
        return [call["argv"] for call in self.calls() if call["name"] == name]


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    fake = FakeSlurm(tmp_path)
    fake.add("squeue", SQUEUE_OUT)
    fake.add("sinfo", SINFO_OUT)
    fake.add("scancel")
    fake.add("sbatch", "4242\n")
    fake.add("scontrol", SCONTROL_OUT)
    monkeypatch.setenv("PATH", str(fake.bin))
    for name in ("SLURM_JOB_ID", "HPCSPAWNER_SLURM_TIMEOUT", *WATCHED_ENV):
        monkeypatch.delenv(name, raising=False)
    return fake


@pytest.fixture
def shell(tmp_path_factory, monkeypatch):
    # the one shell of the session keeps its profile and history out of the user's ~/.ipython
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path_factory.getbasetemp() / "ipython"))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "hpcspawner.job.magics")
    return ip


def run_cell(shell, source, capsys):
    """Run a cell as a kernel would: (result, what it printed on stdout + stderr)."""
    result = shell.run_cell(textwrap.dedent(source), store_history=False)
    out, err = capsys.readouterr()
    return result, out + err


def test_squeue_shows_your_own_jobs(shell, slurm, capsys):
    result, out = run_cell(shell, "%squeue", capsys)
    assert result.success
    assert slurm.argv("squeue") == [["--me"]]
    assert "42     debug   sbatch    alice PD" in out


@pytest.mark.parametrize(
    "line, argv",
    [
        pytest.param("", ["squeue", "--me"], id="default"),
        pytest.param("-p debug -l", ["squeue", "--me", "-p", "debug", "-l"], id="more-options"),
        pytest.param("--me -t R", ["squeue", "--me", "-t", "R"], id="me-given"),
        pytest.param("-u bob", ["squeue", "-u", "bob"], id="user"),
        pytest.param("-ubob", ["squeue", "-ubob"], id="user-joined"),
        pytest.param("--user=bob", ["squeue", "--user=bob"], id="user-long"),
        pytest.param("-j 12", ["squeue", "-j", "12"], id="job"),
        pytest.param("--jobs=12,13", ["squeue", "--jobs=12,13"], id="jobs-long"),
        pytest.param("-n job-u", ["squeue", "--me", "-n", "job-u"], id="name-not-user"),
    ],
)
def test_squeue_adds_me_unless_the_user_chooses_users_or_jobs(line, argv):
    assert squeue_argv(magics.split(line)) == argv


def test_cell_sbatch_sends_the_cell_as_the_script_and_returns_the_job_id(shell, slurm, capsys):
    cell = "#!/bin/bash\n#SBATCH --time=5\nsrun hostname\necho 'done; $HOME'\n"
    result, out = run_cell(shell, "%%sbatch -p debug --job-name 'my job'\n" + cell, capsys)
    assert result.success
    assert result.result == "4242"
    assert "Submitted batch job 4242" in out
    (call,) = slurm.calls()
    assert call["argv"] == ["--parsable", "-p", "debug", "--job-name", "my job"]
    assert call["stdin"] == cell


def test_line_sbatch_submits_a_file_with_its_arguments(shell, slurm, capsys):
    job_id = shell.run_line_magic("sbatch", "--time=10 run.sh 'input file.csv' 3")
    assert job_id == "4242"
    assert "Submitted batch job 4242" in capsys.readouterr().out
    (call,) = slurm.calls()
    assert call["argv"] == ["--parsable", "--time=10", "run.sh", "input file.csv", "3"]
    assert call["stdin"] == ""


def test_the_job_id_is_usable_in_code(shell, slurm, capsys):
    result, _ = run_cell(shell, "job = %sbatch run.sh\n%scancel $job", capsys)
    assert result.success
    assert shell.user_ns["job"] == "4242"
    assert slurm.argv("scancel") == [["4242"]]


def test_sbatch_on_a_federation_gives_the_id_without_the_cluster(shell, slurm):
    slurm.add("sbatch", "4243;cluster-a\n")
    assert shell.run_line_magic("sbatch", "run.sh") == "4243"


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 12\n", "abc\n"])
def test_sbatch_without_a_job_id_is_an_error(shell, slurm, stdout, capsys):
    slurm.add("sbatch", stdout)
    result, out = run_cell(shell, "%sbatch run.sh", capsys)
    assert isinstance(result.error_in_exec, SlurmCommandError)
    assert "sbatch gave no job id" in out


def test_scancel_cancels_the_jobs_given(shell, slurm, capsys):
    result, out = run_cell(shell, "%scancel 41 42", capsys)
    assert result.success
    assert slurm.argv("scancel") == [["41", "42"]]
    assert "Cancel requested: 41 42" in out


@pytest.mark.parametrize("magic", ["scancel", "sbatch"])
def test_scancel_and_sbatch_want_arguments(shell, slurm, magic, capsys):
    result, out = run_cell(shell, f"%{magic}", capsys)
    assert isinstance(result.error_in_exec, SlurmMagicError)
    assert "usage:" in out and "Traceback" not in out
    assert slurm.calls() == []


def test_sinfo_passes_its_arguments(shell, slurm, capsys):
    result, out = run_cell(shell, "%sinfo -p debug", capsys)
    assert result.success
    assert slurm.argv("sinfo") == [["-p", "debug"]]
    assert "debug*       up    1:00:00" in out


def test_slurm_job_shows_this_job(shell, slurm, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    result, out = run_cell(shell, "%slurm_job", capsys)
    assert result.success
    assert slurm.argv("scontrol") == [["show", "job", "41"]]
    assert "TimeLimit=01:00:00" in out


def test_slurm_job_outside_a_job_says_so(shell, slurm, capsys):
    result, out = run_cell(shell, "%slurm_job", capsys)
    assert result.success
    assert "Not inside a Slurm job: SLURM_JOB_ID is not set." in out
    assert slurm.calls() == []


def test_a_failing_command_shows_slurms_message_and_stops_the_cell(shell, slurm, capsys):
    stderr = "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    slurm.add("sbatch", stderr=stderr, rc=1)
    shell.user_ns.pop("after", None)
    result, out = run_cell(shell, "%sbatch -p nope run.sh\nafter = True", capsys)
    error = result.error_in_exec
    assert isinstance(error, SlurmCommandError)
    assert (error.argv, error.returncode, error.stderr) == (
        ["sbatch", "--parsable", "-p", "nope", "run.sh"],
        1,
        stderr.strip(),
    )
    assert f"sbatch failed (exit 1): {stderr.strip()}" in out
    assert "Traceback" not in out
    assert "after" not in shell.user_ns


@pytest.mark.parametrize(
    "line, argv",
    [
        pytest.param('-n "; rm -rf /"', ["--me", "-n", "; rm -rf /"], id="quoted"),
        pytest.param("-n $(touch {marker})", ["--me", "-n", "$(touch", "{marker})"], id="subst"),
        pytest.param("; touch {marker}", ["--me", ";", "touch", "{marker}"], id="bare"),
        pytest.param("-n `touch {marker}`", ["--me", "-n", "`touch", "{marker}`"], id="backtick"),
    ],
)
def test_hostile_text_reaches_slurm_as_literal_arguments(shell, slurm, line, argv, tmp_path):
    marker = tmp_path / "pwned"
    line, argv = line.format(marker=marker), [a.format(marker=marker) for a in argv]
    magics.squeue(line)  # straight to the magic: IPython's own $var expansion aside
    assert slurm.argv("squeue") == [argv]
    assert not marker.exists()


def test_unbalanced_quotes_are_a_clear_error(shell, slurm, capsys):
    result, out = run_cell(shell, "%squeue -n 'oops", capsys)
    assert isinstance(result.error_in_exec, SlurmMagicError)
    assert "cannot read the arguments" in out and "No closing quotation" in out
    assert slurm.calls() == []


def test_a_command_that_hangs_times_out(shell, slurm, monkeypatch, capsys):
    slurm.add("squeue", SQUEUE_OUT, sleep=30)
    monkeypatch.setenv("HPCSPAWNER_SLURM_TIMEOUT", "0.5")
    began = time.monotonic()
    result, out = run_cell(shell, "%squeue", capsys)
    assert time.monotonic() - began < 10
    assert isinstance(result.error_in_exec, SlurmCommandError)
    assert result.error_in_exec.returncode is None
    assert "squeue gave no answer within 0.5 s" in out and "Traceback" not in out


def test_a_bad_timeout_setting_is_named(shell, slurm, monkeypatch, capsys):
    monkeypatch.setenv("HPCSPAWNER_SLURM_TIMEOUT", "soon")
    result, out = run_cell(shell, "%sinfo", capsys)
    assert isinstance(result.error_in_exec, SlurmMagicError)
    assert "HPCSPAWNER_SLURM_TIMEOUT='soon' is not a number of seconds" in out


def test_a_missing_command_is_a_clear_error(shell, slurm, capsys):
    (slurm.bin / "sinfo").unlink()
    result, out = run_cell(shell, "%sinfo", capsys)
    assert isinstance(result.error_in_exec, SlurmCommandError)
    assert "sinfo: command not found" in out and "Traceback" not in out


def test_the_hubs_token_never_reaches_slurm_nor_this_jobs_variables_a_new_job(
    shell, slurm, monkeypatch
):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret-token")
    monkeypatch.setenv("JPY_API_TOKEN", "secret-token")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "4096")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    shell.run_line_magic("squeue", "")
    shell.run_cell("%%sbatch\n#!/bin/sh\ntrue\n", store_history=False)
    env = {call["name"]: call["env"] for call in slurm.calls()}
    assert env["squeue"] == {"SLURM_MEM_PER_NODE": "4096", "SLURM_CONF": "/etc/slurm/slurm.conf"}
    assert env["sbatch"] == {"SLURM_CONF": "/etc/slurm/slurm.conf"}


def test_the_startup_file_loads_the_magics(tmp_path):
    """What the installed startup file does, in a fresh IPython without the extension."""
    code = textwrap.dedent(
        f"""
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        assert "squeue" not in ip.magics_manager.magics["line"]
        ip.safe_execfile({str(STARTUP_FILE)!r}, ip.user_ns, raise_exceptions=True)
        names = ("squeue", "sbatch", "scancel", "sinfo", "slurm_job")
        assert all(n in ip.magics_manager.magics["line"] for n in names)
        assert "sbatch" in ip.magics_manager.magics["cell"]
        """
    )
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_package_installs_the_startup_file_where_ipython_runs_it():
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    assert data_files["etc/ipython/startup"] == [str(STARTUP_FILE.relative_to(REPO))]
    from IPython.core.application import ENV_CONFIG_DIRS

    assert os.path.join(sys.prefix, "etc", "ipython") in ENV_CONFIG_DIRS
