"""SQL shared by the use cases: payout rows to wire objects, status changes that write the
outbox and the event log in the caller's transaction, alerts and audit records."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from services.kit import outbox
from services.kit.logging import get_logger
from services.payout.domain import payouts as rules

log = get_logger(__name__)

PRODUCER = "payout"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payout_object(row: asyncpg.Record) -> dict[str, Any]:
    """The merchant-facing payout (contracts.payout.Payout) as JSON-ready builtins."""
    history = row["status_history"]
    if isinstance(history, str):
        history = json.loads(history)
    metadata = row["metadata"]
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    return {
        "id": row["id"],
        "object": "payout",
        "status": row["status"],
        "amount": row["amount_minor"],
        "fee": row["fee_minor"],
        "currency": row["currency"],
        "beneficiary": {
            "name": row["beneficiary_name"],
            "account_number": rules.mask_account(row["beneficiary_account"]),
            "bank_code": row["beneficiary_bank_code"],
        },
        "reference": row["reference"],
        "metadata": metadata,
        "channel": row["channel"],
        "failure_code": row["failure_code"],
        "failure_message": row["failure_message"],
        "batch_id": row["batch_id"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "status_history": history,
    }


async def emit(
    conn: asyncpg.Connection, row: asyncpg.Record, event_type: str, now: datetime
) -> None:
    """Announce the payout as it is now: outbox (for the broker) + event log (GET /v1/events)."""
    data = payout_object(row)
    correlation_id = structlog.contextvars.get_contextvars().get("request_id")
    envelope = await outbox.enqueue(
        conn,
        event_type=event_type,
        producer=PRODUCER,
        aggregate_id=row["id"],
        aggregate_version=row["version"],
        data=data,
        correlation_id=str(correlation_id) if correlation_id else None,
        now=now,
    )
    await conn.execute(
        "INSERT INTO events(event_id, merchant_id, event_type, payout_id, data, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.UUID(envelope.event_id),
        row["merchant_id"],
        event_type,
        row["id"],
        json.dumps(data),
        now,
    )


async def change_status(
    conn: asyncpg.Connection,
    payout_id: str,
    new_status: str,
    *,
    now: datetime,
    reason: str | None = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    channel: str | None = None,
    attempt_id: str | None = None,
) -> asyncpg.Record:
    """Move a payout to ``new_status`` (checked against the state machine) and announce it.
    Must run inside the caller's transaction; locks the payout row."""
    row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", payout_id)
    assert row is not None, payout_id
    rules.check_transition(row["status"], new_status)
    entry = rules.history_entry(new_status, now, reason)
    updated = await conn.fetchrow(
        """UPDATE payouts SET status = $2, updated_at = $3, version = version + 1,
               status_history = status_history || $4::jsonb,
               failure_code = COALESCE($5, failure_code),
               failure_message = COALESCE($6, failure_message),
               channel = COALESCE($7, channel),
               attempt_id = COALESCE($8, attempt_id)
           WHERE id = $1 RETURNING *""",
        payout_id,
        new_status,
        now,
        json.dumps([entry]),
        failure_code,
        failure_message,
        channel,
        attempt_id,
    )
    assert updated is not None
    event_type = rules.EVENT_FOR_STATUS.get(new_status)
    if event_type is not None:
        await emit(conn, updated, event_type, now)
    log.info(
        "payout_status_changed",
        payout_id=payout_id,
        from_status=row["status"],
        to_status=new_status,
        reason=reason,
    )
    return updated


async def raise_alert(
    conn: asyncpg.Connection,
    *,
    code: str,
    severity: str,
    message: str,
    payout_id: str | None,
    now: datetime,
    merchant_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Store the alert and announce it as ``payout.alert`` (recon keeps the one list
    operators read). ``merchant_id`` and ``details`` let recon group repeats by merchant."""
    alert_id = rules.new_id("alr")
    await conn.execute(
        "INSERT INTO alerts(id, code, severity, message, payout_id, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        alert_id,
        code,
        severity,
        message,
        payout_id,
        now,
    )
    await outbox.enqueue(
        conn,
        event_type="payout.alert",
        producer=PRODUCER,
        aggregate_id=payout_id or alert_id,
        aggregate_version=1,
        data={
            "alert_id": alert_id,
            "code": code,
            "severity": severity,
            "message": message,
            "payout_id": payout_id,
            "merchant_id": merchant_id,
            "details": details or {},
        },
        now=now,
    )
    log.warning(
        "alert_raised", alert_id=alert_id, code=code, severity=severity, payout_id=payout_id
    )
    return alert_id


async def audit(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    payout_id: str | None,
    merchant_id: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log(actor, action, payout_id, merchant_id, detail, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        actor,
        action,
        payout_id,
        merchant_id,
        json.dumps(detail),
        now,
    )


def ledger_merchant_account(merchant_id: str, currency: str) -> str:
    return f"{merchant_id}.{currency}"


def ledger_system_account(kind: str, currency: str) -> str:
    assert kind in ("funding", "settlement", "fee_revenue")
    return f"{kind}.{currency}"
