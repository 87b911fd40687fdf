"""hpcspawner.job.batchscript and the packaged template: golden files, injection, StrictUndefined.

Golden files live in ``tests/unit/golden/*.sh``. After an intended change to the
template, regenerate them and review the diff::

    UPDATE_GOLDEN=1 pytest tests/unit/test_batchscript.py
    git diff tests/unit/golden
"""

from __future__ import annotations

import math
import os
import shlex
import stat
import subprocess
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hpcspawner.job.batchscript import (
    UnsafeValueError,
    check_umask,
    default_template,
    directive,
    render,
    shell_quote,
)
from hpcspawner.resources.options import (
    NAME_RE,
    OPTION_FIELDS,
    Environment,
    OptionsError,
    PartitionPolicy,
    Policy,
    Profile,
    ResourceRequest,
    validate_options,
)

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

#: Values that must never become shell syntax or a second #SBATCH option.
HOSTILE = [
    pytest.param("a\nb", id="newline"),
    pytest.param("a\r\n#SBATCH --uid=0", id="crlf-directive"),
    pytest.param("x\n#SBATCH --partition=admin", id="newline-directive"),
    pytest.param("it's", id="single-quote"),
    pytest.param('say "hi"', id="double-quote"),
    pytest.param("$(touch pwned)", id="command-substitution"),
    pytest.param("`touch pwned`", id="backticks"),
    pytest.param("a; touch pwned", id="semicolon"),
    pytest.param("a && touch pwned", id="and"),
    pytest.param("a || touch pwned", id="or"),
    pytest.param("a | tee pwned", id="pipe"),
    pytest.param("a > pwned", id="redirect"),
    pytest.param("two words", id="space"),
    pytest.param("tab\there", id="tab"),
    pytest.param("${HOME}", id="variable"),
    pytest.param("a\\", id="backslash"),
    pytest.param("a#b", id="hash"),
    pytest.param("", id="empty"),
]


# ---------------------------------------------------------------- helpers


def make_request(**overrides) -> ResourceRequest:
    values = {
        "partition": "debug",
        "account": None,
        "qos": None,
        "reservation": None,
        "nodes": 1,
        "cpus": 2,
        "memory_mb": 4096,
        "gpus": 0,
        "runtime_minutes": 60,
        "profile": None,
        "environment": None,
    }
    values.update(overrides)
    return ResourceRequest(**values)


def make_context(**overrides) -> dict:
    """What SlurmSpawner.render_script passes for alice's default server."""
    context = {
        "request": make_request(),
        "job_name": "jupyter-alice",
        "comment": "hpcspawner:alice:-",
        "workdir": "/home/alice",
        "output": "/home/alice/.jupyterhub-slurm-%j.log",
        "command": ["hpcspawner-singleuser", "jupyterhub-singleuser"],
        "prologue": "",
        "environment": None,
        "extra_directives": [],
        "requeue": False,
        "path": "/opt/jupyterhub/bin:/usr/local/bin:/usr/bin:/bin",
        "umask": "0077",
        "signal_lead": 120,
    }
    context.update(overrides)
    return context


def render_default(**overrides) -> str:
    return render(default_template(), **make_context(**overrides))


def bash_syntax_ok(script: str) -> None:
    result = subprocess.run(
        ["bash", "-n"], input=script, capture_output=True, text=True, timeout=10, check=False
    )
    assert result.returncode == 0, f"bash -n failed: {result.stderr}\n{script}"


def exec_line(script: str) -> str:
    """The ``exec`` command to the end of the script (quoted arguments may hold newlines)."""
    assert script.count("\nexec ") == 1, script
    return script[script.index("\nexec ") + 1 :]


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "job.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        timeout=10,
        check=False,
    )


# ---------------------------------------------------------------- golden files

FULL_ENVIRONMENT = Environment(
    "py312",
    description="Python 3.12",
    prefix="/opt/envs/py 3.12",
    modules=("gcc/13.2", "cuda/12.4"),
    prologue="export OMP_NUM_THREADS=1",
)

GOLDEN_CASES = {
    "typical": make_context(),
    "full": make_context(
        request=make_request(
            partition="gpu",
            account="proj-a",
            qos="high",
            reservation="course",
            nodes=2,
            cpus=8,
            memory_mb=16 * 1024,
            gpus=2,
            runtime_minutes=36 * 60,
            profile="gpu",
            environment="py312",
        ),
        job_name="jupyter-alice-gpu",
        comment="hpcspawner:alice:gpu",
        workdir="/scratch/alice",
        output="/scratch/alice/jupyter-%j.log",
        command=[
            "hpcspawner-singleuser",
            "jupyterhub-singleuser",
            "--SingleUserNotebookApp.default_url=/lab",
            "--notebook-dir=~/my notebooks",
        ],
        prologue="module purge\nsource /etc/profile.d/site.sh",
        environment=FULL_ENVIRONMENT,
        extra_directives=["--constraint=ib", "--exclusive"],
        requeue=True,
        signal_lead=300,
    ),
}


@pytest.mark.parametrize("case", [pytest.param(name, id=name) for name in GOLDEN_CASES])
def test_golden(case):
    script = render(default_template(), **GOLDEN_CASES[case])
    golden = GOLDEN_DIR / f"{case}.sh"
    if UPDATE_GOLDEN:
        GOLDEN_DIR.mkdir(exist_ok=True)
        golden.write_text(script)
    assert golden.exists(), f"{golden} is missing: run with UPDATE_GOLDEN=1"
    assert script == golden.read_text(), f"{golden} differs: review, then UPDATE_GOLDEN=1"
    bash_syntax_ok(script)


def test_typical_directives():
    assert sbatch_lines(render_default()) == [
        "#SBATCH --job-name=jupyter-alice",
        "#SBATCH --comment=hpcspawner:alice:-",
        "#SBATCH --chdir=/home/alice",
        "#SBATCH --output=/home/alice/.jupyterhub-slurm-%j.log",
        "#SBATCH --partition=debug",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --time=1:00:00",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --no-requeue",
        "#SBATCH --export=ALL",
    ]


def test_sbatch_block_before_any_command():
    """sbatch stops reading #SBATCH lines at the first command: all must come first."""
    script = render(default_template(), **GOLDEN_CASES["full"]).splitlines()
    assert script[0] == "#!/bin/bash"
    last_directive = max(i for i, line in enumerate(script) if line.startswith("#SBATCH"))
    first_command = min(
        i for i, line in enumerate(script) if line.strip() and not line.startswith("#")
    )
    assert last_directive < first_command


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        pytest.param({}, ["--no-requeue"], ["--gres", "--account"], id="typical"),
        pytest.param({"requeue": True}, [], ["--no-requeue"], id="requeue"),
        pytest.param(
            {"request": make_request(partition=None)}, [], ["--partition"], id="no-partition"
        ),
        pytest.param({"request": make_request(gpus=3)}, ["--gres=gpu:3"], [], id="gpus"),
        pytest.param(
            {"extra_directives": ["--exclusive"]}, ["#SBATCH --exclusive"], [], id="extra"
        ),
        # Slurm's signal ahead of the limit for the save of open documents (save_before_end)
        pytest.param({"signal_lead": 0}, [], ["--signal"], id="no-save-before-end"),
        pytest.param(
            {"signal_lead": 65535}, ["#SBATCH --signal=B:USR1@65535\n"], [], id="longest-lead"
        ),
    ],
)
def test_optional_directives(overrides, present, absent):
    script = render_default(**overrides)
    for text in present:
        assert text in script
    for text in absent:
        assert text not in script
    bash_syntax_ok(script)


# ---------------------------------------------------------------- the directive filter


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("debug", id="word"),
        pytest.param("gpu:a100:2", id="colons"),
        pytest.param("--constraint=ib", id="option"),
        pytest.param("node[01-04],node07", id="hostlist"),
        pytest.param("hpcspawner:alice@example.org:-", id="comment"),
        pytest.param("/home/alice/.jupyterhub-slurm-%j.log", id="path"),
        pytest.param("1-00:00:00", id="time"),
        pytest.param(4, id="int"),
    ],
)
def test_directive_accepts_plain_words(value):
    assert directive(value) == str(value)


@pytest.mark.parametrize("value", HOSTILE)
def test_directive_refuses(value):
    with pytest.raises(UnsafeValueError, match="refusing to put"):
        directive(value)


def test_directive_refuses_trailing_newline():
    with pytest.raises(UnsafeValueError):
        directive("debug\n")


def _with_value(slot: str, value) -> dict:
    if slot.startswith("request."):
        return {"request": make_request(**{slot.removeprefix("request."): value})}
    if slot == "extra_directives":
        return {"extra_directives": ["--exclusive", value]}
    return {slot: value}


DIRECTIVE_SLOTS = [
    "job_name",
    "comment",
    "workdir",
    "output",
    "request.partition",
    "request.account",
    "request.qos",
    "request.reservation",
    "extra_directives",
]


@pytest.mark.parametrize("slot", DIRECTIVE_SLOTS)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x\n#SBATCH --partition=admin", id="newline"),
        pytest.param("a b", id="space"),
        pytest.param("$(id)", id="substitution"),
        pytest.param("a;b", id="semicolon"),
    ],
)
def test_hostile_value_in_sbatch_line_refused(slot, value):
    """Defence in depth: even a value that skipped validation cannot reach an #SBATCH line."""
    with pytest.raises(UnsafeValueError):
        render_default(**_with_value(slot, value))


# ---------------------------------------------------------------- shell quoting


@pytest.mark.parametrize("value", HOSTILE)
def test_command_arguments_are_inert(value, tmp_path):
    argv = ["printf", "%s\\0", value, f"--flag={value}", "plain"]
    script = render_default(command=argv)
    bash_syntax_ok(script)
    assert shlex.split(exec_line(script))[1:] == argv
    # and bash agrees: run the whole script, printf prints each argument NUL-terminated
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\0")[:-1] == argv[2:]
    assert not (tmp_path / "pwned").exists()


def test_shell_quote_round_trips_through_bash():
    values = [param.values[0] for param in HOSTILE] + ["~", "*", "!x", "-n", "é ☃"]
    words = " ".join(shell_quote(value) for value in values)
    result = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {words}"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\0")[:-1] == values


@given(st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_shell_quote_is_one_word(value):
    assert shlex.split(shell_quote(value)) == [value]


def test_environment_prefix_is_inert(tmp_path):
    prefix = "/opt/my env/$(touch pwned);`touch pwned`'\""
    environment = Environment("py312", prefix=prefix)
    script = render_default(environment=environment, command=["printenv", "PATH"])
    bash_syntax_ok(script)
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split(":")[0] == prefix + "/bin"
    assert not (tmp_path / "pwned").exists()


def test_path_is_inert(tmp_path):
    path = "/opt/my env/bin:$(touch pwned):`touch pwned`:'\":/usr/bin"
    script = render_default(path=path, command=["/usr/bin/printenv", "PATH"])
    bash_syntax_ok(script)
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == path + "\n"
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- the job's umask


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"),
    [
        pytest.param("0077", 0o600, 0o700, id="private"),
        pytest.param("0027", 0o640, 0o750, id="group-readable"),
    ],
)
def test_umask_applies_to_the_prologue_and_the_server(umask, file_mode, dir_mode, tmp_path):
    """Files the site prologue and the server create get the job's umask, not the hub's."""
    old = os.umask(0o022)  # a typical hub umask: without the script's line files are 0644
    try:
        script = render_default(
            umask=umask,
            prologue="touch from-prologue",
            command=["mkdir", "from-server"],
        )
        bash_syntax_ok(script)
        result = run_script(script, tmp_path)
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "from-prologue").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "from-server").stat().st_mode) == dir_mode


def test_umask_line_comes_before_the_prologue():
    lines = render_default(prologue="echo site").splitlines()
    assert lines.index("umask 0077") < lines.index("echo site")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("077", "0077", id="three-digits"),
        pytest.param("0027", "0027", id="leading-zero"),
        pytest.param("000", "0000", id="open"),
        pytest.param("777", "0777", id="closed"),
    ],
)
def test_check_umask_accepts_octal(value, expected):
    assert check_umask(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("77", id="two-digits"),
        pytest.param("1077", id="special-bits"),
        pytest.param("00077", id="five-digits"),
        pytest.param("078", id="not-octal"),
        pytest.param("0o77", id="python-prefix"),
        pytest.param("u=rwx", id="symbolic"),
        pytest.param("077\n", id="newline"),
        pytest.param(" 077", id="space"),
        pytest.param("077; touch pwned", id="injection"),
        pytest.param("\u0660\u0667\u0667", id="arabic-indic-digits"),
        pytest.param("", id="empty"),
        pytest.param(63, id="int"),
    ],
)
def test_check_umask_refuses(value):
    with pytest.raises(ValueError, match="three octal digits"):
        check_umask(value)


def test_environment_modules_are_quoted():
    environment = Environment("py312", modules=("gcc/13.2", "odd name;x"))
    script = render_default(environment=environment)
    bash_syntax_ok(script)
    loads = [shlex.split(line) for line in script.splitlines() if line.startswith("module ")]
    assert loads == [["module", "load", "gcc/13.2"], ["module", "load", "odd name;x"]]


# ---------------------------------------------------------------- StrictUndefined


@pytest.mark.parametrize("name", list(make_context()))
def test_default_template_needs_every_name(name):
    context = make_context()
    del context[name]
    with pytest.raises(jinja2.UndefinedError, match=name):
        render(default_template(), **context)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("#SBATCH --x={{ typo }}\n", id="name"),
        pytest.param("#SBATCH --x={{ request.cpu | directive }}\n", id="attribute"),
        pytest.param("{% if undefined_flag %}x{% endif %}\n", id="condition"),
        pytest.param("{{ missing | sh }}\n", id="filtered"),
    ],
)
def test_undefined_name_raises(template):
    with pytest.raises(jinja2.UndefinedError):
        render(template, request=make_request())


def test_admin_template_filters():
    template = "#SBATCH --partition={{ request.partition | directive }}\necho {{ word | sh }}\n"
    assert render(template, request=make_request(), word="a b") == (
        "#SBATCH --partition=debug\necho 'a b'\n"
    )


# ---------------------------------------------------------------- property: validate, then render

PROPERTY_POLICIES = {
    "restricted": Policy(
        partitions={
            "debug": PartitionPolicy(
                "debug", max_cpus=4, max_memory_mb=8192, max_runtime_minutes=60, max_gpus=0
            ),
            "gpu": PartitionPolicy("gpu", max_nodes=2, max_gpus=4),
            "big": PartitionPolicy("big", max_cpus=512, max_memory_mb=4 * 1024 * 1024),
        },
        accounts=("proj-a", "proj-b"),
        qos=("normal",),
        reservations=("course",),
        environments={"py312": Environment("py312", prefix="/opt/py312", modules=("gcc/13",))},
        profiles={
            "small": Profile("small", options={"cpus": 2, "memory": "4G", "partition": "debug"}),
            "gpu": Profile("gpu", options={"partition": "gpu", "gpus": 1, "runtime": "4:00:00"}),
            "broken": Profile("broken", options={"cpus": "many"}),
        },
        defaults={"memory": "2G", "runtime": "1:00:00"},
        max_nodes=4,
        max_cpus=64,
        max_memory_mb=256 * 1024,
        max_gpus=8,
        max_runtime_minutes=24 * 60,
    ),
    # the spawner's out-of-the-box policy: no partition limits, any account/qos/reservation
    "open": Policy(defaults={"memory": "2G", "runtime": "1:00:00"}),
}

_junk = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
)


def _field(valid, near_miss):
    """Mostly values the "restricted" policy accepts; sometimes one just outside it, or junk."""
    return st.integers(0, 9).flatmap(lambda n: near_miss if n == 8 else _junk if n == 9 else valid)


def _digits(low: int, high: int):
    return st.integers(low, high).map(lambda n: f" {n}" if n % 3 == 0 else str(n))


_FIELDS = {
    "partition": _field(st.sampled_from(["debug", "gpu", "big"]), st.just("other")),
    "account": _field(st.sampled_from(["proj-a", "proj-b"]), st.just("proj-c")),
    "qos": _field(st.just("normal"), st.just("high")),
    "reservation": _field(st.just("course"), st.just("maint")),
    "nodes": _field(st.one_of(st.integers(1, 2), _digits(1, 2)), st.integers(0, 5)),
    "cpus": _field(st.one_of(st.integers(1, 4), _digits(1, 4)), _digits(0, 600)),
    "gpus": _field(st.one_of(st.integers(0, 1), _digits(0, 1)), st.integers(0, 9)),
    "memory": _field(
        st.one_of(
            st.integers(1, 8192),
            st.from_regex(r"\A[1-8](\.[0-9]{1,2})?[Gg](i?[bB])?\Z"),
            st.from_regex(r"\A ?[0-9]{1,4}(\.[0-9])? ?[KMkm]?\Z"),
        ),
        st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,3})?[KMGTkmgt]?(i?[bB])?\Z"),
    ),
    "runtime": _field(
        st.one_of(st.integers(1, 60), st.from_regex(r"\A(0-)?0?0:[0-5]?[0-9](:[0-5][0-9])?\Z")),
        st.from_regex(r"\A([0-9]-)?[0-9]{1,2}(:[0-9]{1,2}){0,2}\Z"),
    ),
    "profile": _field(st.sampled_from(["small", "gpu"]), st.sampled_from(["broken", "none"])),
    "environment": _field(st.just("py312"), st.just("py27")),
}
user_options = st.tuples(
    st.fixed_dictionaries({}, optional=_FIELDS),
    st.integers(0, 9).flatmap(
        lambda n: (
            st.dictionaries(st.text(max_size=12), _junk, min_size=1, max_size=2)
            if n == 9
            else st.just({})
        )
    ),
).map(lambda pair: {**pair[1], **pair[0]})


def _limit(policy: Policy, request: ResourceRequest, name: str) -> float:
    partition = policy.partitions.get(request.partition) if request.partition else None
    local = getattr(partition, f"max_{name}", None) if partition else None
    overall = getattr(policy, f"max_{name}")
    return min(overall, math.inf if local is None else local)


def check_request(policy: Policy, request: ResourceRequest) -> None:
    """Everything a validated request promises."""
    assert 1 <= request.nodes <= _limit(policy, request, "nodes")
    assert 1 <= request.cpus <= _limit(policy, request, "cpus")
    assert 0 <= request.gpus <= _limit(policy, request, "gpus")
    assert 1 <= request.memory_mb <= _limit(policy, request, "memory_mb")
    assert 1 <= request.runtime_minutes <= _limit(policy, request, "runtime_minutes")
    if policy.partitions and request.partition is not None:
        assert request.partition in policy.partitions
    for name, allowed in (
        ("account", policy.accounts),
        ("qos", policy.qos),
        ("reservation", policy.reservations),
    ):
        value = getattr(request, name)
        if allowed is not None and value is not None:
            assert value in allowed
    if request.environment is not None:
        assert request.environment in policy.environments
    if request.profile is not None:
        assert request.profile in policy.profiles


@pytest.mark.parametrize("policy_name", list(PROPERTY_POLICIES))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(raw=user_options)
def test_validated_request_respects_policy_and_renders(policy_name, raw):
    policy = PROPERTY_POLICIES[policy_name]
    try:
        request = validate_options(raw, policy)
    except OptionsError as e:
        event("rejected")
        assert e.errors
        assert set(e.errors) <= {*OPTION_FIELDS, "options"}
        assert all(isinstance(message, str) and message for message in e.errors.values())
        return
    event("accepted")
    check_request(policy, request)
    assert validate_options(request.to_user_options(), policy) == request
    environment = policy.environments.get(request.environment) if request.environment else None
    script = render_default(request=request, environment=environment)
    bash_syntax_ok(script)


@given(raw=user_options)
@example(raw={"account": "proj\n"})
def test_open_policy_names_are_plain_words(raw):
    try:
        request = validate_options(raw, PROPERTY_POLICIES["open"])
    except OptionsError:
        return
    for name in ("partition", "account", "qos", "reservation"):
        value = getattr(request, name)
        assert value is None or NAME_RE.fullmatch(value), (name, value)
    script_lines = render_default(request=request).splitlines()
    block = script_lines[1 : script_lines.index("#SBATCH --export=ALL")]
    assert all(line.startswith("#SBATCH --") for line in block), block
