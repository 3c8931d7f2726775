"""The outbox relay keeps publishing through the faults a database restart causes.

Found by a chaos run: a PostgreSQL restart closed a connection in the middle of the relay's
batch; asyncpg raised ``ConnectionDoesNotExistError`` (an ``InterfaceError``, not a
``PostgresError``), the relay ended without a word and its service published nothing more
(no webhooks) while it kept paying payouts. At shutdown ``remove_listener`` then raised on the
LISTEN connection that the restart had closed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from contracts.wire import Envelope
from services.kit import db, migrations, outbox
from services.kit.amqp import Broker
from tests.support import infra
from tests.support.waiting import wait_until

SAMPLE = Path(__file__).parent / "sample_service" / "migrations"


@pytest.fixture
async def pool(run_id: str) -> Any:
    name = f"{run_id}_kit_{uuid.uuid4().hex[:6]}"
    await db.ensure_database(infra.database_url(), name)
    dsn = db.service_dsn(infra.database_url(), f"{run_id}_kit_", name.rsplit("_", 1)[1])
    await migrations.apply(dsn, SAMPLE)
    pool = await db.create_pool(dsn, max_size=4)
    yield pool
    await pool.close()


class FlakyBroker(Broker):
    """Records what is published; the first ``failures`` publishes raise ``fault``."""

    def __init__(self, fault: BaseException | None = None, failures: int = 0) -> None:
        super().__init__("amqp://unused", "unused")
        self.fault = fault
        self.failures = failures
        self.published: list[str] = []

    async def publish_raw(
        self, body: bytes, routing_key: str, *, message_id: str, correlation_id: str | None
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            assert self.fault is not None
            raise self.fault
        self.published.append(message_id)


class HangingBroker(FlakyBroker):
    """The first publish waits for a confirm that never comes."""

    async def publish_raw(
        self, body: bytes, routing_key: str, *, message_id: str, correlation_id: str | None
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            await asyncio.Event().wait()
        self.published.append(message_id)


async def _enqueue(pool: asyncpg.Pool, n: int) -> Envelope:
    async with pool.acquire() as conn, conn.transaction():
        return await outbox.enqueue(
            conn,
            event_type="thing.created",
            producer="test",
            aggregate_id=f"t{n}",
            aggregate_version=1,
            data={"n": n},
        )


async def _published(broker: FlakyBroker, envelope: Envelope) -> bool:
    return envelope.event_id in broker.published


async def test_relay_survives_a_connection_closed_in_the_middle_of_a_batch(
    pool: asyncpg.Pool,
) -> None:
    fault = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    broker = FlakyBroker(fault, failures=2)
    health = outbox.RelayHealth(stale_after_s=30)
    stop = asyncio.Event()
    task = asyncio.create_task(
        outbox.relay(pool, broker, stop=stop, poll_interval_s=0.2, health=health)
    )
    try:
        first = await _enqueue(pool, 1)
        await wait_until(lambda: _published(broker, first), message="published after the fault")
        assert not task.done(), task
        health.check()
        second = await _enqueue(pool, 2)
        await wait_until(lambda: _published(broker, second), message="the next event too")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    with pytest.raises(RuntimeError, match="not running"):
        health.check()


async def test_relay_bounds_a_publish_whose_confirm_never_comes(pool: asyncpg.Pool) -> None:
    broker = HangingBroker(failures=1)
    stop = asyncio.Event()
    task = asyncio.create_task(
        outbox.relay(pool, broker, stop=stop, poll_interval_s=0.2, publish_timeout_s=0.5)
    )
    try:
        envelope = await _enqueue(pool, 1)
        await wait_until(lambda: _published(broker, envelope), message="published on the retry")
        count, _age = await outbox.lag(pool)
        assert count == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def test_relay_listens_again_after_its_listen_connection_dies_and_stops_cleanly(
    pool: asyncpg.Pool,
) -> None:
    broker = FlakyBroker()
    stop = asyncio.Event()
    # A poll far longer than the test: only NOTIFY can wake the relay in time.
    task = asyncio.create_task(outbox.relay(pool, broker, stop=stop, poll_interval_s=60))
    try:
        first = await _enqueue(pool, 1)
        await wait_until(lambda: _published(broker, first), message="published on NOTIFY")

        async def kill_listener() -> bool:
            # Only this test database's LISTEN backend: the shared server is left alone.
            killed = await pool.fetchval(
                """SELECT count(*) FROM (
                       SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                       WHERE datname = current_database() AND query LIKE 'LISTEN%'
                         AND pid <> pg_backend_pid()) t"""
            )
            return bool(killed)

        await wait_until(kill_listener, message="the relay's LISTEN backend")

        async def listening_again() -> bool:
            return bool(
                await pool.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
                )
            )

        await wait_until(listening_again, message="LISTEN on a new connection")
        second = await _enqueue(pool, 2)
        await wait_until(lambda: _published(broker, second), message="published on NOTIFY again")
        assert not task.done(), task
    finally:
        stop.set()
    # The relay's shutdown neither raises nor hangs.
    await asyncio.wait_for(task, timeout=10)


async def test_relay_shutdown_after_its_listen_connection_died(pool: asyncpg.Pool) -> None:
    """The shutdown ``InterfaceError`` from ``remove_listener`` on a closed connection."""
    broker = FlakyBroker()
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.relay(pool, broker, stop=stop, poll_interval_s=60))

    async def listening() -> bool:
        return bool(
            await pool.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
            )
        )

    try:
        await wait_until(listening, message="the relay listening")
        await pool.fetchval(
            """SELECT count(*) FROM (
                   SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'LISTEN%') t"""
        )
    finally:
        stop.set()
    await asyncio.wait_for(task, timeout=10)
