"""Operator use cases behind ``/admin``: merchants, keys, limits, fees, funding, review queues,
webhook redelivery. Every resolution of a payout writes an audit record in its transaction."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import asyncpg

from contracts import payout as wire
from services.kit.auth import hash_key, new_key
from services.kit.errors import ProblemError
from services.payout.adapters import store
from services.payout.adapters.participants import Transient
from services.payout.coordinator import transfer_accepted
from services.payout.domain import payouts as rules
from services.payout.domain import tcc
from services.payout.handlers import (
    Context,
    _drive_now,
    create_global_tx,
    get_payout,
    list_payouts,
    now_utc,
    parse_limit,
)

LEDGER_CODE_FUNDING = 1
LEDGER_CODE_SETTLEMENT = 2
LEDGER_CODE_FEE_REVENUE = 3
LEDGER_CODE_MERCHANT = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _key(row: asyncpg.Record, secret: str | None = None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "api_key",
        "prefix": row["key_prefix"],
        "created_at": _iso(row["created_at"]),
        "revoked_at": _iso(row["revoked_at"]),
        "secret_key": secret,
    }


async def merchant_object(
    conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, secret: str | None = None
) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM merchants WHERE id = $1", merchant_id)
    if row is None:
        raise ProblemError(404, "merchant_not_found", "Merchant not found", merchant_id)
    keys = await conn.fetch(
        "SELECT * FROM api_keys WHERE merchant_id = $1 ORDER BY created_at", merchant_id
    )
    return {
        "id": row["id"],
        "object": "merchant",
        "name": row["name"],
        "currencies": list(row["currencies"]),
        "limits": {
            "per_payout_max": row["per_payout_max_minor"],
            "daily_max": row["daily_max_minor"],
            "monthly_max": row["monthly_max_minor"],
            "review_threshold": row["review_threshold_minor"],
        },
        "fees": {"fixed": row["fee_fixed_minor"], "bps": row["fee_bps"]},
        "created_at": _iso(row["created_at"]),
        "api_keys": [_key(k) for k in keys],
        "secret_key": secret,
    }


async def ensure_ledger_accounts(ctx: Context, merchant_id: str, currencies: list[str]) -> None:
    """Create (idempotently) the merchant's and the system accounts for these currencies."""
    wanted: list[tuple[str, str, int, bool]] = []
    for currency in currencies:
        wanted += [
            (store.ledger_merchant_account(merchant_id, currency), currency, 10, True),
            (store.ledger_system_account("funding", currency), currency, 1, False),
            (store.ledger_system_account("settlement", currency), currency, 2, False),
            (store.ledger_system_account("fee_revenue", currency), currency, 3, False),
        ]
    known = {
        r["id"]
        for r in await ctx.pool.fetch(
            "SELECT id FROM ledger_accounts WHERE id = ANY($1)", [w[0] for w in wanted]
        )
    }
    for account_id, currency, code, no_overdraft in wanted:
        if account_id in known:
            continue
        try:
            reply = await ctx.ledger.create_account(
                account_id, currency, code, no_overdraft=no_overdraft
            )
        except Transient as exc:
            raise ProblemError(
                503, "ledger_unavailable", "Ledger unavailable", "try again shortly"
            ) from exc
        if not (reply.ok or reply.status == 409):
            raise ProblemError(
                503, "ledger_unavailable", "Ledger refused an account", reply.message
            )
        await ctx.pool.execute(
            "INSERT INTO ledger_accounts(id) VALUES ($1) ON CONFLICT DO NOTHING", account_id
        )


async def create_merchant(ctx: Context, request: wire.CreateMerchant) -> dict[str, Any]:
    s = ctx.settings
    merchant_id = rules.new_id("mer")
    currencies = sorted(set(request.currencies or s.currencies))
    unsupported = set(currencies) - set(s.currencies)
    if unsupported:
        raise ProblemError(
            422,
            "currency_not_supported",
            "Currency not supported",
            f"this installation supports {', '.join(s.currencies)}",
        )
    await ensure_ledger_accounts(ctx, merchant_id, currencies)
    limits = request.limits
    fees = request.fees
    secret = new_key("sk")
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO merchants(id, name, currencies, per_payout_max_minor, daily_max_minor,
                   monthly_max_minor, review_threshold_minor, fee_fixed_minor, fee_bps)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            merchant_id,
            request.name,
            currencies,
            limits.per_payout_max if limits else s.default_per_payout_max_minor,
            limits.daily_max if limits else s.default_daily_max_minor,
            limits.monthly_max if limits else s.default_monthly_max_minor,
            limits.review_threshold if limits else s.default_review_threshold_minor,
            fees.fixed if fees else s.default_fee_fixed_minor,
            fees.bps if fees else s.default_fee_bps,
        )
        await _insert_key(conn, merchant_id, secret)
        await store.audit(
            conn,
            actor="admin",
            action="merchant_created",
            payout_id=None,
            merchant_id=merchant_id,
            detail={"name": request.name, "currencies": currencies},
            now=now_utc(),
        )
        return await merchant_object(conn, merchant_id, secret)


async def _insert_key(conn: asyncpg.Connection, merchant_id: str, secret: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO api_keys(id, merchant_id, key_hash, key_prefix) VALUES ($1, $2, $3, $4)"
        " RETURNING *",
        rules.new_id("key"),
        merchant_id,
        hash_key(secret),
        secret[:10],
    )
    assert row is not None
    return row


async def create_key(ctx: Context, merchant_id: str) -> dict[str, Any]:
    secret = new_key("sk")
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM merchants WHERE id = $1", merchant_id):
            raise ProblemError(404, "merchant_not_found", "Merchant not found", merchant_id)
        row = await _insert_key(conn, merchant_id, secret)
        await store.audit(
            conn,
            actor="admin",
            action="api_key_created",
            payout_id=None,
            merchant_id=merchant_id,
            detail={"key_id": row["id"]},
            now=now_utc(),
        )
    return _key(row, secret)


async def revoke_key(ctx: Context, merchant_id: str, key_id: str) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
               WHERE id = $1 AND merchant_id = $2 RETURNING *""",
            key_id,
            merchant_id,
        )
        if row is None:
            raise ProblemError(404, "key_not_found", "Key not found", key_id)
        await store.audit(
            conn,
            actor="admin",
            action="api_key_revoked",
            payout_id=None,
            merchant_id=merchant_id,
            detail={"key_id": key_id},
            now=now_utc(),
        )
    return _key(row)


async def set_limits(ctx: Context, merchant_id: str, limits: wire.Limits) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            """UPDATE merchants SET per_payout_max_minor = $2, daily_max_minor = $3,
                   monthly_max_minor = $4, review_threshold_minor = $5, updated_at = now()
               WHERE id = $1 RETURNING 1""",
            merchant_id,
            limits.per_payout_max,
            limits.daily_max,
            limits.monthly_max,
            limits.review_threshold,
        )
        if not done:
            raise ProblemError(404, "merchant_not_found", "Merchant not found", merchant_id)
        await store.audit(
            conn,
            actor="admin",
            action="limits_set",
            payout_id=None,
            merchant_id=merchant_id,
            detail={
                "per_payout_max": limits.per_payout_max,
                "daily_max": limits.daily_max,
                "monthly_max": limits.monthly_max,
                "review_threshold": limits.review_threshold,
            },
            now=now_utc(),
        )
        return await merchant_object(conn, merchant_id)


async def set_fees(ctx: Context, merchant_id: str, fees: wire.Fees) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE merchants SET fee_fixed_minor = $2, fee_bps = $3, updated_at = now()"
            " WHERE id = $1 RETURNING 1",
            merchant_id,
            fees.fixed,
            fees.bps,
        )
        if not done:
            raise ProblemError(404, "merchant_not_found", "Merchant not found", merchant_id)
        await store.audit(
            conn,
            actor="admin",
            action="fees_set",
            payout_id=None,
            merchant_id=merchant_id,
            detail={"fixed": fees.fixed, "bps": fees.bps},
            now=now_utc(),
        )
        return await merchant_object(conn, merchant_id)


def _funding(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "funding",
        "merchant_id": row["merchant_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "reference": row["reference"],
        "transfer_id": row["transfer_id"],
        "created_at": _iso(row["created_at"]),
    }


async def fund_merchant(
    ctx: Context, merchant_id: str, request: wire.FundMerchant
) -> tuple[int, dict[str, Any]]:
    """A ledger deposit (funding source → merchant), idempotent by the operator's reference:
    the ledger transfer id is derived from it, so a repeat can never deposit twice."""
    merchant = await ctx.pool.fetchrow("SELECT * FROM merchants WHERE id = $1", merchant_id)
    if merchant is None:
        raise ProblemError(404, "merchant_not_found", "Merchant not found", merchant_id)
    existing = await ctx.pool.fetchrow(
        "SELECT * FROM fundings WHERE merchant_id = $1 AND reference = $2",
        merchant_id,
        request.reference,
    )
    if existing is not None:
        if existing["amount_minor"] != request.amount or existing["currency"] != request.currency:
            raise ProblemError(
                409,
                "reference_already_used",
                "Reference already used",
                "a funding with this reference and a different amount or currency exists",
            )
        return 200, _funding(existing)
    if request.currency not in merchant["currencies"]:
        raise ProblemError(
            422, "currency_not_enabled", "Currency not enabled", f"{request.currency} not enabled"
        )
    await ensure_ledger_accounts(ctx, merchant_id, [request.currency])
    digest = hashlib.sha256(f"{merchant_id}\n{request.reference}".encode()).hexdigest()[:32]
    transfer_id = f"fund_{digest}"
    try:
        reply = await ctx.ledger.transfer(
            transfer_id,
            store.ledger_system_account("funding", request.currency),
            store.ledger_merchant_account(merchant_id, request.currency),
            request.amount,
            request.currency,
        )
    except Transient as exc:
        raise ProblemError(503, "ledger_unavailable", "Ledger unavailable", str(exc)) from None
    if not transfer_accepted(reply):
        raise ProblemError(
            422, "funding_rejected", "Funding rejected by the ledger", json.dumps(reply.body)
        )
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO fundings(id, merchant_id, reference, amount_minor, currency, transfer_id)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, reference) DO NOTHING
               RETURNING *""",
            rules.new_id("fnd"),
            merchant_id,
            request.reference,
            request.amount,
            request.currency,
            transfer_id,
        )
        if row is None:  # a concurrent identical call won the race
            row = await conn.fetchrow(
                "SELECT * FROM fundings WHERE merchant_id = $1 AND reference = $2",
                merchant_id,
                request.reference,
            )
            assert row is not None
            return 200, _funding(row)
        await store.audit(
            conn,
            actor="admin",
            action="merchant_funded",
            payout_id=None,
            merchant_id=merchant_id,
            detail={
                "amount": request.amount,
                "currency": request.currency,
                "reference": request.reference,
                "transfer_id": transfer_id,
            },
            now=now_utc(),
        )
    return 201, _funding(row)


# ---- review queues ------------------------------------------------------------------------------

REVIEW_STATUSES = (rules.MANUAL_REVIEW, rules.PENDING_REVIEW)


async def list_review(ctx: Context, query: dict[str, str]) -> dict[str, Any]:
    return await list_payouts(ctx, None, query, statuses=REVIEW_STATUSES)


async def _locked_payout(conn: asyncpg.Connection, payout_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", payout_id)
    if row is None:
        raise ProblemError(404, "payout_not_found", "Payout not found", payout_id)
    return row


def _not_in_review(status: str, wanted: str) -> ProblemError:
    return ProblemError(
        409,
        "payout_not_in_review",
        "Payout not in review",
        f"the payout is {status}; this action needs {wanted}",
    )


async def approve(ctx: Context, payout_id: str, request: wire.Approve) -> dict[str, Any]:
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _locked_payout(conn, payout_id)
        if row["status"] != rules.PENDING_REVIEW:
            raise _not_in_review(row["status"], rules.PENDING_REVIEW)
        await store.change_status(
            conn, payout_id, rules.PROCESSING, now=now, reason="approved_by_operator"
        )
        await create_global_tx(conn, payout_id, now, lease_owner=None, lease_s=0)
        await store.audit(
            conn,
            actor="admin",
            action="payout_approved",
            payout_id=payout_id,
            merchant_id=row["merchant_id"],
            detail={"note": request.note},
            now=now,
        )
    ctx.coordinator.wake.set()
    return await get_payout(ctx, row["merchant_id"], payout_id)


async def mark_paid(ctx: Context, payout_id: str, request: wire.MarkPaid) -> dict[str, Any]:
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _locked_payout(conn, payout_id)
        if row["status"] != rules.MANUAL_REVIEW:
            raise _not_in_review(row["status"], rules.MANUAL_REVIEW)
        result = await ctx.coordinator.decide_from_outside(
            conn,
            payout_id,
            tcc.CONFIRM,
            reason="operator_marked_paid",
            allowed_states=frozenset({tcc.PARKED, tcc.AWAITING}),
        )
        if result not in ("decided", "same"):
            raise _not_in_review(row["status"], "an undecided payout")
        await store.audit(
            conn,
            actor="admin",
            action="payout_marked_paid",
            payout_id=payout_id,
            merchant_id=row["merchant_id"],
            detail={"evidence": request.evidence, "note": request.note},
            now=now,
        )
    await _drive_now(ctx, payout_id)
    return await get_payout(ctx, row["merchant_id"], payout_id)


async def mark_failed(ctx: Context, payout_id: str, request: wire.MarkFailed) -> dict[str, Any]:
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _locked_payout(conn, payout_id)
        if row["status"] == rules.PENDING_REVIEW:
            await store.change_status(
                conn,
                payout_id,
                rules.FAILED,
                now=now,
                reason="rejected_by_operator",
                failure_code=request.failure_code,
                failure_message=request.reason,
            )
        elif row["status"] == rules.MANUAL_REVIEW:
            result = await ctx.coordinator.decide_from_outside(
                conn,
                payout_id,
                tcc.CANCEL,
                reason="operator_marked_failed",
                allowed_states=frozenset({tcc.PARKED, tcc.AWAITING}),
                failure_code=request.failure_code,
                failure_message=request.reason,
            )
            if result not in ("decided", "same"):
                raise _not_in_review(row["status"], "an undecided payout")
        else:
            raise _not_in_review(row["status"], "manual_review or pending_review")
        await store.audit(
            conn,
            actor="admin",
            action="payout_marked_failed",
            payout_id=payout_id,
            merchant_id=row["merchant_id"],
            detail={"reason": request.reason, "failure_code": request.failure_code},
            now=now,
        )
    if row["status"] == rules.MANUAL_REVIEW:
        await _drive_now(ctx, payout_id)
    return await get_payout(ctx, row["merchant_id"], payout_id)


async def audit_records(ctx: Context, payout_id: str) -> dict[str, Any]:
    if not await ctx.pool.fetchval("SELECT 1 FROM payouts WHERE id = $1", payout_id):
        raise ProblemError(404, "payout_not_found", "Payout not found", payout_id)
    rows = await ctx.pool.fetch(
        "SELECT * FROM audit_log WHERE payout_id = $1 ORDER BY id", payout_id
    )
    return {
        "object": "list",
        "data": [
            {
                "id": r["id"],
                "actor": r["actor"],
                "action": r["action"],
                "payout_id": r["payout_id"],
                "merchant_id": r["merchant_id"],
                "detail": json.loads(r["detail"]),
                "created_at": _iso(r["created_at"]),
            }
            for r in rows
        ],
    }


# ---- webhook deliveries -------------------------------------------------------------------------


def delivery_object(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "endpoint_id": row["endpoint_id"],
        "merchant_id": row["merchant_id"],
        "event_id": str(row["event_id"]),
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "next_attempt_at": _iso(row["next_attempt_at"]),
        "created_at": _iso(row["created_at"]),
        "delivered_at": _iso(row["delivered_at"]),
    }


async def list_deliveries(ctx: Context, query: dict[str, str]) -> dict[str, Any]:
    limit = parse_limit(query.get("limit"), ctx.settings.page_limit_max)
    status = query.get("status")
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise ProblemError(400, "invalid_query", "Invalid query", f"unknown status {status!r}")
    after = query.get("starting_after")
    cursor = None
    if after is not None:
        cursor = await ctx.pool.fetchrow(
            "SELECT created_at, id FROM webhook_deliveries WHERE id = $1", after
        )
        if cursor is None:
            raise ProblemError(400, "invalid_query", "Invalid query", "unknown cursor")
    rows = await ctx.pool.fetch(
        """SELECT * FROM webhook_deliveries
           WHERE ($1::text IS NULL OR status = $1)
             AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
           ORDER BY created_at DESC, id DESC LIMIT $4""",
        status,
        cursor["created_at"] if cursor else None,
        cursor["id"] if cursor else None,
        limit + 1,
    )
    return {
        "object": "list",
        "data": [delivery_object(r) for r in rows[:limit]],
        "has_more": len(rows) > limit,
    }


async def delivery_detail(ctx: Context, delivery_id: str) -> dict[str, Any]:
    row = await ctx.pool.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)
    if row is None:
        raise ProblemError(404, "delivery_not_found", "Delivery not found", delivery_id)
    attempts = await ctx.pool.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt_no, id",
        delivery_id,
    )
    return {
        **delivery_object(row),
        "attempt_log": [
            {
                "attempt_no": a["attempt_no"],
                "attempted_at": _iso(a["attempted_at"]),
                "status_code": a["status_code"],
                "error": a["error"],
                "duration_ms": a["duration_ms"],
            }
            for a in attempts
        ],
    }


async def resend_delivery(ctx: Context, delivery_id: str) -> dict[str, Any]:
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2::timestamptz,
                   give_up_at = $2::timestamptz + make_interval(secs => $3)
               WHERE id = $1 RETURNING *""",
            delivery_id,
            now,
            float(ctx.settings.webhook_retry_window_s),
        )
        if row is None:
            raise ProblemError(404, "delivery_not_found", "Delivery not found", delivery_id)
        await store.audit(
            conn,
            actor="admin",
            action="webhook_resent",
            payout_id=None,
            merchant_id=row["merchant_id"],
            detail={"delivery_id": delivery_id, "event_id": str(row["event_id"])},
            now=now,
        )
    return delivery_object(row)
