"""The chaos run's failure, on the kit alone: a service that publishes through the outbox relay
and consumes its own events must keep doing both through broker and database restarts, in any
order and with publishes in flight, and stop cleanly afterwards. The run saw the payout
process pay payouts but send no webhook after a PostgreSQL restart followed by RabbitMQ
restarts, and its relay's shutdown raise ``InterfaceError`` at ``remove_listener``.

Throw-away PostgreSQL and RabbitMQ servers (never the machine's shared ones)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import asyncpg
import pytest

from contracts.wire import Envelope
from services.kit import db, migrations, outbox
from services.kit.amqp import Broker
from tests.chaos.servers import OwnPostgres, OwnRabbit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

SAMPLE = Path(__file__).parents[1] / "kit" / "sample_service" / "migrations"


async def _enqueue(pool: asyncpg.Pool, n: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(
            conn,
            event_type="thing.created",
            producer="test",
            aggregate_id=f"t{n}",
            aggregate_version=1,
            data={"n": n},
        )


@pytest.mark.timeout(90)
async def test_relay_and_consumer_flow_through_repeated_broker_and_database_restarts() -> None:
    base = Path(tempfile.mkdtemp(prefix="broker-restarts-"))
    base.chmod(0o755)
    pg, rabbit = await asyncio.gather(
        asyncio.to_thread(OwnPostgres(base).start), asyncio.to_thread(OwnRabbit(base).start)
    )
    pool: asyncpg.Pool | None = None
    broker = Broker(rabbit.url, "restarts", publish_timeout_s=5.0)
    consumed: set[int] = set()
    enqueued: list[int] = []
    stop = asyncio.Event()  # the relay's
    stop_producing = asyncio.Event()
    health = outbox.RelayHealth(stale_after_s=30)
    relay: asyncio.Task[None] | None = None
    producer: asyncio.Task[None] | None = None

    async def handle(envelope: Envelope) -> None:
        consumed.add(int(envelope.data["n"]))

    async def produce() -> None:
        # A steady stream: some batch is always being published when a server goes away.
        assert pool is not None
        n = 0
        while not stop_producing.is_set():
            try:
                await _enqueue(pool, n)
                enqueued.append(n)
                n += 1
            except (asyncpg.PostgresError, OSError):  # the database is restarting
                pass
            await asyncio.sleep(0.01)  # pacing of the stream, not synchronisation

    async def flowing(after: int) -> bool:
        # An event enqueued after the restart has gone through relay, broker and consumer.
        return any(n > after for n in consumed)

    try:
        await migrations.apply(pg.url, SAMPLE)
        pool = await db.create_pool(pg.url, max_size=6)
        await broker.connect()
        await broker.consume("things", ["thing.#"], handle, prefetch=16)
        relay = asyncio.create_task(
            outbox.relay(pool, broker, stop=stop, poll_interval_s=1.0, health=health)
        )
        producer = asyncio.create_task(produce())
        await wait_until(lambda: flowing(-1), timeout_s=15, message="first events consumed")

        for restart in ("rabbit", "postgres", "rabbit"):
            await wait_until(lambda: flowing(-1), message="stream running")
            await asyncio.to_thread(rabbit.restart if restart == "rabbit" else pg.restart_immediate)
            after = enqueued[-1] if enqueued else -1
            await wait_until(
                lambda after=after: flowing(after),  # type: ignore[misc]
                timeout_s=30,
                message=f"events flowing again after the {restart} restart",
            )
            assert not relay.done(), relay

        # Readiness of both ends is green again, not stuck red.
        async def ready() -> bool:
            try:
                health.check()
                broker.check(stale_after_s=15)
            except (RuntimeError, ConnectionError):
                return False
            return True

        await wait_until(ready, timeout_s=15, message="relay and consumer healthy")
        stop_producing.set()
        await asyncio.wait_for(producer, timeout=10)

        # Every event that was committed reaches the consumer (at least once).
        async def all_consumed() -> bool:
            return set(enqueued) <= consumed

        await wait_until(
            all_consumed,
            timeout_s=15,
            message=f"every event consumed ({len(set(enqueued) - consumed)} missing)",
        )
    finally:
        stop_producing.set()
        stop.set()
        if producer is not None:
            await asyncio.wait_for(producer, timeout=10)
        if relay is not None:
            # The relay's shutdown neither raises (its LISTEN connection died with the database)
            # nor hangs.
            await asyncio.wait_for(relay, timeout=20)
        await broker.close()
        if pool is not None:
            await pool.close()
        await asyncio.gather(asyncio.to_thread(rabbit.stop), asyncio.to_thread(pg.stop))
