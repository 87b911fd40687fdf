"""What each kind of failure means to the spawner: unknown or a refusal; sent or not.

``controller_unreachable``: Slurm could not be asked (the answer is unknown: no server is
stopped, a spawn fails as "scheduler unavailable"). ``submission_uncertain``: an ``sbatch``
may have reached the controller although its answer was lost, so the spawner looks for
the job by its comment instead of submitting again.
"""

from __future__ import annotations

import pytest

from hpcspawner.slurm import errors

ARGV = ["sbatch", "--parsable"]
REFUSED = "sbatch: error: invalid partition specified: x"
DOWN = "Unable to contact slurm controller (connect failure)"
HUNG = "Socket timed out on send/recv operation"

#: id -> (the error, unreachable, uncertain)
MEANINGS = {
    "slurm-refused": (errors.SlurmError(ARGV, 1, REFUSED), False, False),
    "controller-down": (errors.SlurmError(ARGV, 1, DOWN), True, False),
    "controller-hung": (errors.SlurmError(ARGV, 1, HUNG), True, True),
    "command-timeout": (errors.SlurmTimeout(ARGV, 30), True, True),
    "no-connection": (errors.ConnectionFailed(ARGV, None, "login1:22: refused"), True, False),
    "connect-timeout": (errors.ConnectTimeout(ARGV, 10, "login1:22: no answer"), True, False),
    "connection-lost": (errors.ConnectionLost(ARGV, None, "login1:22: broke"), True, True),
    "output-too-large": (errors.OutputTooLarge(ARGV, 100), False, False),
}


@pytest.mark.parametrize("error, unreachable, uncertain", MEANINGS.values(), ids=MEANINGS.keys())
def test_what_a_failure_means(error, unreachable, uncertain):
    assert errors.controller_unreachable(error) is unreachable
    assert errors.submission_uncertain(error) is uncertain


def test_a_connect_timeout_is_a_timeout_that_started_nothing():
    error = errors.ConnectTimeout(ARGV, 10, "no SSH connection to login1:22 within 10 s")
    assert isinstance(error, errors.SlurmTimeout) and isinstance(error, errors.ConnectionFailed)
    assert error.timeout == 10 and "login1:22" in str(error)


#: id (of MEANINGS) -> what the hub's metrics call the failure
KINDS = {
    "slurm-refused": "failed",
    "controller-down": "unreachable",
    "controller-hung": "unreachable",
    "command-timeout": "timeout",
    "no-connection": "unreachable",
    "connect-timeout": "unreachable",
    "connection-lost": "connection-lost",
    "output-too-large": "output-too-large",
}


@pytest.mark.parametrize(("case", "kind"), KINDS.items(), ids=KINDS.keys())
def test_what_a_failure_is_called(case, kind):
    assert errors.failure_kind(MEANINGS[case][0]) == kind
    assert kind in errors.FAILURE_KINDS


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(errors.SlurmError(["sbatch"], None, "not found"), "failed", id="cannot-run"),
        pytest.param(ValueError("squeue printed something else"), "unparseable", id="parse"),
        pytest.param(RuntimeError("a bug"), "other", id="bug"),
    ],
)
def test_what_other_failures_are_called(error, kind):
    assert errors.failure_kind(error) == kind


def test_every_meaning_has_a_name():
    assert KINDS.keys() == MEANINGS.keys()
