"""Reconciliation gauges for ``/metrics``, read from the database when scraped: breaks by
code and status, open alerts by code and severity, statement files by status."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Gauge

from services.kit.metrics import add_refresher

BREAKS = Gauge("recon_breaks", "Reconciliation breaks by code and status.", ["code", "status"])
ALERTS_OPEN = Gauge(
    "recon_alerts_open", "Open (or acknowledged) alerts by code and severity.", ["code", "severity"]
)
FILES = Gauge("recon_files", "Statement files taken in, by status.", ["status"])


def register(app: web.Application, pool_key: web.AppKey) -> None:
    async def recon_gauges(app: web.Application) -> None:
        async with app[pool_key].acquire() as conn:
            breaks = await conn.fetch(
                "SELECT code, status, count(*) AS n FROM recon_breaks GROUP BY code, status"
            )
            alerts = await conn.fetch(
                """SELECT code, severity, count(*) AS n FROM recon_alerts
                   WHERE status <> 'closed' GROUP BY code, severity"""
            )
            files = await conn.fetch(
                "SELECT status, count(*) AS n FROM recon_files GROUP BY status"
            )
        for row in breaks:
            BREAKS.labels(row["code"], row["status"]).set(row["n"])
        for row in alerts:
            ALERTS_OPEN.labels(row["code"], row["severity"]).set(row["n"])
        for row in files:
            FILES.labels(row["status"]).set(row["n"])

    add_refresher(app, recon_gauges)
