"""Market state advanced lazily in event time: correlated GBM with jumps, stablecoin OU,
gas OU on log base fee with spikes, and an EWMA volatility gauge.

Pure numpy; the caller owns the random generator, so draws are deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streams.sim.config import DAY_S, SimConfig


@dataclass
class Effects:
    """Incident effects in force over one step (built by the generator)."""

    drift_per_s: dict[int, float] = field(default_factory=dict)  # asset index -> log drift
    vol_mult: float = 1.0
    peg: dict[int, float] = field(default_factory=dict)  # stable index -> target price
    gas_mult: dict[int, float] = field(default_factory=dict)  # chain index -> reported mult


class MarketState:
    """Prices (log), gas (log base fee) and a volatility ratio (1.0 = normal)."""

    def __init__(self, config: SimConfig, rng: np.random.Generator) -> None:
        self.cfg = config
        self.rng = rng
        self.chol = config.cholesky()
        a = config.assets
        self.log_p = np.log([x.price_usd for x in a])
        self.sigma = np.array([x.vol_daily for x in a]) / math.sqrt(DAY_S)  # per market-second
        self.stable = [i for i, x in enumerate(a) if x.stable]
        self.jump_rate = np.array([x.jumps_per_day for x in a]) / DAY_S
        self.jump_sd = np.array([x.jump_sd for x in a])
        self._jump_cum = np.cumsum(self.jump_rate)
        self._jump_total = float(self._jump_cum[-1])
        self.stable_mean = np.log([x.price_usd for x in a])
        c = config.chains
        self.log_gas_mean = np.log([x.base_fee_gwei for x in c])
        self.log_gas = self.log_gas_mean.copy()
        self.gas_mult: dict[int, float] = {}
        self.ref = config.asset_index("ETH") if any(x.symbol == "ETH" for x in a) else 0
        self.vol_ratio = 1.0
        self._var_ewma = 1.0
        self._grid = (0.0, float(self.log_p[self.ref]))  # (time, log price) of the last sample
        self.t_s = 0.0

    # -- evolution -------------------------------------------------------------------------
    def advance(self, t_s: float, fx: Effects) -> None:
        """Move every process from the last time to `t_s` (event seconds since start)."""
        dt = t_s - self.t_s
        if dt <= 0:
            self.gas_mult = self._gas_mult(fx)
            return
        self.t_s = t_s
        self._advance_prices(dt, fx)
        self._advance_gas(dt)
        self.gas_mult = self._gas_mult(fx)

    def _advance_prices(self, dt: float, fx: Effects) -> None:
        dtm = dt * self.cfg.market_s_per_s
        z = self.chol @ self.rng.standard_normal(len(self.log_p))
        sig = self.sigma * fx.vol_mult
        ret = -0.5 * sig**2 * dtm + sig * math.sqrt(dtm) * z
        # jumps: at most one per (short) step, on an asset drawn by its jump intensity
        if self.rng.random() < 1.0 - math.exp(-self._jump_total * dtm * fx.vol_mult):
            i = int(np.searchsorted(self._jump_cum, self.rng.random() * self._jump_cum[-1],
                                    side="right"))
            ret[i] += self.jump_sd[i] * (self.rng.standard_normal() - 0.2)
        for i, d in fx.drift_per_s.items():
            ret[i] += d * dt
        # stablecoins: OU pull toward their peg (or the depeg target)
        k = 1.0 - math.exp(-self.cfg.stable_kappa_per_s * dt)
        for i in self.stable:
            target = math.log(fx.peg[i]) if i in fx.peg else self.stable_mean[i]
            ret[i] = -k * (self.log_p[i] - target) + sig[i] * math.sqrt(dtm) * z[i]
        self.log_p += ret
        if self.t_s - self._grid[0] >= 1.0:
            self._update_vol()

    def _update_vol(self) -> None:
        """EWMA of squared reference-asset returns sampled on a >= 1 s grid, relative to
        the model variance: a fixed horizon, so a crash's drift registers as volatility."""
        t0, lp0 = self._grid
        dt = self.t_s - t0
        r = float(self.log_p[self.ref] - lp0)
        s2 = self.sigma[self.ref] ** 2 * dt * self.cfg.market_s_per_s
        alpha = 1.0 - 0.5 ** (dt / self.cfg.vol_halflife_s)
        self._var_ewma += alpha * (min(r * r / s2, 1e4) - self._var_ewma)
        self.vol_ratio = float(min(math.sqrt(self._var_ewma), 50.0))
        self._grid = (self.t_s, float(self.log_p[self.ref]))

    def _advance_gas(self, dt: float) -> None:
        for j, ch in enumerate(self.cfg.chains):
            decay = math.exp(-ch.kappa_per_s * dt)
            sd = ch.sigma_per_sqrt_s * math.sqrt((1 - decay**2) / (2 * ch.kappa_per_s))
            x = self.log_gas_mean[j] + (self.log_gas[j] - self.log_gas_mean[j]) * decay
            x += sd * self.rng.standard_normal()
            if self.rng.random() < 1.0 - math.exp(-ch.spikes_per_s * dt):
                x += ch.spike_log_size * (0.5 + self.rng.random())
            self.log_gas[j] = x

    @staticmethod
    def _gas_mult(fx: Effects) -> dict[int, float]:
        return dict(fx.gas_mult)

    # -- observations ----------------------------------------------------------------------
    def price(self, i: int) -> float:
        return float(math.exp(self.log_p[i]))

    def base_fee(self, j: int) -> float:
        return float(math.exp(self.log_gas[j]) * self.gas_mult.get(j, 1.0))

    def priority_fee(self, j: int) -> float:
        ch = self.cfg.chains[j]
        ratio = math.exp(self.log_gas[j] - self.log_gas_mean[j])
        return float(ch.priority_fee_gwei * math.sqrt(ratio) * self.gas_mult.get(j, 1.0))

    def gas_ratio(self, j: int) -> float:
        """Current base fee over its long-run level (1.0 = normal)."""
        return float(math.exp(self.log_gas[j] - self.log_gas_mean[j]) * self.gas_mult.get(j, 1.0))
