"""Admission: caps on how many distinct portfolios, strategies and assets the engine tracks.

The wire contract bounds each message; admission bounds what many valid messages can add
up to. One producer inventing names must not grow the engine's state, its Prometheus label
sets or the API's maps without limit. Admission is decided in event-time release order, so
a replay admits exactly the same entities as the live run (the first ``max_*`` seen win).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.errors import MevRiskError


class AdmissionRefused(MevRiskError):
    """An event would add one entity too many; ``reason`` is a ``risk.dlq`` reason code."""

    def __init__(self, reason: str, entity: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.entity = entity
        self.detail = detail


@dataclass(frozen=True)
class AdmissionLimits:
    """Most distinct entities tracked (events naming more go to ``risk.dlq``)."""

    max_portfolios: int = 100
    max_strategies: int = 200
    max_assets: int = 512


@dataclass
class Admission:
    """Remembers the admitted entities and refuses events that would exceed a cap.

    >>> gate = Admission(AdmissionLimits(max_portfolios=1))
    >>> gate.admit("mev.positions", {"portfolio": "alpha", "strategy": "s", "asset": "ETH"})
    >>> gate.admit("mev.positions", {"portfolio": "beta", "strategy": "s", "asset": "ETH"})
    Traceback (most recent call last):
    ...
    agents.admission.AdmissionRefused: too_many_entities: portfolio 'beta' would exceed the cap of 1
    """

    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    portfolios: set[str] = field(default_factory=set)
    strategies: set[str] = field(default_factory=set)
    assets: set[str] = field(default_factory=set)

    def admit(self, topic: str, value: dict[str, Any]) -> None:
        """Admit ``value``'s entities, or raise :class:`AdmissionRefused` (nothing admitted then)."""
        new_assets = {a for a in _assets(topic, value) if a not in self.assets}
        if len(self.assets) + len(new_assets) > self.limits.max_assets:
            name = sorted(new_assets)[0]
            raise AdmissionRefused("unknown_asset", name,
                                   f"asset {name!r} would exceed the cap of {self.limits.max_assets}")
        portfolio = value.get("portfolio") if topic in ("mev.positions", "mev.strategy.stats") else None
        strategy = value.get("strategy") if topic in ("mev.positions", "mev.strategy.stats") else None
        self._check(portfolio, self.portfolios, self.limits.max_portfolios, "portfolio")
        self._check(strategy, self.strategies, self.limits.max_strategies, "strategy")
        self.assets |= new_assets
        if portfolio is not None:
            self.portfolios.add(portfolio)
        if strategy is not None:
            self.strategies.add(strategy)

    @staticmethod
    def _check(name: str | None, known: set[str], cap: int, kind: str) -> None:
        if name is not None and name not in known and len(known) >= cap:
            detail = f"{kind} {name!r} would exceed the cap of {cap}"
            raise AdmissionRefused("too_many_entities", name, detail)


def _assets(topic: str, value: dict[str, Any]) -> set[str]:
    if topic == "mev.market.ticks":
        return {value["asset"]} if "asset" in value else set()
    if topic == "mev.positions":
        return {value["asset"], *(leg["asset"] for leg in value.get("legs") or ())}
    return set()
