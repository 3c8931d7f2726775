"""Webhooks: fan each payout event out to the merchant's subscribed endpoints (a consumer with
inbox dedupe), then deliver with signatures, backoff, a record of every attempt, and a dead
letter + alert after the last try."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import structlog

from contracts.payout import EVENT_TYPES
from contracts.webhooks import SIGNATURE_HEADER, sign
from contracts.wire import Envelope
from services.kit import outbox
from services.kit.logging import get_logger
from services.kit.web import REQUEST_ID_HEADER
from services.payout.adapters import store
from services.payout.domain import payouts as rules
from services.payout.domain import webhooks as policy
from services.payout.settings import Settings

log = get_logger(__name__)

CONSUMER = "payout.webhooks"
USER_AGENT = "payments-suite-webhooks/1"
DELIVERED_BATCH_MAX = 500  # successful deliveries recorded per statement


@dataclass(frozen=True)
class Delivered:
    delivery_id: str
    attempt_no: int
    at: datetime
    status_code: int
    duration_ms: int


def webhook_body(envelope: Envelope) -> bytes:
    """What the merchant receives: the event, with the payout as ``data.object``."""
    return json.dumps(
        {
            "id": envelope.event_id,
            "object": "event",
            "type": envelope.event_type,
            "created_at": envelope.occurred_at.isoformat(),
            "data": {"object": envelope.data},
        },
        separators=(",", ":"),
    ).encode()


async def fan_out(pool: asyncpg.Pool, settings: Settings, envelope: Envelope) -> int:
    """One delivery row per subscribed endpoint, written with the inbox row."""
    if envelope.event_type not in EVENT_TYPES:
        return 0
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        if not await outbox.claim_inbox(conn, CONSUMER, envelope.event_id):
            return 0
        merchant_id = envelope.data.get("merchant_id") or await conn.fetchval(
            "SELECT merchant_id FROM payouts WHERE id = $1", envelope.aggregate_id
        )
        if merchant_id is None:
            return 0
        endpoints = await conn.fetch(
            """SELECT id FROM webhook_endpoints
               WHERE merchant_id = $1 AND deleted_at IS NULL
                 AND ($2 = ANY(event_types) OR '*' = ANY(event_types))""",
            merchant_id,
            envelope.event_type,
        )
        body = webhook_body(envelope)
        give_up_at = now + timedelta(seconds=settings.webhook_retry_window_s)
        for endpoint in endpoints:
            await conn.execute(
                """INSERT INTO webhook_deliveries(id, endpoint_id, merchant_id, event_id,
                       event_type, payload, status, next_attempt_at, give_up_at, created_at)
                   VALUES ($1, $2, $3, $4::uuid, $5, $6, 'pending', $7, $8, $7)
                   ON CONFLICT (endpoint_id, event_id) DO NOTHING""",
                rules.new_id("whd"),
                endpoint["id"],
                merchant_id,
                envelope.event_id,
                envelope.event_type,
                body,
                now,
                give_up_at,
            )
    return len(endpoints)


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.session = session
        self.settings = settings
        self.rng = rng or random.Random()
        self.timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_ms / 1000)
        # Successful deliveries waiting to be recorded, and the one task recording them.
        self._delivered: list[tuple[Delivered, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None

    async def claim(self) -> list[asyncpg.Record]:
        # The claim pushes next_attempt_at past the request timeout: a crashed sender's rows
        # come back by themselves.
        lease_s = self.settings.webhook_timeout_ms / 1000 * 2 + 1
        return await self.pool.fetch(
            """UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
               FROM webhook_endpoints e
               WHERE d.id IN (SELECT id FROM webhook_deliveries
                              WHERE status = 'pending' AND next_attempt_at <= now()
                              ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                 AND e.id = d.endpoint_id
               RETURNING d.id, d.payload, d.attempts, d.give_up_at, d.event_id, d.merchant_id,
                         e.url, e.secret,
                         (SELECT o.correlation_id FROM outbox o
                          WHERE o.event_id = d.event_id) AS correlation_id""",
            self.settings.webhook_batch_max,
            lease_s,
        )

    async def deliver(self, row: asyncpg.Record) -> bool:
        # The merchant's own request id travels with the event (outbox.correlation_id) and
        # comes back on the webhook, so both sides can join their logs on it.
        correlation_id = row["correlation_id"]
        with structlog.contextvars.bound_contextvars(
            **({"request_id": correlation_id} if correlation_id else {})
        ):
            return await self._deliver(row, correlation_id)

    async def _deliver(self, row: asyncpg.Record, correlation_id: str | None) -> bool:
        body = bytes(row["payload"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(row["secret"], body),
        }
        if correlation_id:
            headers[REQUEST_ID_HEADER] = correlation_id
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            async with self.session.post(
                row["url"], data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                status_code = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = int((time.monotonic() - started) * 1000)
        ok = policy.delivered(status_code)
        if not ok and error is None:
            error = f"HTTP {status_code}"
        now = datetime.now(UTC)
        attempt_no = row["attempts"] + 1
        if ok:
            assert status_code is not None
            await self._record_delivered(
                Delivered(row["id"], attempt_no, now, status_code, duration_ms)
            )
            log.info("webhook_delivered", delivery_id=row["id"], attempts=attempt_no)
            return True
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO webhook_attempts(delivery_id, attempt_no, attempted_at, status_code,
                       error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)""",
                row["id"],
                attempt_no,
                now,
                status_code,
                error,
                duration_ms,
            )
            next_at = policy.next_attempt(
                attempt_no,
                now,
                row["give_up_at"],
                base_ms=self.settings.webhook_retry_base_ms,
                max_ms=self.settings.webhook_retry_max_ms,
                rng=self.rng,
            )
            await conn.execute(
                """UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4,
                       last_status_code = $5, last_error = $6 WHERE id = $1""",
                row["id"],
                "pending" if next_at else "dead",
                attempt_no,
                next_at,
                status_code,
                error,
            )
            if next_at is None:
                await store.raise_alert(
                    conn,
                    code="webhook_dead_lettered",
                    severity="medium",
                    message=f"webhook {row['id']} undeliverable after {attempt_no} attempts",
                    payout_id=None,
                    now=now,
                )
            log.warning(
                "webhook_failed",
                delivery_id=row["id"],
                attempts=attempt_no,
                status_code=status_code,
                dead=next_at is None,
            )
        return False

    async def _record_delivered(self, delivered: Delivered) -> None:
        """Returns once the attempt and the delivered status are committed. Deliveries that
        succeed while a write is in flight share the next one (group commit, no added wait):
        one statement and one commit per batch instead of a transaction per webhook."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._delivered.append((delivered, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_pending())
        # Shielded: a cancelled sender task does not cancel the write others share.
        await asyncio.shield(done)

    async def _record_pending(self) -> None:
        while self._delivered:
            batch = self._delivered[:DELIVERED_BATCH_MAX]
            del self._delivered[:DELIVERED_BATCH_MAX]
            rows = [d for d, _ in batch]
            try:
                # One statement is atomic: the attempts and the statuses commit together.
                await self.pool.execute(
                    """WITH u AS (
                           SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[],
                                                $4::int[], $5::int[])
                               AS u(id, attempt_no, at, status_code, duration_ms)),
                       a AS (
                           INSERT INTO webhook_attempts(delivery_id, attempt_no, attempted_at,
                               status_code, duration_ms)
                           SELECT id, attempt_no, at, status_code, duration_ms FROM u)
                       UPDATE webhook_deliveries d SET status = 'delivered',
                           attempts = u.attempt_no, delivered_at = u.at,
                           last_status_code = u.status_code, last_error = NULL,
                           next_attempt_at = NULL
                       FROM u WHERE d.id = u.id""",
                    [d.delivery_id for d in rows],
                    [d.attempt_no for d in rows],
                    [d.at for d in rows],
                    [d.status_code for d in rows],
                    [d.duration_ms for d in rows],
                )
            except BaseException as exc:  # forwarded to every waiter, never swallowed
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def run(self, stop: asyncio.Event, *, poll_interval_s: float = 0.2) -> None:
        running: set[asyncio.Task[bool]] = set()
        try:
            while not stop.is_set():
                rows: list[asyncpg.Record] = []
                if len(running) < self.settings.webhook_concurrency:
                    try:
                        rows = await self.claim()
                    except Exception:  # worker loop boundary: log, never die silently
                        log.exception("webhook_claim_failed")
                for row in rows:
                    task = asyncio.create_task(self._deliver_logged(row))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if rows:
                    continue
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll_interval_s)
                except TimeoutError:
                    pass
        finally:
            if running:
                await asyncio.wait(running, timeout=10)

    async def _deliver_logged(self, row: asyncpg.Record) -> bool:
        try:
            return await self.deliver(row)
        except asyncio.CancelledError:
            raise
        except Exception:  # loop boundary: the claim lease brings the row back
            log.exception("webhook_delivery_crashed", delivery_id=row["id"])
            return False
