"""What each kind of failure means to the spawner: unknown or a refusal; sent or not.

``controller_unreachable``: Slurm could not be asked (the answer is unknown: no server is
stopped, a spawn fails as "scheduler unavailable"). ``submission_uncertain``: an ``sbatch``
may have reached the controller although its answer was lost, so the spawner looks for
the job by its comment instead of submitting again.
"""

from __future__ import annotations

import pytest

from hpcspawner.slurm.errors import (
    ConnectionFailed,
    ConnectionLost,
    ConnectTimeout,
    OutputTooLarge,
    SlurmError,
    SlurmTimeout,
    controller_unreachable,
    submission_uncertain,
)

ARGV = ["sbatch", "--parsable"]


@pytest.mark.parametrize(
    "error, unreachable, uncertain",
    [
        pytest.param(
            SlurmError(ARGV, 1, "sbatch: error: invalid partition specified: x"),
            False,
            False,
            id="slurm-refused",
        ),
        pytest.param(
            SlurmError(ARGV, 1, "Unable to contact slurm controller (connect failure)"),
            True,
            False,
            id="controller-down",
        ),
        pytest.param(
            SlurmError(ARGV, 1, "Socket timed out on send/recv operation"),
            True,
            True,
            id="controller-hung",
        ),
        pytest.param(SlurmTimeout(ARGV, 30), True, True, id="command-timeout"),
        pytest.param(
            ConnectionFailed(ARGV, None, "login1:22: connection refused"),
            True,
            False,
            id="no-connection",
        ),
        pytest.param(
            ConnectTimeout(ARGV, 10, "no SSH connection to login1:22 within 10 s"),
            True,
            False,
            id="connect-timeout",
        ),
        pytest.param(
            ConnectionLost(ARGV, None, "the SSH connection to login1:22 broke"),
            True,
            True,
            id="connection-lost",
        ),
        pytest.param(OutputTooLarge(ARGV, 100), False, False, id="output-too-large"),
    ],
)
def test_what_a_failure_means(error, unreachable, uncertain):
    assert controller_unreachable(error) is unreachable
    assert submission_uncertain(error) is uncertain


def test_a_connect_timeout_is_a_timeout_that_started_nothing():
    error = ConnectTimeout(ARGV, 10, "no SSH connection to login1:22 within 10 s")
    assert isinstance(error, SlurmTimeout) and isinstance(error, ConnectionFailed)
    assert error.timeout == 10 and "login1:22" in str(error)
