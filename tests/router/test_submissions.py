"""Every bank response class, against the real bank simulator process."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import msgspec

from tests.router.conftest import BankAdmin, Router, RouterFactory, submission
from tests.support import infra
from tests.support.waiting import wait_until

NORTH_FIRST = {
    "id": "north_first",
    "merchant_id": "*",
    "action": "prefer",
    "channels": ["ch_north"],
}


async def warmed(router: Router) -> None:
    """Wait for the start-up probes, so every channel scores on evidence."""

    async def probed() -> bool:
        channels = (await router.call("GET", "/v1/channels"))["channels"]
        return all(c["health"]["samples"] >= 1 for c in channels)

    await wait_until(probed, timeout_s=10, message="start-up probes")


async def _executions(admin: BankAdmin, reference: str) -> list[dict]:
    found = []
    for bank in ("northbank", "meridian", "atlas"):
        found += [t for t in await admin.executed(bank) if t["reference"] == reference]
    return found


async def test_a_paid_answer_succeeds_once_and_a_repeat_returns_the_same_attempt(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router()
    await warmed(router)
    body = submission()
    first = await router.call("POST", "/v1/submissions", json=body)
    assert first["status"] == "succeeded" and first["channel_id"] == "ch_north"
    assert first["fee_minor"] == 25 and first["attempt_id"].startswith("att_")
    again = await router.call("POST", "/v1/submissions", json=body)
    assert again["attempt_id"] == first["attempt_id"] and len(again["attempts"]) == 1
    journal = await _executions(bank_admin, first["attempt_id"])
    assert [(t["status"], t["amount_minor"]) for t in journal] == [("paid", 1000)]

    decision = await router.call("GET", f"/v1/decisions/{first['attempt_id']}")
    assert decision["chosen"] == "ch_north" and decision["reason"] == "highest_expected_value"
    scores = {c["channel_id"]: c["expected_value_minor"] for c in decision["candidates"]}
    assert scores["ch_north"] > scores["ch_atlas"] > scores["ch_meridian"]

    other = await router.call(
        "POST", "/v1/submissions", json={**body, "amount_minor": 999}, expect=422
    )
    assert other["code"] == "submission_mismatch"


async def test_concurrent_repeats_of_one_submission_reach_the_bank_once(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(rules=[NORTH_FIRST])
    body = submission()
    answers = await asyncio.gather(
        *(router.call("POST", "/v1/submissions", json=body) for _ in range(10))
    )
    attempt_ids = {a["attempt_id"] for a in answers}
    assert len(attempt_ids) == 1
    assert {a["status"] for a in answers} <= {"succeeded", "unknown"}
    assert len(await _executions(bank_admin, attempt_ids.pop())) == 1


async def test_a_definite_refusal_falls_back_to_the_next_channel_within_the_payout(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    # Prefer northbank so it is tried first even if an idle probe already saw the outage.
    router = await make_router(rules=[NORTH_FIRST])
    await bank_admin.behave("northbank", "outage")
    view = await router.call("POST", "/v1/submissions", json=submission())
    assert view["status"] == "succeeded" and view["channel_id"] == "ch_atlas"
    first, second = view["attempts"]
    assert (first["channel_id"], first["status"], first["failure_class"]) == (
        "ch_north",
        "failed",
        "definite_non_execution",
    )
    assert first["failure_code"] == "outage" and second["status"] == "succeeded"
    # Only the decisive outcome is announced; the refusal that led to a fallback is not.
    payloads = await router.service.pool.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'attempt.resolved'"
    )
    announced = [msgspec.json.decode(bytes(p["payload"]))["data"] for p in payloads]
    assert [(e["attempt_id"], e["status"]) for e in announced] == [
        (second["attempt_id"], "succeeded")
    ]
    assert await _executions(bank_admin, first["attempt_id"]) == []
    decision = await router.call("GET", f"/v1/decisions/{second['attempt_id']}")
    excluded = {c["channel_id"]: c["excluded_by"] for c in decision["candidates"]}
    assert excluded["ch_north"] == "already_attempted"
    channels = await router.call("GET", "/v1/channels")
    north = next(c for c in channels["channels"] if c["id"] == "ch_north")
    assert north["health"]["counts"]["definite_non_execution"] == 1


async def test_fallback_is_bounded_and_ends_failed_when_every_bank_refuses(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(env={"ROUTER_FALLBACK_ATTEMPTS_MAX": "2"})
    for bank in ("northbank", "atlas", "meridian"):
        await bank_admin.behave(bank, "outage")
    body = submission()
    view = await router.call("POST", "/v1/submissions", json=body)
    assert view["status"] == "failed" and view["failure_class"] == "definite_non_execution"
    assert len(view["attempts"]) == 2
    repeat = await router.call("POST", "/v1/submissions", json=body)
    assert repeat["status"] == "failed" and len(repeat["attempts"]) == 2


async def test_a_beneficiary_error_fails_without_fallback_or_health_penalty(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(rules=[NORTH_FIRST])
    body = submission(
        beneficiary={"name": "Bob", "account_number": "CLOSED123456", "bank_code": "ABC"}
    )
    view = await router.call("POST", "/v1/submissions", json=body)
    assert view["status"] == "failed" and view["failure_class"] == "beneficiary_error"
    assert view["failure_code"] == "account_closed" and len(view["attempts"]) == 1
    channels = await router.call("GET", "/v1/channels")
    north = next(c for c in channels["channels"] if c["id"] == "ch_north")
    assert north["health"]["counts"]["beneficiary_error"] == 1
    # A fault among at most two samples would put the rate at or below 50%.
    assert north["health"]["success_rate_ppm"] >= 990_000
    assert north["health"]["counts"]["definite_non_execution"] == 0
    assert north["health"]["breaker_state"] == "closed"


async def _resolved_events(
    prefix: str,
) -> tuple[aio_pika.abc.AbstractRobustConnection, asyncio.Queue]:
    """A throw-away queue bound to attempt.resolved on the test exchange."""
    connection = await aio_pika.connect_robust(infra.amqp_url())
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        f"{prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(f"{prefix}.test.{uuid.uuid4().hex[:6]}", exclusive=True)
    await queue.bind(exchange, routing_key="attempt.resolved")
    received: asyncio.Queue = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            await received.put(msgspec.json.decode(message.body))

    await queue.consume(on_message)
    return connection, received


async def test_an_accepted_transfer_is_submitted_then_resolved_by_the_signed_callback(
    make_router: RouterFactory, bank_admin: BankAdmin, amqp_prefix: str
) -> None:
    # Inquiries wait a minute: only the bank's signed callback can resolve it in time.
    router = await make_router(rules=[NORTH_FIRST], env={"ROUTER_INQUIRY_BASE_MS": "60000"})
    connection, events = await _resolved_events(amqp_prefix)
    try:
        await bank_admin.behave("northbank", "normal", async_rate=1.0)
        view = await router.call("POST", "/v1/submissions", json=submission())
        assert view["status"] == "submitted"
        payout_id, attempt_id = view["payout_id"], view["attempt_id"]

        async def resolved() -> bool:
            v = await router.call("GET", f"/v1/submissions/{payout_id}")
            return v["status"] == "succeeded" and v["attempts"][0]["resolved_by"] == "callback"

        await wait_until(resolved, timeout_s=10, message="async completion")
        event = await asyncio.wait_for(events.get(), timeout=10)
        assert event["event_type"] == "attempt.resolved"
        assert event["data"]["attempt_id"] == attempt_id
        assert event["data"]["status"] == "succeeded" and event["data"]["fee_minor"] == 25
    finally:
        await connection.close()


async def test_a_lost_response_stays_unknown_without_fallback_until_inquiry_finds_it_paid(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(rules=[NORTH_FIRST])
    await bank_admin.behave(
        "northbank", "normal", lost_response_rate=1.0, lost_response_mode="drop"
    )
    view = await router.call("POST", "/v1/submissions", json=submission())
    assert view["status"] == "unknown" and len(view["attempts"]) == 1  # never fell back
    attempt_id = view["attempt_id"]
    await bank_admin.behave("northbank")

    async def resolved() -> bool:
        v = await router.call("GET", f"/v1/submissions/{view['payout_id']}")
        return v["status"] == "succeeded"

    await wait_until(resolved, timeout_s=10, message="inquiry resolves the lost response")
    final = await router.call("GET", f"/v1/submissions/{view['payout_id']}")
    assert final["attempts"][0]["resolved_by"] == "inquiry" and len(final["attempts"]) == 1
    assert len(await _executions(bank_admin, attempt_id)) == 1


async def test_an_ambiguous_5xx_is_unknown_and_the_inquiry_endpoint_resolves_it(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(rules=[NORTH_FIRST], env={"ROUTER_INQUIRY_BASE_MS": "60000"})
    await bank_admin.behave("northbank", "normal", ambiguous_error_rate=1.0)
    view = await router.call("POST", "/v1/submissions", json=submission())
    assert view["status"] == "unknown" and len(view["attempts"]) == 1
    assert view["attempts"][0]["failure_code"] in ("bank_internal_error", "http_502", "http_504")
    now = await router.call("POST", f"/v1/submissions/{view['payout_id']}/inquire")
    assert now["status"] == "succeeded" and now["attempts"][0]["resolved_by"] == "inquiry"
    assert len(await _executions(bank_admin, view["attempt_id"])) == 1


async def test_an_unknown_attempt_resolved_as_refused_fails_the_payout_without_falling_back(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(rules=[NORTH_FIRST])
    # The bank records a refusal, but the reply is lost: only the inquiry can tell.
    await bank_admin.behave(
        "northbank", "normal", success_rate=0.0, lost_response_rate=1.0, lost_response_mode="drop"
    )
    view = await router.call("POST", "/v1/submissions", json=submission())
    assert view["status"] == "unknown"
    await bank_admin.behave("northbank")

    async def failed() -> Any:
        v = await router.call("GET", f"/v1/submissions/{view['payout_id']}")
        return v if v["status"] == "failed" else None

    final = await wait_until(failed, timeout_s=10, message="inquiry finds the refusal")
    assert final["failure_class"] == "definite_non_execution"
    assert final["failure_code"] == "rejected" and len(final["attempts"]) == 1
    # A repeat of the submission does not start a second attempt after the payout was told.
    again = await router.call(
        "POST", "/v1/submissions", json={**submission(view["payout_id"]), "gid": "x"}, expect=422
    )
    assert again["code"] == "submission_mismatch"
    journal = await _executions(bank_admin, view["attempt_id"])
    assert [t["status"] for t in journal] == ["rejected"]  # recorded, never paid


async def test_a_bank_rejection_answered_at_once_is_definite_and_falls_back(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(rules=[NORTH_FIRST])
    await bank_admin.behave("northbank", "normal", success_rate=0.0)  # failure mix: rejected
    view = await router.call("POST", "/v1/submissions", json=submission())
    first, second = view["attempts"]
    assert (first["status"], first["failure_class"], first["failure_code"]) == (
        "failed",
        "definite_non_execution",
        "rejected",
    )
    assert second["status"] == "succeeded" and view["status"] == "succeeded"
    journal = await _executions(bank_admin, first["attempt_id"])
    assert [t["status"] for t in journal] == ["rejected"]  # the bank recorded, never paid
