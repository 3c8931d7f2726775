"""Router gauges for ``/metrics``, refreshed when scraped: attempts by channel and result
class (from the attempt table), and per channel the breaker state, success rate, p95
latency and today's quota use (from the live health board, as ``GET /v1/channels``)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Gauge

from services.kit.metrics import add_refresher
from services.router.keys import pool_key, service_key

ATTEMPTS = Gauge(
    "router_attempts",
    "Attempts by channel and result (succeeded, submitted, unknown, sending, or the failure"
    " class of a failed one: beneficiary_error, definite_non_execution).",
    ["channel", "result"],
)
BREAKER_STATE = Gauge(
    "router_channel_breaker_state",
    "1 for the channel's current breaker state, 0 for the others.",
    ["channel", "state"],
)
SUCCESS_RATIO = Gauge(
    "router_channel_success_ratio", "Success rate over the health window.", ["channel"]
)
LATENCY_P95_SECONDS = Gauge(
    "router_channel_latency_p95_seconds", "Bank latency p95 over the health window.", ["channel"]
)
QUOTA_USED_MINOR = Gauge(
    "router_channel_quota_used_minor",
    "Today's quota reserved plus consumed, in minor units.",
    ["channel"],
)
QUOTA_LIMIT_MINOR = Gauge("router_channel_quota_limit_minor", "Daily quota.", ["channel"])
KILL_SWITCH = Gauge(
    "router_channel_kill_switch",
    "1 when an operator kill switch is engaged.",
    ["channel", "operation"],
)
BREAKER_STATES = ("closed", "open", "half_open")


def register(app: web.Application) -> None:
    async def router_gauges(app: web.Application) -> None:
        rows = await app[pool_key].fetch(
            """SELECT channel_id,
                      CASE WHEN status = 'failed' THEN COALESCE(failure_class, 'failed')
                           ELSE status END AS result,
                      count(*) AS n
               FROM attempt GROUP BY 1, 2"""
        )
        for row in rows:
            ATTEMPTS.labels(row["channel_id"], row["result"]).set(row["n"])
        view = await app[service_key].channels()
        for channel in view["channels"]:
            cid, health, quota = channel["id"], channel["health"], channel["quota"]
            for state in BREAKER_STATES:
                BREAKER_STATE.labels(cid, state).set(int(health["breaker_state"] == state))
            SUCCESS_RATIO.labels(cid).set(health["success_rate_ppm"] / 1_000_000)
            if health["latency_ms_p95"] is not None:
                LATENCY_P95_SECONDS.labels(cid).set(health["latency_ms_p95"] / 1000)
            QUOTA_USED_MINOR.labels(cid).set(quota["reserved_minor"] + quota["consumed_minor"])
            QUOTA_LIMIT_MINOR.labels(cid).set(quota["daily_quota_minor"])
            for operation, engaged in channel["kill_switches"].items():
                KILL_SWITCH.labels(cid, operation).set(int(engaged))

    add_refresher(app, router_gauges)
