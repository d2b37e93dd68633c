"""Builds a pipeline from the files in ``deploy/config`` (shared by the worker and offline replay)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agents.admission import Admission, AdmissionLimits
from agents.alerts.engine import AlertEngine
from agents.alerts.rules import load_rules
from agents.anomaly.checkpoint import ModelCheckpointer
from agents.anomaly.models import ModelBundle
from agents.marketwatch import MarketWatch, load_watch_config
from agents.pipeline import RiskPipeline
from agents.risk.config import load_risk_config
from agents.risk.engine import RiskEngine
from agents.risk.stress import load_scenarios

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "deploy" / "config"


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """Where the config lives and the event-time knobs (all in ms of event time)."""

    config_dir: Path = DEFAULT_CONFIG_DIR
    rules_path: Path | None = None
    bar_ms: int | None = None  # None: risk.yaml's bar_ms
    allowed_lateness_ms: int = 2_000
    coalesce_ms: int = 250
    refresh_on_price: bool = True  # a price tick re-marks its holders at the next coalescing boundary
    models: bool = True
    model_seed: int = 0
    model_checkpoint_ms: int = 0  # event time between model checkpoints; 0: none are taken
    admission: AdmissionLimits = dataclasses.field(default_factory=AdmissionLimits)
    eval_ms: int = 1_000  # market-wide rule evaluations (asset, global, source, strategy recent)


def build_risk_engine(options: PipelineOptions) -> RiskEngine:
    config = load_risk_config(options.config_dir / "risk.yaml")
    if options.bar_ms is not None:
        config = dataclasses.replace(config, bar_ms=options.bar_ms)
    return RiskEngine(config, load_scenarios(options.config_dir / "scenarios.yaml"))


def build_pipeline(options: PipelineOptions) -> RiskPipeline:
    risk = build_risk_engine(options)
    rules = load_rules(options.rules_path or options.config_dir / "rules.yaml")
    bar_ms = risk.config.bar_ms
    return RiskPipeline(
        risk=risk,
        alerts=AlertEngine(rules),
        bar_ms=bar_ms,
        allowed_lateness_ms=options.allowed_lateness_ms,
        coalesce_ms=min(options.coalesce_ms, bar_ms),
        refresh_on_price=options.refresh_on_price,
        models=ModelBundle(seed=options.model_seed) if options.models else None,
        checkpoints=(
            ModelCheckpointer(options.model_checkpoint_ms)
            if options.models and options.model_checkpoint_ms > 0 else None
        ),
        admission=Admission(options.admission),
        watch=MarketWatch(load_watch_config(options.config_dir / "watch.yaml")),
        eval_ms=options.eval_ms,
    )
