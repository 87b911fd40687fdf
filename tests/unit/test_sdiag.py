"""hpcspawner.slurm.records.parse_sdiag_queue: the queue's size from ``sdiag`` (pure).

``sdiag_idle.txt`` is the real output of Slurm 22.05's ``sdiag`` on the test cluster;
``sdiag_busy_synthetic.txt`` is the same with the counts of a 10,000-job queue
(see tests/unit/data/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcspawner.slurm.records import ParseError, parse_sdiag_queue

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("name", "queued"),
    [
        pytest.param("sdiag_idle.txt", 0, id="idle"),
        pytest.param("sdiag_busy_synthetic.txt", 10_006 + 6, id="busy"),
    ],
)
def test_the_queue_is_pending_plus_running(name, queued):
    assert parse_sdiag_queue((DATA / name).read_text()) == queued


def test_other_counts_are_not_the_queue():
    """Jobs submitted/started/completed/canceled/failed count since the last reset."""
    text = (DATA / "sdiag_idle.txt").read_text()
    assert "Jobs canceled:" in text and "Jobs submitted:" in text
    assert parse_sdiag_queue(text) == 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("", "no 'Jobs pending:'", id="empty"),
        pytest.param("Jobs pending:   3\n", "no 'Jobs running:'", id="no-running"),
        pytest.param("Jobs pending: 3\nJobs running: 1\nJobs pending: 4\n", "twice", id="twice"),
        pytest.param("Jobs pending:   many\nJobs running:   1\n", "no 'Jobs pending:'", id="word"),
        pytest.param(
            "Jobs pending:   -3\nJobs running:   1\n", "no 'Jobs pending:'", id="negative"
        ),
    ],
)
def test_what_is_not_understood_is_a_parse_error(text, words):
    with pytest.raises(ParseError, match=words):
        parse_sdiag_queue(text)
