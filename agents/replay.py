"""Offline replay: the worker's pure pipeline over a recorded JSON-lines file, no Kafka.

Input lines are what ``mevrisk simulate --record`` writes:
``{"topic", "key", "ts_ms", "value"}`` (or ``value_b64`` for raw bytes). Each value is
checked against its wire contract exactly as the worker does; rejected lines are
counted by reason, as the worker would send them to ``risk.dlq``, and offered to the
pipeline with :meth:`~agents.pipeline.RiskPipeline.reject` with the line's ``key``, as the worker
offers the records it rejects, so the ``global`` rules see the DLQ rate at the same event time.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import Output
from schemas.contracts import INPUT_CONTRACTS, ContractError, validate_bytes


@dataclass
class ReplayResult:
    outputs: list[Output]
    rejected: Counter[str] = field(default_factory=Counter)

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [value for t, _, value in self.outputs if t == topic]


def read_lines(path: Path) -> Iterator[tuple[str, bytes, str | None]]:
    """(topic, value bytes, record key or None) of each recorded line, in file order."""
    for topic, _, raw, key in read_rows(path):
        yield topic, raw, key


def read_rows(path: Path) -> Iterator[tuple[str, int | None, bytes, str | None]]:
    """(topic, recorded ``ts_ms`` or None, value bytes, record key or None) of each recorded
    line, in file order."""
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = orjson.loads(line)
            ts = row.get("ts_ms") if isinstance(row.get("ts_ms"), int) else None
            key = row.get("key")
            key = key if isinstance(key, str) else None
            if "value_b64" in row:
                yield row["topic"], ts, base64.b64decode(row["value_b64"]), key
            else:
                yield row["topic"], ts, orjson.dumps(row["value"]), key


def replay(lines: Iterable[tuple[str, bytes] | tuple[str, bytes, str | None]],
           options: PipelineOptions, *,
           operator: Iterable[dict[str, Any]] = (),
           on_valid: Callable[[str, dict[str, Any]], None] | None = None,
           on_reject: Callable[[str, bytes, ContractError], None] | None = None) -> ReplayResult:
    """Feed every valid input through a fresh pipeline, then drain it. Lines are
    ``(topic, bytes)`` or ``(topic, bytes, record key)``; a rejected line is offered to the
    pipeline's DLQ count (:meth:`~agents.pipeline.RiskPipeline.reject`) with its key.

    ``operator``: actions (acknowledge, resolve, command... as ``RiskPipeline.schedule_operator``
    takes them) applied at their event time; ``on_valid`` / ``on_reject`` see each input after
    its contract check (``agents.reports.source`` builds a day's records with them)."""
    pipeline = build_pipeline(options)
    for action in operator:
        pipeline.schedule_operator(action)
    result = ReplayResult(outputs=[])
    for line in lines:
        topic, raw = line[0], line[1]
        if topic not in INPUT_CONTRACTS:
            continue
        try:
            value = validate_bytes(topic, raw)
        except ContractError as error:
            result.rejected[error.reason] += 1
            if on_reject is not None:
                on_reject(topic, raw, error)
            key = line[2] if len(line) > 2 else None
            result.outputs.extend(pipeline.reject(topic, key, error.reason))
            continue
        if on_valid is not None:
            on_valid(topic, value)
        result.outputs.extend(pipeline.offer(topic, value))
    result.outputs.extend(pipeline.drain())
    return result
