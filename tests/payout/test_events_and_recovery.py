"""Events in and out: webhooks with signatures and retries, outcomes the real router and
reconciliation publish, and the recovery loop after crashes and a participant that is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from contracts.webhooks import SIGNATURE_HEADER, WebhookSignatureError, sign, verify
from services.payout.entrypoints import consumers
from tests.payout.conftest import BANK, Harness, payout_body
from tests.support import infra
from tests.support.waiting import wait_until


async def _is(awaitable: Awaitable[Any], expected: Any) -> bool:
    return (await awaitable) == expected


class Receiver:
    """A merchant's webhook endpoint that fails its first ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[tuple[bytes, str]] = []
        self.secret = ""
        self.verified: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((body, request.headers.get(SIGNATURE_HEADER, "")))
        if len(self.requests) <= self.failures:
            return web.Response(status=500)
        verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
        self.verified.append(json.loads(body))
        return web.Response(status=204)


async def _serve_receiver(receiver: Receiver) -> TestServer:
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    return server


def test_signature_helper_accepts_only_the_exact_body_secret_and_fresh_timestamp() -> None:
    body = b'{"id":"evt_1"}'
    header = sign("whsec_abc", body, timestamp=1_700_000_000)
    assert verify("whsec_abc", body, header, now=1_700_000_100) == 1_700_000_000
    for secret, payload, hdr, now in [
        ("whsec_other", body, header, 1_700_000_100),
        ("whsec_abc", body + b" ", header, 1_700_000_100),
        ("whsec_abc", body, header, 1_700_001_000),  # too old: a replay
        ("whsec_abc", body, "t=1700000000", 1_700_000_100),
        ("whsec_abc", body, None, 1_700_000_100),
        ("whsec_abc", body, "garbage", 1_700_000_100),
    ]:
        try:
            verify(secret, payload, hdr, now=now)
        except WebhookSignatureError:
            continue
        raise AssertionError(f"accepted a bad signature: {secret} {payload!r} {hdr}")


async def test_webhooks_are_signed_retried_after_three_failures_and_every_attempt_recorded(
    harness: Harness,
) -> None:
    receiver = Receiver(failures=3)
    server = await _serve_receiver(receiver)
    try:
        merchant = await harness.merchant()
        status, endpoint = await merchant.post(
            "/v1/webhook_endpoints",
            {"url": str(server.make_url("/hooks")), "event_types": ["payout.paid"]},
        )
        assert status == 201 and endpoint["secret"].startswith("whsec_")
        receiver.secret = endpoint["secret"]
        _, listed = await merchant.get("/v1/webhook_endpoints")
        assert listed["data"][0]["secret"] is None  # the secret is shown once only
        _, payout, _ = await merchant.post_payout(payout_body())
        await wait_until(lambda: _is(_len(receiver.verified), 1), timeout_s=15, message="hook")
        event = receiver.verified[0]
        assert event["type"] == "payout.paid" and event["data"]["object"]["id"] == payout["id"]
        assert len(receiver.requests) == 4
        assert event["data"]["object"]["beneficiary"]["account_number"].endswith("3000")
        assert "0532013000" not in receiver.requests[-1][0].decode()
        # The sender records an attempt after the receiver has answered it: wait for the 4th.
        await wait_until(
            lambda: _is(harness.fetchval("SELECT count(*) FROM webhook_attempts"), 4),
            timeout_s=10,
            message="the fourth attempt recorded",
        )
        attempts = await harness.fetch(
            "SELECT attempt_no, status_code FROM webhook_attempts ORDER BY attempt_no"
        )
        assert [(a["attempt_no"], a["status_code"]) for a in attempts] == [
            (1, 500),
            (2, 500),
            (3, 500),
            (4, 204),
        ]
        delivery_id = await harness.fetchval("SELECT id FROM webhook_deliveries")
        status, detail = await harness.admin("GET", f"/admin/webhook_deliveries/{delivery_id}")
        assert status == 200 and detail["status"] == "delivered" and detail["attempts"] == 4
        assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 500, 204]
    finally:
        await server.close()


async def _len(items: list[Any]) -> int:
    return len(items)


async def test_webhook_dead_letters_with_an_alert_after_the_window_and_can_be_resent(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(PAYOUT_WEBHOOK_RETRY_WINDOW_S="1")
    receiver = Receiver(failures=1_000)
    server = await _serve_receiver(receiver)
    try:
        merchant = await harness.merchant()
        _, endpoint = await merchant.post(
            "/v1/webhook_endpoints",
            {"url": str(server.make_url("/hooks")), "event_types": ["*"]},
        )
        receiver.secret = endpoint["secret"]
        await merchant.post_payout(payout_body())

        async def dead() -> Any:
            _, page = await harness.admin("GET", "/admin/webhook_deliveries?status=dead")
            return page["data"] if len(page["data"]) >= 2 else None

        dead_rows = await wait_until(dead, timeout_s=15, message="dead letters")
        assert {d["event_type"] for d in dead_rows} == {"payout.created", "payout.paid"}
        assert all(d["attempts"] >= 1 for d in dead_rows)
        codes = [r["code"] for r in await harness.fetch("SELECT code FROM alerts")]
        assert codes.count("webhook_dead_lettered") == 2
        receiver.failures = 0
        status, resent = await harness.admin(
            "POST", f"/admin/webhook_deliveries/{dead_rows[0]['id']}/resend"
        )
        assert status == 200 and resent["status"] == "pending"
        await wait_until(lambda: _is(_len(receiver.verified), 1), timeout_s=10, message="resent")
    finally:
        await server.close()


class Capture:
    """A queue of the test's own, bound to the shared exchange: it sees the real events the
    services publish, so a test can deliver one of them a second time (at-least-once)."""

    def __init__(self, harness: Harness, event_type: str) -> None:
        self.harness = harness
        self.event_type = event_type
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.queue: aio_pika.abc.AbstractQueue | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> Capture:
        self.connection = await aio_pika.connect_robust(infra.amqp_url())
        channel = await self.connection.channel()
        prefix = self.harness.settings.amqp_prefix
        self.exchange = await channel.get_exchange(f"{prefix}.events")
        self.queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self.queue.bind(self.exchange, routing_key=self.event_type)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    async def event_for(
        self, payout_id: str, timeout_s: float = 15
    ) -> aio_pika.abc.AbstractMessage:
        found: list[aio_pika.abc.AbstractMessage] = []

        async def probe() -> bool:
            assert self.queue is not None
            message = await self.queue.get(fail=False, no_ack=True)
            if message is not None and json.loads(message.body)["data"]["payout_id"] == payout_id:
                found.append(message)
            return bool(found)

        await wait_until(probe, timeout_s=timeout_s, message=f"{self.event_type} event")
        return found[0]

    async def deliver_again(self, message: aio_pika.abc.AbstractMessage) -> None:
        assert self.exchange is not None
        copy = aio_pika.Message(
            message.body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            headers=dict(message.headers or {}),
        )
        await self.exchange.publish(copy, routing_key=self.event_type)


async def _drained(harness: Harness, consumer: str) -> bool:
    """The payout instance's queue holds nothing ready or unacknowledged."""
    connection = await aio_pika.connect(infra.amqp_url())
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            f"{harness.settings.amqp_prefix}.{consumer}", passive=True
        )
        declared = queue.declaration_result
        return declared.message_count == 0
    finally:
        await connection.close()


async def test_attempt_resolved_event_settles_a_submitted_payout_once(make_harness: Any) -> None:
    # No janitor inquiry within the test: the router's event is what settles the payout.
    harness: Harness = await make_harness(PAYOUT_INQUIRY_SCHEDULE_S="3600")
    merchant = await harness.merchant()
    # The bank accepts now and completes a second later, calling the router back.
    await harness.behave(async_rate=1.0, async_delay_min_ms=1_000, async_delay_max_ms=1_000)
    async with Capture(harness, "attempt.resolved") as capture:
        _, payout, _ = await merchant.post_payout(payout_body())
        await wait_until(
            lambda: _is(merchant.status_of(payout["id"]), "submitted"), message="submitted"
        )
        event = await capture.event_for(payout["id"])
        await capture.deliver_again(event)  # at-least-once: a duplicate must have no effect
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "paid"), message="paid")
    await wait_until(lambda: _drained(harness, consumers.ATTEMPTS_CONSUMER), message="drained")
    await wait_until(
        lambda: _is(
            harness.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1", "payout.attempt_outcomes"
            ),
            1,
        ),
        message="inbox",
    )
    account = await merchant.account()
    assert account["debits_posted"] == payout["amount"] + payout["fee"]  # posted once
    assert account["debits_pending"] == 0
    _, body = await merchant.get(f"/v1/payouts/{payout['id']}")
    assert [h["status"] for h in body["status_history"]] == ["processing", "submitted", "paid"]


async def test_a_return_from_reconciliation_reverses_the_amount_and_marks_returned(
    harness: Harness,
) -> None:
    merchant = await harness.merchant(funds=50_000, fees={"fixed": 100, "bps": 0})
    _, payout, _ = await merchant.post_payout(payout_body(amount=10_000))
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "paid"), message="paid")
    _, submission = await harness.submission(payout["id"])
    attempt_id = submission["attempt_id"]
    status, page = await harness.call(
        "GET", f"{harness.parts.banksim.url}/admin/banks/{BANK}/executed?limit=5000"
    )
    (executed,) = [t for t in page["transfers"] if t["reference"] == attempt_id]
    business_date = (executed.get("value_date") or executed["executed_at"])[:10]
    async with Capture(harness, "recon.payout_resolved") as capture:
        # The bank's statement of the day carries the payout and, later, its return.
        status, written = await harness.call(
            "POST",
            f"{harness.parts.banksim.url}/admin/statements",
            {
                "bank": BANK,
                "business_date": business_date,
                "discrepancies": [{"kind": "returned_payout", "reference": attempt_id}],
            },
        )
        assert status == 201, written
        await wait_until(
            lambda: _is(merchant.status_of(payout["id"]), "returned"),
            timeout_s=30,
            message="returned",
        )
        event = await capture.event_for(payout["id"])
        while json.loads(event.body)["data"]["outcome"] != "returned":
            event = await capture.event_for(payout["id"])
        await capture.deliver_again(event)  # at-least-once: a duplicate must have no effect
    await wait_until(lambda: _drained(harness, consumers.RECON_CONSUMER), message="drained")
    account = await merchant.account()
    assert account["available"] == 50_000 - 100  # the amount came back, the fee stays
    status, reversal = await harness.call(
        "GET", f"{harness.parts.ledger.url}/v1/transfers/ret_{payout['id']}"
    )
    assert status == 200, reversal
    assert reversal["amount_minor"] == 10_000
    assert await merchant.status_of(payout["id"]) == "returned"


async def test_recovery_finishes_a_transaction_whose_worker_died_mid_try(
    harness: Harness,
) -> None:
    merchant = await harness.merchant()
    ledger = harness.parts.ledger
    await asyncio.to_thread(ledger.stop)  # the first worker cannot get its hold through
    try:
        status, payout, _ = await merchant.post_payout(payout_body())
        assert status == 201 and payout["status"] == "processing"
        # Simulate the crash: the row is leased by a worker that no longer exists.
        conn = await asyncpg.connect(harness.dsn)
        try:
            await conn.execute(
                "UPDATE global_tx SET lease_owner = 'payout-dead', epoch = epoch + 1,"
                " lease_until = now() + interval '1 second', next_attempt_at = now()"
            )
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(ledger.start, ready_timeout_s=60)
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "paid"), timeout_s=15)
    tx = await harness.fetch("SELECT state, epoch, decision FROM global_tx")
    assert tx[0]["state"] == "confirmed" and tx[0]["decision"] == "confirm"
    assert tx[0]["epoch"] >= 3  # reclaimed after the dead worker's lease expired
    assert await harness.held(merchant) == 0


async def test_a_try_stuck_beyond_the_timeout_is_cancelled_and_the_payout_fails(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(PAYOUT_TRY_TIMEOUT_S="1")
    merchant = await harness.merchant()
    ledger = harness.parts.ledger
    await asyncio.to_thread(ledger.stop)  # the ledger never answers a try
    try:
        _, payout, _ = await merchant.post_payout(payout_body())
        conn = await asyncpg.connect(harness.dsn)
        try:
            await conn.execute(
                "UPDATE global_tx SET created_at = $1", datetime.now(UTC) - timedelta(seconds=5)
            )
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(ledger.start, ready_timeout_s=60)
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "failed"), timeout_s=15)
    _, body = await merchant.get(f"/v1/payouts/{payout['id']}")
    assert body["failure_code"] == "try_timeout"
    assert await harness.held(merchant) == 0
    assert (await harness.submission(payout["id"]))[0] == 404  # no bank was asked


async def test_the_decision_cannot_flip_even_by_a_direct_update(harness: Harness) -> None:
    merchant = await harness.merchant()
    _, payout, _ = await merchant.post_payout(payout_body())
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "paid"), message="paid")
    conn = await asyncpg.connect(harness.dsn)
    try:
        try:
            await conn.execute("UPDATE global_tx SET decision = 'cancel'")
        except asyncpg.RaiseError as exc:
            assert "cannot change" in str(exc)
        else:
            raise AssertionError("the decision changed")
    finally:
        await conn.close()


async def test_a_participant_refusing_phase_two_keeps_retrying_and_raises_one_alert(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(PAYOUT_INQUIRY_SCHEDULE_S="3600")
    merchant = await harness.merchant()
    # The bank accepts now and completes three seconds later (a callback to the router).
    await harness.behave(async_rate=1.0, async_delay_min_ms=3_000, async_delay_max_ms=3_000)
    _, payout, _ = await merchant.post_payout(payout_body())
    await wait_until(lambda: _is(merchant.status_of(payout["id"]), "submitted"), message="sub")
    # The ledger lost the hold (as if it expired): its branch is cancelled at the ledger itself.
    gid = await harness.gid_of(payout["id"])
    status, cancelled = await harness.call(
        "POST", f"{harness.parts.ledger.url}/v1/tcc/{gid}/funds/cancel", {}
    )
    assert status == 200 and cancelled["status"] == "cancelled", cancelled
    assert await merchant.status_of(payout["id"]) == "submitted"  # before the bank completed
    await wait_until(
        lambda: _is(harness.fetchval("SELECT count(*) FROM alerts"), 1),
        timeout_s=15,
        message="alert",
    )
    refused_at = int(await harness.fetchval("SELECT attempts FROM global_tx"))
    await wait_until(
        lambda: _at_least(harness.fetchval("SELECT attempts FROM global_tx"), refused_at + 3),
        message="retries",
    )
    assert await harness.fetchval("SELECT code FROM alerts") == "tcc_phase2_refused"
    assert await harness.fetchval("SELECT count(*) FROM alerts") == 1
    assert await harness.fetchval("SELECT state FROM global_tx") == "confirming"
    assert "tcc_branch_cancelled" in str(await harness.fetchval("SELECT last_error FROM global_tx"))
    assert await merchant.status_of(payout["id"]) == "submitted"  # never shown paid


async def _at_least(value: Awaitable[Any], minimum: int) -> bool:
    return int(await value) >= minimum
