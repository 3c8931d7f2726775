"""Transactional outbox: ``enqueue`` inside the use case's transaction, ``relay`` publishes.

The relay wakes on ``NOTIFY outbox`` (and polls as a fallback), claims a batch with
``FOR UPDATE SKIP LOCKED`` so several instances can run, publishes each event with broker
confirms, and marks the batch published in the same transaction. A crash between publish and
commit republishes: delivery is at-least-once and consumers dedupe by ``event_id`` (inbox).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from contracts.wire import Envelope, encode
from services.kit.amqp import Broker
from services.kit.logging import get_logger
from services.kit.metrics import (
    OUTBOX_OLDEST_AGE_SECONDS,
    OUTBOX_PUBLISHED_TOTAL,
    OUTBOX_UNPUBLISHED,
)

log = get_logger(__name__)
LAG_REFRESH_INTERVAL_S = 1.0


def _context_correlation_id() -> str | None:
    """The correlation id of the request or message being handled (bound by the kit's HTTP
    middleware and consumer loop), so an event carries it without every caller passing it."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


async def enqueue(
    conn: asyncpg.Connection,
    *,
    event_type: str,
    producer: str,
    aggregate_id: str,
    aggregate_version: int,
    data: dict[str, Any],
    correlation_id: str | None = None,
    causation_id: str | None = None,
    schema_version: int = 1,
    now: datetime | None = None,
) -> Envelope:
    correlation_id = correlation_id or _context_correlation_id()
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        schema_version=schema_version,
        occurred_at=now or datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        data=data,
    )
    await conn.execute(
        "INSERT INTO outbox(event_id, event_type, payload, correlation_id) VALUES ($1, $2, $3, $4)",
        uuid.UUID(envelope.event_id),
        event_type,
        encode(envelope),
        correlation_id,
    )
    return envelope


async def enqueue_many(
    conn: asyncpg.Connection,
    events: list[dict[str, Any]],
    *,
    producer: str,
    correlation_id: str | None = None,
    now: datetime | None = None,
) -> list[Envelope]:
    """``enqueue`` for many events in one statement (each dict: event_type, aggregate_id,
    aggregate_version, data; optional causation_id, schema_version). Same transaction rules."""
    occurred_at = now or datetime.now(UTC)
    correlation_id = correlation_id or _context_correlation_id()
    envelopes = [
        Envelope(
            event_id=str(uuid.uuid4()),
            event_type=e["event_type"],
            schema_version=e.get("schema_version", 1),
            occurred_at=occurred_at,
            producer=producer,
            correlation_id=correlation_id,
            causation_id=e.get("causation_id"),
            aggregate_id=e["aggregate_id"],
            aggregate_version=e["aggregate_version"],
            data=e["data"],
        )
        for e in events
    ]
    if envelopes:
        await conn.execute(
            """INSERT INTO outbox(event_id, event_type, payload, correlation_id)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[])""",
            [uuid.UUID(e.event_id) for e in envelopes],
            [e.event_type for e in envelopes],
            [encode(e) for e in envelopes],
            [correlation_id] * len(envelopes),
        )
    return envelopes


async def claim_inbox(conn: asyncpg.Connection, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id``; False if it already did (no effect)."""
    row = await conn.fetchval(
        "INSERT INTO inbox(consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        consumer,
        uuid.UUID(event_id),
    )
    return row is not None


async def publish_batch(pool: asyncpg.Pool, broker: Broker, batch_size: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT id, event_id, event_type, payload, correlation_id FROM outbox
               WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
            batch_size,
        )
        if not rows:
            return 0
        await asyncio.gather(
            *(
                broker.publish_raw(
                    bytes(r["payload"]),
                    r["event_type"],
                    message_id=str(r["event_id"]),
                    correlation_id=r["correlation_id"],
                )
                for r in rows
            )
        )
        await conn.execute(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            [r["id"] for r in rows],
        )
    OUTBOX_PUBLISHED_TOTAL.inc(len(rows))
    return len(rows)


async def relay(
    pool: asyncpg.Pool,
    broker: Broker,
    *,
    batch_size: int = 200,
    poll_interval_s: float = 1.0,
    stop: asyncio.Event,
) -> None:
    """Run until ``stop`` is set; transient broker/database faults back off and retry."""
    wake = asyncio.Event()
    listener = await pool.acquire()

    def on_notify(*_args: object) -> None:
        wake.set()

    await listener.add_listener("outbox", on_notify)
    backoff_s = 0.1
    loop = asyncio.get_running_loop()
    lag_refreshed_at = float("-inf")
    try:
        while not stop.is_set():
            try:
                if loop.time() - lag_refreshed_at >= LAG_REFRESH_INTERVAL_S:
                    lag_refreshed_at = loop.time()
                    size, age_s = await lag(pool)
                    OUTBOX_UNPUBLISHED.set(size)
                    OUTBOX_OLDEST_AGE_SECONDS.set(age_s)
                published = await publish_batch(pool, broker, batch_size)
                backoff_s = 0.1
            except (asyncpg.PostgresError, OSError, ConnectionError, RuntimeError) as exc:
                log.warning("outbox_relay_retry", error=str(exc), backoff_s=backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if published:
                continue  # drain without waiting
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=poll_interval_s)
            except TimeoutError:
                pass
    finally:
        try:
            await listener.remove_listener("outbox", on_notify)
        finally:
            await pool.release(listener)


async def lag(pool: asyncpg.Pool) -> tuple[int, float]:
    """(unpublished events, age in seconds of the oldest) for readiness and metrics."""
    row = await pool.fetchrow(
        """SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS age
           FROM outbox WHERE published_at IS NULL"""
    )
    assert row is not None
    return int(row["n"]), float(row["age"])
