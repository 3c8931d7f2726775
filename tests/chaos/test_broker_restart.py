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
