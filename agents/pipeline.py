"""The worker's pure pipeline: event-time ordering in front of the risk and alert cores.

Events are buffered and released in event-time order once the watermark passes them.
Each input partition is a source with its own highest ``ts_ms``; the watermark is the
lowest of those over the active sources, less ``allowed_lateness_ms``, so a partition that
is read faster than another (a consumer catching up) cannot make the other's events late.
A source that has offered nothing for ``idle_source_secs`` of wall time (passed in by the
caller; offline replay passes none) stops holding the watermark back (once every source is idle,
the watermark is the newest event less ``allowed_lateness_ms``), and nothing is
released before the market (a ``mev.market.ticks`` source) has been seen (after a state restore:
offered again, and only then do the restored sources start their idle time). Ties are broken by
topic rank and the canonical bytes of the event, never by arrival, so the same input
set yields the same outputs whether it is read from Kafka or from a file. Bars close at
multiples of ``bar_ms``; at each bar end every portfolio is snapshotted and every rule
scope evaluated, and at each ``coalesce_ms`` boundary portfolios whose positions
changed, or that hold an asset whose price ticked, get a fresh snapshot (a burst of updates
makes one snapshot). The market-wide scopes do not wait for the bar: at every multiple of
``eval_ms`` (a divisor of ``bar_ms``) the ``asset`` rules run on each asset's figures, the
``global`` rules once on the market's (:mod:`agents.marketwatch`, entity ``market``), the
``source`` rules on feed health and the ``strategy`` rules on the latest bar's health plus the
strategy's ``recent`` block; the alert engine's timed transitions are applied there too. The
market-wide scopes speak on the leader only.
An event that arrives after the watermark has passed it is applied at once and counted as late: it
is never dropped, but it is the one case where replay and live output may differ.

Outputs are ``(topic, key, value)`` triples for ``risk.snapshots``, ``risk.alerts``,
``risk.controls``, ``risk.audit`` and ``risk.dlq``.

Fault isolation: no exception escapes ``offer``, ``poll``, ``heartbeat`` or ``drain``.
An event whose application raises, or that would exceed an admission cap
(``agents.admission``), is quarantined to ``risk.dlq`` (reason ``processing_error`` with
the exception type and the entity, or the admission reason) and counted per stage in
``stats.processing_errors``. The portfolio concerned is marked errored: its snapshots carry
the errors in ``errors`` (the shipped rule ``RiskComputationFailed`` fires on it) until its
next valid event. A snapshot, model or rule step that raises for one portfolio yields an
``errors`` entry for that portfolio only; every other portfolio and source carries on.
An empty stretch of more than ``max_skip_bars`` bars is crossed in O(1): its first bar
closes, the clock jumps to the last one.
"""

from __future__ import annotations

import base64
import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson

from agents.admission import Admission, AdmissionRefused
from agents.alerts.controls import KillSwitch
from agents.alerts.engine import AlertEngine
from agents.alerts.rules import parse_rules
from agents.anomaly.checkpoint import ModelCheckpointer
from agents.anomaly.models import ModelBundle
from agents.audit.chain import AuditChain
from agents.errors import MevRiskError
from agents.marketwatch import MarketWatch, mean_correlation
from agents.risk.engine import RiskEngine
from schemas.contracts import excerpt

Output = tuple[str, str, dict[str, Any]]

TOPIC_RANK = {"mev.market.ticks": 0, "mev.positions": 1, "mev.strategy.stats": 2, "rejected": 8,
              "operator": 9}
REJECTED = "rejected"
"""Pseudo-topic of inputs rejected before the pipeline (contract failures), offered with
:meth:`RiskPipeline.reject` so the DLQ rate reaches the ``global`` rules in event time."""
INPUT_KEY_FIELDS = {"mev.market.ticks": ("asset", "chain"), "mev.positions": ("portfolio",),
                    "mev.strategy.stats": ("strategy",)}
"""The value field that is a valid input's record key (ticks: the asset, or the chain for gas)."""
KEY_TIMES_MAX = 4_096
"""Input keys whose latest event time is kept for :meth:`RiskPipeline.reject` (more are not tracked)."""
MARKET_SCOPES = frozenset({"source", "asset", "global"})
"""Rule scopes evaluated on market-wide state: only the leader publishes their alerts."""
GLOBAL_ENTITY = "market"
"""Entity id of the ``global`` scope's one evaluation per step."""
GLOBAL_CHAIN = "risk"
"""The audit chain of market-wide and global records; partitions have ``risk-p<N>``."""
OPERATOR = "operator"
"""Pseudo-topic of operator actions re-applied during recovery (see ``operator_actions``)."""
DEFAULT_SOURCE_LIMITS_MS = {
    "price-oracle": 10_000,
    "gas-tracker": 30_000,
    "liquidity-monitor": 30_000,
}


@dataclass
class PipelineStats:
    """Counters a worker exposes on /metrics and the health API."""

    released: int = 0
    late: int = 0
    late_by_topic: dict[str, int] = field(default_factory=dict)
    stale_positions: int = 0
    snapshots: int = 0
    alert_events: int = 0
    controls: int = 0
    operator_replayed: int = 0
    operator_skipped: int = 0
    processing_errors: dict[str, int] = field(default_factory=dict)
    """Isolated exceptions by stage (``tick``, ``position``, ``snapshot``, ``models``...)."""
    dead_letters: dict[str, int] = field(default_factory=dict)
    """Events quarantined to ``risk.dlq`` by the pipeline, by reason."""
    skipped_bars: int = 0
    """Empty bars crossed without closing each one (``max_skip_bars``)."""


@dataclass
class SourceHealth:
    """Last event time of one feed; ``status`` ACTIVE while younger than its limit, else INACTIVE."""

    name: str
    last_ts_ms: int
    limit_ms: int

    def context(self, now_ms: int) -> dict[str, Any]:
        age = max(0, now_ms - self.last_ts_ms)
        return {
            "name": self.name, "last_ts_ms": self.last_ts_ms, "age_ms": age,
            "limit_ms": self.limit_ms, "status": "ACTIVE" if age <= self.limit_ms else "INACTIVE",
        }


@dataclass
class RiskPipeline:
    """Orders input events by event time and drives risk, alerts, controls and audit."""

    risk: RiskEngine
    alerts: AlertEngine
    bar_ms: int = 1_000
    allowed_lateness_ms: int = 2_000
    coalesce_ms: int = 250
    refresh_on_price: bool = True
    """A price tick makes every portfolio holding the asset due for a snapshot at the next
    ``coalesce_ms`` boundary (marks, P&L, VaR/ES and the portfolio rules between bars); False: only
    position changes and bar ends do."""
    source_limits_ms: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SOURCE_LIMITS_MS))
    audits: dict[str, AuditChain] = field(default_factory=dict)
    """Hash chains by name: ``risk-p<N>`` for the portfolios and strategies of input partition N
    (whichever worker owns it regenerates the same chain), ``risk`` for what is market-wide or
    global (source alerts, global controls, silences, rules reloads; written by the leader)."""
    kill_switch: KillSwitch = field(default_factory=KillSwitch)
    stats: PipelineStats = field(default_factory=PipelineStats)
    idle_source_secs: float = 5.0
    head_idle_secs: float = 0.05
    """A source whose reader has read everything the broker held (:meth:`at_head`) stops holding
    the watermark after this many wall seconds without an event: whatever it sends next is newer
    than what it sent (in-flight reordering up to ``allowed_lateness_ms`` is covered). 0: off. A
    source with records still to read holds it for up to ``idle_source_secs``."""
    models: ModelBundle | None = None
    """Online anomaly models (seeded); their scores go into ``snapshot["anomaly"]`` before rules run."""
    checkpoints: ModelCheckpointer | None = None
    """Takes the models' checkpoints at bar boundaries (``agents.anomaly.checkpoint``); the host
    drains ``checkpoints.drain()`` and publishes them."""
    enrichers: list[Any] = field(default_factory=list)
    """Callables ``(snapshot) -> None`` that add fields (e.g. anomaly scores) before rules run."""
    owned_partitions: frozenset[int] | None = None
    """Input partitions (of ``mev.positions`` and ``mev.strategy.stats``) this worker owns: it
    publishes snapshots and alerts only for the portfolios and strategies that arrive there. The
    others are still tracked (a replay may feed every partition) but stay silent. None: all
    (one worker, offline replay)."""
    leader: bool = True
    """Publishes the market-wide source alerts (every worker tracks source health; one speaks)."""
    admission: Admission = field(default_factory=Admission)
    """Caps on distinct portfolios, strategies and assets (``agents.admission``)."""
    max_skip_bars: int = 1_000
    """An empty stretch longer than this many bars is crossed in O(1) (first and last bars close)."""
    checkpoint_ms: int = 0
    """Event-time ms between aligned state checkpoints; 0: none (offline replay). The clock stops
    once at one millisecond before each multiple (``checkpoint_due`` is set; :meth:`resume` goes on)
    so that every worker's checkpoint describes the same instant and the partitions of several
    workers' checkpoints can be restored together. The outputs do not depend on it."""
    watch: MarketWatch = field(default_factory=MarketWatch)
    """Per-asset, per-chain, per-strategy and global figures for the ``asset``/``global`` rules and
    the strategies' ``recent`` block (:mod:`agents.marketwatch`)."""
    eval_ms: int = 1_000
    """Event-time ms between market-wide rule evaluations (asset, global, source, strategy recent);
    reduced to the largest divisor of ``bar_ms`` not above it."""

    def __post_init__(self) -> None:
        self.eval_ms = math.gcd(max(1, min(self.eval_ms, self.bar_ms)), self.bar_ms)
        self._health: dict[str, dict[str, Any]] = {}
        """Strategy -> its health figures at the last bar close (the eval steps reuse them)."""
        self._heap: list[tuple[int, int, bytes, str, dict[str, Any]]] = []
        self._max_ts: int | None = None
        self._key_ts: dict[tuple[str, str], int] = {}
        """(input topic, record key) -> the latest event time offered with that key: the time of a
        rejected record of that key (:meth:`reject`)."""
        self._rejects = 0  # tie-breaker of rejected records in the heap (their order is immaterial)
        self._source_max: dict[tuple[str, int], int | None] = {}
        self._source_wall: dict[tuple[str, int], float] = {}
        self._at_head: set[tuple[str, int]] = set()  # sources whose reader is at the partition's end
        self._behind: set[tuple[str, int]] = set()  # sources whose reader knows it has records left
        self._clock: int | None = None  # event time up to which everything has been processed
        self._resuming = False
        """Set by ``agents.state.restore``: nothing is released until the market is offered again,
        and then every source starts its idle time (as at a cold start)."""
        self.checkpoint_due: int | None = None
        """The clock stopped here (a multiple of ``checkpoint_ms`` less 1 ms): take the checkpoint,
        then call :meth:`resume`."""
        self._held: int | None = None  # the watermark the stop held back
        self._stopped_for = -1  # the last checkpoint multiple the clock stopped for
        self._dirty: set[str] = set()
        self._sources: dict[str, SourceHealth] = {}
        self._strategies: set[str] = set()
        self.latest_snapshots: dict[str, dict[str, Any]] = {}
        self.last_reload: dict[str, list[str]] = {}
        """Rule names added, removed and changed by the last reload."""
        self._home: dict[tuple[str, str], int] = {}  # ("portfolio"|"strategy", name) -> partition
        self._step_errors: list[dict[str, Any]] = []
        self._errored: dict[str, list[dict[str, Any]]] = {}
        """Portfolio -> errors of its events that failed; cleared by its next valid event."""

    @property
    def watermark_ms(self) -> int:
        return self._clock or 0

    @property
    def buffered(self) -> int:
        """Events offered and not yet released (waiting for the watermark)."""
        return len(self._heap)

    def market_ahead(self, wall_s: float) -> bool:
        """The market ticks are not what holds the watermark back: every tick partition has offered
        an event newer than the slowest active partitioned input that holds the clock (one not idle
        at ``wall_s``, see ``_idle``). A feed reading the ticks may
        then wait for the partitioned inputs without stopping the clock: they, or their idleness,
        release the buffered ticks."""
        ticks: list[int] = []
        others: list[int] = []
        for source, ts in self._source_max.items():
            if source[0] == "mev.market.ticks":
                if ts is None:
                    return False
                ticks.append(ts)
            elif ts is not None and self._holds_clock(source) and not self._idle(source, wall_s):
                others.append(ts)
        return bool(ticks and others) and min(ticks) > min(others)

    # ---- inputs ------------------------------------------------------------
    def offer(
        self, topic: str, value: dict[str, Any], partition: int = 0, wall_s: float | None = None,
        arrival_ms: int | None = None,
    ) -> list[Output]:
        """Accept one validated input event from ``topic[partition]``; return what it releases.

        ``wall_s`` (monotonic seconds) lets idle partitions stop holding the watermark back.
        ``arrival_ms`` (the wall clock when it was read, ms since the epoch; None offline): an event
        stamped ahead of it moves its partition's progress only up to it. Inputs may be stamped up
        to the admitted future skew ahead, and one such record (a bot's clock, or a hostile one)
        would otherwise stop its partition holding the clock back for that long, so the partition's
        next records (stamped correctly, about the wall clock) could arrive behind the watermark
        and be late. A lower hold only delays a release, never changes it, so the outputs stay
        those of the offline replay.
        """
        ts = int(value["ts_ms"])
        source = (topic, partition)
        if topic == "mev.positions" and ("portfolio", value["portfolio"]) not in self._home:
            self._home[("portfolio", value["portfolio"])] = partition
        elif topic == "mev.strategy.stats" and ("strategy", value["strategy"]) not in self._home:
            self._home[("strategy", value["strategy"])] = partition
        if topic == "mev.market.ticks" and not self._market_seen():
            if wall_s is not None:
                for waiting in self._source_max:
                    # every source starts its idle time with the market: expected partitions, those
                    # the start-up replay offered, and after a restore the restored ones (the wall
                    # time recovery spent before the ticks resume must not make them idle, or the
                    # ticks alone would run the clock past their next events)
                    self._source_wall[waiting] = wall_s
            self._resuming = False
        held = ts if arrival_ms is None else min(ts, arrival_ms)
        self._source_max[source] = max(held, self._source_max.get(source) or held)
        self._note_key_time(topic, value, ts)
        if wall_s is not None:
            self._source_wall[source] = wall_s
        self._max_ts = ts if self._max_ts is None else max(self._max_ts, ts)
        if self._clock is not None and ts < self._clock:
            self.stats.late += 1
            self.stats.late_by_topic[topic] = self.stats.late_by_topic.get(topic, 0) + 1
            out: list[Output] = []
            self._apply(topic, value, out)
            return out
        key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        heapq.heappush(self._heap, (ts, TOPIC_RANK.get(topic, 9), key, topic, value))
        watermark = self._source_watermark(wall_s)
        return [] if watermark is None else self._release(watermark)

    def expect(self, topic: str, partition: int, wall_s: float) -> None:
        """Declare a source before its first event: it holds the watermark until it offers
        something or has been silent for ``idle_source_secs``."""
        self._source_max.setdefault((topic, partition), None)
        self._source_wall.setdefault((topic, partition), wall_s)

    def _note_key_time(self, topic: str, value: dict[str, Any], ts: int) -> None:
        fields = INPUT_KEY_FIELDS.get(topic, ())
        key = next((value[f] for f in fields if isinstance(value.get(f), str)), None)
        if key is None:
            return
        entry = (topic, key)
        if entry in self._key_ts:
            self._key_ts[entry] = max(self._key_ts[entry], ts)
        elif len(self._key_ts) < KEY_TIMES_MAX:
            self._key_ts[entry] = ts

    def reject_time(self, topic: str, key: str | None) -> int | None:
        """The event time of a record of ``topic`` with record key ``key`` rejected to ``risk.dlq``:
        the latest event time offered with that key on that topic (a rejected record's own time is
        untrusted, and its broker time is wall time); an unknown key: the latest event time offered
        (None before any). Records of one key keep their order in Kafka (one partition) and in a
        recording, so both paths give the same time; only the fallback depends on arrival."""
        known = self._key_ts.get((topic, key)) if key is not None else None
        return known if known is not None else self._max_ts

    def reject(self, topic: str, key: str | None, reason: str) -> list[Output]:
        """Count an input of ``topic`` with record key ``key``, rejected before the pipeline (it
        went to ``risk.dlq``), at :meth:`reject_time`; it is ordered with the inputs, never holds
        the watermark, and feeds the ``global`` scope's DLQ rate (``system.dlq_recent``). Before any
        event time is known it is not counted."""
        ts = self.reject_time(topic, key)
        if ts is None:
            return []
        value = {"topic": topic, "reason": reason, "ts_ms": ts}
        if self._clock is not None and ts < self._clock:
            self.watch.on_rejected(self._clock)  # late: counted now, as a late input is applied now
            return []
        self._rejects += 1
        order = orjson.dumps(value, option=orjson.OPT_SORT_KEYS) + b"#%d" % self._rejects
        heapq.heappush(self._heap, (ts, TOPIC_RANK[REJECTED], order, REJECTED, value))
        return []  # the watermark did not move

    def at_head(self, topic: str, partition: int, caught_up: bool, exact: bool = False) -> None:
        """Tell whether the reader of ``topic[partition]`` has read everything the broker held at
        its last fetch (the partition's end offset): such a source stops holding the watermark
        after ``head_idle_secs`` without an event instead of ``idle_source_secs``. ``exact``: the
        reader's position is exact (the market feed's own consumer), so a source behind its end
        never counts as idle: its records are there to be read, and releasing past them would make
        them late (a worker whose event loop stalled for seconds, say after a restore, would
        otherwise let the first partition it reads move the clock past the others)."""
        source = (topic, partition)
        if caught_up:
            self._at_head.add(source)
        else:
            self._at_head.discard(source)
        if exact and not caught_up:
            self._behind.add(source)
        else:
            self._behind.discard(source)

    def inputs_pending(self) -> bool:
        """A tick partition the market feed knows has records left to read (:meth:`at_head` with
        ``exact``): the input is not quiet, whatever the wall time since its last event."""
        return bool(self._behind)

    def _idle(self, source: tuple[str, int], wall_s: float) -> bool:
        if source in self._behind:
            return False
        quiet = wall_s - self._source_wall.get(source, wall_s)
        return quiet >= self.idle_source_secs or (
            0 < self.head_idle_secs <= quiet and source in self._at_head)

    def _market_seen(self) -> bool:
        """A market tick has been offered (since the restore, for a restored pipeline)."""
        return not self._resuming and any(
            t == "mev.market.ticks" and ts is not None for (t, _), ts in self._source_max.items())

    def _holds_clock(self, source: tuple[str, int]) -> bool:
        """Market partitions always count; a partitioned input only where this worker owns it
        (the replay feeds it the others too, whose newest event would otherwise pin the clock)."""
        topic, partition = source
        return topic == "mev.market.ticks" or self.owned_partitions is None or (
            partition in self.owned_partitions)

    def _source_watermark(self, wall_s: float | None) -> int | None:
        if not self._market_seen():
            return None
        sources = [(source, ts) for source, ts in self._source_max.items() if self._holds_clock(source)]
        active = [ts for source, ts in sources if wall_s is None or not self._idle(source, wall_s)]
        live = [ts for ts in active if ts is not None]
        if len(live) < len(active):
            return None
        seen = [ts for _, ts in sources if ts is not None]
        if not seen:
            return None
        if live:
            return min(live) - self.allowed_lateness_ms
        # every source is idle: nothing holds the clock, up to the newest event (less the lateness).
        # Not the oldest: which partition fell silent last is wall timing, and min(live) released
        # past every partition that fell silent before the others, so the clock a quiet pipeline
        # came to rest at depended on that order (a restarted worker replaying the same input went
        # further than the first and published events the first had never reached)
        return max(seen) - self.allowed_lateness_ms

    def poll(self, wall_s: float) -> list[Output]:
        """Re-evaluate the watermark at wall time ``wall_s``: partitions that fell idle since the
        last event stop holding it back (called every second by the worker)."""
        watermark = self._source_watermark(wall_s)
        if watermark is None or watermark <= (self._clock or 0):
            return []
        return self._release(watermark)

    def heartbeat(self, watermark_ms: int) -> list[Output]:
        """Advance the clock to ``watermark_ms`` (idle inputs, or the end of a replay)."""
        return self._release(watermark_ms)

    def drain(self) -> list[Output]:
        """Release everything buffered and close the bar in progress (end of an offline replay)."""
        if self._max_ts is None:
            return []
        out = self._release(self._max_ts)
        while self.checkpoint_due is not None:
            out.extend(self.resume())
        return out

    def resume(self) -> list[Output]:
        """After the checkpoint at ``checkpoint_due``: release what the stop held back (which may stop
        at the next checkpoint time again)."""
        self.checkpoint_due = None
        held, self._held = self._held, None
        return [] if held is None or held <= (self._clock or 0) else self._release(held)

    # ---- event-time machinery ------------------------------------------------
    def _stop_before(self, watermark: int) -> int | None:
        """The checkpoint instant (a multiple less 1 ms) the clock must stop at on its way to
        ``watermark``, if it crosses one it has not stopped for yet. A clock not started yet starts
        just before the first buffered event: a first release that jumps far (a worker whose
        partitions were empty waits for them to fall idle, then releases all the ticks it read
        meanwhile) still stops at the first instant on its way, as its peers do."""
        start = self._clock if self._clock is not None else (self._heap[0][0] - 1 if self._heap else None)
        if not self.checkpoint_ms or start is None:
            return None
        multiple = (start // self.checkpoint_ms + 1) * self.checkpoint_ms
        if multiple > watermark or multiple <= self._stopped_for:
            return None  # resumed from that stop: the rest of the jump goes at once (an empty day too)
        self._stopped_for = multiple
        return multiple - 1

    def _release(self, watermark: int) -> list[Output]:
        stop = self._stop_before(watermark)
        if stop is not None:
            self._held = max(watermark, self._held or watermark)
            watermark = stop
        out: list[Output] = []
        while self._heap and self._heap[0][0] <= watermark:
            ts, _, _, topic, value = heapq.heappop(self._heap)
            self._advance_clock(ts, out)
            self._apply(topic, value, out)
            self.stats.released += 1
        self._advance_clock(watermark, out)
        if stop is not None:
            self.checkpoint_due = stop
        return out

    def _advance_clock(self, to_ms: int, out: list[Output]) -> None:
        if self._clock is None:
            self._clock = to_ms
            return
        while self._clock < to_ms:
            next_bar = (self._clock // self.bar_ms + 1) * self.bar_ms
            last_bar = to_ms // self.bar_ms * self.bar_ms
            if not self._dirty and self._clock % self.bar_ms == 0 and (
                    (last_bar - next_bar) // self.bar_ms > self.max_skip_bars):
                # an empty stretch: the bar after the gap's first closes as if it followed it
                self.stats.skipped_bars += (last_bar - next_bar) // self.bar_ms
                self._clock = last_bar - self.bar_ms
                continue
            next_coalesce = (self._clock // self.coalesce_ms + 1) * self.coalesce_ms
            next_eval = (self._clock // self.eval_ms + 1) * self.eval_ms
            boundary = min(next_bar, next_eval, next_coalesce) if self._dirty else min(next_bar, next_eval)
            if boundary > to_ms:
                self._clock = to_ms
                return
            self._clock = boundary
            if boundary == next_bar:
                self._close_bar(boundary, out)
                continue
            if boundary == next_coalesce and self._dirty:
                self._snapshot_dirty(boundary, out)
            if boundary == next_eval:
                self._eval_step(boundary, out)

    def _apply(self, topic: str, value: dict[str, Any], out: list[Output]) -> None:
        """Apply one released event; admission refusals and exceptions quarantine it."""
        try:
            if topic not in (OPERATOR, REJECTED):
                self.admission.admit(topic, value)
        except AdmissionRefused as refused:
            self._dead_letter(topic, value, refused.reason, refused.detail, refused.entity, None, out)
            return
        try:
            self._apply_event(topic, value, out)
        except Exception as exc:  # isolation: one event never stops the pipeline (module docstring)
            entity = _entity_of(topic, value)
            self._dead_letter(topic, value, "processing_error", f"{type(exc).__name__}: {exc}"[:500],
                              entity, type(exc).__name__, out)
            self._count_error(_STAGES.get(topic, "operator"))
            if topic == "mev.positions":
                errors = self._errored.setdefault(value["portfolio"], [])
                if len(errors) < MAX_ENTITY_ERRORS:
                    errors.append({"stage": "position", "error": type(exc).__name__,
                                   "detail": str(exc)[:200], "ts_ms": int(value["ts_ms"])})
                self._dirty.add(value["portfolio"])
        else:
            if topic == "mev.positions" and value["portfolio"] in self._errored:
                del self._errored[value["portfolio"]]  # its next valid event recovers the portfolio
                self._dirty.add(value["portfolio"])

    def _count_error(self, stage: str) -> None:
        self.stats.processing_errors[stage] = self.stats.processing_errors.get(stage, 0) + 1

    def _dead_letter(self, topic: str, value: dict[str, Any], reason: str, detail: str, entity: str | None,
                     error_type: str | None, out: list[Output]) -> None:
        """Quarantine a released event to ``risk.dlq`` (published by the worker that speaks for it:
        the owner of its partition, the leader for market events)."""
        self.stats.dead_letters[reason] = self.stats.dead_letters.get(reason, 0) + 1
        ts = value.get("ts_ms")
        self.watch.on_rejected(ts if isinstance(ts, int) else self.watermark_ms)
        kind = {"mev.positions": "portfolio", "mev.strategy.stats": "strategy"}.get(topic)
        name = value.get("portfolio" if kind == "portfolio" else "strategy")
        speaks = self.owns(kind, str(name)) if kind is not None else self.leader
        if not speaks:
            return
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        head, size, digest = excerpt(raw)
        partition = self._home.get((kind, str(name)), -1) if kind is not None else -1
        out.append(("risk.dlq", topic, {
            "source_topic": topic, "partition": partition, "offset": -1, "reason": reason,
            "detail": detail, "key_b64": None, "value_b64": base64.b64encode(head).decode("ascii"),
            "received_ts_ms": int(value.get("ts_ms", self.watermark_ms)), "value_size": size,
            "value_sha256": digest, "truncated": size > len(head), "entity": entity,
            "error_type": error_type,
        }))

    def _guarded(self, stage: str, portfolio: str | None, step: Callable[[], Any]) -> Any:
        """Run one computation step; an exception is counted and, for a portfolio, recorded in
        its next snapshot's ``errors``. Returns None when the step raised."""
        try:
            return step()
        except Exception as exc:  # isolation: one portfolio's or stage's failure stays local
            self._count_error(stage)
            if portfolio is not None:
                self._step_errors.append({"stage": stage, "error": type(exc).__name__,
                                          "detail": str(exc)[:200]})
            return None

    def _apply_event(self, topic: str, value: dict[str, Any], out: list[Output]) -> None:
        if topic == "mev.market.ticks":
            if self.risk.on_tick(value) and self.refresh_on_price and value.get("kind") == "price":
                # the portfolios holding the asset are re-marked at the next coalescing boundary
                self._dirty.update(self.risk.holders(value["asset"]))
            scored = self.models.on_tick(value) if self.models is not None else None
            self.watch.on_tick(value, None if scored is None else scored.score,
                               scored is not None and scored.is_anomaly)
            source = value["source"]
            health = self._sources.get(source)
            if health is None:
                limit = self.source_limits_ms.get(source, 30_000)
                self._sources[source] = SourceHealth(source, value["ts_ms"], limit)
            else:
                health.last_ts_ms = max(health.last_ts_ms, value["ts_ms"])
        elif topic == "mev.positions":
            if self.risk.on_position(value):
                self._dirty.add(value["portfolio"])
            else:
                self.stats.stale_positions += 1
        elif topic == "mev.strategy.stats":
            self.risk.on_strategy_stats(value)
            self.watch.on_stats(value)
            self._strategies.add(value["strategy"])
        elif topic == REJECTED:
            self.watch.on_rejected(int(value["ts_ms"]))
        elif topic == OPERATOR:
            out.extend(self._operate(value))

    # ---- per bar and per coalesce boundary ------------------------------------
    def _close_bar(self, bar_end: int, out: list[Output]) -> None:
        models, checkpoints = self.models, self.checkpoints
        if models is not None and checkpoints is not None:
            # the models hold every event < bar_end; none is taken far behind the input head (replay)
            self._guarded("models", None, lambda: checkpoints.on_bar(models, bar_end, self.bar_ms,
                                                                     head_ms=self._max_ts))
        self._guarded("bar", None, lambda: self.risk.advance(bar_end))
        if models is not None:
            self._guarded("models", None, lambda: models.advance(bar_end))
        for portfolio in sorted(self.risk.portfolios):
            if self.owns("portfolio", portfolio):
                self._snapshot(portfolio, bar_end, out)
        self._dirty.clear()
        for strategy in sorted(self._strategies):
            if self.owns("strategy", strategy):
                health = self._guarded("strategy_health", None,
                                       partial(self.risk.strategy_health, strategy, bar_end))
                if health is not None:
                    self._health[strategy] = health
                    context = {**health, "recent": self.watch.strategy_recent(strategy, bar_end)}
                    self._alerts(self._evaluate("strategy", strategy, context, bar_end), out)
        self._market_scopes(bar_end, out)
        self._alerts(self._guarded("alerts", None, lambda: self.alerts.tick(bar_end)) or (), out)

    def _eval_step(self, ts_ms: int, out: list[Output]) -> None:
        """Between bars, at each ``eval_ms``: strategy rules on the last bar's health and the fresh
        ``recent`` block, the market-wide scopes, then the timed transitions."""
        for strategy in sorted(self._health):
            if self.owns("strategy", strategy):
                context = {**self._health[strategy], "recent": self.watch.strategy_recent(strategy, ts_ms)}
                self._alerts(self._evaluate("strategy", strategy, context, ts_ms), out)
        self._market_scopes(ts_ms, out)
        self._alerts(self._guarded("alerts", None, lambda: self.alerts.tick(ts_ms)) or (), out)

    def _market_scopes(self, ts_ms: int, out: list[Output]) -> None:
        """Source, asset and global rules (the leader's): one asset context per asset, one global."""
        if not self.leader:
            return
        for name in sorted(self._sources):
            self._alerts(self._evaluate("source", name, self._sources[name].context(ts_ms), ts_ms), out)
        plans = self.alerts.ruleset.plans
        if "asset" not in plans and "global" not in plans:
            return
        assets = self._guarded("watch", None, lambda: {
            n: self.watch.asset_context(n, ts_ms) for n in self.watch.assets}) or {}
        for name, context in assets.items():
            self._alerts(self._evaluate("asset", name, context, ts_ms), out)
        if "global" in plans:
            system = self._guarded("watch", None, lambda: self.watch.global_context(
                ts_ms, assets, self._market_figures()))
            if system is not None:
                self._alerts(self._evaluate("global", GLOBAL_ENTITY, system, ts_ms), out)

    def _market_figures(self) -> dict[str, float]:
        """The risk core's market flags (seed names): volatility, correlation, liquidity ratio."""
        summary = self.risk.market_summary()
        names = list(self.risk.assets.names)
        cov = self.risk.ewma.covariance(len(names))
        return {"volatility": float(summary["volatility"]),
                "liquidity_ratio": float(summary["liquidity_ratio"]),
                "correlation": mean_correlation(cov, names, self.watch.config.pegs)}

    def _evaluate(self, scope: str, entity: str, context: dict[str, Any], ts_ms: int) -> Iterable[Any]:
        return self._guarded("alerts", None,
                             lambda: list(self.alerts.evaluate(scope, entity, context, ts_ms))) or ()

    def owns(self, kind: str, name: str) -> bool:
        """Whether this worker publishes for the portfolio or strategy ``name`` (``kind``)."""
        return self.owned_partitions is None or self._home.get((kind, name)) in self.owned_partitions

    def home_of(self, kind: str, name: str) -> int | None:
        """The input partition of the portfolio or strategy ``name`` (None: no input named it yet)."""
        return self._home.get((kind, name))

    def _snapshot_dirty(self, ts_ms: int, out: list[Output]) -> None:
        for portfolio in sorted(self._dirty):
            if self.owns("portfolio", portfolio):
                self._snapshot(portfolio, ts_ms, out, at_bar=False)
        self._dirty.clear()

    def _snapshot(self, portfolio: str, ts_ms: int, out: list[Output], at_bar: bool = True) -> None:
        """Publish a snapshot. The portfolio models learn and predict once per bar (their horizons
        count bars); a coalesced snapshot between bars carries the bar's predictions."""
        self._step_errors = []
        computed = self._guarded("snapshot", portfolio, lambda: self.risk.snapshot(portfolio, ts_ms))
        snapshot: dict[str, Any] = computed if computed is not None else {
            "portfolio": portfolio, "ts_ms": ts_ms}  # figures unavailable: the errors say why
        models = self.models
        if models is not None and computed is not None:
            anomaly = self._guarded("models", portfolio, lambda: (
                models.on_snapshot(portfolio, snapshot) if at_bar
                else models.between_bars(portfolio, snapshot)))
            if anomaly is not None:
                snapshot["anomaly"] = anomaly
        if computed is not None:
            trend = self._guarded("snapshot", portfolio, lambda: self.watch.on_snapshot(portfolio, snapshot))
            if trend is not None:
                snapshot["trend"] = trend
        for enrich in self.enrichers:
            self._guarded("snapshot", portfolio, partial(enrich, snapshot))
        non_finite: list[str] = []
        if b"null" in orjson.dumps(snapshot, option=_JSON_OPTIONS):  # orjson writes NaN/inf as null
            _unavailable_non_finite(snapshot, "", non_finite)
        if non_finite:  # reported as unavailable (None) with the reason, never as NaN
            self._count_error("snapshot")
            self._step_errors.append({"stage": "snapshot", "error": "NonFinite",
                                      "detail": "not finite: " + ", ".join(non_finite[:5])})
        snapshot["errors"] = [*self._errored.get(portfolio, ()), *self._step_errors]
        snapshot["error_count"] = len(snapshot["errors"])
        self.latest_snapshots[portfolio] = snapshot
        out.append(("risk.snapshots", portfolio, snapshot))
        self.stats.snapshots += 1
        self._alerts(self._evaluate("portfolio", portfolio, snapshot, ts_ms), out)

    def _alerts(self, events: Iterable[Any], out: list[Output]) -> None:
        for event in events:
            if not self.leader and event.scope in MARKET_SCOPES:
                continue  # restored market-wide states may still tick here: the leader speaks for them
            self._guarded("alerts", None, partial(self._alert, event, out))

    def _alert(self, event: Any, out: list[Output]) -> None:
        """Publish one alert event, audit it, and issue the control its rule asks for."""
        record = event.to_dict()
        out.append(("risk.alerts", record["fingerprint"], record))
        self._audited("alert", record, self._chain_of(record["scope"], record["entity_id"]), out)
        self.stats.alert_events += 1
        fired_on_portfolio = record["transition"] == "firing" and record["scope"] == "portfolio"
        if self.models is not None and fired_on_portfolio:
            self.models.on_alert(record["entity_id"], record["ts_ms"], record["severity"])
        control = self.kill_switch.from_alert(record)
        if control is not None:
            self.publish_control(control.to_dict(), out)

    def publish_control(self, control: dict[str, Any], out: list[Output]) -> None:
        out.append(("risk.controls", control["scope"], control))
        kind, _, name = str(control["scope"]).partition(":")
        self._audited("control", control, self._chain_of(kind, name), out)
        self.stats.controls += 1

    def _chain_of(self, scope: str, entity: str) -> str:
        """The audit chain of a portfolio or strategy: its input partition's; else ``risk``."""
        home = self._home.get((scope, entity)) if scope in ("portfolio", "strategy") else None
        return GLOBAL_CHAIN if home is None else f"{GLOBAL_CHAIN}-p{home}"

    def _audited(self, kind: str, payload: Mapping[str, Any], chain: str, out: list[Output]) -> None:
        """Append to ``chain``; the global chain only on the leader, so one worker writes it."""
        if chain == GLOBAL_CHAIN and not self.leader:
            return
        audit = self.audits.get(chain)
        if audit is None:
            audit = self.audits[chain] = AuditChain(chain)
        record = audit.append(kind, payload, int(payload.get("ts_ms", self.watermark_ms)))
        out.append(("risk.audit", record["stream"], record))

    # ---- operator actions (API) ----------------------------------------------
    def schedule_operator(self, action: dict[str, Any]) -> None:
        """Queue an operator action read back from ``risk.audit`` so a replay re-applies it at
        the event time it was taken (after the inputs of that millisecond)."""
        key = b"%020d" % int(action.get("audit_order", 0))  # same event time: in the order audited
        heapq.heappush(self._heap, (int(action["ts_ms"]), TOPIC_RANK[OPERATOR], key, OPERATOR, action))

    def _operate(self, action: dict[str, Any]) -> list[Output]:
        kind, actor, comment = action["kind"], action["actor"], action.get("comment", "")
        self.stats.operator_replayed += 1
        try:
            if kind == "acknowledge":
                return self.acknowledge(action["alert_id"], actor, comment)
            if kind == "resolve":
                return self.resolve(action["alert_id"], actor, comment)
            if kind == "command":
                return self.command(action["scope"], action["command"], actor, action["reason"])
            if kind == "silence_add":
                return self.add_silence(action["matchers"], action["starts_ms"], action["ends_ms"],
                                        actor, comment)[1]
            if kind == "silence_delete":
                return self.delete_silence(action["id"], actor)
            if kind == "rules_reload":
                ruleset = parse_rules(action["document"], action["source"])
                return self.reload_rules(ruleset, actor, action["document"])
        except (KeyError, MevRiskError, TypeError, ValueError):  # e.g. the alert it named does not exist,
            self.stats.operator_skipped += 1  # or a silence refused (bad regex, too many)
            return []
        return []

    def add_silence(
        self, matchers: Any, starts_ms: int, ends_ms: int, actor: str, comment: str
    ) -> tuple[str, list[Output]]:
        sid = self.alerts.add_silence(matchers, starts_ms, ends_ms, actor, comment)
        added = next(s for s in self.alerts.silences() if s.id == sid)
        payload = {"action": "add", "id": sid, "actor": actor, "comment": comment,
                   "starts_ms": starts_ms, "ends_ms": ends_ms,
                   "matchers": [m.to_dict() for m in added.matchers]}
        out: list[Output] = []
        self._audited("silence", {**payload, "ts_ms": self.watermark_ms}, GLOBAL_CHAIN, out)
        return sid, out

    def delete_silence(self, silence_id: str, actor: str) -> list[Output]:
        if not self.alerts.delete_silence(silence_id):
            return []
        payload = {"action": "delete", "id": silence_id, "actor": actor, "ts_ms": self.watermark_ms}
        out: list[Output] = []
        self._audited("silence", payload, GLOBAL_CHAIN, out)
        return out

    def acknowledge(self, alert_id: str, actor: str, comment: str) -> list[Output]:
        out: list[Output] = []
        self._alerts(self.alerts.acknowledge(alert_id, actor, comment, self.watermark_ms), out)
        return out

    def resolve(self, alert_id: str, actor: str, comment: str) -> list[Output]:
        out: list[Output] = []
        self._alerts(self.alerts.resolve(alert_id, actor, comment, self.watermark_ms), out)
        return out

    def reload_rules(self, ruleset: Any, actor: str = "reload", document: Any = None) -> list[Output]:
        """Swap in a compiled rule set; unchanged rules keep their state, alerts of changed or
        removed rules resolve (and are published and audited like any transition). The reload
        is audited last (``rules_reload``: actor, counts, names added/removed/changed, and the
        parsed ``document`` when given, so a replay after a restart reloads the same rules)."""
        before = {r.name: r.definition_hash for r in self.alerts.ruleset.rules}
        out: list[Output] = []
        self._alerts(self.alerts.reload(ruleset, self.watermark_ms), out)
        after = {r.name: r.definition_hash for r in ruleset.rules}
        payload: dict[str, Any] = {
            "actor": actor, "source": ruleset.source, "rules": len(ruleset),
            "added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(n for n in set(after) & set(before) if after[n] != before[n]),
            "ts_ms": self.watermark_ms,
        }
        self.last_reload = {k: payload[k] for k in ("added", "removed", "changed")}
        if document is not None:
            payload["document"] = document
        self._audited("rules_reload", payload, GLOBAL_CHAIN, out)
        return out

    def command(self, scope: str, command: str, actor: str, reason: str) -> list[Output]:
        out: list[Output] = []
        control = self.kill_switch.command(
            scope, command, actor=actor, reason=reason, ts_ms=self.watermark_ms
        )
        self.publish_control(control.to_dict(), out)
        return out

    def sources(self) -> list[dict[str, Any]]:
        return [self._sources[n].context(self.watermark_ms) for n in sorted(self._sources)]


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
MAX_ENTITY_ERRORS = 8
"""A portfolio's snapshot lists at most this many errors of its failed events."""
_STAGES = {"mev.market.ticks": "tick", "mev.positions": "position", "mev.strategy.stats": "strategy_stats"}


def _entity_of(topic: str, value: Mapping[str, Any]) -> str | None:
    """The portfolio, strategy or asset/chain an event concerns."""
    for name in ("portfolio", "strategy", "asset", "chain"):
        if isinstance(value.get(name), str):
            return str(value[name])
    return None


def _unavailable_non_finite(node: Any, path: str, found: list[str]) -> Any:
    """Replace every NaN/inf number under ``node`` with None, recording its path in ``found``.

    >>> found = []
    >>> _unavailable_non_finite({"a": 1.0, "b": [float("nan")]}, "", found), found
    ({'a': 1.0, 'b': [None]}, ['b[0]'])
    """
    if isinstance(node, float):
        if math.isfinite(node):
            return node
        found.append(path)
        return None
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, float | dict | list | np.ndarray):
                node[key] = _unavailable_non_finite(value, f"{path}.{key}" if path else str(key), found)
        return node
    if isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, float | dict | list | np.ndarray):
                node[i] = _unavailable_non_finite(value, f"{path}[{i}]", found)
        return node
    if isinstance(node, np.ndarray) and node.dtype.kind == "f" and not np.isfinite(node).all():
        found.append(path)
        return None
    return node


def is_pipeline_chain(stream: str) -> bool:
    """Whether an audit chain is written by the pipeline (``risk``, ``risk-p<N>``)."""
    return stream == GLOBAL_CHAIN or stream.startswith(f"{GLOBAL_CHAIN}-p")


def operator_actions(audit_records: Iterable[Mapping[str, Any]],
                     orders: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """The operator actions recorded on the pipeline's audit chains, as ``schedule_operator``
    takes them.

    Acknowledgements and manual resolutions are read from their alert events, commands
    from controls whose actor is not a rule, silences from their own records. ``orders``: each
    record's offset on ``risk.audit`` (default: its position in ``audit_records``), the order
    actions of the same event time are applied in.
    """
    actions: list[dict[str, Any]] = []
    records = list(audit_records)
    for order, record in zip(range(len(records)) if orders is None else orders, records, strict=True):
        if not is_pipeline_chain(str(record.get("stream"))):
            continue
        try:
            action = _operator_action(record)
        except (KeyError, TypeError, ValueError, AttributeError):  # malformed: skipped, never a crash
            continue
        if action is not None:
            action["audit_order"] = order  # position on risk.audit (one partition): the order taken
            actions.append(action)
    return actions


def _operator_action(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The operator action one pipeline audit record stands for, if any (raises on a malformed one)."""
    kind, p, ts = record["kind"], record["payload"], int(record["ts_ms"])
    if kind == "alert" and p.get("transition") == "acknowledged":
        return {"kind": "acknowledge", "alert_id": p["id"], "actor": p["acknowledged_by"],
                "comment": p.get("ack_comment") or "", "ts_ms": ts}
    if kind == "alert" and p.get("transition") == "resolved" and p.get("resolved_by") not in (None, "reload"):
        return {"kind": "resolve", "alert_id": p["id"], "actor": p["resolved_by"],
                "comment": (p.get("annotations") or {}).get("comment", ""), "ts_ms": ts}
    if kind == "control" and not str(p.get("actor", "")).startswith("rule:"):
        return {"kind": "command", "scope": p["scope"], "command": p["command"],
                "actor": p["actor"], "reason": p.get("reason", ""), "ts_ms": ts}
    if kind == "silence" and p.get("action") == "add":
        return {"kind": "silence_add", "matchers": p["matchers"], "starts_ms": p["starts_ms"],
                "ends_ms": p["ends_ms"], "actor": p["actor"], "comment": p.get("comment", ""), "ts_ms": ts}
    if kind == "silence" and p.get("action") == "delete":
        return {"kind": "silence_delete", "id": p["id"], "actor": p["actor"], "ts_ms": ts}
    if kind == "rules_reload" and "document" in p:
        return {"kind": "rules_reload", "document": p["document"], "source": p["source"],
                "actor": p["actor"], "ts_ms": ts}
    return None
