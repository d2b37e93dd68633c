"""Every partitioned input record reaches the pipeline once, in offset order, across rebalances.

Around a rebalance Faust's stream can hand an agent a newly assigned partition's records with a
hole at the head (records fetched between the assignment and its seek to the committed offsets
are dropped; faust-streaming issue 318). The pipeline would miss those records; and since Faust
commits only a gapless run of acknowledged offsets, the group's commits for that partition would
stop for good. Seeking Faust back does not help: the records it already buffered come first,
and its gap bookkeeping then counts offsets twice and stalls the commits again. So:

- :func:`hole_before`: a record past the next offset the pipeline expects
  (``PipelineHost.next_offsets``) means a hole. The input agent reads the hole straight from
  the broker (``streams.recovery.read_partition``), handles those records as it handles its own,
  then tells Faust that those offsets will not come (``Consumer._add_gap``, Faust's mechanism for
  offsets that are never delivered, e.g. after compaction), so its commits go on.
- :func:`commit_holes`: a hole Faust's commits wait on that the pipeline already holds (below the
  next offset it expects, e.g. covered by a restored state checkpoint) is declared the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

TP = TypeVar("TP")


def hole_before(offset: int, expected: int | None) -> tuple[int, int] | None:
    """The offsets ``[first, end)`` missing before the record at ``offset`` when the pipeline
    expects ``expected`` next (None: unknown, nothing replayed or restored there yet); None when
    the record is the next one or a duplicate (the host drops those)."""
    if expected is None or offset <= expected:
        return None
    return expected, offset


def commit_holes(committed: Mapping[TP, int | None], acked: Mapping[TP, Iterable[int]],
                 in_flight: Iterable[tuple[TP, int]], covered: Mapping[TP, int]
                 ) -> dict[TP, tuple[int, int]]:
    """Partitions whose commits are stuck behind a hole the pipeline does not need.

    ``committed``: Faust's committed offset per partition (the next to read); ``acked``: the
    offsets acknowledged since; ``in_flight``: ``(tp, offset)`` handed to an agent, not yet
    acknowledged; ``covered``: the next offset the pipeline expects per partition. A hole is
    stuck when the lowest acknowledged offset is above the committed one by more than one
    (Faust's rule for "cannot commit yet") and none of it is in flight; it is returned as
    ``[committed, lowest acked)`` only when the pipeline has every record of it."""
    lowest_in_flight: dict[TP, int] = {}
    for tp, offset in in_flight:
        lowest_in_flight[tp] = min(offset, lowest_in_flight.get(tp, offset))
    holes: dict[TP, tuple[int, int]] = {}
    for tp, offsets in acked.items():
        offsets = list(offsets)
        start = committed.get(tp)
        if not offsets or start is None:
            continue
        lowest = min(offsets)
        if lowest - start <= 1 or lowest_in_flight.get(tp, lowest) < lowest:
            continue
        if covered.get(tp, -1) >= lowest:
            holes[tp] = (start, lowest)
    return holes
