"""Transactional outbox: ``enqueue`` inside the use case's transaction, ``relay`` publishes.

The relay wakes on ``NOTIFY outbox`` (and polls as a fallback), claims a batch with
``FOR UPDATE SKIP LOCKED`` so several instances can run, publishes each event with broker
confirms, and marks the batch published in the same transaction. A crash between publish and
commit republishes: delivery is at-least-once and consumers dedupe by ``event_id`` (inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
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
# A batch whose confirms have not all come back by then is rolled back and retried.
PUBLISH_TIMEOUT_S = 15.0


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


async def publish_batch(
    pool: asyncpg.Pool,
    broker: Broker,
    batch_size: int,
    *,
    publish_timeout_s: float = PUBLISH_TIMEOUT_S,
) -> int:
    """Publish the oldest unpublished events and mark them, in one transaction. The publishes
    are bounded by ``publish_timeout_s``: a confirm that never comes (broker restarting under
    the publish) rolls the claim back instead of holding the batch and the relay forever."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT id, event_id, event_type, payload, correlation_id FROM outbox
               WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
            batch_size,
        )
        if not rows:
            return 0
        async with asyncio.timeout(publish_timeout_s):
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


class RelayHealth:
    """The relay's last sign of life, for readiness: ``check`` raises once the relay has not
    completed a round (a poll or a batch) for ``stale_after_s``, whether it is stuck, keeps
    failing or has exited, so the service turns not-ready instead of silently publishing
    nothing."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self._beat_at: float | None = None
        self.last_error: str | None = None
        self.running = False

    def beat(self) -> None:
        self._beat_at = time.monotonic()
        self.last_error = None

    def check(self) -> None:
        if not self.running:
            raise RuntimeError("outbox relay not running")
        if self._beat_at is None or time.monotonic() - self._beat_at > self.stale_after_s:
            raise RuntimeError(f"outbox relay stalled: {self.last_error or 'no progress'}")


class _Listener:
    """The relay's ``LISTEN outbox`` connection, taken again whenever it dies (a database
    restart closes it; the pool then detaches it, and every later call on it raises)."""

    def __init__(self, pool: asyncpg.Pool, wake: asyncio.Event) -> None:
        self.pool = pool
        self.wake = wake
        self.conn: Any = None

    def _on_notify(self, *_args: object) -> None:
        self.wake.set()

    def _on_terminated(self, *_args: object) -> None:
        # Lost while the relay waits: go round now (a poll, then LISTEN again).
        self.wake.set()

    def _alive(self) -> bool:
        if self.conn is None:
            return False
        try:
            return not self.conn.is_closed()
        except asyncpg.InterfaceError:  # released back to the pool when it was closed
            return False

    async def ensure(self) -> None:
        if self._alive():
            return
        await self.close()
        conn = await self.pool.acquire(timeout=5.0)
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener("outbox", self._on_notify)
        except BaseException:
            await self.pool.release(conn)
            raise
        self.conn = conn
        self.wake.set()  # what was notified while nobody listened is found by the next poll

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        alive = True
        try:
            alive = not conn.is_closed()
        except asyncpg.InterfaceError:
            alive = False
        if alive:
            with contextlib.suppress(Exception):
                conn.remove_termination_listener(self._on_terminated)
                await asyncio.wait_for(conn.remove_listener("outbox", self._on_notify), 5.0)
        with contextlib.suppress(Exception):  # a dead one is already out of the pool
            await self.pool.release(conn, timeout=5.0)


async def relay(
    pool: asyncpg.Pool,
    broker: Broker,
    *,
    batch_size: int = 200,
    poll_interval_s: float = 1.0,
    stop: asyncio.Event,
    publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    health: RelayHealth | None = None,
) -> None:
    """Run until ``stop`` is set. Any fault (database, broker, a timeout) is logged, backed
    off and retried: the relay is the only way a service's events leave it, so nothing but
    ``stop`` (or cancellation) ends it. Found by a chaos run: a PostgreSQL restart raised
    ``ConnectionDoesNotExistError`` (an ``InterfaceError``, not a ``PostgresError``) in the
    middle of a batch; the relay ended silently and the service published nothing more."""
    health = health or RelayHealth()
    wake = asyncio.Event()
    listener = _Listener(pool, wake)
    backoff_s = 0.1
    loop = asyncio.get_running_loop()
    lag_refreshed_at = float("-inf")
    health.running = True
    try:
        while not stop.is_set():
            # Cleared before the round, not after: a notification (or the listener's loss)
            # during the round makes the next one start at once.
            wake.clear()
            try:
                try:
                    await listener.ensure()
                except Exception as exc:  # noqa: BLE001 - polling still publishes
                    log.warning("outbox_listen_failed", error=f"{type(exc).__name__}: {exc}")
                if loop.time() - lag_refreshed_at >= LAG_REFRESH_INTERVAL_S:
                    lag_refreshed_at = loop.time()
                    size, age_s = await lag(pool)
                    OUTBOX_UNPUBLISHED.set(size)
                    OUTBOX_OLDEST_AGE_SECONDS.set(age_s)
                published = await publish_batch(
                    pool, broker, batch_size, publish_timeout_s=publish_timeout_s
                )
                backoff_s = 0.1
                health.beat()
            except Exception as exc:  # noqa: BLE001 - loop boundary: every fault is retried
                error = f"{type(exc).__name__}: {exc}"
                health.last_error = error
                log.warning("outbox_relay_retry", error=error, backoff_s=backoff_s)
                await _first_of(stop, timeout_s=backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if published:
                continue  # drain without waiting
            await _first_of(wake, stop, timeout_s=poll_interval_s)
    finally:
        health.running = False
        await listener.close()


async def _first_of(*events: asyncio.Event, timeout_s: float) -> None:
    """Return once any of ``events`` is set, or after ``timeout_s``."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def lag(pool: asyncpg.Pool) -> tuple[int, float]:
    """(unpublished events, age in seconds of the oldest) for readiness and metrics."""
    row = await pool.fetchrow(
        """SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS age
           FROM outbox WHERE published_at IS NULL"""
    )
    assert row is not None
    return int(row["n"]), float(row["age"])
