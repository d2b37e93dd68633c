"""Web views served by the Faust web server: ``/metrics`` for Prometheus."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.app import app


@app.page("/metrics")
async def prometheus_metrics(web, request):
    body = generate_latest(metrics.REGISTRY)
    return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
