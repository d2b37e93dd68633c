"""Take and restore a :class:`~agents.pipeline.RiskPipeline`'s state as sealed data blobs.

API (what the Faust wiring calls)::

    blobs = take(pipeline, owned_partitions, secret=secret, offsets=next_offsets)
    # -> {"market": bytes, "p0": bytes, "p3": bytes, ...}: write each under its key
    report = restore(fresh_pipeline, blobs, secret=secret, wall_s=time.monotonic())
    # -> seek every input partition to report.offsets[(topic, partition)], then offer as usual

Keys. ``p<N>`` holds what is homed on input partition N (``pipeline._home``: where a
portfolio's or strategy's first event arrived): books, VaR backtests and cached scenario P&L,
portfolio models, latest snapshots, errored state, strategy health records, alert states of
those portfolios and strategies, kill-switch states of their scopes, the audit chain head of
``risk-p<N>``, their admission, and the events of partition N offered but not yet released.
``market`` holds the rest, which every worker needs or which is global: asset columns, bars,
return window, EWMA covariance, gas, liquidity, prices, source health, tick models, the clock,
market sources and their buffered ticks, scheduled operator actions, asset admission, the global
audit chain ``risk``, the ``global`` kill-switch scope, silences, alert states of sources and
other unhomed entities, the last rules reload. Only the leader's (owner of partition 0) market
blob carries the ``risk`` chain head, so the market key is written by the leader.

Coverage rule. A checkpoint covers every input offered before :func:`take`: the events released
(their effect is in the state) and the events still buffered, waiting for the watermark (they are
in the blob and released after the restore exactly when they would have been). ``offsets`` passed
to :func:`take` must therefore be, per input ``(topic, partition)``, the offset of the next record
not yet offered; recovery resumes each input there, so nothing is offered twice and nothing is
missed, and the restored pipeline's outputs from then on equal those of the uninterrupted one
(snapshots, alerts, controls, audit records and their hashes). It may be taken between any two
calls to ``offer``/``poll``/``heartbeat``; the wiring takes it at bar boundaries. Not restored:
``stats`` (per-process counters: they restart at 0, and ``stats.released`` then counts what the
recovery read), wall-clock idleness (the restored pipeline releases nothing until a market tick is
offered again, and every source starts its idle time then, as at a cold start: the wall time the
recovery spends between the restore and the resumed inputs must not make the market sources idle,
or the replayed partitioned inputs would run the clock ahead of the ticks), the
model checkpointer's queue, and the rule set (the pipeline is built from configuration; alert
states whose rule changed since are dropped and counted, as :meth:`AlertEngine.load_state` does).

Restore into a fresh pipeline built the same way (:func:`agents.assembly.build_pipeline`) with
the market blob and any subset of partition blobs, all from one :func:`take` (same ``as_of_ms``).
A pipeline holding only partitions 1 and 2 sets ``owned_partitions`` and restores
``market``, ``p1``, ``p2``. Any refusal raises :class:`~agents.state.errors.CheckpointError`
(reason ``forged``, ``malformed``, ``oversized``, ``version``, ``inconsistent``,
``incompatible``); the pipeline may then be half-restored: discard it and rebuild from the
retained inputs (cold start).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.alerts.controls import TradingState
from agents.alerts.matchers import Silence
from agents.anomaly.models import PortfolioModels
from agents.anomaly.ticks import TickAnomalyDetector
from agents.audit.chain import AuditChain
from agents.marketwatch import MarketWatch
from agents.pipeline import (
    _JSON_OPTIONS,
    GLOBAL_CHAIN,
    OPERATOR,
    REJECTED,
    TOPIC_RANK,
    RiskPipeline,
    SourceHealth,
)
from agents.state import risk as riskstate
from agents.state.codec import default, pickled, unpickle
from agents.state.envelope import open_blob, seal
from agents.state.errors import CheckpointError

MARKET_KEY = "market"
PARTITIONED_TOPICS = {"mev.positions": "portfolio", "mev.strategy.stats": "strategy"}
"""Input topics partitioned by entity (co-partitioned: partition N of both is ``p<N>``)."""
_PARTITION_KEY = re.compile(r"^p(0|[1-9][0-9]{0,5})$")
_CHAIN = re.compile(rf"^{GLOBAL_CHAIN}-p(0|[1-9][0-9]*)$")

Offsets = Mapping[tuple[str, int], int]


def partition_key(partition: int) -> str:
    """
    >>> partition_key(3)
    'p3'
    """
    return f"p{int(partition)}"


def partitions_of(pipeline: RiskPipeline) -> frozenset[int]:
    """Every input partition the pipeline has state for (the offline or single-worker case)."""
    homes = set(pipeline._home.values())
    sources = {p for (topic, p) in pipeline._source_max if topic in PARTITIONED_TOPICS}
    return frozenset(homes | sources)


@dataclass
class RestoreReport:
    """What :func:`restore` installed."""

    as_of_ms: int
    """The restored pipeline's clock (event time up to which everything was processed); -1: none."""
    partitions: tuple[int, ...]
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """Where to resume each input: the next offset not covered by the checkpoint."""
    portfolios: int = 0
    strategies: int = 0
    buffered_events: int = 0
    """Events offered before the checkpoint and not yet released (released after the restore)."""
    alert_states: int = 0
    alert_states_dropped: int = 0
    """States of rules removed or changed since the checkpoint (not restored)."""
    models: str = "none"
    """``restored``, ``cold`` (checkpoint without models), ``skipped`` (pipeline without models), ``none``."""
    blob_bytes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"restored as_of_ms={self.as_of_ms} partitions={list(self.partitions)} "
                f"portfolios={self.portfolios} strategies={self.strategies} "
                f"buffered_events={self.buffered_events} alert_states={self.alert_states} "
                f"(dropped {self.alert_states_dropped}) models={self.models} "
                f"bytes={sum(self.blob_bytes.values())}")


# ---- take -----------------------------------------------------------------------------------------
def take(pipeline: RiskPipeline, partitions: Iterable[int], *, secret: bytes,
         offsets: Offsets | None = None) -> dict[str, bytes]:
    """Seal the pipeline's state: ``market`` and one ``p<N>`` per partition in ``partitions``.

    ``offsets``: per input ``(topic, partition)``, the offset of the next record not yet offered
    (stored with the blob it belongs to and returned by :func:`restore`).
    """
    as_of = -1 if pipeline._clock is None else pipeline._clock
    where = _Placement(pipeline)
    docs: dict[str, dict[str, Any]] = {MARKET_KEY: _market_doc(pipeline, where)}
    for n in sorted({int(p) for p in partitions}):
        docs[partition_key(n)] = _entities_doc(pipeline, where, n)
    for (topic, partition), offset in sorted((offsets or {}).items()):
        key = partition_key(partition) if topic in PARTITIONED_TOPICS else MARKET_KEY
        if key in docs:
            docs[key]["offsets"].append([topic, partition, int(offset)])
    return {key: seal(key, as_of, doc, secret, default) for key, doc in docs.items()}


class _Placement:
    """Which blob each entity goes to: its home partition, or None (market)."""

    def __init__(self, pipeline: RiskPipeline) -> None:
        self.home = pipeline._home
        self._heap = pipeline._heap
        self._heaps: dict[int | None, list[list[Any]]] | None = None

    def heap_of(self, partition: int | None) -> list[list[Any]]:
        """The buffered events placed on ``partition``, sorted (a valid heap, and canonical); the
        pipeline's heap is sorted and split once per take, not once per blob."""
        if self._heaps is None:
            self._heaps = {}
            for ts, rank, key, topic, value in sorted(self._heap, key=lambda entry: entry[:3]):
                self._heaps.setdefault(self.of_event(topic, value), []).append(
                    [ts, rank, key.decode("latin-1") if topic in (OPERATOR, REJECTED) else None, topic,
                     value])
        return self._heaps.get(partition, [])

    def of(self, scope: str, entity: str) -> int | None:
        return self.home.get((scope, entity)) if scope in ("portfolio", "strategy") else None

    def of_scope(self, scope: str) -> int | None:
        kind, _, name = scope.partition(":")
        return self.of(kind, name) if name else None

    def of_chain(self, chain: str) -> int | None:
        match = _CHAIN.match(chain)
        return int(match.group(1)) if match else None

    def of_input_key(self, topic: str, key: str) -> int | None:
        """The blob of an input record key's latest event time (``RiskPipeline._key_ts``)."""
        kind = PARTITIONED_TOPICS.get(topic)
        return None if kind is None else self.of(kind, key)

    def of_event(self, topic: str, value: Mapping[str, Any]) -> int | None:
        kind = PARTITIONED_TOPICS.get(topic)
        return None if kind is None else self.of(kind, str(value.get(kind)))


def _market_doc(pipeline: RiskPipeline, where: _Placement) -> dict[str, Any]:
    doc = _entities_doc(pipeline, where, None)
    alerts = pipeline.alerts
    models = pipeline.models
    doc.update({
        "kind": "market",
        "config": _config(pipeline),
        "clock_ms": pipeline._clock,
        "risk": riskstate.market_state(pipeline.risk),
        "source_health": [[h.name, h.last_ts_ms, h.limit_ms] for h in pipeline._sources.values()],
        "admitted_assets": sorted(pipeline.admission.assets),
        "silences": [s.to_dict() for s in alerts._silences.values()],
        "alert_counters": {"evaluations": alerts.evaluations, "fallbacks": alerts.fallbacks,
                           "late_dropped": alerts.late_dropped, "errors": alerts.errors,
                           "last_error": alerts.last_error},
        "last_reload": pipeline.last_reload,
        "market_watch": pipeline.watch.to_dict(),
        "tick_models": None if models is None else {
            "pickle": pickled({"ticks": models.ticks, "recent_tick_flags": models.recent_tick_flags}),
            "tick_predictions": models.tick_predictions, "ticks_as_of_ms": models.ticks_as_of_ms},
    })
    return doc


def _config(pipeline: RiskPipeline) -> dict[str, int]:
    return {"bar_ms": pipeline.bar_ms, "window_bars": pipeline.risk.window.capacity}


def _entities_doc(pipeline: RiskPipeline, where: _Placement, partition: int | None) -> dict[str, Any]:
    """Everything placed on ``partition`` (None: unhomed, i.e. market/global)."""
    risk, alerts, models = pipeline.risk, pipeline.alerts, pipeline.models
    names = {name for kind, name in pipeline._home if kind == "portfolio"}
    names |= set(risk.portfolios) | set(pipeline.latest_snapshots) | set(pipeline._errored)
    names |= pipeline._dirty | pipeline.admission.portfolios | set(models.portfolios if models else ())
    ranks = {name: i for i, name in enumerate(models.portfolios)} if models is not None else {}
    portfolios = []
    for name in sorted(n for n in names if where.of("portfolio", n) == partition):
        pf = risk.portfolios.get(name)
        model = models.portfolios.get(name) if models is not None else None
        snapshot = pipeline.latest_snapshots.get(name)
        portfolios.append({
            "name": name, "risk": None if pf is None else riskstate.portfolio_state(pf),
            "models": None if model is None else pickled(model), "models_rank": ranks.get(name),
            "snapshot": None if snapshot is None else _fragment(snapshot),
            "errored": pipeline._errored.get(name), "dirty": name in pipeline._dirty,
            "admitted": name in pipeline.admission.portfolios,
            "trend": pipeline.watch.portfolio_state(name),
        })
    strategies = {name for kind, name in pipeline._home if kind == "strategy"}
    strategies |= set(risk.health._records) | pipeline._strategies | pipeline.admission.strategies
    strategies |= set(pipeline.watch._strategies)
    heap = where.heap_of(partition)
    return {
        "kind": "partition" if partition is not None else "market",
        "partition": partition,
        "assets": list(risk.assets.names),
        "homes": [[kind, name] for (kind, name), home in pipeline._home.items() if home == partition],
        "portfolios": portfolios,
        "strategies": [
            {"name": s, "health": riskstate.strategy_state(risk, s), "tracked": s in pipeline._strategies,
             "admitted": s in pipeline.admission.strategies, "last_health": pipeline._health.get(s),
             "watch": pipeline.watch.strategy_state(s)}
            for s in sorted(strategies) if where.of("strategy", s) == partition],
        "alert_states": [_alert_state(st) for st in alerts._states.values()
                         if where.of(st.scope, st.entity_id) == partition],
        "kill_switch": [[scope, state.value] for scope, state in pipeline.kill_switch._states.items()
                        if where.of_scope(scope) == partition],
        "audits": [[name, chain.next_seq, chain.prev_hash] for name, chain in pipeline.audits.items()
                   if where.of_chain(name) == partition],
        "sources": [[topic, p, ts] for (topic, p), ts in pipeline._source_max.items()
                    if (p if topic in PARTITIONED_TOPICS else None) == partition],
        "heap": heap,
        "key_times": [[topic, key, ts] for (topic, key), ts in sorted(pipeline._key_ts.items())
                      if where.of_input_key(topic, key) == partition],
        "offsets": [],
    }


def _alert_state(st: Any) -> dict[str, Any]:
    d: dict[str, Any] = st.to_dict()
    d["values"] = _fragment(d["values"])
    return d


def _fragment(value: Any) -> orjson.Fragment:
    """JSON-shaped data serialised as on the output topics (arrays as lists), read back as plain JSON."""
    return orjson.Fragment(orjson.dumps(value, option=_JSON_OPTIONS))


# ---- restore --------------------------------------------------------------------------------------
def restore(pipeline: RiskPipeline, blobs: Mapping[str, bytes], *, secret: bytes,
            wall_s: float | None = None) -> RestoreReport:
    """Install ``blobs`` (``market`` and any ``p<N>`` of one :func:`take`) into a fresh pipeline.

    Every blob is authenticated and decoded before anything is installed. ``wall_s`` (monotonic
    seconds) is recorded as the restored input sources' last activity; None for offline replay.
    Their idle time starts again with the first market tick offered after the restore, before
    which nothing is released.
    """
    _check_fresh(pipeline)
    opened = {}
    for key, blob in blobs.items():
        if key != MARKET_KEY and not _PARTITION_KEY.match(str(key)):
            raise CheckpointError("malformed", "unknown checkpoint key", str(key))
        opened[key] = open_blob(blob, secret, expected_key=key)
    if MARKET_KEY not in opened:
        raise CheckpointError("malformed", "no market blob: restore needs it with the partitions")
    as_of = opened[MARKET_KEY][0].as_of_ms
    for key, (header, _) in opened.items():
        if header.as_of_ms != as_of:
            raise CheckpointError("inconsistent", f"taken at as_of_ms={header.as_of_ms}, the market blob at "
                                  f"{as_of}: restore blobs of one checkpoint", key)
    market = opened[MARKET_KEY][1]
    if not isinstance(market, dict) or market.get("kind") != "market":
        raise CheckpointError("malformed", "body is not a market document", MARKET_KEY)
    if market.get("config") != _config(pipeline):
        raise CheckpointError("incompatible", f"taken with {market.get('config')}, this pipeline has "
                              f"{_config(pipeline)}", MARKET_KEY)
    partitions = sorted(int(key[1:]) for key in opened if key != MARKET_KEY)
    report = RestoreReport(as_of_ms=as_of, partitions=tuple(partitions),
                           blob_bytes={k: h.blob_bytes for k, (h, _) in opened.items()})
    installer = _Installer(pipeline, report, wall_s)
    for key in [MARKET_KEY, *(partition_key(n) for n in partitions)]:
        doc = opened[key][1]
        try:
            kind = "market" if key == MARKET_KEY else "partition"
            if not isinstance(doc, dict) or doc.get("kind") != kind:
                raise ValueError("body is not a checkpoint document of its kind")
            if key == MARKET_KEY:
                installer.market(doc)
            installer.entities(doc)
        except CheckpointError:
            raise
        except Exception as exc:  # an authenticated blob that does not fit this build
            raise CheckpointError("malformed", f"{type(exc).__name__}: {exc}", key) from exc
    try:
        installer.finish()
    except Exception as exc:  # as above
        raise CheckpointError("malformed", f"{type(exc).__name__}: {exc}") from exc
    return report


def _check_fresh(pipeline: RiskPipeline) -> None:
    if (pipeline._clock is not None or pipeline._heap or pipeline._source_max or pipeline._home
            or pipeline.risk.portfolios or len(pipeline.risk.assets)):
        raise ValueError("restore into a fresh pipeline (built, never offered anything)")


class _Installer:
    """Installs decoded documents; the market first, then partitions in order."""

    def __init__(self, pipeline: RiskPipeline, report: RestoreReport, wall_s: float | None) -> None:
        self.p = pipeline
        self.report = report
        self.wall_s = wall_s
        self.heap: list[tuple[int, int, bytes, str, dict[str, Any]]] = []
        self.models: list[tuple[int, str, PortfolioModels]] = []
        self.columns: Any = None

    def market(self, doc: dict[str, Any]) -> None:
        p = self.p
        p._clock = None if doc["clock_ms"] is None else int(doc["clock_ms"])
        riskstate.install_market(p.risk, doc["risk"])
        p._sources = {str(n): SourceHealth(str(n), int(ts), int(limit))
                      for n, ts, limit in doc["source_health"]}
        p.admission.assets = {str(a) for a in doc["admitted_assets"]}
        for s in doc["silences"]:
            silence = Silence.from_dict(s)
            p.alerts._silences[silence.id] = silence
        c = doc["alert_counters"]
        p.alerts.evaluations, p.alerts.fallbacks = int(c["evaluations"]), int(c["fallbacks"])
        p.alerts.late_dropped = int(c["late_dropped"])
        p.alerts.errors = {str(k): int(v) for k, v in c["errors"].items()}
        p.alerts.last_error = {str(k): str(v) for k, v in c["last_error"].items()}
        p.last_reload = {str(k): [str(x) for x in v] for k, v in doc["last_reload"].items()}
        if doc.get("market_watch") is not None:  # absent from checkpoints older than the watch
            p.watch = MarketWatch.from_dict(p.watch.config, doc["market_watch"])
        ticks = doc["tick_models"]
        if p.models is None:
            self.report.models = "skipped" if ticks is not None else "none"
        elif ticks is None:
            self.report.models = "cold"
        else:
            part = unpickle(ticks["pickle"])
            if not isinstance(part, dict) or not isinstance(part.get("ticks"), TickAnomalyDetector):
                raise ValueError("tick models do not hold a TickAnomalyDetector")
            p.models.ticks, p.models.recent_tick_flags = part["ticks"], part["recent_tick_flags"]
            p.models.tick_predictions = int(ticks["tick_predictions"])
            as_of = ticks["ticks_as_of_ms"]
            p.models.ticks_as_of_ms = None if as_of is None else int(as_of)
            self.report.models = "restored"

    def entities(self, doc: dict[str, Any]) -> None:
        p, risk = self.p, self.p.risk
        partition = doc["partition"]
        columns = riskstate.column_map(risk, doc["assets"])
        for kind, name in doc["homes"]:
            if kind not in ("portfolio", "strategy") or partition is None:
                raise ValueError(f"bad home {kind!r}")
            p._home[(str(kind), str(name))] = int(partition)
        for d in doc["portfolios"]:
            self._portfolio(d, columns)
        for d in doc["strategies"]:
            name = str(d["name"])
            if d["health"]:
                riskstate.install_strategy(risk, name, d["health"])
            if d["tracked"]:
                p._strategies.add(name)
            if d["admitted"]:
                p.admission.strategies.add(name)
            if d.get("last_health") is not None:
                p._health[name] = dict(d["last_health"])
            if d.get("watch") is not None:
                p.watch.install_strategy(name, d["watch"])
            self.report.strategies += 1
        for d in doc["alert_states"]:
            before = len(p.alerts._states)
            p.alerts.load_state(d)
            restored = len(p.alerts._states) > before
            self.report.alert_states += restored
            self.report.alert_states_dropped += not restored
        for scope, state in doc["kill_switch"]:
            p.kill_switch._states[str(scope)] = TradingState(state)
        for name, next_seq, prev_hash in doc["audits"]:
            p.audits[str(name)] = AuditChain(str(name), next_seq=int(next_seq), prev_hash=str(prev_hash))
        for topic, partition_, ts in doc["sources"]:
            source = (str(topic), int(partition_))
            p._source_max[source] = None if ts is None else int(ts)
            if self.wall_s is not None:
                p._source_wall[source] = self.wall_s
        for ts, rank, key, topic, value in doc["heap"]:
            if not isinstance(value, dict):
                raise ValueError("a buffered event is not an object")
            raw = (key.encode("latin-1") if topic in (OPERATOR, REJECTED)
                   else orjson.dumps(value, option=orjson.OPT_SORT_KEYS))  # as offer() keys it
            if topic != OPERATOR and int(rank) != TOPIC_RANK.get(topic, 9):
                raise ValueError(f"bad rank for {topic!r}")
            if topic == REJECTED:  # later rejects must not tie with a restored one (RiskPipeline.reject)
                p._rejects = max(p._rejects, int(raw.rpartition(b"#")[2] or b"0"))
            self.heap.append((int(ts), int(rank), raw, str(topic), value))
        for topic, key, ts in doc.get("key_times") or ():  # absent from older checkpoints
            entry = (str(topic), str(key))
            p._key_ts[entry] = max(int(ts), p._key_ts.get(entry, int(ts)))
        for topic, partition_, offset in doc["offsets"]:
            self.report.offsets[(str(topic), int(partition_))] = int(offset)

    def _portfolio(self, d: dict[str, Any], columns: Any) -> None:
        p, name = self.p, str(d["name"])
        if d["risk"] is not None:
            riskstate.install_portfolio(p.risk, name, d["risk"], columns)
        if d["snapshot"] is not None:
            p.latest_snapshots[name] = d["snapshot"]
        if d["errored"] is not None:
            p._errored[name] = list(d["errored"])
        if d["dirty"]:
            p._dirty.add(name)
        if d["admitted"]:
            p.admission.portfolios.add(name)
        if d.get("trend") is not None:
            p.watch.install_portfolio(name, d["trend"])
        if d["models"] is not None and p.models is not None:
            models = unpickle(d["models"])
            if not isinstance(models, PortfolioModels):
                raise ValueError(f"portfolio models of {name!r} hold {type(models).__name__}")
            rank = d["models_rank"]
            self.models.append((int(rank) if rank is not None else 1 << 62, name, models))
        self.report.portfolios += 1

    def finish(self) -> None:
        p = self.p
        heapq.heapify(self.heap)
        p._heap = self.heap
        self.report.buffered_events = len(self.heap)
        seen = [ts for ts in p._source_max.values() if ts is not None]
        p._max_ts = max(seen) if seen else None
        p._resuming = True  # nothing released before the market resumes (RiskPipeline._market_seen)
        bundle = p.models
        if bundle is not None:
            for _, name, models in sorted(self.models, key=lambda m: (m[0], m[1])):
                bundle.portfolios[name] = models
            bundle.total_predictions = bundle.tick_predictions + sum(
                m.predictions for m in bundle.portfolios.values())
