"""Builds this worker's pipeline and output publishers (small builders, STYLE 12)."""

from __future__ import annotations

from streams.host import host
from streams.topics import alerts_topic, audit_topic, controls_topic, snapshots_topic


def install_pipeline() -> None:
    host.publishers = {
        "risk.snapshots": snapshots_topic,
        "risk.alerts": alerts_topic,
        "risk.controls": controls_topic,
        "risk.audit": audit_topic,
    }
