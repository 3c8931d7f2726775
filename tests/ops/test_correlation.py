"""One correlation id, from the merchant's ``Request-Id`` through every hop: the answer, the
log lines of every process on the payout's path, every AMQP message, and the webhook."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from tests.ops.conftest import Merchant
from tests.support.suite import Suite
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def events(ops_suite: Suite) -> AsyncIterator[list[aio_pika.abc.AbstractIncomingMessage]]:
    """Every message published on the suite's exchange while the test runs."""
    seen: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect(ops_suite.spec.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{ops_suite.spec.amqp_prefix}.events")
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")

        async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen.append(message)
            await message.ack()

        await queue.consume(keep)
        yield seen
    finally:
        await connection.close()


def _log_lines(suite: Suite, service: str) -> list[dict[str, Any]]:
    lines = []
    for raw in suite[service].log_path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


async def test_one_request_id_follows_a_payout_through_http_amqp_logs_and_webhook(
    ops_suite: Suite, merchant: Merchant, events: list[aio_pika.abc.AbstractIncomingMessage]
) -> None:
    request_id = f"req_ops_{uuid.uuid4().hex}"
    status, created, headers = await merchant.create(4_321, **{"Request-Id": request_id})
    assert status == 201, created
    assert headers["Request-Id"] == request_id
    payout_id = created["id"]
    assert (await merchant.wait_final(payout_id))["status"] == "paid"

    async def webhook_paid() -> list[dict[str, str]]:
        return merchant.receiver.for_payout(payout_id, "payout.paid")

    hooks = await wait_until(webhook_paid, timeout_s=20, message="payout.paid webhook")
    assert [h["Request-Id"] for h in hooks] == [request_id]
    created_hooks = merchant.receiver.for_payout(payout_id, "payout.created")
    assert [h["Request-Id"] for h in created_hooks] == [request_id]

    # Every event of this payout on the broker carries it as the AMQP correlation id and in
    # the envelope.
    async def payout_events() -> dict[str, tuple[str | None, str | None]] | None:
        mine = {}
        for message in events:
            body = json.loads(message.body)
            if body["aggregate_id"] == payout_id:
                mine[body["event_type"]] = (message.correlation_id, body["correlation_id"])
        return mine if {"payout.created", "attempt.resolved", "payout.paid"} <= set(mine) else None

    seen = await wait_until(payout_events, timeout_s=10, message="events of the payout")
    assert set(seen.values()) == {(request_id, request_id)}, seen

    # The log lines of every process on the path carry it; and in payout and router, every
    # line about this payout carries it (none lost it on the way through a background task).
    async def logged() -> dict[str, int] | None:
        counts = {
            service: sum(
                1 for line in _log_lines(ops_suite, service) if line.get("request_id") == request_id
            )
            for service in ("payout", "ledger", "router", "banksim")
        }
        return counts if all(counts.values()) else None

    counts = await wait_until(logged, timeout_s=10, message=f"{request_id} in every log")
    assert counts["ledger"] >= 2, counts  # try and confirm of the funds branch
    for service in ("payout", "router"):
        about = [
            line
            for line in _log_lines(ops_suite, service)
            if payout_id in json.dumps(line) and line.get("level") != "debug"
        ]
        assert about, service
        assert {line.get("request_id") for line in about} == {request_id}, (service, about)
