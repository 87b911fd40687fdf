"""hpcspawner.slurm.shellquote: a remote POSIX shell sees exactly the argv it was given.

Each case runs the quoted command line through a real shell (``/bin/sh -c`` as sshd does
with the login shell, and bash when present) with ``printf '%s\\0'`` as the command, and
compares the words it received with the argv.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcspawner.slurm.shellquote import quote_argv, quote_word

SHELLS = [path for path in ("/bin/sh", shutil.which("bash")) if path]

#: words as printf receives them: a marker first (printf repeats its format per word, and
#: prints once with no words), then the words, each ended by NUL
PRINTF = ["printf", "%s\\0", "<start>"]


def words_seen_by(shell: str, argv: list[str]) -> list[str]:
    result = subprocess.run(
        [shell, "-c", quote_argv(PRINTF + argv)],
        capture_output=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "IFS": "x"},
    )
    assert result.returncode == 0, result.stderr
    seen = result.stdout.decode("utf-8").split("\0")
    assert seen[0] == "<start>" and seen[-1] == "", seen
    return seen[1:-1]


HOSTILE = [
    "",
    " ",
    "two words",
    "tab\there",
    "new\nline",
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    "it's",
    "$(id)",
    "`id`",
    "${HOME}",
    "$HOME",
    "$IFS",
    "*",
    "?",
    "[a]",
    "~",
    "~root",
    "{a,b}",
    "a;b",
    "a && b",
    "a | b",
    "> /tmp/x",
    "< /etc/passwd",
    "# comment",
    "!",
    "!!",
    "-n",
    "--",
    "=",
    "%s",
    "\x1b[2J",
    "\u202eevil",
    "päth/ümlaut",
    "\x7f\x01",
    "a" * 5000,
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("word", HOSTILE, ids=lambda word: repr(word)[:30])
def test_a_hostile_word_arrives_as_one_word(shell, word):
    assert words_seen_by(shell, [word, "after"]) == [word, "after"]


@pytest.mark.parametrize("shell", SHELLS)
def test_all_of_them_in_one_command_line(shell):
    assert words_seen_by(shell, HOSTILE) == HOSTILE


@pytest.mark.parametrize("shell", SHELLS)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))))
def test_any_argv_arrives_exactly(shell, argv):
    assert words_seen_by(shell, argv) == argv


def test_the_command_word_is_quoted_too():
    """A hostile command name is looked up as a name, never run as shell code."""
    result = subprocess.run(
        ["/bin/sh", "-c", quote_argv(["true; echo owned", "x"])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 127
    assert "owned" not in result.stdout


@pytest.mark.parametrize(
    "argv, error",
    [
        pytest.param([], ValueError, id="empty"),
        pytest.param("squeue --all", TypeError, id="a-string"),
        pytest.param(["a\0b"], ValueError, id="nul"),
        pytest.param(["\udc80"], ValueError, id="lone-surrogate"),
        pytest.param(["squeue", 5], TypeError, id="not-text"),
        pytest.param(["squeue", b"x"], TypeError, id="bytes"),
    ],
)
def test_what_a_command_line_cannot_carry_is_refused(argv, error):
    with pytest.raises(error):
        quote_argv(argv)


def test_a_word_is_single_quoted():
    assert quote_word("it's") == "'it'\"'\"'s'"
    assert quote_argv(["squeue", "--jobs=1,2"]) == "'squeue' '--jobs=1,2'"
