"""Portfolio book: idempotency, exposures, concentration."""

from __future__ import annotations

import numpy as np
import pytest

from agents.risk.bars import AssetIndex
from agents.risk.book import Book, concentration
from agents.risk.config import DEFAULT_KIND_WEIGHTS
from agents.risk.errors import RiskInputError


def rec(pid: str, seq: int, action: str = "open", **kw) -> dict:
    base = {"position_id": pid, "seq": seq, "action": action, "portfolio": "pf",
            "strategy": "s1", "kind": "arbitrage", "chain": "ethereum", "protocol": "uni",
            "asset": "ETH", "quantity": 2.0, "notional_usd": 6000.0, "entry_price_usd": 3000.0,
            "ts_ms": 0}
    base.update(kw)
    return base


def prices(idx: AssetIndex, **p: float) -> np.ndarray:
    out = np.full(len(idx), np.nan)
    for a, v in p.items():
        out[idx.get(a)] = v
    return out


def test_idempotent_by_position_and_seq() -> None:
    idx = AssetIndex()
    b = Book(idx)
    assert b.apply(rec("p1", 1))
    assert not b.apply(rec("p1", 1))  # duplicate
    assert b.apply(rec("p1", 3, "update", quantity=5.0))
    assert not b.apply(rec("p1", 2, "update", quantity=100.0))  # stale
    assert (b.applied, b.duplicates, b.stale) == (2, 1, 1)
    assert b.asset_qty[idx.get("ETH")] == 5.0
    assert b.apply(rec("p1", 4, "close"))
    assert len(b) == 0 and b.asset_qty[idx.get("ETH")] == 0.0
    assert not b.apply(rec("p1", 3, "open"))  # replay after close stays closed
    assert b.apply(rec("p1", 5, "open"))  # a newer seq reopens


def test_replay_in_any_order_of_duplicates_gives_same_book() -> None:
    idx1, idx2 = AssetIndex(), AssetIndex()
    b1, b2 = Book(idx1), Book(idx2)
    stream = [rec("a", 1), rec("b", 1, asset="BTC", quantity=1.0), rec("a", 2, "update",
              quantity=3.0)]
    for r in stream:
        b1.apply(r)
    for r in stream + stream[::-1] + stream:
        b2.apply(r)
    e1 = b1.asset_exposures(prices(idx1, ETH=10.0, BTC=20.0))
    e2 = b2.asset_exposures(prices(idx2, ETH=10.0, BTC=20.0))
    assert dict(zip(idx1.names, e1, strict=True)) == dict(zip(idx2.names, e2, strict=True))


def test_exposure_uses_latest_price_else_notional_and_legs() -> None:
    idx = AssetIndex()
    b = Book(idx, DEFAULT_KIND_WEIGHTS)
    b.apply(rec("p1", 1))  # 2 ETH, notional 6000
    b.apply(rec("p2", 1, kind="sandwich", strategy="s2", legs=[
        {"asset": "ETH", "quantity": -1.0, "notional_usd": -3000.0},
        {"asset": "USDC", "quantity": 3000.0, "notional_usd": 3000.0}]))
    p = prices(idx, ETH=3500.0)  # USDC has no price yet -> notional
    e = dict(zip(idx.names, b.asset_exposures(p), strict=True))
    assert e == {"ETH": pytest.approx(3500.0), "USDC": pytest.approx(3000.0)}
    legx = b.leg_exposures(p)
    leg_abs = np.abs(legx)
    assert leg_abs.sum() == pytest.approx(7000 + 3500 + 3000)
    assert legx.sum() == pytest.approx(7000 - 3500 + 3000)
    assert b.group_exposures("strategy", leg_abs) == {"s1": pytest.approx(7000),
                                                      "s2": pytest.approx(6500)}
    assert b.group_exposures("kind", leg_abs) == {"arbitrage": pytest.approx(7000),
                                                  "sandwich": pytest.approx(6500)}
    assert b.risk_weighted_exposure(leg_abs) == pytest.approx(0.5 * 7000 + 1.5 * 6500)
    slots = b.per_slot(legx)
    assert slots[b.positions["p2"].slot] == pytest.approx(-3500 + 3000)


def test_update_changing_asset_and_delta() -> None:
    idx = AssetIndex()
    b = Book(idx)
    b.apply(rec("p1", 1))
    b.apply(rec("p1", 2, "update", asset="BTC", quantity=0.5, notional_usd=30000.0))
    p = prices(idx, ETH=3000.0, BTC=60000.0)
    assert b.asset_exposures(p).tolist() == [0.0, 30000.0]
    assert b.exposure_delta(p) == {0: pytest.approx(-6000.0), 1: pytest.approx(30000.0)}


def test_concentration_and_hhi() -> None:
    conc, hhi = concentration(np.array([600.0, -300.0, 100.0]), 1000.0)
    assert conc == pytest.approx(0.6)
    assert hhi == pytest.approx(0.36 + 0.09 + 0.01)
    assert concentration(np.zeros(3), 0.0) == (0.0, 0.0)


@pytest.mark.parametrize("bad", [
    {"seq": -1}, {"seq": "1"}, {"action": "flip"}, {"position_id": ""},
    {"quantity": "lots"}, {"quantity": float("nan")}, {"asset": None},
    {"legs": [{"quantity": 1.0}]},
])
def test_malformed_records_raise_clear_errors(bad: dict) -> None:
    with pytest.raises(RiskInputError):
        Book(AssetIndex()).apply({**rec("p1", 1), **bad})


def test_many_positions_reuse_rows() -> None:
    b = Book(AssetIndex(), capacity=4)
    for i in range(100):
        b.apply(rec(f"p{i}", 1))
    for i in range(100):
        b.apply(rec(f"p{i}", 2, "close"))
    for i in range(100, 150):
        b.apply(rec(f"p{i}", 1))
    assert b.n_rows == 100 and len(b) == 50
    assert b.asset_qty[0] == pytest.approx(100.0)
