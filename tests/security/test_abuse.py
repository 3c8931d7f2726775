"""Floods and oversized input: the per-key rate limit, body size caps, bounded pages, and
input PostgreSQL cannot store (NUL) refused as a 4xx instead of a crash."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.security.conftest import RATE_LIMIT_BURST, RATE_LIMIT_PER_S, Client, payout_body
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

OVER_COMMON_LIMIT = 3 * 1024 * 1024  # REQUEST_BODY_MAX_BYTES defaults to 2 MiB


async def test_a_flooding_merchant_gets_429_with_retry_after_and_others_are_untouched(
    client: Client,
) -> None:
    flooder = await client.merchant(funds=0)
    bystander = await client.merchant(funds=0)
    requests = 3 * RATE_LIMIT_BURST

    async def one() -> tuple[int, object, dict[str, str]]:
        return await client.call("GET", "payout", "/v1/webhook_endpoints", headers=flooder.headers)

    started = time.monotonic()
    answers = await asyncio.gather(*(one() for _ in range(requests)))
    elapsed_s = time.monotonic() - started
    ok = [a for a in answers if a[0] == 200]
    limited = [a for a in answers if a[0] == 429]
    assert len(ok) + len(limited) == requests, {a[0] for a in answers}
    # Never more than the bucket plus what refilled while the flood lasted.
    assert len(ok) <= RATE_LIMIT_BURST + RATE_LIMIT_PER_S * elapsed_s + 1, (len(ok), elapsed_s)
    assert limited, f"no 429 after {requests} requests in {elapsed_s:.2f}s"
    status, problem, headers = limited[0]
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["code"] == "rate_limited", problem  # type: ignore[index]
    assert int(headers["Retry-After"]) >= 1
    # Another merchant's bucket is its own.
    status, _, _ = await client.call(
        "GET", "payout", "/v1/webhook_endpoints", headers=bystander.headers
    )
    assert status == 200

    # And the flooder gets through again once tokens are back.
    async def served() -> bool:
        status, _, _ = await client.call("GET", "payout", "/v1/balance", headers=flooder.headers)
        return status == 200

    await wait_until(served, timeout_s=5, interval_s=0.1, message="the bucket to refill")


async def test_rotating_to_a_second_key_does_not_reset_the_merchants_bucket(
    client: Client,
) -> None:
    merchant = await client.merchant(funds=0)
    status, second = await client.admin("POST", f"/admin/merchants/{merchant.id}/keys")
    assert status == 201
    other_key = {"Authorization": f"Bearer {second['secret_key']}"}
    answers = await asyncio.gather(
        *(
            client.call("GET", "payout", "/v1/webhook_endpoints", headers=merchant.headers)
            for _ in range(3 * RATE_LIMIT_BURST)
        )
    )
    assert any(a[0] == 429 for a in answers)
    status, problem, _ = await client.call(
        "GET", "payout", "/v1/webhook_endpoints", headers=other_key
    )
    assert status == 429, problem


@pytest.mark.parametrize(
    ("service", "path", "headers_of"),
    [
        ("payout", "/v1/payouts", "merchant"),
        ("payout", "/admin/merchants", "admin"),
        ("ledger", "/v1/transfers", "service"),
        ("router", "/v1/submissions", "service"),
        ("banksim", "/admin/statements", "service"),
        ("banksim", "/banks/northbank/transfers", "bank"),
    ],
)
async def test_a_body_over_the_limit_is_refused_with_413_problem(
    client: Client, service: str, path: str, headers_of: str
) -> None:
    merchant = await client.merchant(funds=0)
    headers = {
        "merchant": merchant.headers,
        "admin": client.admin_headers,
        "service": client.service_headers,
        "bank": client.bank_headers,
    }[headers_of]
    body = b'{"padding": "' + b"x" * OVER_COMMON_LIMIT + b'"}'
    status, problem, reply = await client.call(
        "POST",
        service,
        path,
        data=body,
        headers={**headers, "Content-Type": "application/json", "Idempotency-Key": "big"},
    )
    assert status == 413, (status, problem)
    assert reply["Content-Type"].startswith("application/problem+json")
    assert problem["code"] == "request_too_large", problem


async def test_a_chunked_body_over_the_limit_is_refused_too(client: Client) -> None:
    merchant = await client.merchant(funds=0)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"padding": "'
        for _ in range(OVER_COMMON_LIMIT // 65536):
            yield b"x" * 65536
        yield b'"}'

    async with client.session.post(
        client.url("payout", "/v1/payouts"),
        data=chunks(),
        headers={
            **merchant.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    ) as resp:
        assert resp.status == 413, await resp.text()
        assert (await resp.json(content_type=None))["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("service", "path", "headers_of", "over"),
    [
        ("payout", "/v1/payouts", "merchant", 101),
        ("payout", "/v1/events", "merchant", 101),
        ("payout", "/admin/payouts", "admin", 101),
        ("recon", "/v1/recon/runs", "finance", 501),
        ("recon", "/v1/recon/breaks", "finance", 501),
        ("recon", "/v1/recon/alerts", "finance", 501),
        ("ledger", "/v1/accounts/funding.EUR/transfers", "service", 1001),
        ("banksim", "/admin/banks/northbank/executed", "service", 5001),
    ],
)
async def test_a_page_larger_than_the_maximum_is_refused(
    client: Client, service: str, path: str, headers_of: str, over: int
) -> None:
    merchant = await client.merchant(funds=0)
    headers = {
        "merchant": merchant.headers,
        "admin": client.admin_headers,
        "service": client.service_headers,
        "finance": client.finance_headers,
    }[headers_of]
    status, problem, _ = await client.call("GET", service, f"{path}?limit={over}", headers=headers)
    assert status in (400, 422), (status, problem)
    status, page, _ = await client.call("GET", service, f"{path}?limit={over - 1}", headers=headers)
    assert status == 200, page


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"note": "a\u0000b"}},
        {"metadata": {"a\u0000b": "note"}},
        {"beneficiary": {"name": "Jane\u0000Doe", "account_number": "GB29", "bank_code": "NRTH"}},
        {"reference": "ref\u0000x"},
    ],
)
async def test_a_payout_with_nul_in_its_text_is_refused_not_crashed(
    client: Client, change: dict[str, object]
) -> None:
    merchant = await client.merchant()
    status, problem, _ = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json={**payout_body(), **change},
        headers={**merchant.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert 400 <= status < 500, (status, problem)
    assert problem["code"], problem
