"""Rule-evaluation throughput of the alerting core (issue 4).

Run: ``.venv/bin/python benchmarks/bench_rules.py [--contexts N] [--seconds S]``

Evaluates the default rule set (``deploy/config/rules.yaml``) through
``AlertEngine.evaluate`` over realistic, varied contexts: portfolio snapshots,
strategy health and source health, in the proportions of the rules (so each scope
contributes its number of rules per context). One "rule eval" = one rule evaluated on
one context, lifecycle bookkeeping included (most contexts fire nothing, a few per cent
cross a threshold and go pending/firing/resolved, as in production).

Prints ``rule_evals_per_sec=<x>`` (the headline), then the same figure split by scope,
and the bare CEL cost for comparison (``cel_only_evals_per_sec``: compiled programs
executed on one prepared ``cel.Context``, no activation building).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cel

from agents.alerts.engine import AlertEngine
from agents.alerts.rules import load_rules

BREACH = 0.01
"""Share of contexts that cross one rule threshold (production is mostly quiet)."""


def snapshot(rng: random.Random, i: int) -> dict[str, Any]:
    exposure = rng.uniform(20_000, 200_000)
    var95 = exposure * rng.uniform(0.01, 0.04)
    snap = {
        "portfolio": f"p{i % 16}", "ts_ms": 0, "total_exposure_usd": exposure,
        "var_95_usd": var95, "var_99_usd": var95 * 1.4, "es_95_usd": var95 * 1.25,
        "es_99_usd": var95 * 1.6, "var_to_exposure": var95 / exposure,
        "max_concentration": rng.uniform(0.1, 0.45), "hhi": rng.uniform(0.05, 0.5),
        "correlation_risk": rng.uniform(0, 1), "rating": rng.choice(["LOW", "MEDIUM"]),
        "active_positions": rng.randint(1, 40),
        "backtest": {"zone": "green", "exceptions": rng.randint(0, 4), "observations": 250},
        "anomaly": {"portfolio_score": rng.random(), "is_anomaly": False},
        "positions": [{"id": f"x{j}", "exposure_usd": 1000.0 * j} for j in range(8)],
    }
    if rng.random() < BREACH:
        k = rng.choice(["var", "conc", "rating", "zone"])
        if k == "var":
            snap["var_95_usd"] = 15_000.0
        elif k == "conc":
            snap["max_concentration"] = 0.6
        elif k == "rating":
            snap["rating"] = rng.choice(["HIGH", "CRITICAL"])
        else:
            snap["backtest"]["zone"] = rng.choice(["yellow", "red"])  # type: ignore[index]
    return snap


def strategy(rng: random.Random, i: int) -> dict[str, Any]:
    sub = rng.randint(0, 200)
    inc = rng.randint(sub // 10, sub)
    stats = {"strategy": f"s{i % 64}", "portfolio": f"p{i % 16}", "bundles_submitted": sub,
             "bundles_included": inc, "bundles_reverted": rng.randint(0, sub - inc),
             "inclusion_rate": inc / sub if sub else 0.0, "revert_rate": rng.uniform(0, 0.25),
             "gas_to_gross": rng.uniform(0.1, 0.9), "net_pnl_usd": rng.uniform(-2e3, 5e3),
             "gross_pnl_usd": rng.uniform(0, 8e3), "drawdown_usd": rng.uniform(0, 4_000),
             "win_rate": rng.random()}
    if rng.random() < BREACH:
        k = rng.choice(["drawdown_usd", "revert_rate", "gas_to_gross", "inclusion_rate"])
        stats[k] = {"drawdown_usd": 6_000.0, "revert_rate": 0.5, "gas_to_gross": 1.3,
                    "inclusion_rate": 0.01}[k]
        stats["bundles_submitted"] = 100
    return stats


def source(rng: random.Random, i: int) -> dict[str, Any]:
    names = ["price-oracle", "gas-tracker", "liquidity-monitor", "volatility-index"]
    age = 45_000 if rng.random() < BREACH else rng.randint(0, 5_000)
    return {"name": names[i % 4], "last_ts_ms": 0, "age_ms": age, "limit_ms": 30_000,
            "status": "ACTIVE"}


def run(scope: str, contexts: list[tuple[str, dict[str, Any]]], seconds: float,
        engine: AlertEngine, ts0: int) -> tuple[float, int]:
    n_rules = len(engine.ruleset.plans[scope].rules)
    evals, ts, t0 = 0, ts0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for entity, ctx in contexts:
            ts += 100
            engine.evaluate(scope, entity, ctx, ts)
        evals += len(contexts) * n_rules
    return evals / (time.perf_counter() - t0), ts


def cel_only(seconds: float, ctx: dict[str, Any]) -> float:
    rs = load_rules()
    progs = [r.program for r in rs.plans["portfolio"].rules]
    env = cel.Context(variables={"snapshot": ctx})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            for p in progs:
                p.execute(env)
        n += 1000 * len(progs)
    return n / (time.perf_counter() - t0)


def main() -> None:
    global BREACH
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0, help="per scope")
    ap.add_argument("--breach", type=float, default=BREACH,
                    help="share of contexts crossing a threshold (lifecycle-heavy when high)")
    ap.add_argument("--no-fast-path", action="store_true",
                    help="evaluate every rule with the cel library only")
    args = ap.parse_args()
    BREACH = args.breach
    rng = random.Random(42)
    rules = load_rules()
    engine = AlertEngine(rules, fast_path=not args.no_fast_path)
    makers = {"portfolio": (snapshot, "portfolio"), "strategy": (strategy, "strategy"),
              "source": (source, "name")}
    total_evals, total_time, ts = 0.0, 0.0, 1_700_000_000_000
    per_scope = {}
    for scope, (make, key) in makers.items():
        ctxs = [make(rng, i) for i in range(args.contexts)]
        contexts = [(c[key], c) for c in ctxs]
        run(scope, contexts[:200], 0.2, engine, ts)  # warm-up
        rate, ts = run(scope, contexts, args.seconds, engine, ts)
        per_scope[scope] = rate
        n_rules = len(rules.plans[scope].rules)
        total_evals += n_rules
        total_time += n_rules / rate
    # weighted so each scope contributes one context per "round": rules / time per round
    print(f"rule_evals_per_sec={total_evals / total_time:,.0f}".replace(",", ""))
    for scope, rate in per_scope.items():
        print(f"  {scope}: {rate:,.0f} rule evals/s "
              f"({len(rules.plans[scope].rules)} rules per context)")
    print(f"  cel_only_evals_per_sec={cel_only(1.0, snapshot(rng, 0)):,.0f}")
    print(f"  rules={len(rules)} eval_errors={sum(engine.errors.values())} "
          f"alerts_open={len(engine.alerts())} fast_path={engine.fast_path} "
          f"breach_share={BREACH}")


if __name__ == "__main__":
    main()
