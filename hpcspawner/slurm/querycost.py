"""What a job status query costs slurmctld, and which kind of query to make (pure, no I/O).

A driver can ask slurmctld about N jobs in two ways:

- **batch**: one listing (``squeue --jobs=a,b,...``, slurmrestd's ``GET .../jobs``). slurmctld
  answers it with REQUEST_JOB_INFO, which packs *every* job record of the cluster and lets
  the client pick: its cost grows with the cluster's queue, not with N.
- **each**: one lookup per job (``squeue --jobs=ID``, ``GET .../job/ID``):
  REQUEST_JOB_INFO_SINGLE, about the same small cost whatever the queue.

Measured on Slurm 22.05 with slurmctld's own statistics (``sdiag``; the table is in
docs/topic/performance.md, "Scheduler cost on a busy cluster"): a listing costs about
0.15 ms + 1.9 µs per job record in the cluster (18.8 ms at 10,000 queued jobs), a
single lookup 0.1 to 0.3 ms. Per-job lookups are therefore cheaper for slurmctld below

    N* = batch_ms(Q) / single_ms

jobs, Q being the cluster's queue: about 23 at 3,000 queued jobs and 77 at 10,000 with
:data:`DEFAULT_COST`; on an empty cluster the listing always wins. :func:`choose` applies
this; the drivers supply N and their estimate of Q (``sdiag``, ``GET .../diag``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: One listing for all the jobs asked about.
BATCH = "batch"
#: One lookup per job.
EACH = "each"


@dataclass(frozen=True)
class QueryCost:
    """slurmctld's time for each kind of query, in milliseconds."""

    #: one REQUEST_JOB_INFO_SINGLE (a lookup of one job)
    single_ms: float = 0.25
    #: the fixed part of one REQUEST_JOB_INFO (a listing)
    load_ms: float = 0.15
    #: what each job record in the cluster adds to a listing
    per_record_ms: float = 0.0019

    def batch_ms(self, queued: int) -> float:
        """One listing while ``queued`` jobs are in the cluster."""
        return self.load_ms + self.per_record_ms * queued

    def each_ms(self, ids: int) -> float:
        """``ids`` lookups of one job each."""
        return self.single_ms * ids

    def crossover(self, queued: int) -> float:
        """N*: below this many jobs, per-job lookups cost slurmctld less than a listing."""
        return self.batch_ms(queued) / self.single_ms


#: The defaults, from the measurements above.
DEFAULT_COST = QueryCost()

#: With the queue's size unknown (``sdiag`` refused, not read yet): per-job lookups for up to
#: this many jobs, a listing above. 20 lookups cost slurmctld at most 5 ms whatever the queue
#: (an empty cluster's listing costs 0.15 ms: the worst case wastes about 5 ms per poll), and
#: 20 is the crossover at about 2,550 queued jobs, so a busier cluster is spared a listing.
UNKNOWN_QUEUE_EACH_MAX = 20


def choose(
    ids: int,
    queued: int | None,
    cost: QueryCost = DEFAULT_COST,
    unknown_each_max: int = UNKNOWN_QUEUE_EACH_MAX,
) -> str:
    """:data:`EACH` or :data:`BATCH`: the cheaper query for slurmctld about ``ids`` jobs while
    ``queued`` jobs are in the cluster (None: not known).

    Per-job lookups only when they cost strictly less (a tie goes to the one listing, one
    round trip). No ids cost nothing: :data:`EACH` (no lookup at all). With the queue
    unknown, per-job lookups for up to ``unknown_each_max`` ids.
    """
    if ids < 0:
        raise ValueError(f"ids = {ids}: a number of jobs is not negative")
    if queued is None:
        return EACH if ids <= unknown_each_max else BATCH
    if queued < 0:
        raise ValueError(f"queued = {queued}: a number of jobs is not negative")
    return EACH if cost.each_ms(ids) < cost.batch_ms(queued) else BATCH
