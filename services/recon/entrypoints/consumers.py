"""AMQP consumers of the recon service: the alert hub.

Operators read one alert list (``GET /v1/recon/alerts``, the console's alerts page). Recon's
own alerts are written by its use cases; the payout service's arrive as ``payout.alert`` (and
the ledger tamper check's as ``ledger.alert``, same shape) and are stored here in the same
table with the same dedupe (one open alert per cause, repeats counted), the inbox row in the
same transaction, so a redelivered event has no second effect.

They are not published again as ``recon.alert``: ``payout.alert`` is already on the broker,
and a subscriber of both would be told twice.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from contracts.wire import Envelope
from services.kit import outbox
from services.kit.amqp import Broker
from services.kit.logging import get_logger
from services.recon.adapters import repository as repo
from services.recon.domain import taxonomy
from services.recon.handlers import new_id

log = get_logger(__name__)

PAYOUT_ALERTS_CONSUMER = "recon.payout_alerts"
PAYOUT_ALERT_EVENT = "payout.alert"
# The ledger's alerts have the same shape and land in the same list, on the same queue.
LEDGER_ALERT_EVENT = "ledger.alert"
PREFETCH = 16
MESSAGE_CHARS_MAX = 2_000
DETAIL_KEYS_MAX = 16
RULE_IDS_MAX = 32
_CODE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


class PayoutAlert(msgspec.Struct, kw_only=True):
    """``data`` of ``payout.alert`` as recon reads it (lenient: extra fields are ignored).
    ``merchant_id`` and ``details`` are optional: older producers do not send them."""

    alert_id: str
    code: str
    severity: str | None = None
    message: str
    payout_id: str | None = None
    merchant_id: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)


def _rule_ids(details: dict[str, Any]) -> tuple[str, ...]:
    raw = details.get("rule_ids")
    if not isinstance(raw, list):
        return ()
    return tuple(str(r) for r in raw[:RULE_IDS_MAX])


def _context(envelope: Envelope, alert: PayoutAlert) -> dict[str, Any]:
    details = dict(list(alert.details.items())[:DETAIL_KEYS_MAX])
    return {
        "source": envelope.producer,
        "event_id": envelope.event_id,
        "occurred_at": envelope.occurred_at.isoformat(),
        "producer_alert_id": alert.alert_id,
        "payout_id": alert.payout_id,
        "merchant_id": alert.merchant_id,
        **({"details": details} if details else {}),
    }


async def store_payout_alert(
    pool: asyncpg.Pool, envelope: Envelope, *, now: datetime | None = None
) -> str | None:
    """Store one ``payout.alert``; returns recon's alert id, or None when the event had no
    effect (a redelivery, or a payload that is not an alert)."""
    try:
        alert = msgspec.convert(envelope.data, PayoutAlert)
    except msgspec.ValidationError as exc:
        # Redelivering would not make it valid: logged and acknowledged.
        log.error("payout_alert_invalid", event_id=envelope.event_id, error=str(exc))
        return None
    if not _CODE.match(alert.code):
        log.error("payout_alert_invalid", event_id=envelope.event_id, error="code malformed")
        return None
    severity, known = taxonomy.payout_alert_severity(alert.code, alert.severity)
    if not known:
        log.warning(
            "payout_alert_code_unknown",
            code=alert.code,
            stated_severity=alert.severity,
            stored_severity=severity.value,
            event_id=envelope.event_id,
        )
    cause = taxonomy.payout_alert_cause(
        alert.code,
        alert_id=alert.alert_id,
        payout_id=alert.payout_id,
        merchant_id=alert.merchant_id,
        rule_ids=_rule_ids(alert.details),
    )
    received = now or datetime.now(UTC)
    # When it happened, not when we heard of it (a backlog after an outage keeps its times).
    occurred_at = envelope.occurred_at
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    seen_at = min(occurred_at, received)
    async with pool.acquire() as conn, conn.transaction():
        if not await outbox.claim_inbox(conn, PAYOUT_ALERTS_CONSUMER, envelope.event_id):
            log.info("payout_alert_redelivered", event_id=envelope.event_id, code=alert.code)
            return None
        row, opened = await repo.upsert_alert(
            conn,
            alert_id=new_id("alr"),
            cause=cause,
            code=alert.code,
            severity=severity.value,
            message=alert.message[:MESSAGE_CHARS_MAX],
            channel=None,
            business_date=None,
            context=_context(envelope, alert),
            now=seen_at,
        )
        stored = taxonomy.Severity(row["severity"])
        if taxonomy.SEVERITY_RANK[severity] < taxonomy.SEVERITY_RANK[stored]:
            # A repeat may be worse than the first (a conflict on a payout settled since):
            # the open alert takes the worse severity, never a milder one.
            row = await conn.fetchrow(
                "UPDATE recon_alerts SET severity = $2 WHERE alert_id = $1 RETURNING *",
                row["alert_id"],
                severity.value,
            )
            assert row is not None
    log.warning(
        "payout_alert_stored",
        alert_id=row["alert_id"],
        code=alert.code,
        severity=severity.value,
        cause=cause,
        opened=opened,
        occurrences=row["occurrences"],
    )
    return str(row["alert_id"])


def payout_alerts_context(
    pool_key: web.AppKey[asyncpg.Pool], broker_key: web.AppKey[Broker]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: consume ``payout.alert`` on recon's durable queue. Append it after
    the pool and the broker; the broker's close stops it and drains the handler in flight."""

    async def consume(app: web.Application) -> AsyncIterator[None]:
        pool = app[pool_key]

        async def handle(envelope: Envelope) -> None:
            if envelope.event_type in (PAYOUT_ALERT_EVENT, LEDGER_ALERT_EVENT):
                await store_payout_alert(pool, envelope)

        await app[broker_key].consume(
            PAYOUT_ALERTS_CONSUMER,
            [PAYOUT_ALERT_EVENT, LEDGER_ALERT_EVENT],
            handle,
            prefetch=PREFETCH,
        )
        yield

    return consume
