"""Payout gauges for ``/metrics``, read from the database when scraped: payouts by status,
webhook deliveries by status with the backlog's age and failed attempts, open alerts."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Gauge

from services.kit.metrics import add_refresher

PAYOUTS = Gauge("payouts", "Payouts by status.", ["status"])
WEBHOOK_DELIVERIES = Gauge("webhook_deliveries", "Webhook deliveries by status.", ["status"])
WEBHOOK_BACKLOG_OLDEST_SECONDS = Gauge(
    "webhook_backlog_oldest_seconds",
    "How long the oldest pending webhook delivery has been waiting (0 when none).",
)
WEBHOOK_FAILED_ATTEMPTS = Gauge(
    "webhook_failed_attempts",
    "Webhook delivery attempts that did not get a 2xx, over the deliveries kept.",
)
PAYOUT_ALERTS = Gauge(
    "payout_alerts", "Payout alerts raised, by code and severity.", ["code", "severity"]
)

PAYOUT_STATUSES = (
    "pending_review",
    "processing",
    "submitted",
    "paid",
    "failed",
    "returned",
    "manual_review",
    "canceled",
)
DELIVERY_STATUSES = ("pending", "delivered", "dead")


def register(app: web.Application, pool_key: web.AppKey) -> None:
    async def payout_gauges(app: web.Application) -> None:
        async with app[pool_key].acquire() as conn:
            payouts = dict(await conn.fetch("SELECT status, count(*) FROM payouts GROUP BY status"))
            deliveries = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                          count(*) FILTER (WHERE status = 'delivered') AS delivered,
                          count(*) FILTER (WHERE status = 'dead') AS dead,
                          COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)
                              FILTER (WHERE status = 'pending')), 0) AS oldest_s,
                          COALESCE(sum(CASE WHEN status = 'delivered' THEN attempts - 1
                                            ELSE attempts END), 0) AS failed
                   FROM webhook_deliveries"""
            )
            alerts = await conn.fetch(
                "SELECT code, severity, count(*) AS n FROM alerts GROUP BY code, severity"
            )
        for status in {*PAYOUT_STATUSES, *payouts}:
            PAYOUTS.labels(status).set(payouts.get(status, 0))
        assert deliveries is not None
        for status in DELIVERY_STATUSES:
            WEBHOOK_DELIVERIES.labels(status).set(deliveries[status])
        WEBHOOK_BACKLOG_OLDEST_SECONDS.set(float(deliveries["oldest_s"]))
        WEBHOOK_FAILED_ATTEMPTS.set(deliveries["failed"])
        for row in alerts:
            PAYOUT_ALERTS.labels(row["code"], row["severity"]).set(row["n"])

    add_refresher(app, payout_gauges)
