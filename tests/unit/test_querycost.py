"""hpcspawner.slurm.querycost: the cost model and the choice between one listing and
per-job lookups (pure: no driver, no asyncio)."""

from __future__ import annotations

import pytest

from hpcspawner.slurm.querycost import (
    BATCH,
    DEFAULT_COST,
    EACH,
    UNKNOWN_QUEUE_EACH_MAX,
    QueryCost,
    choose,
)

#: slurmctld's time per call as sdiag measured it on Slurm 22.05 (docs/topic/performance.md):
#: queued jobs -> (squeue --jobs=<10 ids>, REST GET /jobs), in ms
MEASURED_LISTING_MS = {0: (0.16, 0.34), 3_000: (5.7, 4.3), 10_000: (18.8, 15.8)}


@pytest.mark.parametrize("queued", sorted(MEASURED_LISTING_MS))
def test_the_default_listing_cost_follows_the_measurements(queued):
    low, high = sorted(MEASURED_LISTING_MS[queued])
    # within the spread of the two clients' figures, and 25 % of it
    assert low * 0.75 <= DEFAULT_COST.batch_ms(queued) <= high * 1.25


@pytest.mark.parametrize(
    ("queued", "crossover"),
    [
        pytest.param(0, 0.6, id="empty"),
        pytest.param(3_000, 23.4, id="3000-queued"),
        pytest.param(10_000, 76.6, id="10000-queued"),
    ],
)
def test_the_crossover_is_the_listing_over_one_lookup(queued, crossover):
    assert DEFAULT_COST.crossover(queued) == pytest.approx(crossover)


@pytest.mark.parametrize(
    ("ids", "queued", "expected"),
    [
        pytest.param(0, 0, EACH, id="no-ids-empty-cluster"),
        pytest.param(0, 10_000, EACH, id="no-ids-busy-cluster"),
        pytest.param(1, 0, BATCH, id="one-id-empty-cluster"),
        pytest.param(1, 10_000, EACH, id="one-id-busy-cluster"),
        pytest.param(200, 0, BATCH, id="many-ids-empty-cluster"),
        pytest.param(23, 3_000, EACH, id="below-the-crossover-at-3000"),
        pytest.param(24, 3_000, BATCH, id="above-the-crossover-at-3000"),
        pytest.param(76, 10_000, EACH, id="below-the-crossover-at-10000"),
        pytest.param(77, 10_000, BATCH, id="above-the-crossover-at-10000"),
        pytest.param(500, 10_000, BATCH, id="a-big-hub-lists"),
    ],
)
def test_choose_takes_the_cheaper_query(ids, queued, expected):
    assert choose(ids, queued) == expected


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        pytest.param(0, EACH, id="none"),
        pytest.param(1, EACH, id="one"),
        pytest.param(UNKNOWN_QUEUE_EACH_MAX, EACH, id="at-the-cap"),
        pytest.param(UNKNOWN_QUEUE_EACH_MAX + 1, BATCH, id="above-the-cap"),
    ],
)
def test_an_unknown_queue_looks_up_few_jobs_one_by_one(ids, expected):
    assert choose(ids, None) == expected


def test_the_unknown_queue_cap_is_the_crossover_of_a_busy_cluster():
    """The cap's reasoning: at most 5 ms of lookups, the crossover at about 2,550 jobs."""
    assert DEFAULT_COST.each_ms(UNKNOWN_QUEUE_EACH_MAX) == pytest.approx(5.0)
    assert DEFAULT_COST.crossover(2_550) == pytest.approx(UNKNOWN_QUEUE_EACH_MAX, abs=0.1)


def test_a_tie_goes_to_the_one_listing():
    cost = QueryCost(single_ms=1.0, load_ms=2.0, per_record_ms=0.0)
    assert choose(1, 0, cost) == EACH
    assert choose(2, 0, cost) == BATCH


def test_other_costs_and_caps_are_taken():
    assert choose(50, 0, QueryCost(single_ms=0.001)) == EACH
    assert choose(5, None, unknown_each_max=4) == BATCH


@pytest.mark.parametrize(
    ("ids", "queued"),
    [pytest.param(-1, 0, id="ids"), pytest.param(1, -1, id="queued")],
)
def test_negative_counts_are_refused(ids, queued):
    with pytest.raises(ValueError, match="not negative"):
        choose(ids, queued)
