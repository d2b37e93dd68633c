"""Record events as JSON lines and read them back for replay.

One line per event: ``{"topic", "key", "ts_ms", "value": {...}}``, or for raw (bad)
messages ``{"topic", "key", "ts_ms", "value_b64": "..."}``.

>>> import io
>>> buf = io.BytesIO()
>>> write_events([Event("t", "k", {"ts_ms": 5}, 5), Event("t", "k", b"{oops", 3)], buf)
2
>>> _ = buf.seek(0)
>>> [e.ts_ms for e in replay_order(read_events(buf))]
[3, 5]
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

from streams.sim.errors import SimulatorError
from streams.sim.events import Event


def encode_line(ev: Event) -> bytes:
    """One JSON line (with trailing newline) for an event."""
    rec: dict[str, object] = {"topic": ev.topic, "key": ev.key, "ts_ms": ev.ts_ms}
    if isinstance(ev.value, bytes):
        rec["value_b64"] = base64.b64encode(ev.value).decode("ascii")
    else:
        rec["value"] = ev.value
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)


def decode_line(line: bytes | str, where: str = "") -> Event:
    """Parse one recorded line; raises :class:`SimulatorError` saying where it is bad."""
    try:
        rec = orjson.loads(line)
        if "value_b64" in rec:
            value: dict | bytes = base64.b64decode(rec["value_b64"], validate=True)
        else:
            value = rec["value"]
            if not isinstance(value, dict):
                raise TypeError("value is not an object")
        return Event(str(rec["topic"]), str(rec["key"]), value, int(rec["ts_ms"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SimulatorError(f"bad recorded event {where}: {exc}") from exc


def write_events(events: Iterable[Event], dest: str | Path | IO[bytes]) -> int:
    """Write `events` as JSON lines to a path or a binary file; returns the count."""
    if isinstance(dest, str | Path):
        with open(dest, "wb") as fp:
            return write_events(events, fp)
    n = 0
    for ev in events:
        dest.write(encode_line(ev))
        n += 1
    return n


def read_events(src: str | Path | IO[bytes]) -> Iterator[Event]:
    """Read a recorded file back, in file order (blank lines skipped)."""
    if isinstance(src, str | Path):
        with open(src, "rb") as fp:
            yield from read_events(fp)
        return
    name = getattr(src, "name", "<stream>")
    for lineno, line in enumerate(src, 1):
        if line.strip():
            yield decode_line(line, f"{name}:{lineno}")


def replay_order(events: Iterable[Event]) -> list[Event]:
    """Events sorted by event time; ties keep their recorded order (stable sort)."""
    return sorted(events, key=lambda e: e.ts_ms)
