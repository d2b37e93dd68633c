"""Data form of the risk core (:class:`~agents.risk.engine.RiskEngine`): market part and portfolio part.

These functions read and write the engine's attributes; the engine itself knows nothing of
checkpoints. Both directions are exact: float arrays travel as their bytes, every mapping whose
order a later float sum depends on travels as a list in its order, so a restored engine computes
bit-identical figures. ``tests/unit/state/test_schema.py`` fails when one of these classes gains an
attribute this module does not know about.

Market part (every worker): asset columns, bars, return window, EWMA covariance, gas, liquidity,
prices, ``market_version``, the engine's watermark. Portfolio part (its partition's blob): the
book, the VaR backtest and the cached exposure/scenario P&L; strategy part: its health records.
A portfolio part names the asset columns it was taken with, so it also restores into an engine
whose columns were interned in another order (then its columns are remapped and its cache dropped:
the figures are recomputed, equal up to float summation order).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from agents.risk.bars import AssetIndex
from agents.risk.book import GROUPS, Book, CodeTable, _Position
from agents.risk.engine import RiskEngine, _Cache, _Portfolio
from agents.state.codec import array, fl, optional_array, unfl


# ---- market part ----------------------------------------------------------------------------------
def market_state(engine: RiskEngine) -> dict[str, Any]:
    bars, window, gas, liq = engine.bars, engine.window, engine.gas, engine.liquidity
    return {
        "assets": list(engine.assets.names),
        "bars": {
            "open": [[start, [[a, ts, p] for a, (ts, p) in bucket.items()]]
                     for start, bucket in bars._open.items()],
            "closed_until_ms": bars._closed_until_ms,
            "last_close": list(bars.last_close.items()),
            "late_ticks": bars.late_ticks, "applied_ticks": bars.applied_ticks,
        },
        "window": {"cols": window._cols, "log_r": window.log_r, "simple_r": window.simple_r,
                   "count": window.count, "next": window._next, "bars_seen": window.bars_seen},
        "ewma": {"s": engine.ewma._s, "updates": engine.ewma.updates},
        "gas": {
            "obs": [[chain, np.array([ts for ts, _ in obs], dtype=np.int64),
                     np.array([v for _, v in obs], dtype=np.float64)]
                    for chain, obs in gas.observations().items()],
            "newest": list(gas.newest().items()),
        },
        "liquidity": {
            "latest": [[a, pool, ts, d, s] for (a, pool), (ts, d, s) in liq._latest.items()],
            "depth_ewma": [[a, pool, v] for (a, pool), v in liq._depth_ewma.items()],
        },
        "prices": engine._prices,
        "price_ts": list(engine._price_ts.items()),
        "market_version": engine.market_version,
        "watermark_ms": engine.watermark_ms,
        "rejected": engine.rejected,
        "health_newest_ms": engine.health._newest,
    }


def install_market(engine: RiskEngine, doc: dict[str, Any]) -> None:
    """Adopt a market part into a fresh engine (its objects are updated in place: the books and
    the return window share the engine's :class:`AssetIndex`)."""
    _install_assets(engine.assets, doc["assets"])
    b, bars = doc["bars"], engine.bars
    bars._open = {int(start): {str(a): (int(ts), float(p)) for a, ts, p in bucket}
                  for start, bucket in b["open"]}
    bars._closed_until_ms = _opt_int(b["closed_until_ms"])
    bars.last_close = {str(a): float(p) for a, p in b["last_close"]}
    bars.late_ticks, bars.applied_ticks = int(b["late_ticks"]), int(b["applied_ticks"])
    w, window = doc["window"], engine.window
    log_r, simple_r = array(w["log_r"], "<f8"), array(w["simple_r"], "<f8")
    if log_r.shape != (window.capacity, int(w["cols"])) or simple_r.shape != log_r.shape:
        raise ValueError(f"return window of shape {log_r.shape}, this engine keeps {window.capacity} bars")
    window._cols, window.log_r, window.simple_r = int(w["cols"]), log_r, simple_r
    window.count, window._next, window.bars_seen = int(w["count"]), int(w["next"]), int(w["bars_seen"])
    s = array(doc["ewma"]["s"], "<f8")
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError("EWMA matrix is not square")
    engine.ewma._s, engine.ewma.updates = s, int(doc["ewma"]["updates"])
    engine.gas.restore(  # rebuilds the incremental statistics from the window's observations
        {str(chain): list(zip(array(ts, "<i8").tolist(), array(v, "<f8").tolist(), strict=True))
         for chain, ts, v in doc["gas"]["obs"]},
        {str(chain): int(ts) for chain, ts in doc["gas"]["newest"]})
    lq = doc["liquidity"]
    engine.liquidity._latest = {(str(a), str(pool)): (int(ts), float(d), float(s))
                                for a, pool, ts, d, s in lq["latest"]}
    engine.liquidity._depth_ewma = {(str(a), str(pool)): float(v) for a, pool, v in lq["depth_ewma"]}
    engine._prices = array(doc["prices"], "<f8")
    engine._price_ts = {str(a): int(ts) for a, ts in doc["price_ts"]}
    engine.market_version = int(doc["market_version"])
    engine.watermark_ms = _opt_int(doc["watermark_ms"])
    engine.rejected = int(doc["rejected"])
    engine.health._newest = int(doc["health_newest_ms"])


def _install_assets(index: AssetIndex, names: list[Any]) -> None:
    if len(index):
        raise ValueError("the engine has interned assets already: restore into a fresh pipeline")
    for name in names:
        index.intern(str(name))
    if len(index) != len(names):
        raise ValueError("duplicate asset names")


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)


_LEG_ARRAYS = (("leg_asset", "<i8"), ("leg_qty", "<f8"), ("leg_notional", "<f8"), ("leg_slot", "<i8"),
               ("leg_weight", "<f8"), ("leg_active", "|b1"))


# ---- portfolio part ---------------------------------------------------------------------------------
def portfolio_state(pf: _Portfolio) -> dict[str, Any]:
    book, bt, cache = pf.book, pf.backtest, pf.cache
    m = book.n_rows
    return {
        "book": {
            "codes": {g: list(book.codes[g].names) for g in GROUPS},
            "positions": [[p.pid, p.slot, p.seq, list(p.rows), p.kind, p.strategy, p.protocol, p.chain,
                           p.asset] for p in book.positions.values()],
            "closed_seq": list(book.closed_seq.items()),
            "slot_ids": list(book.slot_ids),
            "free_slots": list(book._free_slots), "free_rows": list(book._free_rows),
            "n_rows": m, "cap": book._cap,
            **{attr: getattr(book, attr)[:m] for attr, _ in _LEG_ARRAYS},
            "leg_group": {g: book.leg_group[g][:m] for g in GROUPS},
            "asset_qty": book.asset_qty, "asset_notional": book.asset_notional,
            "counts": [book.applied, book.stale, book.duplicates],
        },
        "backtest": {"hits": np.array(bt.hits, dtype=np.bool_),
                     "pending_var": fl(bt.pending_var), "pending_exposures": bt.pending_exposures},
        "cache": None if cache is None else {
            "market_version": cache.market_version, "n_assets": cache.n_assets,
            "exposures": cache.exposures, "pnl": cache.pnl},
    }


def install_portfolio(engine: RiskEngine, name: str, doc: dict[str, Any], columns: np.ndarray | None) -> None:
    """Add a portfolio part to an engine whose market part is installed. ``columns`` maps the part's
    asset columns to the engine's (None: the same)."""
    pf = engine._portfolio(name)
    _install_book(pf.book, doc["book"], columns)
    bt, d = pf.backtest, doc["backtest"]
    bt.hits = deque(array(d["hits"], "|b1").tolist(), maxlen=bt.hits.maxlen)
    bt.pending_var = unfl(d["pending_var"])
    pending = optional_array(d["pending_exposures"], "<f8")
    bt.pending_exposures = None if pending is None else _remap_vector(pending, columns, len(engine.assets))
    c = doc["cache"]
    if c is not None and columns is None:
        pf.cache = _Cache(int(c["market_version"]), int(c["n_assets"]), array(c["exposures"], "<f8"),
                          array(c["pnl"], "<f8"))


def _install_book(book: Book, d: dict[str, Any], columns: np.ndarray | None) -> None:
    for g in GROUPS:
        table = CodeTable()
        for label in d["codes"][g]:
            table.intern(str(label))
        book.codes[g] = table
    book.positions = {}
    for pid, slot, seq, rows, kind, strategy, protocol, chain, asset in d["positions"]:
        pos = _Position(str(pid), int(slot))
        pos.seq, pos.rows = int(seq), [int(r) for r in rows]
        pos.kind, pos.strategy, pos.protocol, pos.chain, pos.asset = (
            str(kind), str(strategy), str(protocol), str(chain), str(asset))
        book.positions[pos.pid] = pos
    book.closed_seq = {str(pid): int(seq) for pid, seq in d["closed_seq"]}
    book.slot_ids = [None if s is None else str(s) for s in d["slot_ids"]]
    book._free_slots = [int(s) for s in d["free_slots"]]
    book._free_rows = [int(r) for r in d["free_rows"]]
    n_rows, cap = int(d["n_rows"]), int(d["cap"])
    if not 0 <= n_rows <= cap:
        raise ValueError("book rows exceed its capacity")
    book._grow_rows(cap)
    for attr, dtype in _LEG_ARRAYS:
        getattr(book, attr)[:n_rows] = array(d[attr], dtype)
    for g in GROUPS:
        book.leg_group[g][:n_rows] = array(d["leg_group"][g], "<i8")
    book.n_rows = n_rows
    qty, notional = array(d["asset_qty"], "<f8"), array(d["asset_notional"], "<f8")
    if columns is not None:
        book.leg_asset[:n_rows] = columns[book.leg_asset[:n_rows]]
        size = max(qty.shape[0], len(book.assets))
        qty, notional = (_remap_vector(qty, columns, size), _remap_vector(notional, columns, size))
    book.asset_qty, book.asset_notional = qty, notional  # type: ignore[assignment]
    book.applied, book.stale, book.duplicates = (int(x) for x in d["counts"])


def _remap_vector(vec: np.ndarray, columns: np.ndarray | None, size: int) -> np.ndarray:
    """A per-asset vector in the engine's columns (entries past the part's known columns are 0)."""
    if columns is None:
        return vec
    out = np.zeros(max(size, vec.shape[0]))
    n = min(vec.shape[0], columns.shape[0])
    out[columns[:n]] = vec[:n]
    return out


def column_map(engine: RiskEngine, names: list[Any]) -> np.ndarray | None:
    """Map a part's asset columns onto the engine's, interning unknown assets; None when identical."""
    names = [str(n) for n in names]
    if engine.assets.names[: len(names)] == names:
        return None
    return np.array([engine.assets.intern(n) for n in names], dtype=np.int64)


# ---- strategy part ----------------------------------------------------------------------------------
def strategy_state(engine: RiskEngine, strategy: str) -> list[Any]:
    records = engine.health._records.get(strategy, {})
    return [[portfolio, chain, ts, list(counts), list(money)]
            for (portfolio, chain, ts), (counts, money) in records.items()]


def install_strategy(engine: RiskEngine, strategy: str, records: list[Any]) -> None:
    engine.health.install(strategy, {
        (str(pf), str(chain), int(ts)): (tuple(int(c) for c in counts), tuple(float(v) for v in money))
        for pf, chain, ts, counts, money in records})
