"""Who may call what: object-level checks on the merchant API, operator and finance keys,
internal service tokens, key rotation and revocation, and idempotency keys per merchant."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from contracts.openapi import checked_in_path
from tests.security.conftest import Client, Merchant, payout_body
from tests.support.suite import ADMIN_KEY, FINANCE_KEY, SERVICE_TOKEN, Suite

pytestmark = pytest.mark.e2e

PARAM = re.compile(r"{(\w+)}")


def operations(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(checked_in_path(service).read_text())
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


async def _victim_objects(client: Client, victim: Merchant) -> dict[str, str]:
    """One object of each kind the merchant API names by id, all owned by ``victim``."""
    status, payout, _ = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json=payout_body(),
        headers={**victim.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert status in (200, 201, 202), payout
    status, batch, _ = await client.call(
        "POST",
        "payout",
        "/v1/payout_batches",
        json={"items": [payout_body()]},
        headers={**victim.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert status == 202, batch
    status, endpoint, _ = await client.call(
        "POST",
        "payout",
        "/v1/webhook_endpoints",
        json={"url": "https://hooks.example.com/payments", "event_types": ["*"]},
        headers=victim.headers,
    )
    assert status == 201, endpoint
    return {"payout_id": payout["id"], "batch_id": batch["id"], "endpoint_id": endpoint["id"]}


async def test_every_merchant_endpoint_answers_404_for_another_merchants_ids(
    client: Client,
) -> None:
    victim = await client.merchant()
    intruder = await client.merchant()
    ids = await _victim_objects(client, victim)
    walked = []
    for method, path, op in operations("payout"):
        names = PARAM.findall(path)
        if not path.startswith("/v1/") or not names:
            continue
        # A new endpoint with an id in its path must be added to this walk.
        assert set(names) <= set(ids), f"{method} {path}: add its id kind to _victim_objects"
        concrete = PARAM.sub(lambda m: ids[m.group(1)], path)
        body: dict[str, Any] | None = {} if "requestBody" in op else None
        status, problem, headers = await client.call(
            method, "payout", concrete, json=body, headers=intruder.headers
        )
        assert status == 404, (method, path, status, problem)
        assert headers["Content-Type"].startswith("application/problem+json")
        walked.append(f"{method} {path}")
        # The owner still sees it: the 404 was about ownership, not a broken route.
        if method == "GET":
            status, _, _ = await client.call(method, "payout", concrete, headers=victim.headers)
            assert status == 200, (method, path, status)
    assert len(walked) >= 4, walked
    # Lists never show another merchant's objects either.
    for path, key in (("/v1/payouts", "id"), ("/v1/webhook_endpoints", "id")):
        status, page, _ = await client.call("GET", "payout", path, headers=intruder.headers)
        assert status == 200, page
        assert not {row[key] for row in page["data"]} & set(ids.values()), path
    status, events, _ = await client.call("GET", "payout", "/v1/events", headers=intruder.headers)
    assert status == 200, events
    assert ids["payout_id"] not in json.dumps(events)
    # The intruder's cancel left the victim's payout as it was.
    status, payout, _ = await client.call(
        "GET", "payout", f"/v1/payouts/{ids['payout_id']}", headers=victim.headers
    )
    assert status == 200 and payout["status"] != "canceled", payout
    # And the endpoint the intruder tried to delete is still there.
    status, page, _ = await client.call(
        "GET", "payout", "/v1/webhook_endpoints", headers=victim.headers
    )
    assert ids["endpoint_id"] in {row["id"] for row in page["data"]}


def _concrete(path: str) -> str:
    return PARAM.sub(lambda m: f"{m.group(1)}_x", path)


async def test_admin_endpoints_refuse_no_key_a_merchant_key_and_other_services_keys(
    client: Client,
) -> None:
    merchant = await client.merchant(funds=0)
    wrong = {
        "none": {},
        "merchant": merchant.headers,
        "finance": {"Authorization": f"Bearer {FINANCE_KEY}"},
        "service token": {"X-Service-Token": SERVICE_TOKEN},
        "service token as bearer": {"Authorization": f"Bearer {SERVICE_TOKEN}"},
        "admin key with a suffix": {"Authorization": f"Bearer {ADMIN_KEY}x"},
    }
    admin_ops = [(m, p) for m, p, _ in operations("payout") if p.startswith("/admin")]
    assert len(admin_ops) >= 10
    for method, path in admin_ops:
        for name, headers in wrong.items():
            status, problem, _ = await client.call(
                method, "payout", _concrete(path), json={}, headers=headers
            )
            assert status == 401, (method, path, name, status, problem)
            assert problem["code"] == "unauthorized", problem


async def test_finance_api_refuses_merchant_admin_and_service_credentials(client: Client) -> None:
    merchant = await client.merchant(funds=0)
    wrong = [
        {},
        merchant.headers,
        {"Authorization": f"Bearer {ADMIN_KEY}"},
        {"X-Service-Token": SERVICE_TOKEN},
        {"Authorization": f"Bearer {SERVICE_TOKEN}"},
    ]
    for method, path, _ in operations("recon"):
        for headers in wrong:
            status, problem, _ = await client.call(
                method, "recon", _concrete(path), json={}, headers=headers
            )
            assert status == 401, (method, path, headers, status, problem)
    status, _, _ = await client.call(
        "GET", "recon", "/v1/recon/runs", headers=client.finance_headers
    )
    assert status == 200


@pytest.mark.parametrize("service", ["ledger", "router", "banksim"])
async def test_internal_apis_refuse_calls_without_the_service_token(
    client: Client, service: str
) -> None:
    merchant = await client.merchant(funds=0)
    checked = 0
    for method, path, op in operations(service):
        if "serviceToken" not in json.dumps(op.get("security", [])):
            continue
        for headers in (
            {},
            merchant.headers,
            {"Authorization": f"Bearer {ADMIN_KEY}"},
            {"X-Service-Token": SERVICE_TOKEN[:-1]},
            {"X-Service-Token": SERVICE_TOKEN + "0"},
            {"X-Bank-Key": client.bank_headers["X-Bank-Key"]},
        ):
            status, problem, _ = await client.call(
                method, service, _concrete(path), json={}, headers=headers
            )
            assert status == 401, (service, method, path, headers, status, problem)
            assert problem["code"] == "service_token_invalid", problem
        checked += 1
    assert checked >= 4


async def test_bank_api_refuses_the_service_token_in_place_of_the_bank_key(
    client: Client,
) -> None:
    status, problem, _ = await client.call(
        "GET", "banksim", "/banks/northbank/transfers/att_x", headers=client.service_headers
    )
    assert status == 401 and problem["code"] == "bank_key_invalid", problem


async def test_a_new_key_works_and_a_revoked_key_is_refused_on_the_next_request(
    client: Client,
) -> None:
    merchant = await client.merchant(funds=0)
    status, _, _ = await client.call("GET", "payout", "/v1/balance", headers=merchant.headers)
    assert status == 200
    status, new_key = await client.admin("POST", f"/admin/merchants/{merchant.id}/keys")
    assert status == 201, new_key
    rotated = {"Authorization": f"Bearer {new_key['secret_key']}"}
    status, _, _ = await client.call("GET", "payout", "/v1/balance", headers=rotated)
    assert status == 200
    status, revoked = await client.admin(
        "DELETE", f"/admin/merchants/{merchant.id}/keys/{merchant.key_id}"
    )
    assert status == 200, revoked
    status, problem, headers = await client.call(
        "GET", "payout", "/v1/balance", headers=merchant.headers
    )
    assert status == 401, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert "WWW-Authenticate" in headers
    status, _, _ = await client.call("GET", "payout", "/v1/balance", headers=rotated)
    assert status == 200
    # A merchant cannot revoke (or mint) keys: that is an operator action.
    status, _, _ = await client.call(
        "POST", "payout", f"/admin/merchants/{merchant.id}/keys", headers=rotated
    )
    assert status == 401
    # Keys are stored hashed: the merchant object shows a prefix, never the secret again.
    status, shown = await client.admin("GET", f"/admin/merchants/{merchant.id}")
    assert status == 200
    assert new_key["secret_key"] not in json.dumps(shown)
    assert merchant.key not in json.dumps(shown)


async def test_an_idempotency_key_never_replays_another_merchants_response(
    client: Client,
) -> None:
    first = await client.merchant()
    second = await client.merchant()
    key = f"shared-{uuid.uuid4().hex}"
    body = payout_body()
    status, original, _ = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json=body,
        headers={**first.headers, "Idempotency-Key": key},
    )
    assert status in (200, 201, 202), original
    status, replay, headers = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json=body,
        headers={**first.headers, "Idempotency-Key": key},
    )
    assert replay["id"] == original["id"] and headers.get("Idempotent-Replayed") == "true"
    status, other, headers = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json=body,
        headers={**second.headers, "Idempotency-Key": key},
    )
    assert status in (200, 201, 202), other
    assert other["id"] != original["id"]
    assert headers.get("Idempotent-Replayed") != "true"
    assert other["merchant_id"] == second.id if "merchant_id" in other else True
    assert first.id not in json.dumps(other)


async def test_merchant_keys_are_stored_as_hashes_only(client: Client, stack: Suite) -> None:
    import asyncpg

    from services.kit import db
    from services.kit.auth import hash_key

    merchant = await client.merchant(funds=0)
    dsn = db.service_dsn(stack.spec.database_url, stack.spec.db_prefix, "payout")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM api_keys WHERE merchant_id = $1", merchant.id)
    finally:
        await conn.close()
    assert len(rows) == 1
    stored = json.dumps({k: str(v) for k, v in dict(rows[0]).items()})
    assert merchant.key not in stored
    assert rows[0]["key_hash"] == hash_key(merchant.key)
