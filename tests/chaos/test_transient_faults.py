"""Found by the chaos run: a consumer whose database restarts for a moment must not burn the
queue's delivery limit in milliseconds and dead-letter the event (a ``payout.paid`` whose
webhook then never leaves). Redeliveries after a failure are spaced out, so a fault shorter than
the backoff budget only delays the event."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from contracts.wire import Envelope
from services.kit.amqp import Broker
from tests.support import infra
from tests.support.waiting import wait_until


@pytest.mark.timeout(60)
async def test_an_event_survives_a_one_second_database_outage_of_its_consumer(
    amqp_prefix: str,
) -> None:
    prefix = f"{amqp_prefix}.transient{uuid.uuid4().hex[:4]}"
    broker = Broker(infra.amqp_url(), prefix, delivery_limit=10)
    await broker.connect()
    outage_until = time.monotonic() + 1.0
    attempts: list[float] = []
    handled: list[str] = []

    async def handle(envelope: Envelope) -> None:
        attempts.append(time.monotonic())
        if time.monotonic() < outage_until:  # what asyncpg raises while PostgreSQL restarts
            raise ConnectionRefusedError(111, "Connect call failed")
        handled.append(envelope.event_id)

    try:
        await broker.consume("transient", ["thing.#"], handle)
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            event_type="thing.happened",
            schema_version=1,
            occurred_at=datetime.now(UTC),
            producer="test",
            correlation_id=None,
            causation_id=None,
            aggregate_id="t1",
            aggregate_version=1,
            data={"n": 1},
        )
        await broker.publish(envelope)

        async def done() -> bool:
            return bool(handled)

        await wait_until(done, timeout_s=30, message=f"handled after {len(attempts)} attempts")
        assert handled == [envelope.event_id]
        assert len(attempts) <= 10
    finally:
        await broker.close()
        await infra.delete_broker_names(prefix, [f"{prefix}.transient"])
