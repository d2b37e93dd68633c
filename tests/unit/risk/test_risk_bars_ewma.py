"""Event-time bars, the returns window and the EWMA covariance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.risk.bars import AssetIndex, BarResampler, ReturnsWindow
from agents.risk.errors import RiskInputError
from agents.risk.ewma import EwmaCovariance


def test_bars_close_on_watermark_with_latest_tick_as_close() -> None:
    b = BarResampler(1000)
    b.add("ETH", 1500, 100.0)
    b.add("ETH", 1900, 102.0)
    b.add("ETH", 1200, 999.0)  # older tick in the same bar: not the close
    assert b.advance(1999) == []  # bar [1000, 2000) still open
    bars = b.advance(2000)
    assert [(x.start_ms, x.end_ms) for x in bars] == [(1000, 2000)]
    assert bars[0].closes == {"ETH": 102.0} and bars[0].returns == {"ETH": 0.0}
    b.add("ETH", 2100, 110.0)
    (bar,) = b.advance(3000)
    assert bar.returns["ETH"] == pytest.approx(math.log(110 / 102))


def test_late_tick_is_counted_not_applied() -> None:
    b = BarResampler(1000)
    b.add("ETH", 1000, 100.0)
    b.advance(2000)
    assert b.add("ETH", 1999, 50.0) is False
    assert b.late_ticks == 1 and b.last_close["ETH"] == 100.0


def test_empty_bars_give_zero_returns_and_are_bounded() -> None:
    b = BarResampler(1000, max_empty_bars=3)
    b.add("ETH", 0, 100.0)
    b.add("BTC", 0, 10.0)
    b.advance(1000)
    b.add("ETH", 2500, 101.0)
    bars = b.advance(3000)
    assert [x.returns for x in bars] == [{}, {"ETH": pytest.approx(math.log(1.01))}]
    assert bars[1].closes == {"ETH": 101.0, "BTC": 10.0}  # BTC carried forward
    many = b.advance(100_000)
    assert len(many) == 3 and all(x.returns == {} for x in many)
    b.add("ETH", 100_500, 102.0)
    assert b.advance(101_000)[0].start_ms == 100_000


def test_bad_price_rejected() -> None:
    with pytest.raises(RiskInputError):
        BarResampler(1000).add("ETH", 0, 0.0)


def test_returns_window_ring_and_alignment() -> None:
    idx = AssetIndex()
    w = ReturnsWindow(idx, capacity=3)
    w.append({"ETH": 0.1})
    w.append({"BTC": 0.2})
    w.append({"ETH": 0.3, "BTC": -0.1})
    w.append({"ETH": 0.4})
    chrono = w.chronological()
    assert idx.names == ["ETH", "BTC"]
    np.testing.assert_allclose(chrono, [[0.0, 0.2], [0.3, -0.1], [0.4, 0.0]])
    assert sorted(map(tuple, w.scenarios().round(12))) == sorted(
        map(tuple, np.expm1(chrono).round(12)))


def test_ewma_matches_direct_recursion() -> None:
    rng = np.random.default_rng(2)
    lam = 0.94
    rows = rng.normal(0, 0.01, size=(60, 3))
    ew = EwmaCovariance(lam)
    s = np.zeros((3, 3))
    for t, r in enumerate(rows, start=1):
        ew.update(r)
        s = lam * s + (1 - lam) * np.outer(r, r)
        np.testing.assert_allclose(ew.covariance(), s / (1 - lam**t), rtol=1e-12)
    corr = ew.correlation()
    sd = np.sqrt(np.diag(s))
    np.testing.assert_allclose(corr, s / np.outer(sd, sd), rtol=1e-9)


def test_ewma_grows_new_assets() -> None:
    ew = EwmaCovariance(0.9)
    ew.update(np.array([0.01]))
    ew.update(np.array([0.02, 0.03]))
    cov = ew.covariance()
    raw_00 = 0.9 * 0.1 * 1e-4 + 0.1 * 4e-4
    assert cov[0, 0] == pytest.approx(raw_00 / (1 - 0.81))
    assert cov[1, 1] == pytest.approx(0.1 * 9e-4 / (1 - 0.81))
