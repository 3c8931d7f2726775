"""Found by the chaos run: after a RabbitMQ restart, a payout process stopped delivering
webhooks for good. A consumer and a publisher of the kit's Broker must both work again once
the broker is back (on a throw-away RabbitMQ node, never the machine's)."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.wire import Envelope
from services.kit.amqp import Broker
from tests.chaos.servers import OwnRabbit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def _envelope(n: int) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type="thing.happened",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        producer="test",
        correlation_id=None,
        causation_id=None,
        aggregate_id=f"t{n}",
        aggregate_version=1,
        data={"n": n},
    )


@pytest.mark.timeout(150)
async def test_consumer_and_publisher_work_again_after_a_broker_restart() -> None:
    base = Path(tempfile.mkdtemp(prefix="broker-restart-"))
    base.chmod(0o755)
    rabbit = await asyncio.to_thread(OwnRabbit(base).start)
    broker = Broker(rabbit.url, "restart")
    got: list[int] = []

    async def handle(envelope: Envelope) -> None:
        got.append(int(envelope.data["n"]))

    try:
        await broker.connect()
        await broker.consume("things", ["thing.#"], handle)
        await broker.publish(_envelope(1))

        async def first() -> bool:
            return got == [1]

        await wait_until(first, timeout_s=15, message="message before the restart")
        await asyncio.to_thread(rabbit.restart)

        async def published_again() -> bool:
            try:
                await broker.publish(_envelope(2))
            except Exception:  # the connection is still being restored
                return False
            return True

        await wait_until(published_again, timeout_s=30, interval_s=0.5, message="publish again")

        async def second() -> bool:
            return 2 in got

        await wait_until(second, timeout_s=30, message=f"message after the restart (got {got})")
    finally:
        await broker.close()
        await asyncio.to_thread(rabbit.stop)


@pytest.mark.timeout(150)
async def test_no_publish_hangs_when_the_broker_restarts_under_a_steady_stream() -> None:
    """The outbox relay publishes inside a database transaction; a publish whose confirm
    never comes would stop every later event of the service."""
    base = Path(tempfile.mkdtemp(prefix="broker-restart-"))
    base.chmod(0o755)
    rabbit = await asyncio.to_thread(OwnRabbit(base).start)
    broker = Broker(rabbit.url, "stream")
    outcomes: list[tuple[float, str]] = []  # (seconds the call took, outcome)
    stop = asyncio.Event()

    async def stream() -> None:
        n = 0
        while not stop.is_set():
            began = asyncio.get_running_loop().time()
            try:
                await broker.publish(_envelope(n))
                outcome = "ok"
            except Exception as exc:  # a refused or failed publish is fine; a hang is not
                outcome = type(exc).__name__
                await asyncio.sleep(0.05)
            outcomes.append((asyncio.get_running_loop().time() - began, outcome))
            n += 1

    try:
        await broker.connect()
        task = asyncio.create_task(stream())
        await wait_until(lambda: _async(len(outcomes) > 20), timeout_s=15, message="stream")
        await asyncio.to_thread(rabbit.restart)
        before = len(outcomes)

        async def flowing_again() -> bool:
            return any(o == "ok" for _, o in outcomes[before:])

        await wait_until(flowing_again, timeout_s=45, interval_s=0.5, message="publishes ok again")
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    finally:
        stop.set()
        await broker.close()
        await asyncio.to_thread(rabbit.stop)


async def _async(value: bool) -> bool:
    return value
