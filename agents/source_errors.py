"""The seed's ERROR state of a data source: more than ``ERROR_AFTER`` consecutive rejected messages.

A feed source (price oracle, gas tracker, ...) is ACTIVE or INACTIVE by the age of its last valid
tick (``agents.pipeline.SourceHealth``); on top of that, one whose last ``ERROR_AFTER + 1`` or more
messages were all rejected to ``risk.dlq`` is ERROR, whatever its age, until a valid one arrives.
Counts are per worker (each reads every tick) and start from zero at each start; they are a
health reading, not an input of the rules, so replays stay exact.

>>> errors = SourceErrors()
>>> errors.accepted("oracle")
>>> for _ in range(6):
...     _ = errors.rejected("oracle")
>>> row = errors.annotate([{"name": "oracle", "status": "ACTIVE"}])[0]
>>> row["status"], row["error_count"], row["consecutive_errors"]
('ERROR', 6, 6)
>>> errors.accepted("oracle")
>>> errors.annotate([{"name": "oracle", "status": "ACTIVE"}])[0]["status"]
'ACTIVE'
"""

from __future__ import annotations

from typing import Any

ERROR_AFTER = 5
"""More than this many consecutive rejected messages: ERROR (the seed's threshold)."""
MAX_SOURCES = 1_024
"""Bound on the sources tracked (names come from valid ticks, so this is never reached in practice)."""


class SourceErrors:
    """Rejected-message counters per source. Only sources that sent at least one valid tick are
    counted (a rejected message names its source in untrusted bytes: anything can be written there)."""

    def __init__(self) -> None:
        self._consecutive: dict[str, int] = {}
        self._total: dict[str, int] = {}

    def accepted(self, source: str) -> None:
        """A valid tick of ``source``: its run of rejected messages ends."""
        if self._consecutive.get(source, 1) and (
                source in self._consecutive or len(self._consecutive) < MAX_SOURCES):
            self._consecutive[source] = 0

    def rejected(self, source: str) -> bool:
        """A message of ``source`` went to ``risk.dlq``; False when the source is not tracked."""
        if source not in self._consecutive:
            return False
        self._consecutive[source] += 1
        self._total[source] = self._total.get(source, 0) + 1
        return True

    def is_error(self, source: str) -> bool:
        return self._consecutive.get(source, 0) > ERROR_AFTER

    def annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Source rows (``SourceHealth.context``) with ``error_count`` (rejected messages since
        start), ``consecutive_errors`` and status ERROR where due; new dicts."""
        out = []
        for row in rows:
            name = str(row.get("name"))
            extra: dict[str, Any] = {"error_count": self._total.get(name, 0),
                                     "consecutive_errors": self._consecutive.get(name, 0)}
            if self.is_error(name):
                extra["status"] = "ERROR"
            out.append({**row, **extra})
        return out
