"""Per-asset tick anomaly scoring for ``mev.market.ticks`` (pure core, no Faust).

A tick (wire contract fields ``kind``, ``asset``, ``chain``, ``pool``, ``price_usd``,
``base_fee_gwei``, ``priority_fee_gwei``, ``depth_usd``, ``spread_bps``, ``ts_ms``)
is turned into features by a per-key :class:`TickFeatureExtractor`, then scored by a
per-key base detector (:mod:`agents.anomaly.detectors`).

Features by kind:

* ``price``: ``ret_z`` — the log return since the last accepted price, divided by
  ``sqrt(dt)`` (seconds, floored at ``min_dt_ms``) and standardised against an online
  EWMA mean/variance of those returns.
* ``gas``: ``gas_log`` = ``ln(1 + base + priority)`` (gwei) and ``gas_log_change``
  since the last accepted gas tick.
* ``liquidity``: ``spread_bps`` and ``depth_log_change`` = change of ``ln(1 + depth_usd)``.

**Documented choice — flagged points are not learned.** Once a key is warm, a tick
whose score reaches ``threshold`` is flagged and neither the detector nor the
feature baselines (EWMA return stats, reference price) learn from it, so an outlier
cannot mask the next one and a single bad print does not make the following good
tick look like a jump. To follow genuine regime changes, after
``max_consecutive_flags`` flagged ticks in a row on one key the extractor re-anchors
on the new level and the detector learns the point (winsorised, so slowly).
During warm-up every tick is learned and nothing is flagged.

**Market view.** Each key also keeps its latest score with its event time, so the bundle can put
the recent scores of every asset and chain into the snapshot's market block and ``/metrics``
(:meth:`TickAnomalyDetector.recent_scores`), and each liquidity pool its traded volume
(``volume_usd``, optional) for the seed's volume ratio (:meth:`TickAnomalyDetector.volume_ratio`).
Both live in the detector, so the market-wide checkpoint carries them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agents.anomaly.detectors import Detector, make_detector
from agents.anomaly.errors import AnomalyError, InvalidFeatureInput

TICK_KINDS = ("price", "gas", "liquidity")


def _number(tick: dict[str, Any], field: str, *, positive: bool = False) -> float:
    value = tick.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidFeatureInput(f"{tick.get('kind')} tick needs numeric {field!r}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise InvalidFeatureInput(f"tick field {field!r} must be finite and {bound}, got {value!r}")
    return value


def _volume(tick: dict[str, Any]) -> float | None:
    """A liquidity tick's optional ``volume_usd`` (None when absent or another kind of tick)."""
    if tick.get("kind") != "liquidity" or tick.get("volume_usd") is None:
        return None
    return _number(tick, "volume_usd")


def tick_subject(key: str) -> str:
    """What a tick key is about: the asset (price, liquidity) or the chain (gas).

    >>> tick_subject("liquidity:ETH:uniswap-v3"), tick_subject("gas:ethereum")
    ('ETH', 'ethereum')
    """
    return key.split(":", 2)[1]


def tick_key(tick: dict[str, Any]) -> str:
    """State key of a tick: ``price:<asset>``, ``gas:<chain>``, ``liquidity:<asset>[:<pool>]``.

    >>> tick_key({"kind": "gas", "chain": "ethereum"})
    'gas:ethereum'
    """
    kind = tick.get("kind")
    if kind not in TICK_KINDS:
        raise InvalidFeatureInput(f"tick kind must be one of {TICK_KINDS}, got {kind!r}")
    field = "chain" if kind == "gas" else "asset"
    name = tick.get(field)
    if not isinstance(name, str) or not name:
        raise InvalidFeatureInput(f"{kind} tick needs a non-empty {field!r}, got {name!r}")
    pool = tick.get("pool")
    if kind == "liquidity" and isinstance(pool, str) and pool:
        return f"{kind}:{name}:{pool}"
    return f"{kind}:{name}"


def _ts_ms(tick: dict[str, Any]) -> int:
    ts = tick.get("ts_ms")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidFeatureInput(f"tick needs an integer 'ts_ms', got {ts!r}")
    return ts


class TickFeatureExtractor:
    """Feature state of one tick key. ``transform`` is pure; ``update``/``reanchor`` learn.

    >>> fx = TickFeatureExtractor("price")
    >>> t = {"kind": "price", "asset": "ETH", "price_usd": 2000.0, "ts_ms": 0}
    >>> fx.transform(t)
    {'ret_z': 0.0}
    >>> fx.update(t)
    """

    def __init__(self, kind: str, *, alpha: float = 0.02, min_dt_ms: int = 250) -> None:
        if kind not in TICK_KINDS:
            raise InvalidFeatureInput(f"unknown tick kind {kind!r}")
        self.kind = kind
        self.alpha = alpha
        self.min_dt_ms = min_dt_ms
        self.n = 0
        self._last: float | None = None  # last accepted price / gas_log / depth_log
        self._last_ts_ms: int | None = None
        self._ret_mean = 0.0
        self._ret_var = 0.0

    # -- raw per-kind values ------------------------------------------------------
    def _level(self, tick: dict[str, Any]) -> float:
        if self.kind == "price":
            return _number(tick, "price_usd", positive=True)
        if self.kind == "gas":
            base = _number(tick, "base_fee_gwei")
            prio = _number(tick, "priority_fee_gwei") if "priority_fee_gwei" in tick else 0.0
            return math.log1p(base + prio)
        return math.log1p(_number(tick, "depth_usd"))

    def _norm_return(self, price: float, ts_ms: int) -> float | None:
        if self._last is None or self._last_ts_ms is None:
            return None
        dt_s = max(ts_ms - self._last_ts_ms, self.min_dt_ms) / 1000.0
        # a difference of logs, not the log of a ratio: the ratio of two valid prices can
        # underflow to 0 (5e-324 / 3000) and log(0) raises
        return (math.log(price) - math.log(self._last)) / math.sqrt(dt_s)

    def reading(self, tick: dict[str, Any]) -> tuple[int, float, float | None]:
        """``(ts_ms, level, normalised return or None)`` of ``tick`` against the current state,
        validated once; ``features`` and ``accept`` take it, so a tick is read only once."""
        ts = _ts_ms(tick)
        level = self._level(tick)
        return ts, level, self._norm_return(level, ts) if self.kind == "price" else None

    def features(self, tick: dict[str, Any], reading: tuple[int, float, float | None]) -> dict[str, float]:
        """Features of a tick's ``reading`` against the current state (state unchanged)."""
        _, level, r = reading
        if self.kind == "price":
            if r is None or self.n < 3 or self._ret_var <= 0.0:
                return {"ret_z": 0.0}
            return {"ret_z": (r - self._ret_mean) / math.sqrt(self._ret_var)}
        change = 0.0 if self._last is None else level - self._last
        if self.kind == "gas":
            return {"gas_log": level, "gas_log_change": change}
        return {"spread_bps": _number(tick, "spread_bps"), "depth_log_change": change}

    # -- public -------------------------------------------------------------------
    def transform(self, tick: dict[str, Any]) -> dict[str, float]:
        """Features of ``tick`` against the current state (state unchanged)."""
        return self.features(tick, self.reading(tick))

    def update(self, tick: dict[str, Any]) -> None:
        """Accept ``tick``: update EWMA return stats and the reference level."""
        self.accept(self.reading(tick))

    def accept(self, reading: tuple[int, float, float | None]) -> None:
        """Learn a tick's ``reading`` (see ``update``)."""
        ts, level, r = reading
        if self.kind == "price":
            if r is not None:
                w = max(self.alpha, 1.0 / (self.n + 1))
                delta = r - self._ret_mean
                self._ret_mean += w * delta
                self._ret_var = (1.0 - w) * (self._ret_var + w * delta * delta)
                self.n += 1
        else:
            self.n += 1
        self._last, self._last_ts_ms = level, ts

    def reanchor(self, tick: dict[str, Any]) -> None:
        """Take ``tick``'s level as the new reference without learning its return."""
        self._last, self._last_ts_ms = self._level(tick), _ts_ms(tick)

    def reanchor_reading(self, reading: tuple[int, float, float | None]) -> None:
        """``reanchor`` from a reading already taken."""
        self._last, self._last_ts_ms = reading[1], reading[0]


@dataclass(frozen=True, slots=True)
class TickScore:
    """Outcome of scoring one tick."""

    key: str
    score: float
    is_anomaly: bool
    is_warm: bool
    learned: bool
    features: dict[str, float]


class _KeyState:
    """One key's models, its latest score (event time, score, flag) and, for a liquidity pool,
    its traded volume (latest and EWMA, USD) for the seed's volume ratio."""

    __slots__ = ("detector", "extractor", "flag_run", "last", "n_flagged", "n_seen", "volume",
                 "volume_ewma")

    def __init__(self, extractor: TickFeatureExtractor, detector: Detector) -> None:
        self.extractor = extractor
        self.detector = detector
        self._defaults()

    def _defaults(self) -> None:
        self.n_seen = 0
        self.n_flagged = 0
        self.flag_run = 0
        self.last: tuple[int, float, bool] | None = None
        self.volume: float | None = None
        self.volume_ewma: float | None = None

    def __setstate__(self, state: Any) -> None:
        """Unpickle; a state pickled before a slot existed gets that slot's default."""
        self._defaults()
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in (slots or {}).items():
            setattr(self, name, value)


class TickAnomalyDetector:
    """Per-key tick anomaly scorer (price per asset, gas per chain, liquidity per pool).

    ``score_one`` is pure; ``learn_one`` learns unless the tick is flagged (see the
    module docstring); ``process_one`` does both with one feature computation and is
    what the agent calls. Keys beyond ``max_keys`` evict the least recently seen key.

    ``method="hst"`` swaps in Half-Space Trees; its scores are not calibrated like
    the robust z ones (normal ticks score about 0.95-0.99), so it needs a threshold
    near 0.99 — see ``tests/unit/anomaly/test_detection.py`` for the comparison.

    >>> det = TickAnomalyDetector(seed=1, warmup=20)
    >>> for i in range(60):
    ...     _ = det.process_one({"kind": "price", "asset": "ETH", "ts_ms": i * 1000,
    ...                          "price_usd": 2000.0 * (1 + 0.001 * ((-1) ** i))})
    >>> crash = {"kind": "price", "asset": "ETH", "ts_ms": 60_000, "price_usd": 1500.0}
    >>> det.process_one(crash).is_anomaly
    True
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        method: str = "robust_z",
        threshold: float = 0.5,
        warmup: int = 100,
        max_keys: int = 1024,
        max_consecutive_flags: int = 5,
        feature_alpha: float = 0.02,
        min_dt_ms: int = 250,
        detector_params: dict[str, float] | None = None,
        volume_alpha: float = 0.05,
    ) -> None:
        self.seed = seed
        self.method = method
        self.threshold = threshold
        self.warmup = warmup
        self.max_keys = max_keys
        self.max_consecutive_flags = max_consecutive_flags
        self.feature_alpha = feature_alpha
        self.min_dt_ms = min_dt_ms
        self.detector_params = dict(detector_params or {})
        self.volume_alpha = volume_alpha
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()
        make_detector(method, seed=seed, **self.detector_params)  # fail fast on a bad method

    def _state(self, key: str, kind: str, *, create: bool) -> _KeyState | None:
        state = self._keys.get(key)
        if state is not None:
            self._keys.move_to_end(key)
            return state
        if not create:
            return None
        # A stable per-key seed (no hash(): it is salted per process).
        key_seed = self.seed * 1_000_003 + sum(key.encode()) * 31 + len(key)
        state = _KeyState(
            TickFeatureExtractor(kind, alpha=self.feature_alpha, min_dt_ms=self.min_dt_ms),
            make_detector(self.method, seed=key_seed, **self.detector_params),
        )
        self._keys[key] = state
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return state

    def score_one(self, tick: dict[str, Any]) -> float:
        """Anomaly score of ``tick`` in ``[0, 1]``; 0.0 for a key never seen."""
        key = tick_key(tick)
        state = self._keys.get(key)
        if state is None:
            TickFeatureExtractor(tick["kind"]).transform(tick)  # validate anyway
            return 0.0
        return state.detector.score_one(state.extractor.transform(tick))

    def learn_one(self, tick: dict[str, Any]) -> None:
        """Learn ``tick`` unless it is flagged (same as ``process_one``, result dropped)."""
        self.process_one(tick)

    def process_one(self, tick: dict[str, Any]) -> TickScore:
        """Score ``tick``, then learn it unless flagged; returns the full outcome."""
        key = tick_key(tick)
        state = self._state(key, tick["kind"], create=True)
        if state is None:  # create=True always returns a state
            raise AnomalyError(f"no tick model state for {key!r}")
        reading = state.extractor.reading(tick)
        volume = _volume(tick)
        features = state.extractor.features(tick, reading)
        score = state.detector.score_one(features)
        warm = state.n_seen >= self.warmup
        flagged = warm and score >= self.threshold
        state.n_seen += 1
        if state.last is None or reading[0] >= state.last[0]:
            state.last = (reading[0], score, flagged)
            if volume is not None:
                old = state.volume_ewma
                state.volume = volume
                state.volume_ewma = volume if old is None else old + self.volume_alpha * (volume - old)
        if not flagged:
            state.flag_run = 0
            state.extractor.accept(reading)
            state.detector.learn_one(features)
            return TickScore(key, score, False, warm, True, features)
        state.n_flagged += 1
        state.flag_run += 1
        learned = state.flag_run > self.max_consecutive_flags
        if learned:  # a persistent new regime: follow it (winsorised updates)
            state.extractor.reanchor_reading(reading)
            state.detector.learn_one(features)
        return TickScore(key, score, True, warm, learned, features)

    # -- market view ----------------------------------------------------------------
    def recent_scores(self, now_ms: int, window_ms: int) -> dict[str, float]:
        """``{asset or chain: score}``: per subject (:func:`tick_subject`), the highest latest score
        of its warm keys whose latest tick is at most ``window_ms`` older than ``now_ms``
        (event time); a key still warming up or gone quiet is left out.

        >>> det = TickAnomalyDetector(warmup=0)
        >>> _ = det.process_one({"kind": "gas", "chain": "ethereum", "ts_ms": 1_000, "base_fee_gwei": 9.0})
        >>> det.recent_scores(2_000, 60_000), det.recent_scores(90_000, 60_000)
        ({'ethereum': 0.0}, {})
        """
        out: dict[str, float] = {}
        for key, state in self._keys.items():
            last = state.last
            if last is None or state.n_seen <= self.warmup or last[0] < now_ms - window_ms:
                continue
            subject = tick_subject(key)
            out[subject] = max(out.get(subject, 0.0), last[1])
        return dict(sorted(out.items()))

    def volume_ratio(self) -> float | None:
        """Traded volume: total latest / total EWMA over the liquidity pools that report
        ``volume_usd`` (the seed's volume ratio; 1.0 = as usual); None before any volume.

        >>> det = TickAnomalyDetector(volume_alpha=0.5)
        >>> for v in (100.0, 100.0, 400.0):
        ...     _ = det.process_one({"kind": "liquidity", "asset": "ETH", "pool": "p", "ts_ms": 1,
        ...                          "depth_usd": 1e6, "spread_bps": 5.0, "volume_usd": v})
        >>> det.volume_ratio()  # 400 / EWMA(100, 100, 400) = 400 / 250
        1.6
        """
        latest = ewma = 0.0
        seen = False
        for state in self._keys.values():
            if state.volume is not None and state.volume_ewma is not None:
                latest, ewma, seen = latest + state.volume, ewma + state.volume_ewma, True
        if not seen:
            return None
        return latest / ewma if ewma > 0 else 1.0

    # -- status ---------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def is_warm_key(self, key: str) -> bool:
        state = self._keys.get(key)
        return state is not None and state.n_seen >= self.warmup

    @property
    def is_warm(self) -> bool:
        """True once at least one key has been seen and every key is warm."""
        return bool(self._keys) and all(s.n_seen >= self.warmup for s in self._keys.values())

    @property
    def n_seen(self) -> int:
        return sum(s.n_seen for s in self._keys.values())

    @property
    def n_flagged(self) -> int:
        return sum(s.n_flagged for s in self._keys.values())
