"""Slurm's errors: a command that failed, timed out or printed too much (hub-free).

:class:`SlurmError` carries the argv, return code and stderr an admin needs to
reproduce a failure, never the environment. :func:`controller_unreachable` and
:func:`submission_uncertain` read what Slurm said; what the hub makes of it
(the user's message, the HTTP status) is decided outside this package, in
:mod:`hpcspawner.spawner.errors`.
"""

from __future__ import annotations


class SlurmError(Exception):
    """A Slurm command failed (non-zero exit) or could not run.

    Carries what an admin needs to reproduce it; never the environment.
    """

    def __init__(self, argv, returncode, stderr="", stdout=""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = (stderr or "").strip()
        self.stdout = (stdout or "").strip()
        super().__init__(
            f"{' '.join(self.argv)} exited with {returncode}: {self.stderr or '(no stderr)'}"
        )

    @property
    def slurm_message(self) -> str:
        """Slurm's own words, without the ``sbatch: error:`` prefixes."""
        lines = []
        for line in self.stderr.splitlines():
            line = line.strip()
            for prefix in ("sbatch: error: ", "squeue: error: ", "scancel: error: ", "error: "):
                if line.startswith(prefix):
                    line = line[len(prefix) :]
            if line:
                lines.append(line)
        return "; ".join(lines) or f"exit code {self.returncode}"


class SlurmTimeout(SlurmError):
    """A Slurm command did not finish within its timeout (it was killed)."""

    def __init__(self, argv, timeout):
        self.timeout = timeout
        super().__init__(argv, None, f"no answer within {timeout:g} s")


class OutputTooLarge(SlurmError):
    """A command printed more than its cap; it was stopped and killed (its whole group)."""

    def __init__(self, argv, max_output, stderr=""):
        self.max_output = max_output
        super().__init__(
            argv,
            None,
            f"printed more than {max_output} bytes (stdout and stderr together); "
            f"stopped and killed. {stderr[-2000:]}",
        )


class ConnectionFailed(SlurmError):
    """The way to Slurm could not be opened (an SSH login node refused, failed its
    host-key check or did not answer): the command never started.

    Counts as "controller unreachable" (unknown, never gone); a submission that
    failed so certainly did not happen.
    """


class ConnectTimeout(ConnectionFailed, SlurmTimeout):
    """No connection within the connect timeout: a timeout, but nothing was started
    (so, unlike a command's timeout, a submission is not uncertain)."""

    def __init__(self, argv, timeout, message):
        self.timeout = timeout
        SlurmError.__init__(self, argv, None, message)


class ConnectionLost(SlurmError):
    """The way to Slurm broke while a command ran (an SSH connection dropped).

    The command may have run to its end on the far side: like a timeout, a
    submission is then uncertain, and a status is unknown.
    """


#: Slurm's messages when the controller cannot be reached.
CONTROLLER_UNREACHABLE = (
    "Unable to contact slurm controller",
    "Socket timed out on send/recv operation",
    "Zero Bytes were transmitted or received",
)


#: Of those, the ones after which a request may still have reached the controller
#: (it was sent; the answer was lost). "connect failure" means nothing was sent.
ANSWER_LOST = (
    "Socket timed out on send/recv operation",
    "Zero Bytes were transmitted or received",
)


def controller_unreachable(error: SlurmError) -> bool:
    """True when Slurm could not be asked (timeout, no connection, controller down):
    the answer is unknown, not a refusal."""
    if isinstance(error, SlurmTimeout | ConnectionFailed | ConnectionLost):
        return True
    return any(text in error.stderr for text in CONTROLLER_UNREACHABLE)


def submission_uncertain(error: SlurmError) -> bool:
    """True when a failed request may still take effect: a hung controller can
    process it from its socket backlog after the client gave up."""
    if isinstance(error, ConnectionFailed):
        return False  # the command never started
    if isinstance(error, SlurmTimeout | ConnectionLost):
        return True
    return any(text in error.stderr for text in ANSWER_LOST)


#: What :func:`failure_kind` calls a failure (a closed set: the hub's metrics label errors so).
FAILURE_KINDS = (
    "timeout",
    "unreachable",
    "connection-lost",
    "output-too-large",
    "failed",
    "unparseable",
    "other",
)


def failure_kind(error: BaseException) -> str:
    """A failed request to Slurm in one word of :data:`FAILURE_KINDS`.

    ``unreachable``: the way to Slurm could not be opened or the controller did not
    answer (nothing happened); ``timeout``: no answer in time (something may have
    happened); ``connection-lost``: the connection broke while a command ran;
    ``output-too-large``: a command printed more than its cap; ``failed``: Slurm (or the
    command) answered with an error (a non-zero exit, an HTTP error, a rejected job, a
    command that could not start); ``unparseable``: an answer the driver did not
    understand, or a value it refused to send; ``other``: anything else (a bug).
    """
    if isinstance(error, ConnectionFailed):  # ConnectTimeout too: nothing was started
        return "unreachable"
    if isinstance(error, SlurmTimeout):
        return "timeout"
    if isinstance(error, ConnectionLost):
        return "connection-lost"
    if isinstance(error, OutputTooLarge):
        return "output-too-large"
    if isinstance(error, SlurmError):
        return "unreachable" if controller_unreachable(error) else "failed"
    if isinstance(error, ValueError):  # ParseError, SqueueParseError, a refused argument
        return "unparseable"
    return "other"
