"""The market model on its own: correlated returns, calm stablecoins, gas that mean-reverts."""

from __future__ import annotations

import numpy as np

from streams.sim.config import default_config
from streams.sim.market import Effects, MarketState


def _path(seed: int, seconds: int = 600) -> tuple[np.ndarray, np.ndarray, MarketState]:
    m = MarketState(default_config(), np.random.default_rng(seed))
    prices, gas = [], []
    for k in range(1, seconds * 4 + 1):
        m.advance(k / 4, Effects())
        if k % 4 == 0:
            prices.append(m.log_p.copy())
            gas.append(m.base_fee(0))
    return np.diff(np.array(prices), axis=0), np.array(gas), m


def test_crypto_returns_are_correlated_stablecoins_are_not() -> None:
    r, _, m = _path(1)
    c = np.corrcoef(r.T)
    eth, wbtc, usdc = (m.cfg.asset_index(a) for a in ("ETH", "WBTC", "USDC"))
    assert c[eth, wbtc] > 0.45
    assert abs(c[eth, usdc]) < 0.2
    assert r[:, usdc].std() < r[:, eth].std() / 20


def test_stablecoins_stay_near_peg_and_gas_mean_reverts() -> None:
    _, gas, m = _path(2)
    usdc = m.cfg.asset_index("USDC")
    assert abs(m.price(usdc) - 1.0) < 0.01
    assert 5 < np.median(gas) < 100  # around the 25 gwei long-run level
    assert gas.max() / np.median(gas) > 1.5  # it does move (spikes)


def test_gas_spike_effect_multiplies_reported_gas() -> None:
    m = MarketState(default_config(), np.random.default_rng(3))
    m.advance(1.0, Effects())
    calm = m.base_fee(0)
    m.advance(1.0, Effects(gas_mult={0: 8.0}))
    assert m.base_fee(0) == calm * 8.0
