"""Typed, frozen configuration of the simulated MEV operation.

Everything the generator draws from is here: the asset universe with its
correlation matrix, gas networks, strategies and the event mix.
:func:`default_config` returns a plausible desk: 8 assets, 2 chains,
5 strategies of different kinds across 2 portfolios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streams.sim.errors import SimulatorError

#: Seconds in a market day, the unit of the asset volatilities.
DAY_S = 86_400.0


@dataclass(frozen=True)
class AssetSpec:
    """One asset: start price, daily log-vol, jump process, pool for liquidity ticks."""

    symbol: str
    price_usd: float
    vol_daily: float
    stable: bool = False
    jumps_per_day: float = 12.0
    jump_sd: float = 0.004
    depth_usd: float = 5_000_000.0
    spread_bps: float = 5.0
    pool: str = ""


@dataclass(frozen=True)
class ChainSpec:
    """A gas market: OU on log base fee (per event-second) plus upward spikes."""

    name: str
    base_fee_gwei: float
    priority_fee_gwei: float
    kappa_per_s: float = 0.05
    sigma_per_sqrt_s: float = 0.08
    spikes_per_s: float = 1 / 120
    spike_log_size: float = 1.0


@dataclass(frozen=True)
class StrategySpec:
    """A bot: what it trades, how big, how long it holds, how it fares on chain."""

    name: str
    kind: str
    portfolio: str
    chain: str
    protocol: str
    assets: tuple[str, ...]
    size_usd: float
    hold_s: float
    hedged: bool = False  # two legs: asset against a stablecoin (arb) or LP pair (jit)
    weight: float = 1.0
    bundles_per_s: float = 5.0
    inclusion_rate: float = 0.35
    revert_rate: float = 0.04
    gas_units: float = 250_000.0
    profit_per_bundle_usd: float = 40.0
    tip_share: float = 0.5
    max_open: int = 12


@dataclass(frozen=True)
class EventMix:
    """Share of the (non-stats) event rate going to each stream."""

    price: float = 0.40
    liquidity: float = 0.15
    gas: float = 0.10
    position: float = 0.35


@dataclass(frozen=True)
class SimConfig:
    """The whole simulated world. ``correlation`` is indexed like ``assets``."""

    assets: tuple[AssetSpec, ...]
    correlation: tuple[tuple[float, ...], ...]
    chains: tuple[ChainSpec, ...]
    strategies: tuple[StrategySpec, ...]
    mix: EventMix = field(default_factory=EventMix)
    stats_interval_ms: int = 1_000
    market_s_per_s: float = 60.0  # market seconds per event-time second (livelier prices)
    stable_kappa_per_s: float = 0.5
    vol_halflife_s: float = 5.0

    def asset_index(self, symbol: str) -> int:
        for i, a in enumerate(self.assets):
            if a.symbol == symbol:
                return i
        raise SimulatorError(f"unknown asset {symbol!r}; known: {[a.symbol for a in self.assets]}")

    def chain_index(self, name: str) -> int:
        for i, c in enumerate(self.chains):
            if c.name == name:
                return i
        raise SimulatorError(f"unknown chain {name!r}; known: {[c.name for c in self.chains]}")

    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor of the correlation matrix (nearest PD if needed)."""
        c = np.asarray(self.correlation, dtype=float)
        n = len(self.assets)
        if c.shape != (n, n) or not np.allclose(c, c.T):
            raise SimulatorError(f"correlation must be a symmetric {n}x{n} matrix")
        try:
            return np.linalg.cholesky(c)
        except np.linalg.LinAlgError:
            w, v = np.linalg.eigh(c)
            c = v @ np.diag(np.clip(w, 1e-6, None)) @ v.T
            d = np.sqrt(np.diag(c))
            return np.linalg.cholesky(c / np.outer(d, d))


def _assets() -> tuple[AssetSpec, ...]:
    return (
        AssetSpec("ETH", 3_000.0, 0.040, depth_usd=40e6, spread_bps=2.0, pool="uniswap-v3:ETH-USDC"),
        AssetSpec("WBTC", 60_000.0, 0.035, depth_usd=25e6, spread_bps=3.0,
                  pool="uniswap-v3:WBTC-ETH"),
        AssetSpec("USDC", 1.0, 0.0005, stable=True, jumps_per_day=0.0, depth_usd=80e6,
                  spread_bps=0.5, pool="curve:3pool"),
        AssetSpec("USDT", 1.0, 0.0007, stable=True, jumps_per_day=0.0, depth_usd=70e6,
                  spread_bps=0.5, pool="curve:3pool"),
        AssetSpec("DAI", 1.0, 0.0008, stable=True, jumps_per_day=0.0, depth_usd=40e6,
                  spread_bps=0.8, pool="curve:3pool"),
        AssetSpec("LINK", 15.0, 0.060, jump_sd=0.006, depth_usd=6e6, spread_bps=8.0,
                  pool="uniswap-v3:LINK-ETH"),
        AssetSpec("UNI", 8.0, 0.065, jump_sd=0.006, depth_usd=4e6, spread_bps=10.0,
                  pool="uniswap-v3:UNI-ETH"),
        AssetSpec("ARB", 1.0, 0.070, jump_sd=0.008, depth_usd=3e6, spread_bps=12.0,
                  pool="camelot:ARB-ETH"),
    )


# Order: ETH, WBTC, USDC, USDT, DAI, LINK, UNI, ARB. Crypto majors move together,
# stablecoins barely correlate with them and mildly with each other.
_CORRELATION = (
    (1.00, 0.80, 0.02, 0.01, 0.03, 0.72, 0.70, 0.68),
    (0.80, 1.00, 0.01, 0.01, 0.02, 0.62, 0.58, 0.55),
    (0.02, 0.01, 1.00, 0.35, 0.45, 0.01, 0.01, 0.01),
    (0.01, 0.01, 0.35, 1.00, 0.30, 0.01, 0.01, 0.01),
    (0.03, 0.02, 0.45, 0.30, 1.00, 0.02, 0.02, 0.02),
    (0.72, 0.62, 0.01, 0.01, 0.02, 1.00, 0.60, 0.58),
    (0.70, 0.58, 0.01, 0.01, 0.02, 0.60, 1.00, 0.57),
    (0.68, 0.55, 0.01, 0.01, 0.02, 0.58, 0.57, 1.00),
)


def _strategies() -> tuple[StrategySpec, ...]:
    return (
        StrategySpec("arb-dex-eth", "arbitrage", "alpha", "ethereum", "uniswap-v3",
                     ("ETH", "WBTC", "LINK", "UNI"), size_usd=60_000, hold_s=4, hedged=True,
                     weight=1.5, bundles_per_s=8, inclusion_rate=0.30, revert_rate=0.03,
                     gas_units=180_000, profit_per_bundle_usd=80, tip_share=0.6),
        StrategySpec("liq-aave-eth", "liquidation", "alpha", "ethereum", "aave-v3",
                     ("ETH", "WBTC", "LINK"), size_usd=120_000, hold_s=45, weight=0.6,
                     bundles_per_s=1.5, inclusion_rate=0.25, revert_rate=0.05,
                     gas_units=450_000, profit_per_bundle_usd=600, tip_share=0.4),
        StrategySpec("sandwich-univ2", "sandwich", "beta", "ethereum", "uniswap-v2",
                     ("ETH", "LINK", "UNI"), size_usd=25_000, hold_s=2, weight=1.5,
                     bundles_per_s=10, inclusion_rate=0.40, revert_rate=0.06,
                     gas_units=300_000, profit_per_bundle_usd=120, tip_share=0.6),
        StrategySpec("backrun-arbitrum", "backrun", "beta", "arbitrum", "camelot",
                     ("ETH", "ARB", "LINK"), size_usd=12_000, hold_s=3, weight=1.0,
                     bundles_per_s=6, inclusion_rate=0.45, revert_rate=0.04,
                     gas_units=900_000, profit_per_bundle_usd=8, tip_share=0.2),
        StrategySpec("jit-univ3", "jit", "beta", "ethereum", "uniswap-v3",
                     ("ETH", "WBTC"), size_usd=250_000, hold_s=15, hedged=True, weight=0.7,
                     bundles_per_s=2, inclusion_rate=0.30, revert_rate=0.03,
                     gas_units=500_000, profit_per_bundle_usd=250, tip_share=0.5),
    )


def default_config() -> SimConfig:
    """The default desk: 8 assets, ethereum + arbitrum, 5 strategies in alpha and beta."""
    return SimConfig(
        assets=_assets(),
        correlation=_CORRELATION,
        chains=(
            ChainSpec("ethereum", base_fee_gwei=25.0, priority_fee_gwei=1.5),
            ChainSpec("arbitrum", base_fee_gwei=0.05, priority_fee_gwei=0.01,
                      kappa_per_s=0.1, sigma_per_sqrt_s=0.1),
        ),
        strategies=_strategies(),
    )
