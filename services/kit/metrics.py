"""Prometheus metrics: per-route request histograms for every service, and ``/metrics``.

Route labels use the route's canonical template (``/v1/payouts/{id}``), never the raw path,
so label cardinality stays bounded. Services define their own domain metrics next to their
code with the same registry (prometheus_client's default).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REQUESTS_TOTAL = Counter(
    "http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        labels = (_route_label(request), request.method, str(status))
        REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - start)
        REQUESTS_TOTAL.labels(*labels).inc()


async def metrics_view(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
