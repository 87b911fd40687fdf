"""What a server keeps in the hub's database (``Spawner.get_state``), as plain data (pure).

The record is small and versioned (``hpcspawner_version``): the job's id and node, the
start's random id (in the job's comment: it finds a job whose ``sbatch`` answer was
lost), the SHA-256 of the server's token (a restarted hub recognises the job's port
report) and why the last server ended underneath the user (kept across
``clear_state``, shown at the next start). While ``sbatch`` runs there is no job id
yet: the start's id alone is kept, so that a hub that dies then looks for the job.
"""

from __future__ import annotations

#: Version of the state this spawner stores in the hub's database.
STATE_VERSION = 1

#: The spawner's traits kept in the state, all strings ("" when unset).
FIELDS = ("job_id", "job_host", "spawn_id", "token_sha256")


def dump(fields: dict[str, str], last_end: dict | None) -> dict:
    """The state to store for ``fields`` (:data:`FIELDS`) and ``last_end``."""
    state: dict = {}
    if fields["job_id"]:
        state["hpcspawner_version"] = STATE_VERSION
        for name in ("job_id", "job_host", "spawn_id"):
            state[name] = fields[name]
        if fields["token_sha256"]:
            state["token_sha256"] = fields["token_sha256"]
    elif fields["spawn_id"]:
        # submitting: a hub that dies before sbatch returns knows what to look for
        state["hpcspawner_version"] = STATE_VERSION
        state["spawn_id"] = fields["spawn_id"]
    if last_end:
        state["last_end"] = dict(last_end)
    return state


def load(state: dict) -> tuple[dict[str, str], dict | None]:
    """:data:`FIELDS` (as strings) and ``last_end`` (``{"job_id", "reason"}`` or None)
    from a stored state, whatever an older version or a hand-edited row holds."""
    fields = {name: str(state.get(name, "") or "") for name in FIELDS}
    last_end = state.get("last_end")
    if not (isinstance(last_end, dict) and last_end.get("reason")):
        return fields, None
    return fields, {"job_id": str(last_end.get("job_id", "")), "reason": str(last_end["reason"])}


__all__ = ["FIELDS", "STATE_VERSION", "dump", "load"]
