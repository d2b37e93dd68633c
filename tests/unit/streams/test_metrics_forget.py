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


def _exported() -> set[str]:
    """Portfolios with a series in the process-wide registry (other tests may have left some)."""
    return {s.labels["portfolio"] for f in metrics.REGISTRY.collect() for s in f.samples
            if "portfolio" in s.labels}


def test_forgotten_portfolios_lose_every_headline_series() -> None:
    others = _exported() - {"kept-p", "moved-p"}  # left by other tests: kept, so not our business
    metrics.observe_snapshot(_snapshot("kept-p"))
    metrics.observe_snapshot(_snapshot("moved-p"))
    try:
        assert len(_series("moved-p")) == 11
        assert metrics.forget_portfolios({"kept-p"} | others) == ["moved-p"]
        assert _series("moved-p") == []
        assert len(_series("kept-p")) == 11
        assert metrics.forget_portfolios({"kept-p"} | others) == []
        assert _exported() - others == {"kept-p"}
    finally:  # leave the registry as we found it
        metrics.forget_portfolios(others)
