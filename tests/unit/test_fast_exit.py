"""hpcspawner.job.launcher's fast exit: which servers it applies to, and that a script
run through it behaves as when run directly (argv, paths, exit code, atexit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hpcspawner.job.launcher import PYTHON_FAST_EXIT, fast_exit_argv, python_interpreter

# ---------------------------------------------------------------- python_interpreter


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        pytest.param(b"#!/opt/venv/bin/python3\n", ["/opt/venv/bin/python3"], id="venv-python"),
        pytest.param(b"#!/usr/bin/python3.11\nimport x", ["/usr/bin/python3.11"], id="versioned"),
        pytest.param(b"#! /usr/bin/python\n", ["/usr/bin/python"], id="space-after-bang"),
        pytest.param(b"#!/usr/bin/env python3\n", ["/usr/bin/env", "python3"], id="env"),
        pytest.param(b"#!/usr/bin/python3 -E\n", None, id="options-left-alone"),
        pytest.param(b"#!/usr/bin/env -S python3 -E\n", None, id="env-options"),
        pytest.param(b"#!/bin/sh\n'''exec' python \"$0\"\n", None, id="pip-long-path-sh"),
        pytest.param(b"#!/bin/bash\n", None, id="shell"),
        pytest.param(b"#!/usr/bin/env bash\n", None, id="env-shell"),
        pytest.param(b"\x7fELF\x02\x01\x01", None, id="binary"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"#!\n", None, id="bang-only"),
        pytest.param(b"#!/usr/bin/pyth\xffon\n", None, id="not-utf8"),
    ],
)
def test_python_interpreter(first_line, expected):
    assert python_interpreter(first_line) == expected


# ---------------------------------------------------------------- fast_exit_argv


def _script(directory, name, text, mode=0o755):
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_fast_exit_argv_wraps_a_python_script_found_on_path(tmp_path):
    script = _script(tmp_path, "jupyterhub-singleuser", f"#!{sys.executable}\nprint(1)\n")
    argv = fast_exit_argv(["jupyterhub-singleuser", "--debug"], str(tmp_path))
    assert argv == [sys.executable, "-c", PYTHON_FAST_EXIT, str(script), "--debug"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("#!/bin/sh\nexec sleep 1\n", id="shell-script"),
        pytest.param("#!/usr/bin/python3 -I\nprint(1)\n", id="python-with-options"),
    ],
)
def test_fast_exit_argv_leaves_other_programs_alone(tmp_path, text):
    _script(tmp_path, "server", text)
    assert fast_exit_argv(["server", "a"], str(tmp_path)) == ["server", "a"]


def test_fast_exit_argv_leaves_unfound_and_unreadable_commands_alone(tmp_path):
    assert fast_exit_argv(["no-such-server"], str(tmp_path)) == ["no-such-server"]
    # a directory is not a program: which() skips it
    (tmp_path / "adir").mkdir()
    assert fast_exit_argv(["adir"], str(tmp_path)) == ["adir"]


def test_fast_exit_argv_with_an_absolute_path(tmp_path):
    script = _script(tmp_path, "srv", f"#!{sys.executable}\n")
    assert fast_exit_argv([str(script)], "/nonexistent")[:3] == [
        sys.executable,
        "-c",
        PYTHON_FAST_EXIT,
    ]


# ---------------------------------------------------------------- the bootstrap itself

PROBE = textwrap.dedent(
    """\
    import atexit, json, os, sys
    atexit.register(lambda: print("atexit ran", flush=True))
    print(json.dumps({
        "name": __name__,
        "file": __file__,
        "argv": sys.argv,
        "path0": sys.path[0],
        "cwd_on_path": "" in sys.path or os.getcwd() in sys.path,
    }), flush=True)
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
    """
)


def _run(argv, cwd, **env):
    return subprocess.run(
        argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def probe(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    return _script(bindir, "probe", f"#!{sys.executable}\n{PROBE}")


@pytest.mark.parametrize("code", [0, 3])
def test_bootstrap_runs_the_script_as_python_would(probe, tmp_path, code):
    home = tmp_path / "home"
    home.mkdir()
    direct = _run([str(probe), "x", "--y=1"], home, PROBE_EXIT=str(code))
    fast = _run(fast_exit_argv([str(probe), "x", "--y=1"], None), home, PROBE_EXIT=str(code))
    assert direct.returncode == fast.returncode == code
    assert fast.stdout == direct.stdout
    assert '"name": "__main__"' in fast.stdout
    assert f'"path0": "{probe.parent}"' in fast.stdout
    # not the working directory (the user's home): a stray module there must not shadow imports
    assert '"cwd_on_path": false' in fast.stdout
    assert fast.stdout.endswith("atexit ran\n")


def test_bootstrap_reports_an_exception_like_python(probe):
    probe.write_text(f"#!{sys.executable}\nraise RuntimeError('boom')\n")
    fast = _run(fast_exit_argv([str(probe)], None), probe.parent)
    assert fast.returncode == 1
    assert "RuntimeError: boom" in fast.stderr


def test_bootstrap_skips_finalizers_at_exit_but_not_atexit(probe):
    """What it changes: objects still alive when the program ends are not finalized
    (Python does not promise that they are; os._exit() skips them too). The
    program's atexit handlers still run, and its output is flushed."""
    probe.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """\
            import atexit
            class Noisy:
                def __init__(self, what):
                    self.what = what
                def __del__(self):
                    print(self.what, "finalized", flush=True)
            cycle = Noisy("cycle")
            cycle.self = cycle
            plain = Noisy("plain")
            atexit.register(lambda: print("atexit ran", flush=True))
            """
        )
    )
    direct = _run([str(probe)], probe.parent)
    assert set(direct.stdout.splitlines()) == {"atexit ran", "plain finalized", "cycle finalized"}
    fast = _run(fast_exit_argv([str(probe)], None), probe.parent)
    assert fast.returncode == 0
    assert fast.stdout == "atexit ran\n"
