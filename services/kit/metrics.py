"""Prometheus metrics: per-route request histograms for every service, and ``/metrics``.

Route labels use the route's canonical template (``/v1/payouts/{id}``), never the raw path,
so label cardinality stays bounded. Services define their own domain metrics next to their
code with the same registry (prometheus_client's default).

Kit-level series every service with an outbox or a consumer gets for free: outbox size and
age (refreshed by the relay), events published, and per consumer queue the depth (refreshed
by the broker) and the lag from an event's ``occurred_at`` to its handling.

Gauges that are cheapest to read from the database or from in-memory state when scraped
are refreshed by *refreshers*: ``add_refresher(app, fn)`` registers ``async fn(app)``, and
``/metrics`` awaits every refresher (bounded by ``REFRESH_TIMEOUT_S``) before answering. A
failing refresher is logged and counted, never fatal: the last values stay exported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

Refresher = Callable[[web.Application], Awaitable[None]]
refreshers_key = web.AppKey("metrics_refreshers", list)
REFRESH_TIMEOUT_S = 3.0

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

METRICS_REFRESH_FAILURES = Counter(
    "metrics_refresh_failures_total",
    "A scrape-time gauge refresher failed (its gauges keep their last values).",
    ["refresher"],
)

OUTBOX_UNPUBLISHED = Gauge(
    "outbox_unpublished_events", "Outbox rows not yet published to the broker."
)
OUTBOX_OLDEST_AGE_SECONDS = Gauge(
    "outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0 when empty): the relay's lag.",
)
OUTBOX_PUBLISHED_TOTAL = Counter(
    "outbox_published_events_total", "Outbox rows published with a broker confirm."
)
AMQP_QUEUE_MESSAGES = Gauge(
    "amqp_queue_messages_ready",
    "Messages waiting in a consumer's queue (refreshed by the consuming process).",
    ["queue"],
)
AMQP_QUEUE_CONSUMERS = Gauge(
    "amqp_queue_consumers", "Consumers attached to a consumer's queue.", ["queue"]
)
AMQP_CONSUMED_TOTAL = Counter(
    "amqp_messages_consumed_total",
    "Messages handled by a consumer, by outcome (acked, requeued, rejected).",
    ["consumer", "outcome"],
)
AMQP_CONSUME_LAG_SECONDS = Histogram(
    "amqp_consume_lag_seconds",
    "From the event's occurred_at to the end of its handling, per consumer.",
    ["consumer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


def add_refresher(app: web.Application, refresher: Refresher) -> None:
    """Register ``async refresher(app)``, awaited by ``/metrics`` before each answer."""
    app[refreshers_key].append(refresher)


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


async def _refresh(app: web.Application, refresher: Refresher) -> None:
    name = getattr(refresher, "__name__", "refresher")
    try:
        await asyncio.wait_for(refresher(app), timeout=REFRESH_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - a scrape must answer even when a source is down
        METRICS_REFRESH_FAILURES.labels(name).inc()
        structlog.get_logger(__name__).warning(
            "metrics_refresh_failed", refresher=name, error=f"{type(exc).__name__}: {exc}"
        )


async def metrics_view(request: web.Request) -> web.Response:
    refreshers = request.app.get(refreshers_key) or []
    await asyncio.gather(*(_refresh(request.app, r) for r in refreshers))
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
