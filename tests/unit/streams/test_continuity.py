"""Each partitioned input record reaches the pipeline once and in order across Faust's holes
(``streams.continuity``)."""

from __future__ import annotations

from streams.continuity import commit_holes, hole_before


def test_a_record_past_the_expected_offset_names_the_hole_before_it() -> None:
    assert hole_before(1594, 1570) == (1570, 1594)


def test_the_next_record_a_duplicate_or_an_unknown_start_is_no_hole() -> None:
    assert hole_before(1570, 1570) is None
    assert hole_before(1500, 1570) is None  # delivered again: the host drops it
    assert hole_before(40, None) is None  # nothing replayed or restored there yet


def test_filling_every_hole_hands_the_pipeline_each_offset_once_in_order() -> None:
    """Replays the agent's rule on a delivery with holes: the pipeline sees a gapless run."""
    delivered = [10, 11, 15, 16, 12, 13, 20, 21]  # 12 and 13 again after a hole was filled
    expected, taken = 10, []
    for offset in delivered:
        hole = hole_before(offset, expected)
        if hole is not None:
            taken.extend(range(*hole))
            expected = hole[1]
        if offset >= expected:
            taken.append(offset)
            expected = offset + 1
    assert taken == list(range(10, 22))


def test_commit_holes_declares_only_holes_the_pipeline_holds_and_nothing_in_flight() -> None:
    committed = {"a": 1570, "b": 100, "c": 50, "d": None, "e": 300}
    acked = {"a": [1594, 1595], "b": [100, 101, 103], "c": [60], "d": [7], "e": [320]}
    covered = {"a": 1596, "b": 104, "c": 61, "d": 8, "e": 310}  # e: 310..319 not in the pipeline
    assert commit_holes(committed, acked, [("c", 55)], covered) == {"a": (1570, 1594)}
    assert commit_holes(committed, acked, [], covered) == {"a": (1570, 1594), "c": (50, 60)}
    assert commit_holes({"a": 5}, {"a": []}, [], {"a": 9}) == {}
