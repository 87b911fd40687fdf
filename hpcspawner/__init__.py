"""hpcspawner: JupyterHub on Slurm clusters."""

from ._version import __version__

__all__ = ["SlurmSpawner", "__version__"]


def __getattr__(name):
    # importing the spawner pulls in JupyterHub; the job-side launcher must not need it
    if name == "SlurmSpawner":
        from .spawner import SlurmSpawner

        return SlurmSpawner
    raise AttributeError(name)
