"""Which checkpoint sets on ``risk.state`` a recovering worker may restore (``streams.state_store``):
sets of several writers taken at the same instant combine, so a takeover restores too."""

from __future__ import annotations

import orjson

from streams.state_store import StateRecords, candidates, record_key

APP = "app"


def _write(records: StateRecords, writer: str, partitions: list[int], as_of: int, slot: int,
           written_ms: int, leader: bool) -> None:
    keys = {key: record_key(APP, writer, key, slot) for key in ["market", *(f"p{p}" for p in partitions)]}
    for key, record in keys.items():
        records[record] = (as_of, f"{writer}/{key}@{as_of}".encode(), written_ms)
    index = {"as_of_ms": as_of, "partitions": partitions, "leader": leader, "keys": keys}
    records[record_key(APP, writer, "index", slot)] = (as_of, orjson.dumps(index), written_ms)


def _two_writers() -> StateRecords:
    records: StateRecords = {}
    _write(records, "w0-1", [0, 1], 59_999, 0, 1_000, leader=True)
    _write(records, "w2-3", [2, 3], 59_999, 0, 1_100, leader=False)
    _write(records, "w0-1", [0, 1], 119_999, 1, 2_000, leader=True)  # the peer died before this one
    return records


def test_a_takeover_combines_the_sets_of_both_writers_at_their_common_instant() -> None:
    [found] = candidates(_two_writers(), APP, [0, 1, 2, 3])
    assert found.as_of_ms == 59_999
    assert found.blobs == {"p0": b"w0-1/p0@59999", "p1": b"w0-1/p1@59999", "p2": b"w2-3/p2@59999",
                           "p3": b"w2-3/p3@59999", "market": b"w0-1/market@59999"}
    assert found.writer == "w0-1+w2-3" and found.slot == -1
    assert found.written_ms == 1_000, "the earliest write of the sets used (reading risk.audit from then)"


def test_a_restart_takes_its_own_newest_set() -> None:
    found = candidates(_two_writers(), APP, [0, 1])
    assert [c.as_of_ms for c in found] == [119_999, 59_999]
    assert found[0].writer == "w0-1" and found[0].slot == 1


def test_without_partition_0_the_market_comes_from_any_set_of_the_instant() -> None:
    [found] = candidates(_two_writers(), APP, [2, 3])
    assert found.as_of_ms == 59_999 and found.blobs["p2"] == b"w2-3/p2@59999"
    assert found.blobs["market"] in (b"w0-1/market@59999", b"w2-3/market@59999")


def test_an_incomplete_set_is_not_used() -> None:
    records = _two_writers()
    records[record_key(APP, "w2-3", "p3", 0)] = (179_999, b"a later take overwrote it", 3_000)
    assert candidates(records, APP, [0, 1, 2, 3]) == []
    assert [c.as_of_ms for c in candidates(records, APP, [0, 1])] == [119_999, 59_999]


def test_a_malformed_index_is_skipped() -> None:
    records = _two_writers()
    records[record_key(APP, "w2-3", "index", 0)] = (59_999, b"{not json", 1_100)
    assert candidates(records, APP, [0, 1, 2, 3]) == []
