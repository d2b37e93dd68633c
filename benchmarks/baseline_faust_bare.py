"""Baseline for ``bench_e2e.py``: a bare Faust agent over the three input topics that only decodes
(orjson) and counts, no risk work: what Faust's per-event stream machinery alone allows.

The method of ``/work/shared/measure/baseline_faust.py``: one agent on one topic object naming
the three input topics, in-memory store, a fresh app id (consumer group), reading from the earliest
offset. When ``BASE_N`` records have been seen it prints ``faust_bare n=<records> secs=<seconds>``
(seconds from the first record it received to the last) and exits at once.

Run (``bench_e2e.py`` does): BASE_PREFIX=<topic prefix> BASE_N=<records> KAFKA_BOOTSTRAP_SERVERS=...
python benchmarks/baseline_faust_bare.py worker -l warn --web-port <port>   (from a scratch
directory: Faust writes its data directory into the working directory).
"""

from __future__ import annotations

import contextlib
import os
import time

import faust  # noqa: TID251 - the baseline is, by definition, a bare Faust app outside streams/
import orjson

PREFIX, N = os.environ["BASE_PREFIX"], int(os.environ["BASE_N"])
INPUTS = ("mev.market.ticks", "mev.positions", "mev.strategy.stats")

app = faust.App(f"base-{os.getpid()}", broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
                store="memory://", value_serializer="raw", topic_disable_leader=True,
                consumer_auto_offset_reset="earliest")
topics = app.topic(*(PREFIX + t for t in INPUTS), value_type=bytes, value_serializer="raw")
state: dict[str, float] = {"n": 0, "t0": 0.0}


@app.agent(topics)
async def count(stream):  # type: ignore[no-untyped-def]
    async for value in stream:
        if not state["n"]:
            state["t0"] = time.perf_counter()
        with contextlib.suppress(orjson.JSONDecodeError):
            orjson.loads(value)  # decode, as any processor must
        state["n"] += 1
        if state["n"] >= N:
            print(f"faust_bare n={int(state['n'])} secs={time.perf_counter() - state['t0']:.3f}", flush=True)
            os._exit(0)


if __name__ == "__main__":
    app.main()
