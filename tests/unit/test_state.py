"""The record a server keeps in the hub's database (hpcspawner.spawner.state): pure data."""

from __future__ import annotations

import pytest

from hpcspawner.spawner import state

NONE = {"job_id": "", "job_host": "", "spawn_id": "", "token_sha256": ""}
END = {"job_id": "5", "reason": "the job was cancelled"}


@pytest.mark.parametrize(
    ("fields", "last_end", "stored"),
    [
        pytest.param(NONE, None, {}, id="no-server"),
        pytest.param(
            {**NONE, "spawn_id": "abc"},
            None,
            {"hpcspawner_version": 1, "spawn_id": "abc"},
            id="submitting",
        ),
        pytest.param(
            {"job_id": "7", "job_host": "", "spawn_id": "abc", "token_sha256": "ff"},
            None,
            {
                "hpcspawner_version": 1,
                "job_id": "7",
                "job_host": "",
                "spawn_id": "abc",
                "token_sha256": "ff",
            },
            id="starting",
        ),
        pytest.param(
            {**NONE, "job_id": "7", "job_host": "c1", "spawn_id": "abc"},
            END,
            {
                "hpcspawner_version": 1,
                "job_id": "7",
                "job_host": "c1",
                "spawn_id": "abc",
                "last_end": END,
            },
            id="running-no-digest-and-an-earlier-end",
        ),
        pytest.param(NONE, END, {"last_end": END}, id="only-why-the-last-one-ended"),
    ],
)
def test_dump_and_load_again(fields, last_end, stored):
    assert state.dump(fields, last_end) == stored
    assert state.load(stored) == (fields, last_end)


@pytest.mark.parametrize(
    ("stored", "fields", "last_end"),
    [
        pytest.param({"job_id": 42, "job_host": None}, {**NONE, "job_id": "42"}, None, id="types"),
        pytest.param({"last_end": "x"}, NONE, None, id="end-no-dict"),
        pytest.param({"last_end": {"job_id": 5}}, NONE, None, id="end-without-reason"),
        pytest.param(
            {"last_end": {"reason": 3}}, NONE, {"job_id": "", "reason": "3"}, id="end-as-text"
        ),
    ],
)
def test_load_takes_what_an_old_or_edited_row_holds(stored, fields, last_end):
    assert state.load(stored) == (fields, last_end)
