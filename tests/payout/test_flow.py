"""Payout flows through the coordinator with scripted participants."""

from __future__ import annotations

from tests.payout.conftest import Harness, payout_body
from tests.support.waiting import wait_until


async def test_happy_path_holds_then_posts_amount_and_fee_and_ends_paid(harness: Harness) -> None:
    merchant = await harness.merchant(funds=100_000, fees={"fixed": 25, "bps": 100})
    status, payout, headers = await merchant.post_payout(payout_body(amount=10_000))
    assert status == 201, payout
    assert payout["status"] == "processing"
    assert payout["fee"] == 25 + 100  # fixed + 1% of 10,000
    assert payout["beneficiary"]["account_number"] == "******************3000"
    assert "Idempotent-Replayed" not in headers

    async def paid() -> bool:
        return await merchant.status_of(payout["id"]) == "paid"

    await wait_until(paid, timeout_s=10, message="payout paid")
    account = harness.ledger.accounts[f"{merchant.id}.EUR"]
    assert account.debits_posted == 10_125 and account.debits_pending == 0
    assert harness.ledger.accounts["fee_revenue.EUR"].credits_posted == 125
    assert harness.ledger.accounts["settlement.EUR"].credits_posted == 10_000
    assert harness.router.submissions[payout["id"]] == 1
    _, body = await merchant.get(f"/v1/payouts/{payout['id']}")
    assert [h["status"] for h in body["status_history"]] == ["processing", "paid"]
    assert body["channel"] == "ch_fake"
