"""Merchant API rules: limits, review, batches, cancel, keys, balance, events, bad input."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

from tests.payout.conftest import Harness, payout_body
from tests.support.waiting import wait_until


async def _is(awaitable: Awaitable[Any], expected: Any) -> bool:
    return (await awaitable) == expected


async def test_limits_refuse_without_side_effects_and_review_threshold_waits_for_operator(
    harness: Harness,
) -> None:
    merchant = await harness.merchant(
        funds=1_000_000,
        limits={
            "per_payout_max": 50_000,
            "daily_max": 60_000,
            "monthly_max": 100_000,
            "review_threshold": 20_000,
        },
    )
    status, problem, _ = await merchant.post_payout(payout_body(amount=50_001))
    assert status == 422 and problem["code"] == "limit_exceeded"
    assert "per_payout" in problem["detail"]
    assert await harness.fetchval("SELECT count(*) FROM payouts") == 0
    assert await harness.fetchval("SELECT count(*) FROM idempotency_keys") == 0

    status, big, _ = await merchant.post_payout(payout_body(amount=30_000))
    assert status == 201 and big["status"] == "pending_review"
    assert await harness.held(merchant) == 0  # nothing moves before an operator approves
    status, small, _ = await merchant.post_payout(payout_body(amount=20_000))
    assert small["status"] == "processing"
    status, problem, _ = await merchant.post_payout(payout_body(amount=10_001))
    assert status == 422 and "daily" in problem["detail"]

    status, queue = await harness.admin("GET", "/admin/payouts?status=pending_review")
    assert [p["id"] for p in queue["data"]] == [big["id"]]
    status, approved = await harness.admin(
        "POST", f"/admin/payouts/{big['id']}/approve", {"note": "known customer"}
    )
    assert status == 200 and approved["status"] == "processing"
    await wait_until(lambda: _is(merchant.status_of(big["id"]), "paid"), message="approved paid")
    _, audit = await harness.admin("GET", f"/admin/payouts/{big['id']}/audit")
    assert [a["action"] for a in audit["data"]] == ["payout_approved"]

    status, limits = await harness.admin(
        "PUT", f"/admin/merchants/{merchant.id}/limits", {"review_threshold": 1_000}
    )
    assert status == 200 and limits["limits"]["review_threshold"] == 1_000
    status, review, _ = await merchant.post_payout(payout_body(amount=2_000))
    assert review["status"] == "pending_review"
    status, failed = await harness.admin(
        "POST", f"/admin/payouts/{review['id']}/mark_failed", {"reason": "suspicious"}
    )
    assert status == 200 and failed["status"] == "failed"
    assert failed["failure_code"] == "operator_failed"


async def test_a_batch_mixing_good_and_bad_rows_creates_the_good_ones_and_explains_the_rest(
    harness: Harness,
) -> None:
    merchant = await harness.merchant(funds=1_000_000, limits={"per_payout_max": 90_000})
    items = [
        payout_body(amount=1_000, reference="b-1"),
        {**payout_body(), "amount": -5, "reference": "b-2"},
        payout_body(amount=95_000, reference="b-3"),  # above the per-payout limit
        payout_body(amount=2_000, reference="b-1"),  # duplicate reference
        {"what": "not a payout"},
        payout_body(amount=3_000, reference="b-6"),
    ]
    resp = await harness.client.post(
        "/v1/payout_batches",
        json={"items": items},
        headers={**merchant.headers, "Idempotency-Key": "batch-1"},
    )
    assert resp.status == 202, await resp.text()
    batch = await resp.json()
    assert batch["total"] == 6

    async def completed() -> Any:
        _, view = await merchant.get(f"/v1/payout_batches/{batch['id']}")
        return view if view["status"] == "completed" else None

    view = await wait_until(completed, timeout_s=10, message="batch completed")
    by_line = {item["line"]: item for item in view["items"]}
    assert [by_line[n]["status"] for n in range(1, 7)] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]
    assert by_line[2]["error"]["code"] == "validation_error"
    assert by_line[3]["error"]["code"] == "limit_exceeded"
    assert by_line[4]["error"]["code"] == "reference_already_used"
    for line in (1, 6):
        payout_id = by_line[line]["payout_id"]
        await wait_until(lambda pid=payout_id: _is(merchant.status_of(pid), "paid"), timeout_s=10)
    assert await harness.fetchval("SELECT count(*) FROM payouts") == 2

    csv_body = (
        "amount,currency,reference,beneficiary_name,beneficiary_account_number,"
        "beneficiary_bank_code\n"
        "1500,EUR,c-1,Ann Lee,GB29NWBK60161331926819,NRTHGB2L\n"
        "15.5,EUR,c-2,Bob Ray,GB29NWBK60161331926819,NRTHGB2L\n"
        "1600,XXX1,c-3,Cy Po,GB29NWBK60161331926819,NRTHGB2L\n"
    )
    resp = await harness.client.post(
        "/v1/payout_batches",
        data=csv_body,
        headers={**merchant.headers, "Idempotency-Key": "batch-2", "Content-Type": "text/csv"},
    )
    assert resp.status == 202
    csv_batch = await resp.json()
    view = await wait_until(
        lambda: _completed(merchant, csv_batch["id"]), timeout_s=10, message="csv batch"
    )
    assert [i["status"] for i in view["items"]] == ["created", "rejected", "rejected"]


async def _completed(merchant: Any, batch_id: str) -> Any:
    _, view = await merchant.get(f"/v1/payout_batches/{batch_id}")
    return view if view["status"] == "completed" else None


async def test_batches_refuse_oversized_empty_and_malformed_input_without_side_effects(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(PAYOUT_BATCH_ITEMS_MAX="3")
    merchant = await harness.merchant()
    cases = [
        ({"items": [payout_body()] * 4}, "application/json", 413, "batch_too_large"),
        ({"items": []}, "application/json", 422, "batch_empty"),
        ("amount,currency\n1,EUR\n", "text/csv", 400, "csv_invalid"),
        ("<xml/>", "application/xml", 415, "unsupported_media_type"),
    ]
    for body, ctype, status, code in cases:
        data = body if isinstance(body, str) else __import__("json").dumps(body)
        resp = await harness.client.post(
            "/v1/payout_batches",
            data=data,
            headers={
                **merchant.headers,
                "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": ctype,
            },
        )
        assert resp.status == status, (code, await resp.text())
        assert (await resp.json())["code"] == code
    assert await harness.fetchval("SELECT count(*) FROM batches") == 0


async def test_cancel_is_allowed_only_before_submission(harness: Harness) -> None:
    merchant = await harness.merchant(limits={"review_threshold": 1_000})
    _, waiting, _ = await merchant.post_payout(payout_body(amount=5_000))
    assert waiting["status"] == "pending_review"
    status, canceled = await merchant.post(f"/v1/payouts/{waiting['id']}/cancel")
    assert status == 200 and canceled["status"] == "canceled"
    _, paid, _ = await merchant.post_payout(payout_body(amount=500))
    await wait_until(lambda: _is(merchant.status_of(paid["id"]), "paid"), message="paid")
    status, problem = await merchant.post(f"/v1/payouts/{paid['id']}/cancel")
    assert status == 409 and problem["code"] == "payout_not_cancelable"


async def test_keys_rotate_and_revoked_keys_and_bad_admin_keys_are_refused(
    harness: Harness,
) -> None:
    merchant = await harness.merchant()
    status, second = await harness.admin("POST", f"/admin/merchants/{merchant.id}/keys")
    assert status == 201 and second["secret_key"].startswith("sk_")
    stored = await harness.fetch("SELECT key_hash FROM api_keys")
    assert all(merchant.key not in r["key_hash"] for r in stored)  # only hashes at rest
    _, view = await harness.admin("GET", f"/admin/merchants/{merchant.id}")
    assert len(view["api_keys"]) == 2 and all(k["secret_key"] is None for k in view["api_keys"])
    first_key_id = view["api_keys"][0]["id"]
    status, _ = await harness.admin("DELETE", f"/admin/merchants/{merchant.id}/keys/{first_key_id}")
    assert status == 200
    status, problem = await merchant.get("/v1/payouts")
    assert status == 401 and problem["code"] == "unauthorized"
    resp = await harness.client.get(
        "/v1/payouts", headers={"Authorization": f"Bearer {second['secret_key']}"}
    )
    assert resp.status == 200
    resp = await harness.client.get("/admin/payouts", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
    resp = await harness.client.get("/admin/payouts", headers=merchant.headers)
    assert resp.status == 401


async def test_balance_events_and_cursor_pagination(harness: Harness) -> None:
    merchant = await harness.merchant(funds=100_000, fees={"fixed": 0, "bps": 0})
    ids = []
    for n in range(5):
        _, payout, _ = await merchant.post_payout(payout_body(amount=1_000 + n))
        ids.append(payout["id"])
    for pid in ids:
        await wait_until(lambda pid=pid: _is(merchant.status_of(pid), "paid"), timeout_s=10)
    status, balance = await merchant.get("/v1/balance")
    assert status == 200
    assert balance["available"] == [{"currency": "EUR", "amount": 100_000 - 5_010}]
    assert balance["pending"] == [{"currency": "EUR", "amount": 0}]
    _, page1 = await merchant.get("/v1/payouts?limit=2")
    assert page1["has_more"] and [p["id"] for p in page1["data"]] == ids[::-1][:2]
    _, page2 = await merchant.get(f"/v1/payouts?limit=2&starting_after={page1['data'][-1]['id']}")
    assert [p["id"] for p in page2["data"]] == ids[::-1][2:4]
    _, by_status = await merchant.get("/v1/payouts?status=failed")
    assert by_status["data"] == []
    _, events = await merchant.get("/v1/events?type=payout.paid&limit=100")
    assert sorted(e["data"]["object"]["id"] for e in events["data"]) == sorted(ids)
    for query in (
        "limit=101",
        "limit=0",
        "status=nope",
        "created_gte=yesterday",
        "starting_after=x",
    ):
        status, problem = await merchant.get(f"/v1/payouts?{query}")
        assert status == 400 and problem["code"] == "invalid_query", query


async def test_bad_input_on_every_field_answers_problem_json_and_changes_nothing(
    harness: Harness,
) -> None:
    merchant = await harness.merchant()
    good = payout_body()
    bad_bodies: list[Any] = [
        {**good, "amount": 0},
        {**good, "amount": 10.5},
        {**good, "amount": "100"},
        {**good, "amount": 10**19},
        {**good, "currency": "eur"},
        {**good, "currency": "EURO"},
        {**good, "currency": "USD"},  # not enabled for this merchant
        {**good, "beneficiary": {**good["beneficiary"], "name": ""}},
        {**good, "beneficiary": {**good["beneficiary"], "name": "x" * 71}},
        {**good, "beneficiary": {**good["beneficiary"], "account_number": "12"}},
        {**good, "beneficiary": {**good["beneficiary"], "account_number": "DE89 3704"}},
        {**good, "beneficiary": {**good["beneficiary"], "bank_code": "NR-TH"}},
        {**good, "beneficiary": {"name": "A", "account_number": "DE8937040044"}},
        {**good, "reference": ""},
        {**good, "reference": "has space"},
        {**good, "reference": "r" * 65},
        {**good, "metadata": {"k": 1}},
        {**good, "metadata": {f"k{i}": "v" for i in range(21)}},
        {**good, "surprise": True},
        {k: v for k, v in good.items() if k != "amount"},
        [],
    ]
    seen_codes = set()
    for body in bad_bodies:
        status, problem, headers = await merchant.post_payout(body)
        assert 400 <= status < 500, (body, problem)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert problem["status"] == status and problem["code"], problem
        seen_codes.add(problem["code"])
    assert seen_codes == {"validation_error", "currency_not_enabled"}
    raw_cases = [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "empty_body"),
        (b"amount=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ]
    for raw, ctype, status, code in raw_cases:
        resp = await harness.client.post(
            "/v1/payouts",
            data=raw,
            headers={
                **merchant.headers,
                "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": ctype,
            },
        )
        assert resp.status == status and (await resp.json())["code"] == code, raw
    resp = await harness.client.post(
        "/v1/payouts", json=good, headers={**merchant.headers, "Idempotency-Key": "x" * 300}
    )
    assert resp.status == 400 and (await resp.json())["code"] == "idempotency_key_invalid"
    status, problem = await merchant.post(
        "/v1/webhook_endpoints", {"url": "ftp://example.com/x", "event_types": ["payout.paid"]}
    )
    assert status == 422 and problem["code"] == "validation_error"
    status, problem = await merchant.post(
        "/v1/webhook_endpoints", {"url": "https://example.com/x", "event_types": ["nope"]}
    )
    assert status == 422
    status, problem = await harness.admin(
        "POST", f"/admin/merchants/{merchant.id}/fundings", {"amount": 5, "currency": "EUR"}
    )
    assert status == 422 and problem["code"] == "validation_error"
    status, problem = await harness.admin(
        "PUT", f"/admin/merchants/{merchant.id}/fees", {"bps": 10_001}
    )
    assert status == 422
    assert await harness.fetchval("SELECT count(*) FROM payouts") == 0
    assert await harness.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    assert await harness.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    account = await merchant.account()  # no hold was ever tried at the ledger
    assert account["debits_pending"] == 0 and account["debits_posted"] == 0


async def test_funding_is_idempotent_by_reference(harness: Harness) -> None:
    merchant = await harness.merchant(funds=0)
    path = f"/admin/merchants/{merchant.id}/fundings"
    body = {"amount": 7_000, "currency": "EUR", "reference": "wire-2026-11-22"}
    first = await harness.admin("POST", path, body)
    second = await harness.admin("POST", path, body)
    assert first[0] == 201 and second[0] == 200 and first[1]["id"] == second[1]["id"]
    assert (await merchant.account())["credits_posted"] == 7_000
    status, problem = await harness.admin("POST", path, {**body, "amount": 7_001})
    assert status == 409 and problem["code"] == "reference_already_used"


async def test_large_bodies_are_refused_except_for_batches_up_to_their_own_limit(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(
        REQUEST_BODY_MAX_BYTES="4096", PAYOUT_BATCH_BODY_MAX_BYTES="2000000"
    )
    merchant = await harness.merchant()
    big = {**payout_body(), "metadata": {f"k{i}": "v" * 400 for i in range(15)}}
    status, problem, _ = await merchant.post_payout(big)
    assert status == 413 and problem["code"] == "request_too_large"
    items = [payout_body(amount=100 + n, reference=f"big-{n}") for n in range(2_000)]
    resp = await harness.client.post(
        "/v1/payout_batches",
        json={"items": items},
        headers={**merchant.headers, "Idempotency-Key": "big-batch"},
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["total"] == 2_000
    assert await harness.fetchval("SELECT count(*) FROM batch_items") == 2_000
