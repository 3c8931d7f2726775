"""SIGKILL the payout process mid-flow, restart it: every payout still ends correctly, nothing
stays held, nothing is posted or executed twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.kit import db
from tests.e2e.conftest import BANKS, Api, Merchant, payout_body
from tests.support import infra
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

PAYOUTS = 24


async def _create_until_answered(merchant: Merchant, body: dict[str, Any], key: str) -> str:
    """What a merchant does when the connection drops: retry with the same Idempotency-Key."""
    while True:
        try:
            status, created, _ = await merchant.create(body, key=key)
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.2)  # back off while the service restarts
            continue
        if status == 409:  # the first attempt is still in flight (or its lease not yet over)
            await asyncio.sleep(0.2)
            continue
        assert status == 201, created
        return str(created["id"])


async def test_sigkill_of_the_payout_process_mid_flow_then_restart_ends_every_payout_once(
    api: Api, run_id: str
) -> None:
    for bank in BANKS:
        await api.behave(bank, latency_median_ms=150, latency_p99_ms=400)
    merchant = await api.merchant(funds=10_000_000, fees={"fixed": 10, "bps": 0})
    dsn = db.service_dsn(infra.database_url(), f"{run_id}_e2e_", "payout")
    bodies = [payout_body(amount=1_000 + n) for n in range(PAYOUTS)]
    keys = [uuid.uuid4().hex for _ in bodies]
    creations = [
        asyncio.create_task(_create_until_answered(merchant, body, key))
        for body, key in zip(bodies, keys, strict=True)
    ]

    async def count(sql: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval(sql, merchant.id))
        finally:
            await conn.close()

    # Kill 1: while payouts are being created, held and submitted.
    await wait_until(
        lambda: _at_least(
            count(
                "SELECT count(*) FROM global_tx g JOIN payouts p ON p.id = g.payout_id"
                " WHERE p.merchant_id = $1 AND g.state IN ('submitting', 'awaiting',"
                " 'confirming', 'confirmed')"
            ),
            2,
        ),
        timeout_s=30,
        message="some payouts at the bank",
    )
    api.suite.payout.kill()
    api.suite.payout.start(ready_timeout_s=60)
    # Kill 2: while the rest are being confirmed.
    await wait_until(
        lambda: _at_least(
            count("SELECT count(*) FROM payouts WHERE merchant_id = $1 AND status = 'paid'"), 4
        ),
        timeout_s=60,
        message="some payouts paid",
    )
    api.suite.payout.kill()
    api.suite.payout.start(ready_timeout_s=60)

    ids = await asyncio.wait_for(asyncio.gather(*creations), timeout=90)
    assert len(set(ids)) == PAYOUTS

    async def all_final() -> bool:
        n = await count(
            "SELECT count(*) FROM payouts WHERE merchant_id = $1 AND status IN ('paid', 'failed')"
        )
        return n == PAYOUTS

    await wait_until(all_final, timeout_s=90, interval_s=0.2, message="every payout final")
    payouts = [await merchant.payout(pid) for pid in ids]
    assert {p["status"] for p in payouts} == {"paid"}, [p["status"] for p in payouts]
    expected_posted = sum(p["amount"] + p["fee"] for p in payouts)
    account = await merchant.account()
    assert account["debits_pending"] == 0
    assert account["debits_posted"] == expected_posted
    executed = await api.executed("northbank") + await api.executed("atlas")
    by_reference: dict[str, int] = {}
    for t in executed:
        by_reference[t["reference"]] = by_reference.get(t["reference"], 0) + 1
    for payout_id in ids:
        submission = await api.submission(payout_id)
        paid_attempts = [a for a in submission["attempts"] if a["status"] == "succeeded"]
        assert len(paid_attempts) == 1, submission
        assert by_reference.get(paid_attempts[0]["attempt_id"]) == 1
    assert (
        await count(
            "SELECT count(*) FROM global_tx g JOIN payouts p ON p.id = g.payout_id"
            " WHERE p.merchant_id = $1 AND g.state <> 'confirmed'"
        )
        == 0
    )


async def _at_least(value: Any, minimum: int) -> bool:
    return int(await value) >= minimum


def _router_lines(api: Api, event: str, attempt_id: str) -> list[dict[str, Any]]:
    found = []
    for raw in api.suite.router.log_path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == event and line.get("attempt_id") == attempt_id:
                found.append(line)
    return found


async def test_a_router_killed_mid_call_inquires_in_the_background_under_the_request_id(
    api: Api,
) -> None:
    # The bank takes a second to answer (under the router's 1.5 s timeout): time to kill the
    # router while the attempt is still `sending`, so only its recovery loop can settle it.
    for bank in BANKS:
        await api.behave(bank, latency_median_ms=1_000, latency_p99_ms=1_000)
    request_id = f"req_e2e_{uuid.uuid4().hex}"
    payout_id = f"po_e2e_{uuid.uuid4().hex[:16]}"
    body = {
        "payout_id": payout_id,
        "gid": f"gtx_e2e_{uuid.uuid4().hex[:16]}",
        "merchant_id": "mer_e2e_crash",
        "amount_minor": 1_234,
        "currency": "EUR",
        "beneficiary": {
            "name": "Jane Doe",
            "account_number": "GB29NWBK60161331926819",
            "bank_code": "NRTHGB2L",
        },
        "reference": "router-crash",
    }
    router = api.suite.router

    async def submit() -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await api.call(
                "POST",
                router.url + "/v1/submissions",
                json=body,
                headers={**api.service, "Request-Id": request_id},
            )

    call = asyncio.create_task(submit())

    async def sending() -> str | None:
        status, view, _ = await api.call(
            "GET", f"{router.url}/v1/submissions/{payout_id}", headers=api.service
        )
        if status == 200 and view["attempts"] and view["attempts"][0]["status"] == "sending":
            return str(view["attempts"][0]["attempt_id"])
        return None

    try:
        attempt_id = await wait_until(sending, timeout_s=15, interval_s=0.02, message="sending")
        router.kill()
        await call
    finally:
        await asyncio.to_thread(router.start, ready_timeout_s=60)

    async def inquired() -> list[dict[str, Any]]:
        return [
            line
            for line in _router_lines(api, "attempt_moved", attempt_id)
            if line.get("by") == "inquiry"
        ]

    lines = await wait_until(inquired, timeout_s=20, message="the recovery loop's inquiry")
    assert {line.get("request_id") for line in lines} == {request_id}, lines
    assert lines[0]["old"] == "sending"
