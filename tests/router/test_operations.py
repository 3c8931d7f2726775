"""Quota TCC anomalies, hot reload, kill switches, exports and bad input on every endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from typing import Any

import msgspec

from tests.router.conftest import (
    CALLBACK_SECRET,
    BankAdmin,
    Router,
    RouterFactory,
    submission,
    write_yaml,
)
from tests.support.waiting import wait_until

QUOTA_CHANNELS = [
    {"id": "ch_small", "bank": "northbank", "currency": "EUR", "daily_quota_minor": 1500},
    {"id": "ch_big", "bank": "atlas", "currency": "EUR", "fee_minor": 500},
]


def _try_body(payout_id: str = "po_1", amount: int = 1000) -> dict[str, Any]:
    return {
        "payout_id": payout_id,
        "merchant_id": "mer_test",
        "amount_minor": amount,
        "currency": "EUR",
        "beneficiary_bank_code": "ABC",
    }


async def _quota(router: Router) -> dict[str, tuple[int, int]]:
    channels = (await router.call("GET", "/v1/channels"))["channels"]
    return {c["id"]: (c["quota"]["reserved_minor"], c["quota"]["consumed_minor"]) for c in channels}


async def test_try_reserves_quota_on_the_chosen_channel_and_a_repeat_has_no_second_effect(
    make_router: RouterFactory,
) -> None:
    router = await make_router(channels=QUOTA_CHANNELS)
    first = await router.call("POST", "/v1/tcc/gtx_a/router/try", json=_try_body())
    assert first["status"] == "tried" and first["channel_id"] == "ch_small"
    again = await router.call("POST", "/v1/tcc/gtx_a/router/try", json=_try_body())
    assert again == first
    assert (await _quota(router))["ch_small"] == (1000, 0)
    # The next 1000 no longer fits ch_small's 1500: it goes to ch_big.
    second = await router.call("POST", "/v1/tcc/gtx_b/router/try", json=_try_body("po_2"))
    assert second["channel_id"] == "ch_big"
    decision = await router.call("GET", f"/v1/decisions/{second['decision_id']}")
    excluded = {c["channel_id"]: c["excluded_by"] for c in decision["candidates"]}
    assert excluded["ch_small"] == "daily_quota"

    confirmed = await router.call("POST", "/v1/tcc/gtx_a/router/confirm")
    assert confirmed["status"] == "confirmed" and confirmed["channel_id"] == "ch_small"
    assert await router.call("POST", "/v1/tcc/gtx_a/router/confirm") == confirmed
    cancelled = await router.call("POST", "/v1/tcc/gtx_b/router/cancel", json={})
    assert cancelled["status"] == "cancelled"
    quota = await _quota(router)
    assert quota["ch_small"] == (0, 1000) and quota["ch_big"] == (0, 0)
    problem = await router.call("POST", "/v1/tcc/gtx_a/router/cancel", expect=409)
    assert problem["code"] == "tcc_branch_confirmed"


async def test_cancel_before_try_leaves_a_tombstone_and_the_late_try_is_suspended(
    make_router: RouterFactory,
) -> None:
    router = await make_router(channels=QUOTA_CHANNELS)
    empty = await router.call("POST", "/v1/tcc/gtx_c/router/cancel")
    assert empty["status"] == "cancelled" and empty["channel_id"] is None
    late = await router.call("POST", "/v1/tcc/gtx_c/router/try", json=_try_body(), expect=409)
    assert late["code"] == "tcc_branch_cancelled"
    again = await router.call("POST", "/v1/tcc/gtx_c/router/try", json=_try_body(), expect=409)
    assert again["code"] == "tcc_branch_cancelled"
    assert (await _quota(router)) == {"ch_small": (0, 0), "ch_big": (0, 0)}
    problem = await router.call("POST", "/v1/tcc/gtx_c/router/confirm", expect=409)
    assert problem["code"] == "tcc_branch_cancelled"


async def test_a_rejected_try_is_remembered_confirm_fails_and_cancel_is_a_no_op(
    make_router: RouterFactory,
) -> None:
    router = await make_router(channels=QUOTA_CHANNELS)
    body = {**_try_body(), "currency": "USD"}
    rejected = await router.call("POST", "/v1/tcc/gtx_d/router/try", json=body, expect=422)
    assert rejected["code"] == "no_eligible_channel"
    assert {e["excluded_by"] for e in rejected["errors"]} == {"currency"}
    # Remembered: even a body that would fit now gets the stored answer.
    again = await router.call("POST", "/v1/tcc/gtx_d/router/try", json=_try_body(), expect=422)
    assert again["code"] == "no_eligible_channel"
    problem = await router.call("POST", "/v1/tcc/gtx_d/router/confirm", expect=409)
    assert problem["code"] == "tcc_try_rejected"
    assert (await router.call("POST", "/v1/tcc/gtx_d/router/cancel"))["status"] == "cancelled"
    problem = await router.call("POST", "/v1/tcc/gtx_e/router/confirm", expect=409)
    assert problem["code"] == "tcc_branch_not_tried"
    assert (await _quota(router)) == {"ch_small": (0, 0), "ch_big": (0, 0)}


async def test_a_submission_that_falls_back_moves_the_reservation_to_the_channel_that_paid(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(channels=QUOTA_CHANNELS)
    tried = await router.call("POST", "/v1/tcc/gtx_f/router/try", json=_try_body("po_f"))
    assert tried["channel_id"] == "ch_small"
    await bank_admin.behave("northbank", "outage")
    body = submission("po_f", gid="gtx_f")
    view = await router.call("POST", "/v1/submissions", json=body)
    assert view["status"] == "succeeded" and view["channel_id"] == "ch_big"
    assert [a["channel_id"] for a in view["attempts"]] == ["ch_small", "ch_big"]
    assert (await _quota(router)) == {"ch_small": (0, 0), "ch_big": (1000, 0)}
    confirmed = await router.call("POST", "/v1/tcc/gtx_f/router/confirm")
    assert confirmed["channel_id"] == "ch_big"
    assert (await _quota(router))["ch_big"] == (0, 1000)


async def test_channels_and_rules_reload_without_restart_and_a_broken_file_keeps_the_last_good(
    make_router: RouterFactory,
) -> None:
    router = await make_router()
    before = await router.call("GET", "/v1/config")
    channels = [
        *(await router.call("GET", "/v1/channels"))["channels"],
    ]
    assert len(channels) == 3
    write_yaml(
        router.channels_file,
        {
            "channels": [
                {"id": "ch_north", "bank": "northbank", "currency": "EUR"},
                {"id": "ch_north_2", "bank": "northbank", "currency": "EUR"},
            ]
        },
    )

    async def reloaded() -> bool:
        config = await router.call("GET", "/v1/config")
        return config["channels_version"] != before["channels_version"]

    await wait_until(reloaded, timeout_s=5, message="channels reload")
    ids = [c["id"] for c in (await router.call("GET", "/v1/channels"))["channels"]]
    assert ids == ["ch_north", "ch_north_2"]

    write_yaml(
        router.rules_file,
        {
            "rules": [
                {
                    "id": "pin2",
                    "merchant_id": "mer_test",
                    "action": "pin",
                    "channels": ["ch_north_2"],
                }
            ]
        },
    )
    await wait_until(lambda: _rule_count(router, 1), timeout_s=5, message="rules reload")
    tried = await router.call("POST", "/v1/tcc/gtx_r/router/try", json=_try_body())
    assert tried["channel_id"] == "ch_north_2"

    good = (await router.call("GET", "/v1/config"))["channels_version"]
    router.channels_file.write_text("channels: [{id: ch_x, bank: northbank, currency: euro}]\n")

    async def rejected() -> Any:
        return (await router.call("GET", "/v1/config"))["last_error"]

    error = await wait_until(rejected, timeout_s=5, message="broken file rejected")
    assert "ISO 4217" in error
    config = await router.call("GET", "/v1/config")
    assert config["channels_version"] == good
    ids = [c["id"] for c in (await router.call("GET", "/v1/channels"))["channels"]]
    assert ids == ["ch_north", "ch_north_2"]


async def _rule_count(router: Router, n: int) -> bool:
    return (await router.call("GET", "/v1/config"))["rule_count"] == n


async def test_a_kill_switch_is_audited_and_takes_the_channel_out_of_routing(
    make_router: RouterFactory,
) -> None:
    router = await make_router()
    engaged = await router.call(
        "PUT",
        "/v1/channels/ch_north/kill_switches/submit",
        json={"engaged": True, "reason": "bank incident 42", "actor": "ops@example.com"},
    )
    assert engaged["engaged"] is True
    tried = await router.call("POST", "/v1/tcc/gtx_k/router/try", json=_try_body())
    assert tried["channel_id"] != "ch_north"
    decision = await router.call("GET", f"/v1/decisions/{tried['decision_id']}")
    excluded = {c["channel_id"]: c["excluded_by"] for c in decision["candidates"]}
    assert excluded["ch_north"] == "kill_switch"
    await router.call(
        "PUT",
        "/v1/channels/ch_north/kill_switches/submit",
        json={"engaged": False, "reason": "resolved", "actor": "ops@example.com"},
    )
    listing = await router.call("GET", "/v1/channels/ch_north/kill_switches")
    assert [(a["engaged"], a["reason"]) for a in listing["audit"]] == [
        (False, "resolved"),
        (True, "bank incident 42"),
    ]
    channels = (await router.call("GET", "/v1/channels"))["channels"]
    assert next(c for c in channels if c["id"] == "ch_north")["kill_switches"]["submit"] is False


async def test_attempts_export_is_ndjson_filtered_by_bank_and_time(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    router = await make_router(
        rules=[{"id": "n", "merchant_id": "*", "action": "pin", "channels": ["ch_north"]}]
    )
    views = [await router.call("POST", "/v1/submissions", json=submission()) for _ in range(3)]
    async with router.session.get(
        router.url + "/v1/attempts/export",
        params={"bank": "northbank", "from": "2000-01-01", "to": "2999-01-01T00:00:00Z"},
        headers=router.headers,
    ) as resp:
        assert resp.status == 200 and resp.content_type == "application/x-ndjson"
        lines = [msgspec.json.decode(line) for line in (await resp.read()).splitlines()]
    assert [row["attempt_id"] for row in lines] == [v["attempt_id"] for v in views]
    assert all(row["status"] == "succeeded" and row["amount_minor"] == 1000 for row in lines)
    async with router.session.get(
        router.url + "/v1/attempts/export", params={"bank": "atlas"}, headers=router.headers
    ) as resp:
        assert await resp.read() == b""
    # An offset written without URL-encoding its "+" still parses.
    async with router.session.get(
        router.url + "/v1/attempts/export?to=2000-01-01T00:00:00+00:00", headers=router.headers
    ) as resp:
        assert resp.status == 200 and await resp.read() == b""


def _sign(body: bytes, *, secret: str = CALLBACK_SECRET, at: int | None = None) -> str:
    t = at if at is not None else int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


async def test_bad_input_on_every_endpoint_answers_problem_json_and_changes_nothing(
    make_router: RouterFactory,
) -> None:
    router = await make_router(channels=QUOTA_CHANNELS)
    good_sub = submission()
    callback = msgspec.json.encode(
        {"reference": "att_nope", "bank_reference": None, "status": "paid", "fee_minor": 1}
    )
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        (
            "POST",
            "/v1/tcc/g/b/try",
            {"json": {**_try_body(), "amount_minor": 0}},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/tcc/g/b/try",
            {"json": {**_try_body(), "amount_minor": 1.5}},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/tcc/g/b/try",
            {"json": {**_try_body(), "amount_minor": "10"}},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/tcc/g/b/try",
            {"json": {**_try_body(), "currency": "eur"}},
            422,
            "validation_error",
        ),
        ("POST", "/v1/tcc/g/b/try", {"json": {**_try_body(), "extra": 1}}, 422, "validation_error"),
        (
            "POST",
            "/v1/tcc/g/b/try",
            {"data": b"{", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/tcc/g/b/try",
            {"data": b"x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("POST", "/v1/tcc/g%20x/b/try", {"json": _try_body()}, 400, "invalid_path"),
        ("POST", "/v1/tcc/g/b/confirm", {"json": {"x": 1}}, 422, "validation_error"),
        (
            "POST",
            "/v1/tcc/g/b/cancel",
            {"data": b"nope", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/submissions",
            {"json": {**good_sub, "amount_minor": -5}},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/submissions",
            {"json": {**good_sub, "beneficiary": {"name": "x"}}},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/submissions",
            {"data": b"x" * 3_000_000, "headers": {"Content-Type": "application/json"}},
            413,
            "request_too_large",
        ),
        ("GET", "/v1/submissions/po_unknown", {}, 404, "submission_not_found"),
        ("POST", "/v1/submissions/po_unknown/inquire", {}, 404, "submission_not_found"),
        ("GET", "/v1/attempts/export?from=yesterday", {}, 400, "invalid_query"),
        ("GET", "/v1/attempts/export?from=2026-01-02&to=2026-01-01", {}, 400, "invalid_query"),
        ("GET", "/v1/decisions/att_unknown", {}, 404, "decision_not_found"),
        ("GET", "/v1/channels/ch_nope/kill_switches", {}, 404, "channel_not_found"),
        (
            "PUT",
            "/v1/channels/ch_small/kill_switches/everything",
            {"json": {"engaged": True, "reason": "r", "actor": "a"}},
            404,
            "kill_operation_unknown",
        ),
        (
            "PUT",
            "/v1/channels/ch_nope/kill_switches/submit",
            {"json": {"engaged": True, "reason": "r", "actor": "a"}},
            404,
            "channel_not_found",
        ),
        (
            "PUT",
            "/v1/channels/ch_small/kill_switches/submit",
            {"json": {"engaged": "yes", "reason": "r", "actor": "a"}},
            422,
            "validation_error",
        ),
        (
            "PUT",
            "/v1/channels/ch_small/kill_switches/submit",
            {"json": {"engaged": True, "reason": "", "actor": "a"}},
            422,
            "validation_error",
        ),
        (
            "POST",
            "/v1/bank_callbacks/northbank",
            {"data": callback, "headers": {"Content-Type": "application/json"}},
            401,
            "bank_signature_invalid",
        ),
        (
            "POST",
            "/v1/bank_callbacks/northbank",
            {
                "data": callback,
                "headers": {
                    "Content-Type": "application/json",
                    "Bank-Signature": _sign(callback, secret="wrong-secret-000000"),
                },
            },
            401,
            "bank_signature_invalid",
        ),
        (
            "POST",
            "/v1/bank_callbacks/northbank",
            {
                "data": callback,
                "headers": {
                    "Content-Type": "application/json",
                    "Bank-Signature": _sign(callback, at=int(time.time()) - 3600),
                },
            },
            401,
            "bank_signature_invalid",
        ),
        (
            "POST",
            "/v1/bank_callbacks/northbank",
            {
                "data": callback,
                "headers": {"Content-Type": "application/json", "Bank-Signature": _sign(callback)},
            },
            404,
            "attempt_not_found",
        ),
        (
            "POST",
            "/v1/bank_callbacks/northbank",
            {
                "data": b'{"status": 1}',
                "headers": {
                    "Content-Type": "application/json",
                    "Bank-Signature": _sign(b'{"status": 1}'),
                },
            },
            422,
            "validation_error",
        ),
        (
            "GET",
            "/v1/channels",
            {"headers": {"X-Service-Token": "wrong-token-0000000000"}},
            401,
            "service_token_invalid",
        ),
        (
            "POST",
            "/v1/submissions",
            {"json": good_sub, "headers": {"X-Service-Token": ""}},
            401,
            "service_token_invalid",
        ),
    ]
    for method, path, kw, status, code in cases:
        problem = await router.call(method, path, expect=status, **kw)
        assert problem["code"] == code, (method, path, problem)
        assert problem["status"] == status
    # Nothing changed: no quota, no submission, no kill switch, no audit row.
    assert (await _quota(router)) == {"ch_small": (0, 0), "ch_big": (0, 0)}
    pool = router.service.pool
    for table in (
        "submission",
        "attempt",
        "decision",
        "tcc_barrier",
        "kill_switch_audit",
        "outbox",
    ):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_racing_try_confirm_cancel_leave_exactly_one_effect_per_branch(
    make_router: RouterFactory,
) -> None:
    router = await make_router(
        channels=[{"id": "ch_q", "bank": "northbank", "currency": "EUR"}],
    )
    rng = random.Random(3)
    plans = {
        f"gtx_race_{i}": rng.choice(
            [
                ["try", "try", "confirm", "confirm"],
                ["try", "cancel", "cancel", "try"],
                ["cancel", "try"],
                ["try", "confirm", "cancel"],
            ]
        )
        for i in range(40)
    }
    amounts = {gid: 100 + i for i, gid in enumerate(plans)}

    async def op(gid: str, name: str) -> tuple[str, str, int]:
        body = _try_body(gid, amounts[gid]) if name == "try" else None
        async with router.session.post(
            f"{router.url}/v1/tcc/{gid}/router/{name}", json=body, headers=router.headers
        ) as resp:
            return gid, name, resp.status

    calls = [op(gid, name) for gid, names in plans.items() for name in names]
    rng.shuffle(calls)
    results = await asyncio.gather(*calls)
    confirmed = {gid for gid, name, status in results if name == "confirm" and status == 200}
    cancelled = {gid for gid, name, status in results if name == "cancel" and status == 200}
    assert not confirmed & cancelled
    assert all(status in (200, 409) for _, _, status in results)
    for gid in set(plans) - confirmed - cancelled:  # the coordinator would cancel these
        await router.call("POST", f"/v1/tcc/{gid}/router/cancel")
    reserved, consumed = (await _quota(router))["ch_q"]
    assert reserved == 0
    assert consumed == sum(amounts[gid] for gid in confirmed)
