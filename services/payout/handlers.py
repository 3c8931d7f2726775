"""Merchant use cases: one transaction each (state change + outbox row together)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog

from contracts import payout as wire
from services.kit.errors import ProblemError, decode_body
from services.kit.logging import get_logger
from services.payout import risk
from services.payout.adapters import store
from services.payout.adapters.participants import LedgerClient, Transient
from services.payout.coordinator import Coordinator
from services.payout.domain import payouts as rules
from services.payout.domain import tcc, webhooks
from services.payout.risk_controls import RiskControls
from services.payout.settings import Settings

log = get_logger(__name__)

IDEMPOTENCY_KEY_MAX = 255
CSV_COLUMNS = (
    "amount",
    "currency",
    "reference",
    "beneficiary_name",
    "beneficiary_account_number",
    "beneficiary_bank_code",
)


@dataclass
class Context:
    pool: asyncpg.Pool
    coordinator: Coordinator
    ledger: LedgerClient
    settings: Settings
    risk: RiskControls


@dataclass(frozen=True)
class Created:
    """A payout just inserted; ``judged`` is counted by the risk engine once committed."""

    row: asyncpg.Record
    gid: str | None
    judged: tuple[risk.PayoutFacts, risk.Decision]

    def accepted(self, ctx: Context) -> None:
        ctx.risk.accepted(*self.judged)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    replayed: bool = False


def now_utc() -> datetime:
    return datetime.now(UTC)


# ---- idempotency ------------------------------------------------------------------------------


def request_hash(operation: str, value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{operation}\n{canonical}".encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ProblemError(
            400,
            "idempotency_key_missing",
            "Idempotency-Key required",
            "send an Idempotency-Key header (a unique value per intended operation)",
        )
    if len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ProblemError(
            400,
            "idempotency_key_invalid",
            "Invalid Idempotency-Key",
            f"at most {IDEMPOTENCY_KEY_MAX} printable characters",
        )
    return key


@dataclass(frozen=True)
class _Begun:
    replay: Answer | None = None
    resume_payout_id: str | None = None
    resume_batch_id: str | None = None


async def _begin_idempotent(
    conn: asyncpg.Connection,
    ctx: Context,
    merchant_id: str,
    key: str,
    operation: str,
    digest: str,
    now: datetime,
) -> _Begun:
    """Claim ``key`` for this merchant inside the caller's transaction.

    A concurrent first request with the same key blocks on the primary key until it commits,
    so exactly one request creates; the others see its row."""
    inserted = await conn.fetchval(
        """INSERT INTO idempotency_keys(merchant_id, key, operation, request_hash, state,
               locked_until, created_at, expires_at)
           VALUES ($1, $2, $3, $4, 'in_flight', $5, $6, $7)
           ON CONFLICT DO NOTHING RETURNING 1""",
        merchant_id,
        key,
        operation,
        digest,
        now + timedelta(seconds=ctx.settings.idempotency_lease_s),
        now,
        now + timedelta(seconds=ctx.settings.idempotency_ttl_s),
    )
    if inserted:
        return _Begun()
    row = await conn.fetchrow(
        "SELECT * FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 FOR UPDATE",
        merchant_id,
        key,
    )
    assert row is not None
    if row["operation"] != operation or row["request_hash"] != digest:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "Idempotency-Key reused",
            "this key was used with a different request; use a new key for a new operation",
        )
    if row["state"] == "done":
        return _Begun(replay=Answer(row["response_status"], bytes(row["response_body"]), True))
    if row["locked_until"] > now:
        raise ProblemError(
            409,
            "idempotency_in_flight",
            "Request in progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
            headers={"Retry-After": "1"},
        )
    # The first request died mid-way: take the key over and finish its work.
    await conn.execute(
        "UPDATE idempotency_keys SET locked_until = $3 WHERE merchant_id = $1 AND key = $2",
        merchant_id,
        key,
        now + timedelta(seconds=ctx.settings.idempotency_lease_s),
    )
    return _Begun(resume_payout_id=row["payout_id"], resume_batch_id=row["batch_id"])


async def _finish_idempotent(
    ctx: Context, merchant_id: str, key: str, status: int, body: bytes
) -> None:
    await ctx.pool.execute(
        """UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4
           WHERE merchant_id = $1 AND key = $2""",
        merchant_id,
        key,
        status,
        body,
    )


# ---- payouts ----------------------------------------------------------------------------------


def _limits(merchant: asyncpg.Record) -> rules.Limits:
    return rules.Limits(
        per_payout_max_minor=merchant["per_payout_max_minor"],
        daily_max_minor=merchant["daily_max_minor"],
        monthly_max_minor=merchant["monthly_max_minor"],
        review_threshold_minor=merchant["review_threshold_minor"],
    )


async def insert_payout(
    conn: asyncpg.Connection,
    ctx: Context,
    merchant_id: str,
    request: wire.CreatePayout,
    now: datetime,
    *,
    lease_owner: str | None,
    batch_id: str | None = None,
) -> Created:
    """Validate against the merchant's rules and create the payout (+ its global transaction
    unless it waits for review). Raises ``ProblemError``; the caller's transaction then rolls
    back, so a refused payout leaves nothing behind."""
    # The merchant row lock serialises limit checks of one merchant's concurrent payouts.
    merchant = await conn.fetchrow("SELECT * FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)
    assert merchant is not None
    if request.currency not in merchant["currencies"]:
        raise ProblemError(
            422,
            "currency_not_enabled",
            "Currency not enabled",
            f"{request.currency} is not enabled for this merchant",
        )
    used = await conn.fetchrow(
        """SELECT
             COALESCE(sum(amount_minor) FILTER (WHERE created_at >=
               date_trunc('day', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0)
               AS today,
             COALESCE(sum(amount_minor), 0) AS month
           FROM payouts
           WHERE merchant_id = $1 AND currency = $3
             AND created_at >= date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC')
                               AT TIME ZONE 'UTC'
             AND status NOT IN ('failed', 'canceled')""",
        merchant_id,
        now,
        request.currency,
    )
    assert used is not None
    limits = _limits(merchant)
    try:
        rules.check_limits(limits, request.amount, int(used["today"]), int(used["month"]))
    except rules.LimitExceeded as exc:
        raise ProblemError(
            422,
            "limit_exceeded",
            "Limit exceeded",
            f"the {exc.which} limit of {exc.limit_minor} would be exceeded",
            errors=[{"limit": exc.which, "limit_minor": exc.limit_minor}],
        ) from None
    status = rules.initial_status(limits, request.amount)
    payout_id = rules.new_id("po")
    # Risk controls judge in memory, inside the merchant lock, before anything is held.
    facts = risk.PayoutFacts(
        payout_id=payout_id,
        merchant_id=merchant_id,
        amount_minor=request.amount,
        currency=request.currency,
        beneficiary_account=request.beneficiary.account_number,
        beneficiary_bank=request.beneficiary.bank_code,
        beneficiary_name=request.beneficiary.name,
        created_at=now,
    )
    decision = ctx.risk.evaluate(facts)
    reason = "created"
    failure_code = failure_message = None
    if decision.outcome == "block":
        status, reason = rules.FAILED, "risk_blocked"
        failure_code = risk.FAILURE_CODE_BLOCKED
        failure_message = "refused by risk controls"
    elif decision.outcome == "review":
        status, reason = rules.PENDING_REVIEW, "risk_review"
    fee = rules.fee_minor(request.amount, merchant["fee_fixed_minor"], merchant["fee_bps"])
    history = [rules.history_entry(status, now, reason)]
    try:
        async with conn.transaction():  # savepoint: a duplicate reference leaves the txn usable
            row = await conn.fetchrow(
                """INSERT INTO payouts(id, merchant_id, amount_minor, fee_minor, currency,
                       beneficiary_name, beneficiary_account, beneficiary_bank_code, reference,
                       metadata, status, batch_id, status_history, created_at, updated_at,
                       failure_code, failure_message, risk_version, risk_outcome, risk_decision)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14,
                           $15, $16, $17, $18, $19)
                   RETURNING *""",
                payout_id,
                merchant_id,
                request.amount,
                fee,
                request.currency,
                request.beneficiary.name,
                request.beneficiary.account_number,
                request.beneficiary.bank_code,
                request.reference,
                json.dumps(request.metadata) if request.metadata is not None else None,
                status,
                batch_id,
                json.dumps(history),
                now,
                failure_code,
                failure_message,
                decision.ruleset_version,
                decision.outcome,
                msgspec.json.encode(decision).decode(),
            )
    except asyncpg.UniqueViolationError:
        raise ProblemError(
            409,
            "reference_already_used",
            "Reference already used",
            f"a payout with reference {request.reference!r} already exists",
        ) from None
    assert row is not None
    gid = None
    if status == rules.PROCESSING:
        gid = await create_global_tx(
            conn, payout_id, now, lease_owner=lease_owner, lease_s=ctx.settings.tx_lease_s
        )
    await store.emit(conn, row, "payout.created", now)
    if status == rules.FAILED:
        await store.emit(conn, row, "payout.failed", now)  # blocked: nothing held, nothing sent
    for alert in ctx.risk.observe(facts, decision):
        await store.raise_alert(
            conn,
            code=alert.code,
            severity=alert.severity,
            message=alert.message,
            payout_id=alert.payout_id,
            now=now,
            merchant_id=alert.merchant_id,
            details={"ruleset_version": alert.ruleset_version, "rule_ids": list(alert.rule_ids)},
        )
    return Created(row, gid, (facts, decision))


async def create_global_tx(
    conn: asyncpg.Connection,
    payout_id: str,
    now: datetime,
    *,
    lease_owner: str | None,
    lease_s: int,
) -> str:
    gid = rules.new_id("gtx")
    await conn.execute(
        """INSERT INTO global_tx(gid, payout_id, state, epoch, lease_owner, lease_until,
               next_attempt_at, created_at, updated_at, correlation_id)
           VALUES ($1, $2, 'trying', 1, $3, $4, $5, $5, $5, $6)""",
        gid,
        payout_id,
        lease_owner,
        now + timedelta(seconds=lease_s) if lease_owner else None,
        now,
        structlog.contextvars.get_contextvars().get("request_id"),
    )
    await conn.executemany(
        "INSERT INTO branches(gid, branch_id, participant, status) VALUES ($1, $2, $3, 'pending')",
        [(gid, tcc.BRANCH_FUNDS, "ledger"), (gid, tcc.BRANCH_QUOTA, "router")],
    )
    return gid


async def create_payout(ctx: Context, merchant_id: str, key: str | None, raw: bytes) -> Answer:
    key = check_idempotency_key(key)
    if not raw:
        raise ProblemError(400, "empty_body", "Empty body", "a JSON body is required")
    request: wire.CreatePayout = decode_body(raw, wire.CreatePayout)
    digest = request_hash("create_payout", msgspec.to_builtins(request))
    now = now_utc()
    owner = ctx.settings.instance_id
    async with ctx.pool.acquire() as conn, conn.transaction():
        begun = await _begin_idempotent(conn, ctx, merchant_id, key, "create_payout", digest, now)
        if begun.replay is not None:
            return begun.replay
        created: Created | None = None
        if begun.resume_payout_id is not None:
            payout_id = begun.resume_payout_id
        else:
            created = await insert_payout(conn, ctx, merchant_id, request, now, lease_owner=owner)
            payout_id = created.row["id"]
            await conn.execute(
                "UPDATE idempotency_keys SET payout_id = $3 WHERE merchant_id = $1 AND key = $2",
                merchant_id,
                key,
                payout_id,
            )
    gid = None
    if created is not None:
        created.accepted(ctx)
        gid = created.gid
    if gid is not None:
        # Hold the funds and the channel quota now, so the answer already says whether the
        # payout can proceed (e.g. failed: insufficient_funds); the bank part runs in the worker.
        await ctx.coordinator.drive(gid, 1, stop_before_submit=True)
    body = await payout_body(ctx, merchant_id, payout_id)
    await _finish_idempotent(ctx, merchant_id, key, 201, body)
    return Answer(201, body)


async def payout_body(ctx: Context, merchant_id: str, payout_id: str) -> bytes:
    row = await ctx.pool.fetchrow(
        "SELECT * FROM payouts WHERE id = $1 AND merchant_id = $2", payout_id, merchant_id
    )
    if row is None:
        raise _payout_not_found(payout_id)
    return json.dumps(store.payout_object(row)).encode()


def _payout_not_found(payout_id: str) -> ProblemError:
    return ProblemError(404, "payout_not_found", "Payout not found", f"no payout {payout_id}")


async def get_payout(ctx: Context, merchant_id: str, payout_id: str) -> dict[str, Any]:
    row = await ctx.pool.fetchrow(
        "SELECT * FROM payouts WHERE id = $1 AND merchant_id = $2", payout_id, merchant_id
    )
    if row is None:
        raise _payout_not_found(payout_id)
    return store.payout_object(row)


def parse_limit(raw: str | None, maximum: int) -> int:
    if raw is None:
        return min(10, maximum)
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ProblemError(400, "invalid_query", "Invalid query", f"limit must be 1..{maximum}")
    return int(raw)


def parse_time(name: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ProblemError(
            400, "invalid_query", "Invalid query", f"{name} must be an ISO 8601 date-time"
        ) from None
    if value.tzinfo is None:
        raise ProblemError(400, "invalid_query", "Invalid query", f"{name} needs a UTC offset")
    return value


async def list_payouts(
    ctx: Context,
    merchant_id: str | None,
    query: dict[str, str],
    *,
    statuses: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    limit = parse_limit(query.get("limit"), ctx.settings.page_limit_max)
    status = query.get("status")
    if status is not None and status not in rules.STATUSES:
        raise ProblemError(400, "invalid_query", "Invalid query", f"unknown status {status!r}")
    if statuses is not None and status is not None and status not in statuses:
        raise ProblemError(400, "invalid_query", "Invalid query", f"status must be in {statuses}")
    wanted = [status] if status else list(statuses) if statuses else None
    created_gte = parse_time("created_gte", query.get("created_gte"))
    created_lt = parse_time("created_lt", query.get("created_lt"))
    cursor = await _cursor(ctx, "payouts", "id", merchant_id, query.get("starting_after"))
    rows = await ctx.pool.fetch(
        """SELECT * FROM payouts
           WHERE ($1::text IS NULL OR merchant_id = $1)
             AND ($2::text[] IS NULL OR status = ANY($2))
             AND ($3::text IS NULL OR reference = $3)
             AND ($4::timestamptz IS NULL OR created_at >= $4)
             AND ($5::timestamptz IS NULL OR created_at < $5)
             AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7))
           ORDER BY created_at DESC, id DESC LIMIT $8""",
        merchant_id,
        wanted,
        query.get("reference"),
        created_gte,
        created_lt,
        cursor[0] if cursor else None,
        cursor[1] if cursor else None,
        limit + 1,
    )
    return {
        "object": "list",
        "data": [store.payout_object(r) for r in rows[:limit]],
        "has_more": len(rows) > limit,
    }


async def _cursor(
    ctx: Context, table: str, id_column: str, merchant_id: str | None, after: str | None
) -> tuple[datetime, Any] | None:
    if after is None:
        return None
    assert table in ("payouts", "events", "webhook_deliveries")
    row = await ctx.pool.fetchrow(
        f"SELECT created_at, {id_column} AS id FROM {table}"
        f" WHERE {id_column}::text = $1 AND ($2::text IS NULL OR merchant_id = $2)",
        after,
        merchant_id,
    )
    if row is None:
        raise ProblemError(400, "invalid_query", "Invalid query", "unknown starting_after cursor")
    return row["created_at"], row["id"]


async def cancel_payout(ctx: Context, merchant_id: str, payout_id: str) -> dict[str, Any]:
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM payouts WHERE id = $1 AND merchant_id = $2 FOR UPDATE",
            payout_id,
            merchant_id,
        )
        if row is None:
            raise _payout_not_found(payout_id)
        if row["status"] == rules.PENDING_REVIEW:
            await store.change_status(
                conn, payout_id, rules.CANCELED, now=now, reason="merchant_canceled"
            )
        elif row["status"] == rules.PROCESSING:
            result = await ctx.coordinator.decide_from_outside(
                conn,
                payout_id,
                tcc.CANCEL,
                reason="merchant_canceled",
                allowed_states=tcc.BEFORE_BANK,
            )
            if result not in ("decided", "same"):
                raise _not_cancelable(row["status"])
        elif row["status"] != rules.CANCELED:
            raise _not_cancelable(row["status"])
    if row["status"] == rules.PROCESSING:
        await _drive_now(ctx, payout_id)
    return await get_payout(ctx, merchant_id, payout_id)


def _not_cancelable(status: str) -> ProblemError:
    return ProblemError(
        409,
        "payout_not_cancelable",
        "Payout cannot be canceled",
        f"a payout can be canceled only before it is submitted to a bank (status {status})",
    )


async def _drive_now(ctx: Context, payout_id: str) -> None:
    """Finish a just-decided cancel in the request when the row is free; else the loop will."""
    claimed = await ctx.pool.fetchrow(
        """UPDATE global_tx SET lease_owner = $2, lease_until = now() + make_interval(secs => $3),
               epoch = epoch + 1
           WHERE payout_id = $1 AND (lease_until IS NULL OR lease_until < now())
             AND state NOT IN ('confirmed', 'cancelled', 'parked')
           RETURNING gid, epoch""",
        payout_id,
        ctx.settings.instance_id,
        float(ctx.settings.tx_lease_s),
    )
    if claimed is not None:
        await ctx.coordinator.drive(claimed["gid"], claimed["epoch"])


# ---- balance and events -------------------------------------------------------------------------


async def balance(ctx: Context, merchant_id: str) -> dict[str, Any]:
    currencies = await ctx.pool.fetchval(
        "SELECT currencies FROM merchants WHERE id = $1", merchant_id
    )
    available, pending = [], []
    for currency in currencies:
        account = store.ledger_merchant_account(merchant_id, currency)
        try:
            reply = await ctx.ledger.account(account)
        except Transient as exc:
            raise ProblemError(
                503, "ledger_unavailable", "Ledger unavailable", "try again shortly"
            ) from exc
        if reply.status == 404:
            available.append({"currency": currency, "amount": 0})
            pending.append({"currency": currency, "amount": 0})
            continue
        if not reply.ok:
            raise ProblemError(503, "ledger_unavailable", "Ledger unavailable", reply.message)
        body = reply.body
        credits_posted = int(body.get("credits_posted", 0))
        debits_posted = int(body.get("debits_posted", 0))
        debits_pending = int(body.get("debits_pending", 0))
        avail = body.get("available")
        if avail is None:
            avail = credits_posted - debits_posted - debits_pending
        available.append({"currency": currency, "amount": int(avail)})
        pending.append({"currency": currency, "amount": debits_pending})
    return {"object": "balance", "available": available, "pending": pending}


async def list_events(ctx: Context, merchant_id: str, query: dict[str, str]) -> dict[str, Any]:
    limit = parse_limit(query.get("limit"), ctx.settings.page_limit_max)
    event_type = query.get("type")
    if event_type is not None and event_type not in wire.EVENT_TYPES:
        raise ProblemError(400, "invalid_query", "Invalid query", f"unknown type {event_type!r}")
    after = query.get("starting_after")
    cursor = None
    if after is not None:
        try:
            uuid.UUID(after)
        except ValueError:
            raise ProblemError(400, "invalid_query", "Invalid query", "bad cursor") from None
        cursor = await _cursor(ctx, "events", "event_id", merchant_id, after)
    rows = await ctx.pool.fetch(
        """SELECT * FROM events WHERE merchant_id = $1
             AND ($2::text IS NULL OR event_type = $2)
             AND ($3::timestamptz IS NULL OR (created_at, event_id) < ($3, $4::uuid))
           ORDER BY created_at DESC, event_id DESC LIMIT $5""",
        merchant_id,
        event_type,
        cursor[0] if cursor else None,
        cursor[1] if cursor else None,
        limit + 1,
    )
    return {
        "object": "list",
        "data": [
            {
                "id": str(r["event_id"]),
                "object": "event",
                "type": r["event_type"],
                "created_at": r["created_at"].isoformat(),
                "data": {"object": json.loads(r["data"])},
            }
            for r in rows[:limit]
        ],
        "has_more": len(rows) > limit,
    }


# ---- webhook endpoints --------------------------------------------------------------------------


def _endpoint(row: asyncpg.Record, secret: str | None = None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_endpoint",
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "description": row["description"],
        "created_at": row["created_at"].isoformat(),
        "secret": secret,
    }


async def create_webhook_endpoint(
    ctx: Context, merchant_id: str, request: wire.CreateWebhookEndpoint
) -> dict[str, Any]:
    problem = webhooks.endpoint_url_problem(
        request.url, production=ctx.settings.environment == "production"
    )
    if problem is not None:
        raise ProblemError(422, "webhook_url_not_allowed", "Webhook URL not allowed", problem)
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    row = await ctx.pool.fetchrow(
        """INSERT INTO webhook_endpoints(id, merchant_id, url, event_types, description, secret)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        rules.new_id("we"),
        merchant_id,
        request.url,
        sorted(set(request.event_types)),
        request.description,
        secret,
    )
    assert row is not None
    return _endpoint(row, secret)


async def list_webhook_endpoints(ctx: Context, merchant_id: str) -> dict[str, Any]:
    rows = await ctx.pool.fetch(
        "SELECT * FROM webhook_endpoints WHERE merchant_id = $1 AND deleted_at IS NULL"
        " ORDER BY created_at DESC LIMIT 100",
        merchant_id,
    )
    return {"object": "list", "data": [_endpoint(r) for r in rows], "has_more": False}


async def delete_webhook_endpoint(
    ctx: Context, merchant_id: str, endpoint_id: str
) -> dict[str, Any]:
    row = await ctx.pool.fetchrow(
        """UPDATE webhook_endpoints SET deleted_at = now()
           WHERE id = $1 AND merchant_id = $2 AND deleted_at IS NULL RETURNING *""",
        endpoint_id,
        merchant_id,
    )
    if row is None:
        raise ProblemError(
            404, "webhook_endpoint_not_found", "Webhook endpoint not found", endpoint_id
        )
    return _endpoint(row)


# ---- batches ------------------------------------------------------------------------------------


def parse_batch(raw: bytes, content_type: str, max_items: int) -> list[Any]:
    """The items of a JSON or CSV batch, each still unvalidated (validated one by one)."""
    if content_type == "text/csv":
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ProblemError(
                400, "csv_invalid", "Invalid CSV", "the file must be UTF-8"
            ) from None
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or set(CSV_COLUMNS) - set(reader.fieldnames):
            raise ProblemError(
                400, "csv_invalid", "Invalid CSV", f"the header must have {', '.join(CSV_COLUMNS)}"
            )
        items: list[Any] = []
        for record in reader:
            if len(items) >= max_items:
                raise _too_large(max_items)
            items.append(record)
    elif content_type == "application/json":
        batch: wire.CreatePayoutBatch = decode_body(raw, wire.CreatePayoutBatch)
        items = batch.items
    else:
        raise ProblemError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "send application/json or text/csv",
        )
    if not items:
        raise ProblemError(422, "batch_empty", "Empty batch", "the batch has no items")
    if len(items) > max_items:
        raise _too_large(max_items)
    return items


def _too_large(max_items: int) -> ProblemError:
    return ProblemError(413, "batch_too_large", "Batch too large", f"at most {max_items} items")


def validate_item(item: Any) -> wire.CreatePayout:
    """One batch item → a payout request, or ``ProblemError``. CSV cells are text."""
    if isinstance(item, dict) and "beneficiary_name" in item:
        amount_text = str(item.get("amount") or "")
        if not amount_text.isdigit():
            raise ProblemError(422, "validation_error", "Invalid item", "amount must be an integer")
        extra = set(item) - set(CSV_COLUMNS)
        if extra - {None}:
            raise ProblemError(422, "validation_error", "Invalid item", "unexpected columns")
        item = {
            "amount": int(amount_text),
            "currency": item.get("currency") or "",
            "reference": item.get("reference") or "",
            "beneficiary": {
                "name": item.get("beneficiary_name") or "",
                "account_number": item.get("beneficiary_account_number") or "",
                "bank_code": item.get("beneficiary_bank_code") or "",
            },
        }
    try:
        result: wire.CreatePayout = msgspec.convert(item, wire.CreatePayout, strict=True)
    except msgspec.ValidationError as exc:
        raise ProblemError(422, "validation_error", "Invalid item", str(exc)) from None
    return result


def _pg_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL; a rejected item's echo keeps it visible, escaped."""
    return value.replace("\x00", "\\u0000")


async def create_batch(
    ctx: Context, merchant_id: str, key: str | None, raw: bytes, content_type: str
) -> Answer:
    key = check_idempotency_key(key)
    if not raw:
        raise ProblemError(400, "empty_body", "Empty body", "a batch body is required")
    items = parse_batch(raw, content_type, ctx.settings.batch_items_max)
    digest = request_hash("create_batch", {"sha256": hashlib.sha256(raw).hexdigest()})
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        begun = await _begin_idempotent(conn, ctx, merchant_id, key, "create_batch", digest, now)
        if begun.replay is not None:
            return begun.replay
        batch_id = begun.resume_batch_id
        if batch_id is None:
            batch_id = rules.new_id("pob")
            await conn.execute(
                "INSERT INTO batches(id, merchant_id, status, total, created_at)"
                " VALUES ($1, $2, 'processing', $3, $4)",
                batch_id,
                merchant_id,
                len(items),
                now,
            )
            records: list[tuple[str, int, str, str | None, str | None, str | None, str | None]] = []
            for line, item in enumerate(items, start=1):
                try:
                    request = validate_item(item)
                except ProblemError as exc:
                    ref = item.get("reference") if isinstance(item, dict) else None
                    records.append(
                        (
                            batch_id,
                            line,
                            "rejected",
                            _pg_text(str(ref))[:64] if ref is not None else None,
                            None,
                            exc.code,
                            # The message may quote a field name from the item, NUL included.
                            _pg_text(exc.detail or exc.title)[:500],
                        )
                    )
                    continue
                records.append(
                    (
                        batch_id,
                        line,
                        "pending",
                        request.reference,
                        json.dumps(msgspec.to_builtins(request)),
                        None,
                        None,
                    )
                )
            await conn.copy_records_to_table(
                "batch_items",
                records=records,
                columns=[
                    "batch_id",
                    "line_no",
                    "status",
                    "reference",
                    "request",
                    "error_code",
                    "error_message",
                ],
            )
            await conn.execute(
                "UPDATE idempotency_keys SET batch_id = $3 WHERE merchant_id = $1 AND key = $2",
                merchant_id,
                key,
                batch_id,
            )
    body = json.dumps(await get_batch(ctx, merchant_id, batch_id, with_items=False)).encode()
    await _finish_idempotent(ctx, merchant_id, key, 202, body)
    ctx.coordinator.wake.set()
    return Answer(202, body)


async def get_batch(
    ctx: Context, merchant_id: str, batch_id: str, *, with_items: bool = True
) -> dict[str, Any]:
    batch = await ctx.pool.fetchrow(
        "SELECT * FROM batches WHERE id = $1 AND merchant_id = $2", batch_id, merchant_id
    )
    if batch is None:
        raise ProblemError(404, "batch_not_found", "Batch not found", f"no batch {batch_id}")
    counts = {
        r["status"]: r["n"]
        for r in await ctx.pool.fetch(
            "SELECT status, count(*) AS n FROM batch_items WHERE batch_id = $1 GROUP BY status",
            batch_id,
        )
    }
    result: dict[str, Any] = {
        "id": batch["id"],
        "object": "payout_batch",
        "status": batch["status"],
        "total": batch["total"],
        "pending": counts.get("pending", 0),
        "created": counts.get("created", 0),
        "rejected": counts.get("rejected", 0),
        "created_at": batch["created_at"].isoformat(),
        "completed_at": batch["completed_at"].isoformat() if batch["completed_at"] else None,
        "items": None,
    }
    if with_items:
        rows = await ctx.pool.fetch(
            "SELECT * FROM batch_items WHERE batch_id = $1 ORDER BY line_no", batch_id
        )
        result["items"] = [
            {
                "line": r["line_no"],
                "status": r["status"],
                "reference": r["reference"],
                "payout_id": r["payout_id"],
                "error": (
                    {"code": r["error_code"], "message": r["error_message"]}
                    if r["error_code"]
                    else None
                ),
            }
            for r in rows
        ]
    return result


async def process_batch_chunk(ctx: Context) -> int:
    """Turn up to one chunk of pending batch items into payouts; returns items handled."""
    now = now_utc()
    async with ctx.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT bi.batch_id, bi.line_no, bi.request, b.merchant_id
               FROM batch_items bi JOIN batches b ON b.id = bi.batch_id
               WHERE bi.status = 'pending'
               ORDER BY bi.batch_id, bi.line_no LIMIT $1 FOR UPDATE OF bi SKIP LOCKED""",
            ctx.settings.batch_chunk_size,
        )
        touched: set[str] = set()
        accepted: list[Created] = []
        for r in rows:
            touched.add(r["batch_id"])
            request = msgspec.convert(json.loads(r["request"]), wire.CreatePayout)
            try:
                async with conn.transaction():
                    created = await insert_payout(
                        conn,
                        ctx,
                        r["merchant_id"],
                        request,
                        now,
                        lease_owner=None,
                        batch_id=r["batch_id"],
                    )
                accepted.append(created)
                await conn.execute(
                    "UPDATE batch_items SET status = 'created', payout_id = $3"
                    " WHERE batch_id = $1 AND line_no = $2",
                    r["batch_id"],
                    r["line_no"],
                    created.row["id"],
                )
            except ProblemError as exc:
                await conn.execute(
                    """UPDATE batch_items SET status = 'rejected', error_code = $3,
                           error_message = $4 WHERE batch_id = $1 AND line_no = $2""",
                    r["batch_id"],
                    r["line_no"],
                    exc.code,
                    (exc.detail or exc.title)[:500],
                )
        for batch_id in touched:
            await conn.execute(
                """UPDATE batches SET status = 'completed', completed_at = $2
                   WHERE id = $1 AND NOT EXISTS (
                       SELECT 1 FROM batch_items WHERE batch_id = $1 AND status = 'pending')""",
                batch_id,
                now,
            )
    for created in accepted:
        created.accepted(ctx)
    if rows:
        ctx.coordinator.wake.set()
    return len(rows)


async def complete_empty_batches(ctx: Context) -> None:
    """A batch whose every item was rejected up front has nothing to process: complete it."""
    await ctx.pool.execute(
        """UPDATE batches b SET status = 'completed', completed_at = now()
           WHERE status = 'processing' AND NOT EXISTS (
               SELECT 1 FROM batch_items WHERE batch_id = b.id AND status = 'pending')"""
    )


async def purge_expired_idempotency_keys(ctx: Context) -> int:
    result = await ctx.pool.execute(
        "DELETE FROM idempotency_keys WHERE expires_at < now() AND state = 'done'"
    )
    return int(result.split()[-1])
