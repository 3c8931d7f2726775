"""The bank API against the real simulator process: every response class, idempotency under
concurrency, lost replies, ambiguous 5xx, async completions with signed callbacks, chaos modes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from services.kit import db
from tests.banksim.conftest import ADMIN_HEADERS, BANK_HEADERS, CALLBACK_SECRET, transfer
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port
from tests.support.waiting import wait_until


def ref() -> str:
    return f"att_{uuid.uuid4().hex[:12]}"


async def post(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{sim.url}/banks/{bank}/transfers", json=body, headers=BANK_HEADERS
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def inquire(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str, reference: str
) -> tuple[int, dict[str, Any]]:
    async with http.get(
        f"{sim.url}/banks/{bank}/transfers/{reference}", headers=BANK_HEADERS
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def behave(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str, mode: str, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"mode": mode}
    if overrides:
        body["overrides"] = overrides
    async with http.put(
        f"{sim.url}/admin/banks/{bank}/behaviour", json=body, headers=ADMIN_HEADERS
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def journal(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str
) -> list[dict[str, Any]]:
    async with http.get(
        f"{sim.url}/admin/banks/{bank}/executed", params={"limit": 5000}, headers=ADMIN_HEADERS
    ) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["transfers"]


async def test_a_paid_transfer_answers_with_fee_and_a_repeat_returns_the_same_transfer(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    reference = ref()
    status, first = await post(http, banksim, "steady", transfer(reference, 10_000))
    assert status == 200, first
    assert first["status"] == "paid" and first["failure_code"] is None
    assert first["fee_minor"] == 25 + 10  # fixed 25 + 10 bp of 100.00
    assert first["executed_at"] is not None and first["bank_reference"]
    status, again = await post(http, banksim, "steady", transfer(reference, 10_000))
    assert (status, again) == (200, first)
    status, seen = await inquire(http, banksim, "steady", reference)
    assert (status, seen) == (200, first)
    rows = [t for t in await journal(http, banksim, "steady") if t["reference"] == reference]
    assert len(rows) == 1 and rows[0]["amount_minor"] == 10_000 and rows[0]["status"] == "paid"


@pytest.mark.parametrize(
    ("account", "name", "code"),
    [
        ("INVALID0001", "Ada", "invalid_account"),
        ("CLOSED0001", "Ada", "account_closed"),
        ("DE89370400440532013000", "NAME MISMATCH", "name_mismatch"),
    ],
)
async def test_beneficiary_errors_answer_422_rejected_and_are_remembered(
    banksim: ServiceProcess, http: aiohttp.ClientSession, account: str, name: str, code: str
) -> None:
    reference = ref()
    body = transfer(
        reference, beneficiary={"name": name, "account_number": account, "bank_code": "X1"}
    )
    status, answer = await post(http, banksim, "steady", body)
    assert status == 422
    assert (answer["status"], answer["failure_code"], answer["fee_minor"]) == ("rejected", code, 0)
    status, seen = await inquire(http, banksim, "steady", reference)
    assert status == 200 and seen["failure_code"] == code


async def test_definite_refusals_answer_rejected_with_their_code(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    codes = set()
    for _ in range(12):
        status, answer = await post(http, banksim, "refuser", transfer(ref()))
        assert status == 200 and answer["status"] == "rejected"
        codes.add(answer["failure_code"])
    assert codes == {"rejected", "insufficient_liquidity"}


@pytest.mark.parametrize(
    ("bank", "http_status", "code"),
    [("closed", 503, "maintenance"), ("late", 200, "cutoff_passed")],
)
async def test_refusals_before_acceptance_are_not_recorded(
    banksim: ServiceProcess, http: aiohttp.ClientSession, bank: str, http_status: int, code: str
) -> None:
    reference = ref()
    status, answer = await post(http, banksim, bank, transfer(reference))
    assert status == http_status
    assert (answer["status"], answer["failure_code"], answer["bank_reference"]) == (
        "rejected",
        code,
        None,
    )
    status, problem = await inquire(http, banksim, bank, reference)
    assert status == 404 and problem["code"] == "transfer_not_found"
    assert await journal(http, banksim, bank) == []


async def test_a_payment_after_the_cutoff_executes_with_the_next_days_value_date(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    reference = ref()
    status, answer = await post(http, banksim, "nextday", transfer(reference))
    assert (status, answer["status"]) == (200, "paid")
    row = next(t for t in await journal(http, banksim, "nextday") if t["reference"] == reference)
    executed = datetime.fromisoformat(row["executed_at"]).date()
    assert date.fromisoformat(row["value_date"]) == executed + timedelta(days=1)


async def test_the_daily_limit_refuses_what_would_exceed_it_and_counts_only_executions(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    status, first = await post(http, banksim, "limited", transfer(ref(), 600))
    assert status == 200 and first["status"] == "paid"
    over = ref()
    status, refused = await post(http, banksim, "limited", transfer(over, 600))
    assert status == 200 and refused["failure_code"] == "daily_limit_exceeded"
    status, fits = await post(http, banksim, "limited", transfer(ref(), 400))
    assert status == 200 and fits["status"] == "paid"
    assert over not in {t["reference"] for t in await journal(http, banksim, "limited")}


async def test_fifty_concurrent_repeats_of_one_reference_execute_once(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    reference = ref()
    # "slowish" holds each request ~150 ms before recording, so the 50 really overlap.
    answers = await asyncio.gather(
        *(post(http, banksim, "slowish", transfer(reference, 777)) for _ in range(50))
    )
    assert {status for status, _ in answers} == {200}
    assert len({a["bank_reference"] for _, a in answers}) == 1
    rows = [t for t in await journal(http, banksim, "slowish") if t["reference"] == reference]
    assert len(rows) == 1
    conn = await asyncpg.connect(
        db.service_dsn(infra.database_url(), banksim.env["DB_NAME_PREFIX"], "banksim")
    )
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM bank_transfer WHERE bank = 'slowish' AND reference = $1",
            reference,
        )
        used = await conn.fetchval(
            "SELECT sum(used_minor) FROM bank_daily_usage WHERE bank = 'slowish'"
        )
    finally:
        await conn.close()
    assert count == 1
    assert used == 777, "the daily limit counted one execution, not fifty"


async def test_the_same_reference_with_another_body_is_refused_and_changes_nothing(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    reference = ref()
    await post(http, banksim, "steady", transfer(reference, 1000))
    status, problem = await post(http, banksim, "steady", transfer(reference, 1001))
    assert status == 409 and problem["code"] == "reference_reused"
    _, seen = await inquire(http, banksim, "steady", reference)
    assert seen["amount_minor"] == 1000


async def test_a_dropped_reply_is_executed_and_in_the_journal(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    await behave(
        http, banksim, "lossy", "lost_responses", lost_response_rate=1.0, lost_response_mode="drop"
    )
    try:
        references = [ref() for _ in range(5)]
        for reference in references:
            with pytest.raises(aiohttp.ClientError):  # ServerDisconnected / connection reset
                await post(http, banksim, "lossy", transfer(reference))
    finally:
        await behave(http, banksim, "lossy", "normal")
    executed = {t["reference"]: t for t in await journal(http, banksim, "lossy")}
    for reference in references:
        assert executed[reference]["status"] == "paid"
        status, seen = await inquire(http, banksim, "lossy", reference)
        assert status == 200 and seen["status"] == "paid"


async def test_a_delayed_reply_outlives_the_callers_timeout_but_the_transfer_executed(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    await behave(
        http,
        banksim,
        "lossy",
        "lost_responses",
        lost_response_rate=1.0,
        lost_response_mode="delay",
        lost_response_delay_ms=3000,
    )
    reference = ref()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with http.post(
                f"{banksim.url}/banks/lossy/transfers",
                json=transfer(reference),
                headers=BANK_HEADERS,
                timeout=aiohttp.ClientTimeout(total=0.5),
            ) as resp:
                await resp.read()
        assert time.monotonic() - started < 2.5
    finally:
        await behave(http, banksim, "lossy", "normal")
    status, seen = await inquire(http, banksim, "lossy", reference)
    assert status == 200 and seen["status"] == "paid"


async def test_a_5xx_after_acceptance_is_ambiguous_the_transfer_executed(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    await behave(http, banksim, "ambiguous", "flaky", ambiguous_error_rate=1.0, refusal_rate=0.0)
    reference = ref()
    try:
        status, problem = await post(http, banksim, "ambiguous", transfer(reference))
    finally:
        await behave(http, banksim, "ambiguous", "normal")
    assert status in (500, 502, 504)
    assert problem["code"] == "bank_internal_error"
    status, seen = await inquire(http, banksim, "ambiguous", reference)
    assert status == 200 and seen["status"] == "paid"


@pytest.fixture
async def callback_receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """Records every delivery; refuses the first attempt of each reference (503) so the
    simulator's retry is exercised too."""
    received: list[tuple[dict[str, str], bytes]] = []
    refused: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        reference = json.loads(body)["reference"]
        if reference not in refused:
            refused.add(reference)
            return web.Response(status=503)
        received.append((dict(request.headers), body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/callbacks", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/callbacks", received
    finally:
        await runner.cleanup()


def verify_signature(header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        CALLBACK_SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 60


async def test_async_completion_reaches_a_signed_callback_and_the_inquiry(
    banksim: ServiceProcess,
    http: aiohttp.ClientSession,
    callback_receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    url, received = callback_receiver
    references = [ref() for _ in range(6)]
    for reference in references:
        status, answer = await post(
            http, banksim, "asyncbank", transfer(reference, callback_url=url)
        )
        assert status == 200 and answer["status"] == "accepted" and answer["executed_at"] is None

    async def all_called_back() -> bool:
        return len(received) >= len(references)

    await wait_until(all_called_back, timeout_s=15, message="six callbacks")
    finals = set()
    for headers, body in received:
        assert verify_signature(headers["Bank-Signature"], body)
        tampered = body.replace(b'"status"', b'"Status"')
        assert not verify_signature(headers["Bank-Signature"], tampered)
        result = json.loads(body)
        assert result["reference"] in references and result["status"] in ("paid", "rejected")
        status, seen = await inquire(http, banksim, "asyncbank", result["reference"])
        assert status == 200 and seen == result
        finals.add((result["status"], result["failure_code"]))
    assert finals <= {("paid", None), ("rejected", "account_closed")}
    assert len({json.loads(b)["reference"] for _, b in received}) == len(references)
    # A failed completion no longer counts against the day's limit; a paid one still does.
    paid_total = sum(
        json.loads(b)["amount_minor"] for _, b in received if json.loads(b)["status"] == "paid"
    )
    conn = await asyncpg.connect(
        db.service_dsn(infra.database_url(), banksim.env["DB_NAME_PREFIX"], "banksim")
    )
    try:
        used = await conn.fetchval(
            "SELECT COALESCE(sum(used_minor), 0) FROM bank_daily_usage WHERE bank = 'asyncbank'"
        )
        states = await conn.fetch(
            "SELECT callback_state, callback_attempts FROM bank_transfer WHERE bank = 'asyncbank'"
        )
    finally:
        await conn.close()
    assert used == paid_total
    assert {(r["callback_state"], r["callback_attempts"]) for r in states} == {("delivered", 2)}


async def test_the_journal_pages_through_every_transfer_in_order(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    for _ in range(5):
        await post(http, banksim, "steady", transfer(ref()))
    everything = await journal(http, banksim, "steady")
    pages: list[dict[str, Any]] = []
    after = 0
    while True:
        async with http.get(
            f"{banksim.url}/admin/banks/steady/executed",
            params={"after": after, "limit": 2},
            headers=ADMIN_HEADERS,
        ) as resp:
            page = await resp.json()
        assert len(page["transfers"]) <= 2
        pages.extend(page["transfers"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert pages == everything and len(everything) >= 5
    assert [t["seq"] for t in pages] == sorted(t["seq"] for t in pages)


async def test_behaviour_switches_take_effect_at_once_and_back(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    try:
        summary = await behave(http, banksim, "switchy", "outage")
        assert summary["behaviour"]["mode"] == "outage"
        status, answer = await post(http, banksim, "switchy", transfer(ref()))
        assert (status, answer["failure_code"]) == (503, "outage")
        status, problem = await inquire(http, banksim, "switchy", "att_any")
        assert (status, problem["code"]) == (503, "bank_unavailable")

        await behave(http, banksim, "switchy", "maintenance")
        status, answer = await post(http, banksim, "switchy", transfer(ref()))
        assert (status, answer["failure_code"]) == (503, "maintenance")

        await behave(http, banksim, "switchy", "flaky", refusal_rate=1.0)
        status, answer = await post(http, banksim, "switchy", transfer(ref()))
        assert (status, answer["failure_code"]) == (503, "outage")

        summary = await behave(
            http, banksim, "switchy", "slow", latency_median_ms=1000, latency_p99_ms=1000
        )
        assert summary["behaviour"]["latency_median_ms"] == 1000
        started = time.monotonic()
        status, answer = await post(http, banksim, "switchy", transfer(ref()))
        assert status == 200 and answer["status"] == "paid"
        assert time.monotonic() - started >= 0.95
        started = time.monotonic()
        status, _ = await inquire(http, banksim, "switchy", answer["reference"])
        assert status == 200 and time.monotonic() - started >= 0.95, "inquiries are slow too"

        await behave(http, banksim, "switchy", "normal")
        started = time.monotonic()
        status, answer = await post(http, banksim, "switchy", transfer(ref()))
        assert (status, answer["status"]) == (200, "paid")
        assert time.monotonic() - started < 0.9
    finally:
        await behave(http, banksim, "switchy", "normal")
    async with http.get(f"{banksim.url}/admin/banks", headers=ADMIN_HEADERS) as resp:
        banks = {b["bank"]: b for b in (await resp.json())["banks"]}
    assert banks["switchy"]["behaviour"]["mode"] == "normal"
    assert banks["switchy"]["overrides"] == {}
