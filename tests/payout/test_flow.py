"""Payout flows through the coordinator with the real ledger, router and bank simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from tests.payout.conftest import CHANNEL, Harness, payout_body
from tests.support.waiting import wait_until


async def test_happy_path_holds_then_posts_amount_and_fee_and_ends_paid(harness: Harness) -> None:
    merchant = await harness.merchant(funds=100_000, fees={"fixed": 25, "bps": 100})
    fees_before = (await harness.ledger_account("fee_revenue.EUR"))["credits_posted"]
    settled_before = (await harness.ledger_account("settlement.EUR"))["credits_posted"]
    status, payout, headers = await merchant.post_payout(payout_body(amount=10_000))
    assert status == 201, payout
    assert payout["status"] == "processing"
    assert payout["fee"] == 25 + 100  # fixed + 1% of 10,000
    assert payout["beneficiary"]["account_number"] == "******************3000"
    assert "Idempotent-Replayed" not in headers

    async def paid() -> bool:
        return await merchant.status_of(payout["id"]) == "paid"

    await wait_until(paid, timeout_s=10, message="payout paid")
    account = await merchant.account()
    assert account["debits_posted"] == 10_125 and account["debits_pending"] == 0
    fees = await harness.ledger_account("fee_revenue.EUR")
    assert fees["credits_posted"] - fees_before == 125
    settlement = await harness.ledger_account("settlement.EUR")
    assert settlement["credits_posted"] - settled_before == 10_000
    assert await harness.executions(payout["id"]) == 1
    _, body = await merchant.get(f"/v1/payouts/{payout['id']}")
    assert [h["status"] for h in body["status_history"]] == ["processing", "paid"]
    assert body["channel"] == CHANNEL


async def test_twenty_concurrent_duplicates_make_one_payout_one_hold_one_submission(
    harness: Harness,
) -> None:
    merchant = await harness.merchant(funds=1_000_000)
    body = payout_body(amount=5_000)
    results = await asyncio.gather(*(merchant.post_payout(body, key="dup-key") for _ in range(20)))
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in results if r[0] == 201]
    assert created, statuses
    assert len({p["id"] for _, p, _ in created}) == 1
    assert sum(1 for _, _, h in created if h.get("Idempotent-Replayed") != "true") == 1
    assert all(p["code"] == "idempotency_in_flight" for s, p, _ in results if s == 409)
    payout_id = created[0][1]["id"]
    assert await harness.fetchval("SELECT count(*) FROM payouts") == 1
    await wait_until(
        lambda: _is(merchant.status_of(payout_id), "paid"), timeout_s=10, message="paid"
    )
    # One hold: the merchant paid amount + fee once (a retried try is idempotent per branch).
    assert await harness.fetchval("SELECT count(*) FROM global_tx") == 1
    status, history = await harness.call(
        "GET", f"{harness.parts.ledger.url}/v1/accounts/{merchant.id}.EUR/transfers?limit=100"
    )
    assert status == 200, history
    kinds = sorted(t["kind"] for t in history["transfers"])
    assert kinds == ["pending", "pending", "post", "post", "single"]  # funding + one hold
    account = await merchant.account()
    assert account["debits_posted"] == 5_000 + created[0][1]["fee"]
    assert account["debits_pending"] == 0
    assert await harness.executions(payout_id) == 1  # one bank execution
    status, replay, headers = await merchant.post_payout(body, key="dup-key")
    assert status == 201 and headers.get("Idempotent-Replayed") == "true"
    assert replay == created[0][1]


async def test_idempotency_key_with_other_body_is_422_and_missing_key_is_400(
    harness: Harness,
) -> None:
    merchant = await harness.merchant()
    status, _, _ = await merchant.post_payout(payout_body(amount=100), key="k1")
    assert status == 201
    status, problem, _ = await merchant.post_payout(payout_body(amount=101), key="k1")
    assert status == 422 and problem["code"] == "idempotency_key_reused"
    resp = await harness.client.post("/v1/payouts", json=payout_body(), headers=merchant.headers)
    assert resp.status == 400 and (await resp.json())["code"] == "idempotency_key_missing"
    assert await harness.fetchval("SELECT count(*) FROM payouts") == 1


async def test_idempotency_keys_are_scoped_per_merchant(harness: Harness) -> None:
    alice = await harness.merchant()
    bob = await harness.merchant()
    body = payout_body(amount=700, reference="same-ref")
    status_a, payout_a, _ = await alice.post_payout(body, key="shared-key")
    status_b, payout_b, headers_b = await bob.post_payout(body, key="shared-key")
    assert status_a == 201 and status_b == 201
    assert payout_a["id"] != payout_b["id"]
    assert headers_b.get("Idempotent-Replayed") is None
    # Neither can read the other's payout: another merchant's id is simply not found.
    status, problem = await bob.get(f"/v1/payouts/{payout_a['id']}")
    assert status == 404 and problem["code"] == "payout_not_found"
    status, problem = await bob.post(f"/v1/payouts/{payout_a['id']}/cancel")
    assert status == 404
    _, listing = await bob.get("/v1/payouts?limit=100")
    assert [p["id"] for p in listing["data"]] == [payout_b["id"]]


async def test_insufficient_funds_fails_at_once_and_holds_nothing(harness: Harness) -> None:
    merchant = await harness.merchant(funds=1_000)
    status, payout, _ = await merchant.post_payout(payout_body(amount=5_000))
    assert status == 201
    assert payout["status"] == "failed"
    assert payout["failure_code"] == "insufficient_funds"
    assert await harness.held(merchant) == 0
    # The router's quota branch was never tried, and its cancel left a tombstone: a late try
    # of that branch is refused by the real router.
    gid = await harness.gid_of(payout["id"])
    status, problem = await harness.call(
        "POST",
        f"{harness.parts.router.url}/v1/tcc/{gid}/quota/try",
        _quota_try(merchant.id, payout),
    )
    assert status == 409 and problem["code"] == "tcc_branch_cancelled", problem
    assert (await harness.submission(payout["id"]))[0] == 404  # no bank was asked
    assert await harness.fetchval("SELECT state FROM global_tx") == "cancelled"


async def test_beneficiary_error_fails_the_payout_and_releases_both_holds(
    harness: Harness,
) -> None:
    merchant = await harness.merchant()
    _, payout, _ = await merchant.post_payout(payout_body(account="INVALID0000000001"))
    await wait_until(
        lambda: _is(merchant.status_of(payout["id"]), "failed"), timeout_s=10, message="failed"
    )
    _, body = await merchant.get(f"/v1/payouts/{payout['id']}")
    assert body["failure_code"] == "invalid_account"
    assert await harness.held(merchant) == 0
    assert (await merchant.account())["debits_posted"] == 0
    # The quota branch was cancelled: confirming it now is refused by the real router.
    gid = await harness.gid_of(payout["id"])
    status, problem = await harness.call(
        "POST", f"{harness.parts.router.url}/v1/tcc/{gid}/quota/confirm", {}
    )
    assert status == 409 and problem["code"] == "tcc_branch_cancelled", problem


async def test_unknown_outcome_stays_processing_until_an_inquiry_resolves_it(
    harness: Harness,
) -> None:
    merchant = await harness.merchant()
    # The bank executes the transfer but the reply is lost: the attempt is unknown.
    await harness.behave("lost_responses", lost_response_rate=1.0)
    _, payout, _ = await merchant.post_payout(payout_body())
    await wait_until(
        lambda: _is(harness.fetchval("SELECT state FROM global_tx"), "awaiting"),
        timeout_s=10,
        message="awaiting",
    )
    # The bank cannot answer inquiries for a while (an outage): the payout keeps waiting.
    await harness.behave("outage")
    assert await merchant.status_of(payout["id"]) == "processing"
    assert await harness.held(merchant) > 0  # the money may have left: nothing is released

    async def inquired_twice() -> bool:
        status, submission = await harness.submission(payout["id"])
        return status == 200 and submission["attempts"][0]["inquiries"] >= 2

    await wait_until(inquired_twice, timeout_s=15, message="two unanswered inquiries")
    assert await merchant.status_of(payout["id"]) == "processing"
    await harness.behave("normal")
    await wait_until(
        lambda: _is(merchant.status_of(payout["id"]), "paid"), timeout_s=15, message="paid"
    )
    _, submission = await harness.submission(payout["id"])
    assert len(submission["attempts"]) == 1 and submission["attempts"][0]["inquiries"] >= 2
    assert await harness.executions(payout["id"]) == 1
    assert await harness.held(merchant) == 0


async def test_unresolved_past_the_window_goes_to_manual_review_then_operator_marks_paid(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(PAYOUT_RESOLUTION_WINDOW_S="1")
    merchant = await harness.merchant()
    # Executed, reply lost; then the bank answers no inquiry (an outage) past the window.
    await harness.behave("lost_responses", lost_response_rate=1.0)
    _, payout, _ = await merchant.post_payout(payout_body())
    await wait_until(
        lambda: _is(harness.fetchval("SELECT state FROM global_tx"), "awaiting"),
        timeout_s=10,
        message="awaiting",
    )
    await harness.behave("outage")
    await wait_until(
        lambda: _is(merchant.status_of(payout["id"]), "manual_review"),
        timeout_s=15,
        message="manual review",
    )
    assert await harness.held(merchant) > 0
    alerts = await harness.fetch("SELECT code FROM alerts")
    assert [a["code"] for a in alerts] == ["payout_outcome_unresolved"]
    status, queue = await harness.admin("GET", "/admin/payouts?status=manual_review")
    assert status == 200 and [p["id"] for p in queue["data"]] == [payout["id"]]
    status, paid = await harness.admin(
        "POST",
        f"/admin/payouts/{payout['id']}/mark_paid",
        {"evidence": "statement line 7, bank ref NB123"},
    )
    assert status == 200, paid
    await wait_until(
        lambda: _is(merchant.status_of(payout["id"]), "paid"), timeout_s=10, message="paid"
    )
    assert await harness.held(merchant) == 0
    _, audit = await harness.admin("GET", f"/admin/payouts/{payout['id']}/audit")
    assert [r["action"] for r in audit["data"]] == ["payout_marked_paid"]
    assert audit["data"][0]["detail"]["evidence"].startswith("statement line 7")
    # The decision never flips: marking it failed now is refused.
    status, problem = await harness.admin(
        "POST", f"/admin/payouts/{payout['id']}/mark_failed", {"reason": "changed my mind"}
    )
    assert status == 409 and problem["code"] == "payout_not_in_review"


async def _is(awaitable: Awaitable[Any], expected: Any) -> bool:
    return (await awaitable) == expected


def _quota_try(merchant_id: str, payout: dict[str, Any]) -> dict[str, Any]:
    return {
        "payout_id": payout["id"],
        "merchant_id": merchant_id,
        "amount_minor": payout["amount"],
        "currency": payout["currency"],
        "beneficiary_bank_code": payout["beneficiary"]["bank_code"],
    }
