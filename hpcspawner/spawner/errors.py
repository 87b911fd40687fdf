"""The spawn failure a user sees: JupyterHub's ``SpawnException`` (6) or an HTTP error (5).

Slurm's own errors (:class:`~hpcspawner.slurm.errors.SlurmError` and its kin) live
in the hub-free :mod:`hpcspawner.slurm.errors`; this module is where the hub's
side of a failure is built.
"""

from __future__ import annotations

from tornado import web

try:  # JupyterHub >= 6
    from jupyterhub.spawner import SpawnException as _SpawnBase
except ImportError:  # JupyterHub 5
    _SpawnBase = None


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
            #: the admin's detail (the log's words), as in the JupyterHub 5 flavour
            self.detail = log_message or message
            self.headers: dict[str, str] = {}  # what JupyterHub's form handler copies

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
            # JupyterHub 5.4's spawn form handler copies an HTTPError's headers onto its
            # answer (tornado's HTTPError has none): without them a refused form is a 500
            self.headers: dict[str, str] = {}

        def __str__(self):
            return f"{self.status_code} SpawnFailure(reason={self.reason}): {self.detail}"


def scheduler_unavailable(log_message: str) -> SpawnFailure:
    """Slurm could not be asked (the controller, the login node or slurmrestd is away):
    the user is told to try again; the log says what could not be reached."""
    return SpawnFailure(
        "The scheduler is not answering; please try again in a few minutes.",
        reason="scheduler-unavailable",
        log_message=log_message,
        status_code=503,
    )
