"""A bank slower than the router's timeout: it has the transfer (``processing``) long after the
not-found grace; the router keeps inquiring, never fails over, and ends with one execution."""

from __future__ import annotations

import time
from typing import Any

from tests.router.conftest import BANKS, BankAdmin, RouterFactory, submission
from tests.support.waiting import wait_until

NORTH_FIRST = {
    "id": "north_first",
    "merchant_id": "*",
    "action": "prefer",
    "channels": ["ch_north"],
}


async def test_a_slow_bank_still_processing_after_the_grace_is_never_failed_over_and_pays_once(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    # The chaos run's numbers: bank timeout 1.5 s, not-found grace 3 s. The bank takes the
    # transfer at once and executes it 6 s later; its inquiries stay fast.
    router = await make_router(rules=[NORTH_FIRST])
    assert router.settings.bank_timeout_ms == 1500 and router.settings.not_found_grace_s == 3.0
    await bank_admin.behave("northbank", "normal", processing_delay_ms=6000)
    started = time.monotonic()
    view = await router.call("POST", "/v1/submissions", json=submission())
    assert view["status"] == "unknown" and len(view["attempts"]) == 1, view
    assert view["attempts"][0]["failure_code"] == "timeout"
    attempt_id, payout_id = view["attempt_id"], view["payout_id"]

    async def inquired_past_the_grace_while_processing() -> dict[str, Any]:
        v = await router.call("GET", f"/v1/submissions/{payout_id}")
        assert v["status"] == "unknown" and len(v["attempts"]) == 1, v  # never failed over
        in_flight = await bank_admin.executed_with_status("northbank", "processing")
        still = attempt_id in {t["reference"] for t in in_flight}
        late = time.monotonic() - started > router.settings.not_found_grace_s + 0.5
        return v if still and late and v["attempts"][0]["inquiries"] >= 3 else {}

    during = await wait_until(
        inquired_past_the_grace_while_processing,
        timeout_s=5.5,
        message="inquiries answered processing after the grace",
    )
    assert during["attempts"][0]["status"] == "unknown"

    async def succeeded() -> dict[str, Any]:
        v = await router.call("GET", f"/v1/submissions/{payout_id}")
        assert v["status"] in ("unknown", "succeeded") and len(v["attempts"]) == 1, v
        return v if v["status"] == "succeeded" else {}

    final = await wait_until(succeeded, timeout_s=15, message="the inquiry finds it paid")
    attempt = final["attempts"][0]
    assert (attempt["attempt_id"], attempt["channel_id"]) == (attempt_id, "ch_north")
    assert attempt["status"] == "succeeded" and attempt["resolved_by"] == "inquiry"
    executions = [
        (bank, t["reference"], t["status"])
        for bank in BANKS
        for t in await bank_admin.executed(bank)
        if t["reference"] == attempt_id or t["reference"].startswith(payout_id)
    ]
    assert executions == [("northbank", attempt_id, "paid")]
    # Nothing of this payout reached another bank: the other channels saw no attempt.
    rows = await router.service.pool.fetch(
        "SELECT attempt_id FROM attempt WHERE payout_id = $1", payout_id
    )
    assert [r["attempt_id"] for r in rows] == [attempt_id]
