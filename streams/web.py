"""Web views served by the Faust web server: ``/metrics`` for Prometheus.

With ``MEVRISK_METRICS_TOKEN`` set, ``/metrics`` answers only ``Authorization: Bearer <token>``
(the metrics name every portfolio and its figures); unset, it is open.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.api.access import bearer_matches
from streams.api.config import get_api_settings
from streams.app import app


@app.page("/metrics")
async def prometheus_metrics(web, request):
    token = get_api_settings().metrics_token.get_secret_value()
    if token and not bearer_matches(request.headers.get("Authorization"), token):
        return web.json({"error": "/metrics needs the metrics token (Authorization: Bearer "
                                  "<MEVRISK_METRICS_TOKEN>)"}, status=401,
                        headers={"WWW-Authenticate": 'Bearer realm="mevrisk-metrics"'})
    body = generate_latest(metrics.REGISTRY)
    return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
