"""What the views read, merged from this worker's host (``streams.host_reads``) and the hub
(other workers' outputs read back from the topics); and the way views change the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from streams.api import shape
from streams.api.common import ApiError
from streams.api.config import ApiSettings
from streams.api.hub import EventHub
from streams.host_reads import Outputs


class ApiState:
    """The host's reads and the hub's, as the views need them. ``host`` is a ``HostReads``."""

    def __init__(self, host: Any, hub: EventHub, settings: ApiSettings) -> None:
        self.host, self.hub, self.settings = host, hub, settings

    def require_pipeline(self) -> None:
        if not self.host.running():
            raise ApiError(503, "the risk pipeline is not running yet")

    def recovering(self) -> bool:
        return bool(self.host.recovering())

    def watermark(self) -> int:
        return int(self.host.watermark())

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """Latest snapshot per portfolio: this worker's, or a newer one another worker published."""
        merged = dict(self.hub.snapshots)
        for name, snap in self.host.local_snapshots().items():
            other = merged.get(name)
            if other is None or snap.get("ts_ms", 0) >= other.get("ts_ms", 0):
                merged[name] = snap
        return merged

    def pick(self, request: web.Request) -> tuple[dict[str, Any], list[str]]:
        """The snapshot of ``?portfolio=`` (default: the first in sorted order) and every portfolio."""
        snapshots = self.snapshots()
        portfolios = sorted(snapshots)
        if not portfolios:
            raise ApiError(404, "no risk snapshot yet: no positions have been processed")
        wanted = request.query.get("portfolio") or portfolios[0]
        if wanted not in snapshots:
            raise ApiError(404, f"no risk snapshot for portfolio {wanted!r}", portfolios=portfolios)
        return snapshots[wanted], portfolios

    def alert_rows(self) -> list[dict[str, Any]]:
        rows = shape.merge_alerts(self.host.alert_views(), self.hub.alerts.values())
        return shape.notifications_sent(rows, self.hub.deliveries)

    def unresolved(self, portfolio: str | None = None) -> int:
        return sum(1 for r in self.alert_rows() if r["state"] != "resolved"
                   and (portfolio is None or r.get("portfolio") == portfolio))

    async def apply(self, change: Callable[[Any], Outputs]) -> Outputs:
        """Run ``change(pipeline)`` on the host (under its lock, outputs published and durable),
        then hand the outputs to the live pages."""
        self.require_pipeline()
        if self.recovering():
            raise ApiError(503, "the worker is still replaying its inputs after a restart; retry shortly")
        outputs = await self.host.apply(change)
        self.hub.publish(outputs)  # deduped if the host already notified
        return outputs
