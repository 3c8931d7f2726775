"""Small request helpers shared by the ledger tests."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def account(
    client: TestClient[Any, Any],
    account_id: str,
    currency: str = "EUR",
    *,
    no_overdraft: bool = False,
    no_credit_overrun: bool = False,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/accounts",
        json={
            "id": account_id,
            "currency": currency,
            "code": 1,
            "flags": {
                "debits_must_not_exceed_credits": no_overdraft,
                "credits_must_not_exceed_debits": no_credit_overrun,
            },
        },
    )
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def get_account(client: TestClient[Any, Any], account_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/accounts/{account_id}")
    assert response.status == 200, await response.text()
    return await response.json()


async def transfers(client: TestClient[Any, Any], *items: dict[str, Any], expect: int = 200) -> Any:
    response = await client.post("/v1/transfers", json={"transfers": list(items)})
    body = await response.json()
    assert response.status == expect, body
    return body["results"] if expect == 200 else body


def single(
    tid: str, debit: str, credit: str, amount: int, currency: str = "EUR", **kw: Any
) -> dict[str, Any]:
    return {
        "id": tid,
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount_minor": amount,
        "currency": currency,
        **kw,
    }


def counters(acc: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        acc["debits_pending"],
        acc["debits_posted"],
        acc["credits_pending"],
        acc["credits_posted"],
    )
