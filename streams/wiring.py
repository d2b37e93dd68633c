"""Builds this worker's pipeline and output publishers (small builders, STYLE 12).

:func:`install_pipeline` installs them on the host it is given (``streams.host.host``); this
module does not import ``streams.host``. The host imports it to rebuild its pipeline (after a
rebalance, or a refused state checkpoint), so the imports go one way: host -> wiring.
"""

from __future__ import annotations

from typing import Any, Protocol

from agents.admission import AdmissionLimits
from agents.assembly import PipelineOptions, build_pipeline
from agents.audit.trust import audit_key
from agents.pipeline import RiskPipeline
from agents.reports.archive import DayArchive
from agents.reports.model import ReportOptions
from streams.model_store import CheckpointPublisher, owns_positions_partition
from streams.settings import Settings, get_settings
from streams.state_store import state_checkpoint_ms
from streams.topics import (
    alerts_topic,
    audit_topic,
    controls_topic,
    dlq_topic,
    models_topic,
    reports_topic,
    snapshots_topic,
)


class PipelineSlots(Protocol):
    """What :func:`install_pipeline` sets on the host (``streams.host.PipelineHost``)."""

    pipeline: Any
    publishers: dict[str, Any]
    checkpoints: Any
    audit_key: bytes | None
    archive: Any


def pipeline_options(settings: Settings) -> PipelineOptions:
    return PipelineOptions(
        config_dir=settings.config_dir,
        bar_ms=settings.bar_ms,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        coalesce_ms=settings.snapshot_coalesce_ms,
        refresh_on_price=settings.refresh_on_price,
        # with state checkpoints on, they hold the models: risk.models is neither written nor read
        model_checkpoint_ms=(int(settings.model_checkpoint_secs * 1000)
                             if checkpoint_secret(settings) is not None and not state_checkpoint_ms(settings)
                             else 0),
        admission=AdmissionLimits(settings.max_portfolios, settings.max_strategies, settings.max_assets),
    )


def checkpoint_secret(settings: Settings) -> bytes | None:
    """The worker secret that signs checkpoints, or None (checkpoints off) when it is unset."""
    if settings.checkpoint_secret is None:
        return None
    return settings.checkpoint_secret.get_secret_value().encode()


def audit_mac_key(settings: Settings) -> bytes | None:
    """The key that signs and authenticates ``risk.audit`` records (derived from the worker secret),
    or None when the secret is unset: then records go out unsigned and none read back is acted on."""
    secret = checkpoint_secret(settings)
    return None if secret is None else audit_key(secret)


def install_pipeline(host: PipelineSlots, settings: Settings | None = None) -> RiskPipeline:
    """Give ``host`` a fresh pipeline built from ``deploy/config`` and the output topics."""
    settings = settings or get_settings()
    host.publishers = {
        "risk.snapshots": snapshots_topic,
        "risk.alerts": alerts_topic,
        "risk.controls": controls_topic,
        "risk.audit": audit_topic,
        "risk.dlq": dlq_topic,
        "risk.reports": reports_topic,
    }
    pipeline = build_pipeline(pipeline_options(settings))
    pipeline.idle_source_secs = settings.idle_source_secs
    pipeline.head_idle_secs = settings.head_idle_ms / 1000
    pipeline.checkpoint_ms = state_checkpoint_ms(settings)  # the clock stops at each checkpoint instant
    host.pipeline = pipeline
    host.audit_key = audit_mac_key(settings)
    host.archive = (DayArchive(ReportOptions(source="archive", bar_ms=pipeline.bar_ms))
                    if settings.report_archive else None)
    secret = checkpoint_secret(settings)
    host.checkpoints = (CheckpointPublisher(models_topic, owns_positions_partition, secret)
                        if secret is not None else None)
    return pipeline
