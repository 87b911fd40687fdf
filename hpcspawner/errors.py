"""Exception types shared by the scheduler drivers and the spawner."""

from __future__ import annotations

from tornado import web

try:  # JupyterHub >= 6
    from jupyterhub.spawner import SpawnException as _SpawnBase
except ImportError:  # JupyterHub 5
    _SpawnBase = None


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
    return isinstance(error, SlurmTimeout) or any(
        text in error.stderr for text in CONTROLLER_UNREACHABLE
    )


def submission_uncertain(error: SlurmError) -> bool:
    """True when a failed request may still take effect: a hung controller can
    process it from its socket backlog after the client gave up."""
    return isinstance(error, SlurmTimeout) or any(text in error.stderr for text in ANSWER_LOST)


if _SpawnBase is not None:

    class SpawnFailure(_SpawnBase):
        """A spawn failed for a reason the user can act on.

        ``message`` is shown to the user; ``reason`` is a short fixed label
        (usable in metrics); ``log_message`` may carry detail for the log.
        """

        def __init__(self, message, *, reason, log_message="", status_code=400):
            super().__init__(
                message, reason=reason, log_message=log_message, status_code=status_code
            )
            self.jupyterhub_message = message

else:  # pragma: no cover - exercised by the JupyterHub 5 CI run

    class SpawnFailure(web.HTTPError):
        """A spawn failed for a reason the user can act on (JupyterHub 5 flavour)."""

        def __init__(self, message, *, reason, log_message="", status_code=400):
            # JupyterHub 5's REST API answers with the HTTPError's log message: make that
            # the user's message, and keep the admin's detail for str() (what the hub logs)
            super().__init__(status_code, "%s", message, reason=reason)
            self.message = message
            self.jupyterhub_message = message
            self.detail = log_message or message

        def __str__(self):
            return f"{self.status_code} SpawnFailure(reason={self.reason}): {self.detail}"
