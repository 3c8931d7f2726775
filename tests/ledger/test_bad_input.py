"""Bad input answers 4xx problem+json with a stable code and changes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.ledger.helpers import account, single

Client = TestClient[Any, Any]


async def _state(owner: asyncpg.Connection) -> tuple[Any, ...]:
    row = await owner.fetchrow(
        """SELECT (SELECT COALESCE(max(seq), 0) FROM transfers),
                  (SELECT count(*) FROM rejections), (SELECT count(*) FROM tcc_barrier),
                  (SELECT count(*) FROM accounts),
                  (SELECT COALESCE(sum(debits_posted + debits_pending), 0) FROM accounts)"""
    )
    return tuple(row)


def _transfer(tag: str, **override: Any) -> dict[str, Any]:
    return {**single(f"{tag}-t", f"{tag}-a", f"{tag}-b", 100), **override}


CASES: list[tuple[str, Any, int, str]] = [
    ("negative amount", {"amount_minor": -5}, 422, "validation_error"),
    ("zero amount", {"amount_minor": 0}, 422, "validation_error"),
    ("float amount", {"amount_minor": 10.5}, 422, "validation_error"),
    ("string amount", {"amount_minor": "100"}, 422, "validation_error"),
    ("too large amount", {"amount_minor": 10**19}, 422, "validation_error"),
    ("lower-case currency", {"currency": "eur"}, 422, "validation_error"),
    ("unknown currency", {"currency": "XYZ"}, 422, "unknown_currency"),
    ("mismatched currency", {"currency": "USD"}, 422, "currency_mismatch"),
    ("unknown account", {"credit_account_id": "nobody-here"}, 422, "account_not_found"),
    ("same account twice", {"credit_account_id": "{tag}-a"}, 422, "accounts_must_be_different"),
    ("unknown field", {"memo": "x"}, 422, "validation_error"),
    ("reserved id", {"id": "tcc:x:y:try:0"}, 422, "reserved_transfer_id"),
    ("post with accounts", {"kind": "post", "pending_id": "p"}, 422, "validation_error"),
]


@pytest.mark.parametrize(("case", "override", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_bad_transfer_is_refused_with_a_stable_code_and_nothing_changes(
    client: Client,
    owner: asyncpg.Connection,
    tag: str,
    case: str,
    override: dict[str, Any],
    status: int,
    code: str,
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    await account(client, f"{tag}-usd", "USD")
    before = await _state(owner)
    override = {k: v.format(tag=tag) if isinstance(v, str) else v for k, v in override.items()}
    good = single(f"{tag}-ok", f"{tag}-a", f"{tag}-b", 7)
    response = await client.post(
        "/v1/transfers", json={"transfers": [good, _transfer(tag, **override)]}
    )
    body = await response.json(content_type=None)
    assert response.status == status, body
    assert response.content_type == "application/problem+json"
    assert body["code"] == code and body["status"] == status
    assert await _state(owner) == before, f"{case} changed the ledger"


async def test_oversized_batch_is_refused_whole(
    client: Client, owner: asyncpg.Connection, tag: str
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    before = await _state(owner)
    items = [single(f"{tag}-{i}", f"{tag}-a", f"{tag}-b", 1) for i in range(8_191)]
    response = await client.post("/v1/transfers", json={"transfers": items})
    body = await response.json(content_type=None)
    assert response.status == 422 and body["code"] == "batch_too_large"
    assert await _state(owner) == before


@pytest.mark.parametrize(
    ("path", "raw", "code"),
    [
        ("/v1/transfers", b'{"transfers": [', "malformed_json"),
        ("/v1/accounts", b"{not json", "malformed_json"),
        ("/v1/tcc/g1/b1/try", b'{"legs": [', "malformed_json"),
        ("/v1/transfers", b'{"transfers": []}', "validation_error"),
    ],
)
async def test_malformed_json_is_a_400_problem(
    client: Client, owner: asyncpg.Connection, path: str, raw: bytes, code: str
) -> None:
    before = await _state(owner)
    response = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
    body = await response.json(content_type=None)
    assert 400 <= response.status < 500 and body["code"] == code
    assert response.content_type == "application/problem+json"
    assert await _state(owner) == before


async def test_missing_or_wrong_service_token_is_401_and_nothing_changes(
    client: Client, owner: asyncpg.Connection, tag: str
) -> None:
    before = await _state(owner)
    body = {"id": f"{tag}-a", "currency": "EUR"}
    for headers in ({"X-Service-Token": ""}, {"X-Service-Token": "wrong-token-wrong-token"}):
        response = await client.post("/v1/accounts", json=body, headers=headers)
        problem = await response.json(content_type=None)
        assert response.status == 401 and problem["code"] == "service_token_invalid"
    assert (await client.get(f"/v1/accounts/{tag}-a")).status == 404
    assert await _state(owner) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "x", "currency": "XYZ"}, "unknown_currency"),
        ({"id": "x", "currency": "EURO"}, "validation_error"),
        ({"id": "bad id!", "currency": "EUR"}, "validation_error"),
        (
            {
                "id": "x",
                "currency": "EUR",
                "flags": {
                    "debits_must_not_exceed_credits": True,
                    "credits_must_not_exceed_debits": True,
                },
            },
            "flags_mutually_exclusive",
        ),
    ],
)
async def test_bad_account_is_refused(
    client: Client, owner: asyncpg.Connection, body: dict[str, Any], code: str
) -> None:
    before = await _state(owner)
    response = await client.post("/v1/accounts", json=body)
    problem = await response.json(content_type=None)
    assert response.status == 422 and problem["code"] == code
    assert await _state(owner) == before


async def test_bad_tcc_legs_are_refused_and_leave_no_barrier(
    client: Client, owner: asyncpg.Connection, tag: str
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    before = await _state(owner)
    for leg, status, code in [
        ({"amount_minor": 0}, 422, "validation_error"),
        ({"amount_minor": 1.5}, 422, "validation_error"),
        ({"currency": "USD"}, 422, "currency_mismatch"),
        ({"debit_account_id": "ghost"}, 422, "account_not_found"),
    ]:
        legs = [{**single("-", f"{tag}-a", f"{tag}-b", 10), **leg}]
        del legs[0]["id"]
        response = await client.post(f"/v1/tcc/{tag}/b1/try", json={"legs": legs})
        problem = await response.json(content_type=None)
        assert (response.status, problem["code"]) == (status, code)
    assert await _state(owner) == before
