"""End to end: payouts through the real payout, ledger, router and bank simulator processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import BANKS, Api, Merchant, payout_body
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FINAL = ("paid", "failed", "canceled", "returned")


async def settled(merchant: Merchant, payout_id: str, timeout_s: float = 20) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body = await merchant.payout(payout_id)
        return body if body["status"] in FINAL else None

    result: dict[str, Any] = await wait_until(
        probe, timeout_s=timeout_s, interval_s=0.1, message=f"{payout_id} settled"
    )
    return result


async def executed_anywhere(api: Api) -> list[dict[str, Any]]:
    """Every transfer the simulated banks really executed (their truth journals)."""
    return [t for bank in BANKS for t in await api.executed(bank)]


async def test_happy_path_pays_and_posts_amount_and_fee_exactly_once(api: Api) -> None:
    merchant = await api.merchant(funds=1_000_000, fees={"fixed": 30, "bps": 10})
    status, created, _ = await merchant.create(payout_body(amount=20_000))
    assert status == 201, created
    assert created["status"] == "processing" and created["fee"] == 30 + 20
    payout = await settled(merchant, created["id"])
    assert payout["status"] == "paid", payout
    assert payout["channel"] in ("ch_e2e_north", "ch_e2e_atlas")
    account = await merchant.account()
    assert account["debits_posted"] == 20_050 and account["debits_pending"] == 0
    assert account["available"] == 1_000_000 - 20_050
    submission = await api.submission(created["id"])
    assert submission["status"] == "succeeded" and len(submission["attempts"]) == 1
    executed = [
        t for t in await executed_anywhere(api) if t["reference"] == submission["attempt_id"]
    ]
    assert len(executed) == 1 and executed[0]["amount_minor"] == 20_000


async def test_a_definite_refusal_falls_back_to_the_next_channel(api: Api) -> None:
    merchant = await api.merchant()
    # Find the channel the router prefers right now, then take its bank down.
    _, probe, _ = await merchant.create(payout_body(amount=5_000))
    preferred = (await settled(merchant, probe["id"]))["channel"]
    down, up = ("northbank", "atlas") if preferred == "ch_e2e_north" else ("atlas", "northbank")
    await api.behave(down, "outage")
    _, created, _ = await merchant.create(payout_body(amount=5_000))
    payout = await settled(merchant, created["id"])
    assert payout["status"] == "paid", payout
    assert payout["channel"] != preferred
    submission = await api.submission(created["id"])
    attempts = submission["attempts"]
    assert attempts[0]["bank"] == down and attempts[0]["failure_class"] == "definite_non_execution"
    assert attempts[-1]["bank"] == up and attempts[-1]["status"] == "succeeded"
    assert (await merchant.account())["debits_pending"] == 0


async def test_a_beneficiary_error_fails_without_fallback_and_releases_the_hold(api: Api) -> None:
    merchant = await api.merchant(funds=100_000)
    _, created, _ = await merchant.create(payout_body(account="INVALID000123"))
    payout = await settled(merchant, created["id"])
    assert payout["status"] == "failed" and payout["failure_code"] == "invalid_account"
    submission = await api.submission(created["id"])
    assert len(submission["attempts"]) == 1  # no fallback on a beneficiary error
    account = await merchant.account()
    assert account["debits_pending"] == 0 and account["debits_posted"] == 0
    assert account["available"] == 100_000


async def test_a_lost_response_stays_processing_until_the_inquiry_resolves_it(api: Api) -> None:
    for bank in BANKS:
        await api.behave(bank, "lost_responses", lost_response_rate=1.0)
    merchant = await api.merchant(funds=100_000)
    _, created, _ = await merchant.create(payout_body(amount=3_000))

    async def unknown() -> bool:
        sub = await api.call(
            "GET",
            f"{api.suite.router.url}/v1/submissions/{created['id']}",
            headers=api.service,
        )
        return sub[0] == 200 and sub[1]["status"] == "unknown"

    await wait_until(unknown, timeout_s=15, message="attempt unknown")
    # A bank in lost_responses mode still answers inquiries: the payout's inquiry (1 s later)
    # could settle it before the reads below. An outage keeps it unresolved until we say so.
    for bank in BANKS:
        await api.behave(bank, "outage")
    assert (await merchant.payout(created["id"]))["status"] == "processing"
    assert (await merchant.account())["debits_pending"] == 3_000 + 33
    for bank in BANKS:
        await api.behave(bank)  # the banks answer inquiries again
    payout = await settled(merchant, created["id"])
    assert payout["status"] == "paid"
    submission = await api.submission(created["id"])
    assert len(submission["attempts"]) == 1  # never failed over from an unknown attempt
    executed = [
        t for t in await executed_anywhere(api) if t["reference"] == submission["attempt_id"]
    ]
    assert len(executed) == 1
    account = await merchant.account()
    assert account["debits_pending"] == 0 and account["debits_posted"] == 3_033


async def test_twenty_concurrent_duplicates_make_one_payout_one_hold_one_bank_execution(
    api: Api,
) -> None:
    import asyncio

    merchant = await api.merchant(funds=1_000_000, fees={"fixed": 0, "bps": 0})
    body = payout_body(amount=7_000)
    results = await asyncio.gather(*(merchant.create(body, key="same-key") for _ in range(20)))
    assert {status for status, _, _ in results} <= {201, 409}
    ids = {created["id"] for status, created, _ in results if status == 201}
    assert len(ids) == 1
    (payout_id,) = ids
    payout = await settled(merchant, payout_id)
    assert payout["status"] == "paid"
    _, listing = await merchant.get("/v1/payouts?limit=100")
    assert [p["id"] for p in listing["data"]] == [payout_id]
    account = await merchant.account()
    assert account["debits_posted"] == 7_000 and account["debits_pending"] == 0
    submission = await api.submission(payout_id)
    executed = [
        t for t in await executed_anywhere(api) if t["reference"] == submission["attempt_id"]
    ]
    assert len(executed) == 1


async def test_insufficient_funds_fails_and_holds_nothing(api: Api) -> None:
    merchant = await api.merchant(funds=1_000)
    status, created, _ = await merchant.create(payout_body(amount=50_000))
    assert status == 201
    assert created["status"] == "failed" and created["failure_code"] == "insufficient_funds"
    account = await merchant.account()
    assert account["debits_pending"] == 0 and account["available"] == 1_000
    status, _ = await merchant.get(f"/v1/payouts/{created['id']}")
    status_router, _, _ = await api.call(
        "GET", f"{api.suite.router.url}/v1/submissions/{created['id']}", headers=api.service
    )
    assert status_router == 404  # never submitted to any bank


async def test_another_merchants_payout_is_not_found(api: Api) -> None:
    alice = await api.merchant()
    bob = await api.merchant()
    _, created, _ = await alice.create(payout_body(amount=1_000))
    status, problem = await bob.get(f"/v1/payouts/{created['id']}")
    assert status == 404 and problem["code"] == "payout_not_found"
    status, _ = await bob.post(f"/v1/payouts/{created['id']}/cancel")
    assert status == 404


async def test_limits_refuse_and_the_review_threshold_waits_for_an_operator(api: Api) -> None:
    merchant = await api.merchant(
        funds=1_000_000, limits={"per_payout_max": 100_000, "review_threshold": 50_000}
    )
    status, problem, _ = await merchant.create(payout_body(amount=100_001))
    assert status == 422 and problem["code"] == "limit_exceeded"
    _, waiting, _ = await merchant.create(payout_body(amount=60_000))
    assert waiting["status"] == "pending_review"
    assert (await merchant.account())["debits_pending"] == 0
    status, _ = await api.admin("POST", f"/admin/payouts/{waiting['id']}/approve", {})
    assert status == 200
    payout = await settled(merchant, waiting["id"])
    assert payout["status"] == "paid"
    assert [h["status"] for h in payout["status_history"]] == [
        "pending_review",
        "processing",
        "paid",
    ]


async def test_a_batch_mixing_good_and_bad_rows(api: Api) -> None:
    merchant = await api.merchant(funds=1_000_000)
    items = [
        payout_body(amount=1_000, reference="batch-good-1"),
        {**payout_body(), "currency": "eur"},
        payout_body(amount=2_000, account="INVALID0000999", reference="batch-beneficiary"),
        payout_body(amount=3_000, reference="batch-good-1"),
        payout_body(amount=4_000, reference="batch-good-2"),
    ]
    status, batch, _ = await api.call(
        "POST",
        api.suite.payout.url + "/v1/payout_batches",
        json={"items": items},
        headers={**merchant.headers, "Idempotency-Key": "e2e-batch"},
    )
    assert status == 202, batch

    async def done() -> Any:
        _, view = await merchant.get(f"/v1/payout_batches/{batch['id']}")
        return view if view["status"] == "completed" else None

    view = await wait_until(done, timeout_s=15, message="batch processed")
    statuses = [item["status"] for item in view["items"]]
    assert statuses == ["created", "rejected", "created", "rejected", "created"]
    finals = {}
    for item in view["items"]:
        if item["payout_id"]:
            finals[item["reference"]] = (await settled(merchant, item["payout_id"]))["status"]
    assert finals == {"batch-good-1": "paid", "batch-beneficiary": "failed", "batch-good-2": "paid"}
    assert (await merchant.account())["debits_pending"] == 0
