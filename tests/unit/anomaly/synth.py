"""Synthetic tick and portfolio streams with labelled incidents (test helper).

Normal market: geometric Brownian motion prices (one tick per asset per second),
mean-reverting log gas per chain, noisy spread and depth per asset. Incidents are
injected after a warm-up: flash crashes, gas spikes and single "bad but valid"
outlier ticks (a stale/fat-finger price, a pulled-liquidity depth, a blown-out
spread). Every tick of an incident, plus the first tick after it on the same key
(the return to normal), carries the incident id; every other tick is normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ASSETS = ("ETH", "WBTC", "ARB")
CHAINS = ("ethereum", "arbitrum")
START_PRICE = {"ETH": 2000.0, "WBTC": 60000.0, "ARB": 1.2}
T0_MS = 1_700_000_000_000


@dataclass
class Incident:
    id: int
    kind: str  # flash_crash | gas_spike | bad_price | depth_pull | spread_blowout
    key: str
    start_step: int
    length: int


@dataclass
class TickStream:
    events: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)


def _plan_incidents(rng: np.random.Generator, n_steps: int, warmup_steps: int) -> list[Incident]:
    kinds = ("flash_crash", "gas_spike", "bad_price", "depth_pull", "spread_blowout")
    out: list[Incident] = []
    step = warmup_steps + int(rng.integers(20, 60))
    while step < n_steps - 40:
        kind = kinds[len(out) % len(kinds)]
        if kind == "gas_spike":
            key = f"gas:{CHAINS[int(rng.integers(len(CHAINS)))]}"
        elif kind in ("depth_pull", "spread_blowout"):
            key = f"liquidity:{ASSETS[int(rng.integers(len(ASSETS)))]}"
        else:
            key = f"price:{ASSETS[int(rng.integers(len(ASSETS)))]}"
        length = {"flash_crash": int(rng.integers(3, 12)), "gas_spike": int(rng.integers(2, 9))}
        out.append(Incident(len(out), kind, key, step, length.get(kind, 1)))
        step += int(rng.integers(40, 90))
    return out


NORMAL_MAGNITUDES = {  # (low, high) of each incident's size
    "flash_crash": (0.03, 0.10),  # price drop fraction
    "gas_spike": (3.0, 8.0),  # gas multiplier
    "bad_price": (0.01, 0.04),  # +- price error fraction
    "depth_pull": (0.05, 0.3),  # depth multiplier
    "spread_blowout": (5.0, 20.0),  # spread multiplier
}
SUBTLE_MAGNITUDES = {
    "flash_crash": (0.01, 0.03),
    "gas_spike": (1.5, 2.5),
    "bad_price": (0.003, 0.01),
    "depth_pull": (0.4, 0.7),
    "spread_blowout": (2.0, 4.0),
}


def tick_stream(
    seed: int = 7,
    n_steps: int = 6000,
    warmup_steps: int = 300,
    magnitudes: dict[str, tuple[float, float]] = NORMAL_MAGNITUDES,
) -> TickStream:
    """One tick per asset (price, liquidity) and per chain (gas) every second."""
    rng = np.random.default_rng(seed)
    incidents = _plan_incidents(rng, n_steps, warmup_steps)
    active: dict[str, tuple[Incident, float]] = {}  # key -> (incident, magnitude)
    by_start: dict[int, list[Incident]] = {}
    for inc in incidents:
        by_start.setdefault(inc.start_step, []).append(inc)
    recovering: dict[str, int] = {}  # key -> incident id to label on its next tick

    price = dict(START_PRICE)
    sigma = {"ETH": 0.0008, "WBTC": 0.0006, "ARB": 0.0015}  # per sqrt(second)
    gas_log = {c: math.log(30.0) for c in CHAINS}
    spread = {"ETH": 4.0, "WBTC": 6.0, "ARB": 15.0}
    depth_log = {"ETH": math.log(5e6), "WBTC": math.log(3e6), "ARB": math.log(4e5)}
    stream = TickStream(incidents=incidents)

    for step in range(n_steps):
        ts = T0_MS + step * 1000
        for inc in by_start.get(step, []):
            mag = rng.uniform(*magnitudes[inc.kind])
            if inc.kind == "bad_price":
                mag *= rng.choice([-1.0, 1.0])
            active[inc.key] = (inc, float(mag))
        for asset in ASSETS:
            price[asset] *= math.exp(sigma[asset] * rng.standard_normal() - 0.5 * sigma[asset] ** 2)
            spread_now = spread[asset] * math.exp(0.1 * rng.standard_normal())
            depth_log[asset] += 0.05 * (math.log(START_DEPTH[asset]) - depth_log[asset])
            depth_log[asset] += 0.03 * rng.standard_normal()
            p_shown, depth_shown = price[asset], math.exp(depth_log[asset])
            label_p = _label(active, recovering, f"price:{asset}", step)
            label_l = _label(active, recovering, f"liquidity:{asset}", step)
            inc_p = active.get(f"price:{asset}")
            if inc_p and label_p is not None:
                inc, mag = inc_p
                p_shown = price[asset] * (1 - mag) if inc.kind == "flash_crash" else price[asset] * (1 + mag)
            inc_l = active.get(f"liquidity:{asset}")
            if inc_l and label_l is not None:
                inc, mag = inc_l
                if inc.kind == "depth_pull":
                    depth_shown *= mag
                else:
                    spread_now *= mag
            stream.events.append(
                (
                    {
                        "kind": "price",
                        "source": "price-oracle",
                        "asset": asset,
                        "ts_ms": ts,
                        "price_usd": p_shown,
                    },
                    label_p,
                )
            )
            stream.events.append(
                (
                    {
                        "kind": "liquidity",
                        "source": "liquidity-monitor",
                        "asset": asset,
                        "ts_ms": ts,
                        "pool": "",
                        "depth_usd": depth_shown,
                        "spread_bps": spread_now,
                    },
                    label_l,
                )
            )
        for chain in CHAINS:
            gas_log[chain] += 0.05 * (math.log(30.0) - gas_log[chain]) + 0.04 * rng.standard_normal()
            gas = math.exp(gas_log[chain])
            label_g = _label(active, recovering, f"gas:{chain}", step)
            inc_g = active.get(f"gas:{chain}")
            if inc_g and label_g is not None:
                gas *= inc_g[1]
            stream.events.append(
                (
                    {
                        "kind": "gas",
                        "source": "gas-tracker",
                        "chain": chain,
                        "ts_ms": ts,
                        "base_fee_gwei": gas * 0.9,
                        "priority_fee_gwei": gas * 0.1,
                    },
                    label_g,
                )
            )
        _expire(active, recovering, step)
    return stream


START_DEPTH = {"ETH": 5e6, "WBTC": 3e6, "ARB": 4e5}


def _label(active: dict, recovering: dict, key: str, step: int) -> int | None:
    if key in active:
        return active[key][0].id
    return recovering.get(key)


def _expire(active: dict, recovering: dict, step: int) -> None:
    for key in list(recovering):
        del recovering[key]
    for key, (inc, _mag) in list(active.items()):
        if step >= inc.start_step + inc.length - 1:
            del active[key]
            recovering[key] = inc.id


def portfolio_stream(seed: int = 11, n_steps: int = 3000) -> list[dict[str, Any]]:
    """Plausible snapshot feature dicts (one a minute) for the portfolio scorer."""
    rng = np.random.default_rng(seed)
    exposure, vol = 1e6, 0.02
    out = []
    for step in range(n_steps):
        exposure *= math.exp(0.01 * rng.standard_normal())
        vol = abs(vol + 0.05 * (0.02 - vol) + 0.001 * rng.standard_normal())
        var95 = 1.645 * vol * exposure
        out.append(
            {
                "ts_ms": T0_MS + step * 60_000,
                "total_risk": min(1.0, max(0.0, 0.3 + 0.05 * rng.standard_normal())),
                "max_concentration": min(1.0, max(0.0, 0.35 + 0.05 * rng.standard_normal())),
                "correlation_risk": min(1.0, max(0.0, 0.4 + 0.05 * rng.standard_normal())),
                "total_exposure": exposure,
                "var_95": var95,
                "var_99": var95 * 1.41,
                "volatility": vol,
                "gas_price_gwei": 30.0 * math.exp(0.1 * rng.standard_normal()),
                "liquidity_ratio": 1.0 + 0.1 * rng.standard_normal(),
            }
        )
    return out
