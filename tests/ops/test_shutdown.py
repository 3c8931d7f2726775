"""Graceful shutdown: under a light, steady stream of payouts, each service in turn gets
SIGTERM, must exit by itself (code 0) within a bound, and is started again. Afterwards no
accepted payout is lost or stuck, none is paid twice, and no hold is left in the ledger."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from tests.ops.conftest import Merchant
from tests.support.suite import SERVICE_TOKEN, Suite
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

EXIT_BOUND_S = 20.0  # aiohttp's 10 s request drain + consumers' 10 s drain, at most
ORDER = ("banksim", "ledger", "router", "payout", "recon")


class Load:
    """Payouts one after another; a refused or failed call is retried with the same
    idempotency key until the service answers, as a careful merchant does."""

    def __init__(self, merchant: Merchant) -> None:
        self.merchant = merchant
        self.accepted: dict[str, dict[str, Any]] = {}
        self.retries = 0
        self.stop = asyncio.Event()

    async def one(self, n: int) -> None:
        key = uuid.uuid4().hex
        body = {
            "amount": 1_000 + n,
            "currency": "EUR",
            "beneficiary": {
                "name": "Jane Doe",
                "account_number": "GB29NWBK60161331926819",
                "bank_code": "NRTHGB2L",
            },
            "reference": f"ops-sd-{key[:12]}",
        }
        while True:
            try:
                status, answer, _ = await self.merchant.post_payout(body, key)
            except (aiohttp.ClientError, TimeoutError):
                status, answer = 0, None
            if status in (200, 201):
                self.accepted[answer["id"]] = answer
                return
            assert status in (0, 409, 502, 503, 504), (status, answer)
            self.retries += 1
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            await self.one(n)
            n += 1
            await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_each_service_restarted_under_load_loses_and_strands_no_payout(
    ops_suite: Suite, merchant: Merchant, session: aiohttp.ClientSession
) -> None:
    load = Load(merchant)
    runner = asyncio.create_task(load.run())
    exits: dict[str, tuple[int | None, float]] = {}
    try:
        for name in ORDER:
            before = len(load.accepted)

            async def moving(before: int = before) -> bool:
                return len(load.accepted) >= before + 3

            await wait_until(moving, timeout_s=30, message=f"payouts flowing before {name}")
            started = time.monotonic()
            code = await asyncio.to_thread(ops_suite[name].stop, EXIT_BOUND_S)
            exits[name] = (code, round(time.monotonic() - started, 2))
            await asyncio.to_thread(ops_suite[name].start, ready_timeout_s=60)
        target = len(load.accepted) + 3

        async def flowing() -> bool:
            return len(load.accepted) >= target

        await wait_until(flowing, timeout_s=30, message="payouts flowing after the restarts")
    finally:
        load.stop.set()
        await runner
    print(f"exits {exits}; accepted {len(load.accepted)}; retried calls {load.retries}")
    for name, (code, seconds) in exits.items():
        assert code == 0, (name, code, ops_suite[name].tail())
        assert seconds < EXIT_BOUND_S, (name, seconds)

    # Not lost, not stuck: every accepted payout reaches a final state.
    async def all_final() -> dict[str, str] | None:
        states = {pid: (await merchant.payout(pid))["status"] for pid in load.accepted}
        return states if set(states.values()) <= {"paid", "failed"} else None

    states = await wait_until(all_final, timeout_s=60, interval_s=0.5, message="all final")
    paid = [pid for pid, s in states.items() if s == "paid"]
    failed = {
        pid: (await merchant.payout(pid))["failure_code"]
        for pid, s in states.items()
        if s == "failed"
    }
    print(f"paid {len(paid)}; failed {failed}")
    # While the bank simulator restarts, both channels refuse connections (a definite
    # non-execution), their breakers open, and payouts fail cleanly with their holds released.
    assert set(failed.values()) <= {"no_eligible_channel"}, failed
    assert len(paid) >= len(states) // 2, states

    # Paid once each at the bank, and the ledger holds nothing any more.
    async with session.get(
        f"{ops_suite.urls['banksim']}/admin/banks/northbank/executed?limit=5000",
        headers={"X-Service-Token": SERVICE_TOKEN},
    ) as resp:
        executed = (await resp.json())["transfers"]
    async with session.get(
        f"{ops_suite.urls['banksim']}/admin/banks/atlas/executed?limit=5000",
        headers={"X-Service-Token": SERVICE_TOKEN},
    ) as resp:
        executed += (await resp.json())["transfers"]
    references = [t["reference"] for t in executed]
    for pid in paid:
        async with session.get(
            f"{ops_suite.urls['router']}/v1/submissions/{pid}",
            headers={"X-Service-Token": SERVICE_TOKEN},
        ) as resp:
            submission = await resp.json()
        mine = {a["attempt_id"] for a in submission["attempts"]}
        assert sum(1 for r in references if r in mine) == 1, (pid, submission)
    async with session.get(
        f"{ops_suite.urls['ledger']}/v1/accounts/{merchant.id}.EUR",
        headers={"X-Service-Token": SERVICE_TOKEN},
    ) as resp:
        account = await resp.json()
    assert account["debits_pending"] == 0, account
