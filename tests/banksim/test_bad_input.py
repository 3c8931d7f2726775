"""Bad input on every endpoint answers 4xx problem+json with a stable code and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.banksim.conftest import ADMIN_HEADERS, BANK_HEADERS, transfer
from tests.support.processes import ServiceProcess

JSON = {"Content-Type": "application/json"}
TOMORROW = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()


def with_(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, **changes}


GOOD = transfer("att_badinput")
BENEFICIARY = GOOD["beneficiary"]

# (method, path, headers, body: dict | bytes | None, status, code)
CASES: list[tuple[str, str, dict[str, str], Any, int, str]] = [
    ("POST", "/banks/steady/transfers", {}, GOOD, 401, "bank_key_invalid"),
    (
        "POST",
        "/banks/steady/transfers",
        {"X-Bank-Key": "wrong-key-0123456789"},
        GOOD,
        401,
        "bank_key_invalid",
    ),
    ("POST", "/banks/steady/transfers", ADMIN_HEADERS, GOOD, 401, "bank_key_invalid"),
    ("POST", "/banks/nobank/transfers", BANK_HEADERS, GOOD, 404, "bank_not_found"),
    (
        "POST",
        "/banks/steady/transfers",
        {**BANK_HEADERS, "Content-Type": "text/plain"},
        b"{}",
        415,
        "unsupported_media_type",
    ),
    ("POST", "/banks/steady/transfers", {**BANK_HEADERS, **JSON}, b"", 400, "empty_body"),
    (
        "POST",
        "/banks/steady/transfers",
        {**BANK_HEADERS, **JSON},
        b'{"reference":',
        400,
        "malformed_json",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, amount_minor=10.5),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, amount_minor=0),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, amount_minor=-5),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, amount_minor="100"),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, currency="eur"),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, extra=1),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, reference="a" * 36),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, reference="att 1"),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, callback_url="ftp://x/y"),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        {k: v for k, v in GOOD.items() if k != "beneficiary"},
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, beneficiary={**BENEFICIARY, "account_number": "12"}),
        422,
        "validation_error",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        BANK_HEADERS,
        with_(GOOD, currency="USD"),
        422,
        "currency_not_supported",
    ),
    (
        "POST",
        "/banks/steady/transfers",
        {**BANK_HEADERS, **JSON},
        b"[" + b"1," * 1_100_000 + b"1]",
        413,
        "request_too_large",
    ),
    ("DELETE", "/banks/steady/transfers/att_x", BANK_HEADERS, None, 405, "method_not_allowed"),
    ("GET", "/banks/steady/transfers/att_never", BANK_HEADERS, None, 404, "transfer_not_found"),
    ("GET", "/banks/nobank/transfers/att_never", BANK_HEADERS, None, 404, "bank_not_found"),
    ("GET", "/banks/steady/transfers/att_never", {}, None, 401, "bank_key_invalid"),
    ("GET", "/admin/banks", {}, None, 401, "service_token_invalid"),
    ("GET", "/admin/banks", BANK_HEADERS, None, 401, "service_token_invalid"),
    ("PUT", "/admin/banks/steady/behaviour", {}, {"mode": "outage"}, 401, "service_token_invalid"),
    (
        "PUT",
        "/admin/banks/steady/behaviour",
        ADMIN_HEADERS,
        {"mode": "chaos"},
        422,
        "validation_error",
    ),
    (
        "PUT",
        "/admin/banks/steady/behaviour",
        ADMIN_HEADERS,
        {"mode": "slow", "overrides": {"success_rate": 1.5}},
        422,
        "validation_error",
    ),
    (
        "PUT",
        "/admin/banks/steady/behaviour",
        ADMIN_HEADERS,
        {"mode": "slow", "overrides": {"speed": 2}},
        422,
        "validation_error",
    ),
    (
        "PUT",
        "/admin/banks/steady/behaviour",
        ADMIN_HEADERS,
        {"mode": "slow", "overrides": {"latency_median_ms": 1.5}},
        422,
        "validation_error",
    ),
    (
        "PUT",
        "/admin/banks/nobank/behaviour",
        ADMIN_HEADERS,
        {"mode": "outage"},
        404,
        "bank_not_found",
    ),
    ("GET", "/admin/banks/steady/executed?limit=0", ADMIN_HEADERS, None, 400, "invalid_query"),
    ("GET", "/admin/banks/steady/executed?limit=99999", ADMIN_HEADERS, None, 400, "invalid_query"),
    ("GET", "/admin/banks/steady/executed?after=x", ADMIN_HEADERS, None, 400, "invalid_query"),
    ("GET", "/admin/banks/steady/executed?status=lost", ADMIN_HEADERS, None, 400, "invalid_query"),
    ("GET", "/admin/banks/nobank/executed", ADMIN_HEADERS, None, 404, "bank_not_found"),
    ("GET", "/admin/banks/steady/executed", {}, None, 401, "service_token_invalid"),
    (
        "POST",
        "/admin/statements",
        {},
        {"bank": "steady", "business_date": "2026-01-02"},
        401,
        "service_token_invalid",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "nobank", "business_date": "2026-01-02"},
        404,
        "bank_not_found",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "steady", "business_date": "2026-13-02"},
        422,
        "validation_error",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "steady", "business_date": TOMORROW},
        422,
        "business_date_out_of_range",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "steady", "business_date": "2023-12-31"},
        422,
        "business_date_out_of_range",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "steady", "business_date": "2026-01-02", "currency": "USD"},
        422,
        "currency_not_supported",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "steady", "business_date": "2026-01-02", "discrepancies": [{"kind": "steal"}]},
        422,
        "validation_error",
    ),
    (
        "POST",
        "/admin/statements",
        ADMIN_HEADERS,
        {"bank": "steady", "business_date": "2026-01-02", "discrepancies": [{"kind": "drop_line"}]},
        422,
        "no_line_for_discrepancy",
    ),
]


async def snapshot(http: aiohttp.ClientSession, sim: ServiceProcess) -> tuple[Any, Any, list[str]]:
    async with http.get(
        f"{sim.url}/admin/banks/steady/executed", params={"limit": 5000}, headers=ADMIN_HEADERS
    ) as resp:
        journal = (await resp.json())["transfers"]
    async with http.get(f"{sim.url}/admin/banks", headers=ADMIN_HEADERS) as resp:
        banks = [b for b in (await resp.json())["banks"] if b["bank"] == "steady"]
    drop = Path(sim.env["RECON_DROP_DIR"]) / "steady"
    files = sorted(str(p) for p in drop.rglob("*")) if drop.exists() else []
    return journal, banks, files


async def test_bad_input_on_every_endpoint_gets_problem_json_and_changes_nothing(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    before = await snapshot(http, banksim)
    for method, path, headers, body, status, code in CASES:
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["data"] = body
        elif body is not None:
            kwargs["json"] = body
        async with http.request(method, banksim.url + path, **kwargs) as resp:
            text = await resp.text()
            assert resp.status == status, (method, path, body if body != GOOD else "", text)
            assert resp.content_type == "application/problem+json", text
            problem = await resp.json(content_type=None)
            assert problem["code"] == code and problem["status"] == status, (path, problem)
    assert await snapshot(http, banksim) == before
