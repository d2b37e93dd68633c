"""A portfolio this worker no longer owns stops being exported."""

from __future__ import annotations

from streams import metrics


def _snapshot(portfolio: str) -> dict:
    return {"portfolio": portfolio, "var_95_usd": 1.0, "var_99_usd": 2.0, "es_95_usd": 1.5, "es_99_usd": 2.5,
            "es_975_usd": 2.2, "total_exposure_usd": 10.0, "net_exposure_usd": 5.0, "max_concentration": 0.5,
            "rating": "LOW", "anomaly": {"portfolio_score": 0.1, "alert_probability": 0.2}}


def _series(portfolio: str) -> list[str]:
    return [s.name for f in metrics.REGISTRY.collect() for s in f.samples
            if s.labels.get("portfolio") == portfolio]


def test_forgotten_portfolios_lose_every_headline_series() -> None:
    metrics.observe_snapshot(_snapshot("kept-p"))
    metrics.observe_snapshot(_snapshot("moved-p"))
    assert len(_series("moved-p")) == 11
    assert metrics.forget_portfolios({"kept-p"}) == ["moved-p"]
    assert _series("moved-p") == []
    assert len(_series("kept-p")) == 11
    assert metrics.forget_portfolios({"kept-p"}) == []
