"""A day's records from a recording, through the offline pipeline (no Kafka).

The recording (``mevrisk simulate --record``) goes through ``agents.replay.replay`` exactly as
``mevrisk replay --offline`` runs it; the outputs become the records a worker would have
published (snapshots, alerts, controls, audit, dead letters), the valid strategy stats are kept
as read, and every line the contracts reject becomes a dead letter dated by its recorded
``ts_ms``, as the worker's ingest would send it to ``risk.dlq``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agents.assembly import PipelineOptions
from agents.replay import read_rows, replay
from schemas.contracts import ContractError

OUTPUT_KINDS = {"risk.snapshots": "snapshots", "risk.alerts": "alerts", "risk.controls": "controls",
                "risk.audit": "audit", "risk.dlq": "dlq"}


def records_from_recording(path: Path, options: PipelineOptions,
                           operator: Iterable[dict[str, Any]] = ()) -> dict[str, list[dict[str, Any]]]:
    """The records of a recorded run, by kind (see ``agents.reports.model``). ``operator``:
    acknowledgements, resolutions and commands to apply at their event time."""
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in (*OUTPUT_KINDS.values(), "strategy_stats")}
    current: dict[str, int | None] = {"ts_ms": None}

    def lines() -> Iterator[tuple[str, bytes, str | None]]:
        for topic, ts_ms, raw, key in read_rows(path):
            current["ts_ms"] = ts_ms
            yield topic, raw, key

    def on_valid(topic: str, value: dict[str, Any]) -> None:
        if topic == "mev.strategy.stats":
            records["strategy_stats"].append(value)

    def on_reject(topic: str, raw: bytes, error: ContractError) -> None:
        records["dlq"].append({"source_topic": topic, "reason": error.reason, "detail": error.detail[:200],
                               "received_ts_ms": current["ts_ms"] or 0, "value_size": len(raw)})

    result = replay(lines(), options, operator=operator, on_valid=on_valid, on_reject=on_reject)
    for topic, _, value in result.outputs:
        kind = OUTPUT_KINDS.get(topic)
        if kind is not None:
            records[kind].append(value)
    return records
