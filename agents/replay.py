"""Offline replay: the worker's pure pipeline over a recorded JSON-lines file, no Kafka.

Input lines are what ``mevrisk simulate --record`` writes:
``{"topic", "key", "ts_ms", "value"}`` (or ``value_b64`` for raw bytes). Each value is
checked against its wire contract exactly as the worker does; rejected lines are
counted by reason, as the worker would send them to ``risk.dlq``.
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


def read_lines(path: Path) -> Iterator[tuple[str, bytes]]:
    """(topic, value bytes) of each recorded line, in file order."""
    for topic, _, raw in read_rows(path):
        yield topic, raw


def read_rows(path: Path) -> Iterator[tuple[str, int | None, bytes]]:
    """(topic, recorded ``ts_ms`` or None, value bytes) of each recorded line, in file order."""
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = orjson.loads(line)
            ts = row.get("ts_ms") if isinstance(row.get("ts_ms"), int) else None
            if "value_b64" in row:
                yield row["topic"], ts, base64.b64decode(row["value_b64"])
            else:
                yield row["topic"], ts, orjson.dumps(row["value"])


def replay(lines: Iterable[tuple[str, bytes]], options: PipelineOptions, *,
           operator: Iterable[dict[str, Any]] = (),
           on_valid: Callable[[str, dict[str, Any]], None] | None = None,
           on_reject: Callable[[str, bytes, ContractError], None] | None = None) -> ReplayResult:
    """Feed every valid input through a fresh pipeline, then drain it.

    ``operator``: actions (acknowledge, resolve, command... as ``RiskPipeline.schedule_operator``
    takes them) applied at their event time; ``on_valid`` / ``on_reject`` see each input after
    its contract check (``agents.reports.source`` builds a day's records with them)."""
    pipeline = build_pipeline(options)
    for action in operator:
        pipeline.schedule_operator(action)
    result = ReplayResult(outputs=[])
    for topic, raw in lines:
        if topic not in INPUT_CONTRACTS:
            continue
        try:
            value = validate_bytes(topic, raw)
        except ContractError as error:
            result.rejected[error.reason] += 1
            if on_reject is not None:
                on_reject(topic, raw, error)
            continue
        if on_valid is not None:
            on_valid(topic, value)
        result.outputs.extend(pipeline.offer(topic, value))
    result.outputs.extend(pipeline.drain())
    return result
