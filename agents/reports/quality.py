"""Data quality and audit figures of a day: dead letters, late events, audit chain heads.

>>> dlq = [{"reason": "malformed_json", "source_topic": "mev.positions", "received_ts_ms": 5},
...        {"reason": "malformed_json", "source_topic": "mev.market.ticks", "received_ts_ms": 6},
...        {"reason": "oversized", "source_topic": "mev.positions", "received_ts_ms": 99}]
>>> dead_letters(dlq, 0, 10)["by_reason"]
{'malformed_json': 2}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agents.audit.chain import verify_chains
from agents.reports.day import event_ms
from agents.reports.figures import COUNTERS


def dead_letters(dlq: Iterable[Mapping[str, Any]], start_ms: int, end_ms: int) -> dict[str, Any]:
    """Counts of the day's dead letters (by ``received_ts_ms``) by reason and by source topic."""
    day = [d for d in dlq if (ts := event_ms(d, "received_ts_ms")) is not None and start_ms <= ts < end_ms]
    by_reason = Counter(str(d.get("reason")) for d in day)
    by_topic = Counter(str(d.get("source_topic")) for d in day)
    return {"total": len(day), "by_reason": dict(sorted(by_reason.items())),
            "by_topic": dict(sorted(by_topic.items()))}


def late_events(growths: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Events the engine applied late or not at all during the day, from the growth of its
    cumulative counters over each portfolio's day (``PortfolioDay.counter_growth``):
    ``late_ticks`` is market-wide (the largest growth seen), the position counters add up."""
    out = dict.fromkeys(COUNTERS, 0)
    for growth in growths:
        for key in COUNTERS:
            g = int(growth.get(key, 0))
            out[key] = max(out[key], g) if key == "late_ticks" else out[key] + g
    return out


def audit_section(records: Sequence[Mapping[str, Any]], start_ms: int, end_ms: int) -> dict[str, Any]:
    """Verification of every chain of ``risk.audit`` read from its start, with each chain's head
    (last record's ``seq`` and ``hash``) and its number of records dated in the day."""
    results = verify_chains(records)
    chains = []
    for stream, (ok, bad_seq, reason) in results.items():
        mine = [r for r in records if str(r.get("stream")) == stream]
        head = mine[-1] if mine else {}
        chains.append({"stream": stream, "ok": ok, "first_bad_seq": bad_seq, "reason": reason,
                       "records": len(mine), "head_seq": head.get("seq"), "head_hash": head.get("hash"),
                       "records_in_day": sum(1 for r in mine
                                             if start_ms <= (event_ms(r) or -1) < end_ms)})
    return {"ok": all(c["ok"] for c in chains), "records": len(records), "chains": chains}
