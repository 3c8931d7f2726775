"""Finance API additions and reports on the real app: break search, audited resolution,
daily summary, CSV/XLSX streamed downloads with amounts in major units."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import openpyxl
import pytest

from tests.console.conftest import CHANNELS, DAYS, FIRST_DAY, Recon

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def all_breaks(recon: Recon, query: str = "", limit: int = 37) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/v1/recon/breaks/search?limit={limit}{query}" + (
            f"&cursor={cursor}" if cursor else ""
        )
        body = await recon.api("GET", path)
        assert len(body["breaks"]) <= limit
        out += body["breaks"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_break_search_filters_by_type_channel_date_amount_and_status_with_a_cursor(
    recon: Recon,
) -> None:
    everything = await all_breaks(recon)
    ids = [b["break_id"] for b in everything]
    assert ids == sorted(ids) and len(ids) == len(set(ids))  # cursor: no repeat, no gap
    async with recon.pool.acquire() as conn:
        assert len(ids) == await conn.fetchval("SELECT count(*) FROM recon_breaks")
    day = (FIRST_DAY + timedelta(days=1)).isoformat()
    amounts = sorted(b["amount_minor"] for b in everything if b["amount_minor"] is not None)
    low, high = amounts[len(amounts) // 4], amounts[len(amounts) // 2]
    cases: list[tuple[str, Any]] = [
        ("&code=missing_in_ledger", lambda b: b["code"] == "missing_in_ledger"),
        (f"&channel={CHANNELS[1]}", lambda b: b["channel"] == CHANNELS[1]),
        (f"&business_date={day}", lambda b: b["business_date"] == day),
        (
            f"&date_from={FIRST_DAY.isoformat()}&date_to={day}",
            lambda b: FIRST_DAY.isoformat() <= b["business_date"] <= day,
        ),
        (
            f"&amount_min_minor={low}&amount_max_minor={high}",
            lambda b: b["amount_minor"] is not None and low <= b["amount_minor"] <= high,
        ),
        ("&status=closed", lambda b: b["status"] == "closed"),
        ("&currency=EUR&status=open", lambda b: b["currency"] == "EUR" and b["status"] == "open"),
        (
            f"&code=timing&channel={CHANNELS[0]}&amount_min_minor=0",
            lambda b: (
                b["code"] == "timing"
                and b["channel"] == CHANNELS[0]
                and (b["amount_minor"] or -1) >= 0
            ),
        ),
    ]
    for query, keep in cases:
        expected = [b["break_id"] for b in everything if keep(b)]
        got = [b["break_id"] for b in await all_breaks(recon, query, limit=11)]
        assert got == expected, query
        assert expected or query == "&status=closed", f"{query} selects nothing: a weak case"


async def test_bad_filter_values_answer_problem_json_naming_the_parameter(recon: Recon) -> None:
    cases = [
        ("code=lost", "code (break type)"),
        ("status=maybe", "status must be open or closed"),
        ("channel=Not%20A%20Channel", "channel must match"),
        ("business_date=2026-02-30", "business_date must be a date"),
        ("date_from=2026-11-20&date_to=2026-11-01", "date_from must not be after date_to"),
        ("business_date=2026-11-20&date_from=2026-11-01", "not both"),
        ("amount_min_minor=12.5", "amount_min_minor must be a whole number"),
        ("amount_max_minor=abc", "amount_max_minor must be a whole number"),
        ("amount_min_minor=9&amount_max_minor=1", "must not exceed"),
        ("currency=eur", "three capital letters"),
        ("run_id=run%27%3B", "run_id is malformed"),
        ("cursor=!!!", "cursor is malformed"),
        ("cursor=bm90IGFuIGlk", "cursor is malformed"),  # base64 of "not an id"
        ("limit=0", "limit must be 1.."),
        ("limit=100000", "limit must be 1.."),
    ]
    for query, detail in cases:
        body = await recon.api("GET", f"/v1/recon/breaks/search?{query}", expect=400)
        assert body["code"] == "invalid_query" and detail in body["detail"], (query, body)
    for query, detail in (
        ("from=2026-11-31", "from must be a date"),
        ("from=2026-11-20&to=2026-11-01", "from must not be after to"),
        ("from=2020-01-01&to=2026-01-01", "at most 366 days"),
    ):
        for path in ("/v1/recon/summary/daily", "/v1/recon/summary/daily.csv"):
            body = await recon.api("GET", f"{path}?{query}", expect=400)
            assert detail in body["detail"], (path, query, body)
    some = (await recon.api("GET", "/v1/recon/breaks/search?status=open&limit=1"))["breaks"][0]
    resolve = f"/v1/recon/breaks/{some['break_id']}/resolve"
    for payload, ctype, status, code in (
        (b'{"comment": "", "actor": "a"}', "application/json", 422, "validation_error"),
        (b'{"comment": "ok"}', "application/json", 422, "validation_error"),
        (b'{"comment": "ok", "actor": "a", "extra": 1}', "application/json", 422, None),
        (b'{"comment": "   ", "actor": "a"}', "application/json", 422, "validation_error"),
        (b"{", "application/json", 400, "malformed_json"),
        (b"comment=ok", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ):
        body = await recon.api(
            "POST", resolve, data=payload, headers={"Content-Type": ctype}, expect=status
        )
        assert code is None or body["code"] == code, (payload, body)
    body = await recon.api(
        "POST",
        "/v1/recon/breaks/brk_missing/resolve",
        json={"comment": "c", "actor": "a"},
        expect=404,
    )
    assert body["code"] == "break_not_found"
    for path in ("/v1/recon/runs/run_nope/report.xlsx", "/v1/recon/runs/run_nope/breaks.csv"):
        assert (await recon.api("GET", path, expect=404))["code"] == "run_not_found"
    run_id = next(iter(recon.runs.values()))
    body = await recon.api("GET", f"/v1/recon/runs/{run_id}/everything.csv", expect=404)
    assert body["code"] == "report_part_invalid"
    assert (await recon.api("GET", f"/v1/recon/breaks/{some['break_id']}"))["audit"] == []


async def test_resolving_a_break_is_audited_once_and_the_audit_trail_is_append_only(
    recon: Recon,
) -> None:
    target = (await recon.api("GET", "/v1/recon/breaks/search?status=open&code=fee_mismatch"))[
        "breaks"
    ][0]
    path = f"/v1/recon/breaks/{target['break_id']}"
    body = await recon.api(
        "POST",
        path + "/resolve",
        json={"comment": "fee schedule changed on the 19th", "actor": "Grace Ledger"},
        headers={"Request-Id": "req_resolve_test_1"},
    )
    assert body["status"] == "closed" and body["closed_reason"] == "resolved by Grace Ledger"
    [entry] = body["audit"]
    assert entry["actor"] == "Grace Ledger" and entry["role"] == "finance"
    assert entry["comment"] == "fee schedule changed on the 19th"
    assert entry["request_id"] == "req_resolve_test_1" and entry["created_at"]
    again = await recon.api(
        "POST", path + "/resolve", json={"comment": "twice", "actor": "Grace Ledger"}, expect=409
    )
    assert again["code"] == "break_already_closed"
    assert len((await recon.api("GET", path))["audit"]) == 1
    async with recon.pool.acquire() as conn:
        for sql in (
            "UPDATE recon_break_audit SET comment = 'rewritten'",
            "DELETE FROM recon_break_audit",
            "TRUNCATE recon_break_audit",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        assert (
            await conn.fetchval(
                "SELECT comment FROM recon_break_audit WHERE break_id = $1", target["break_id"]
            )
            == "fee schedule changed on the 19th"
        )


async def test_daily_summary_adds_up_the_runs_of_every_channel_per_day(recon: Recon) -> None:
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    body = await recon.api(
        "GET", f"/v1/recon/summary/daily?from={FIRST_DAY.isoformat()}&to={last.isoformat()}"
    )
    assert [d["business_date"] for d in body["days"]] == [
        (FIRST_DAY + timedelta(days=i)).isoformat() for i in range(DAYS)
    ]
    for day in body["days"]:
        assert sorted(c["channel"] for c in day["channels"]) == sorted(CHANNELS)
        assert day["line_count"] == sum(c["line_count"] for c in day["channels"])
        assert day["match_rate_ppm"] == day["matched_lines"] * 1_000_000 // day["line_count"]
        for c in day["channels"]:
            run = await recon.api("GET", f"/v1/recon/runs/{c['run_id']}")
            assert (
                run["run_id"]
                == recon.runs[(c["channel"], FIRST_DAY.fromisoformat(day["business_date"]))]
            )
            assert c["break_count"] == run["break_count"] == sum(b["count"] for b in c["breaks"])
            for b in c["breaks"]:
                assert b["amount_minor"] == run["summary"]["breaks"][b["code"]]["amount_minor"]
            open_now = await all_breaks(recon, f"&run_id={c['run_id']}&status=open", limit=500)
            assert c["open_breaks"] == len(open_now)
    raw = await recon.api(
        "GET", f"/v1/recon/summary/daily.csv?from={FIRST_DAY.isoformat()}&to={last.isoformat()}"
    )
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    by_key = {(r["run_id"], r["code"]): r for r in rows}
    for day in body["days"]:
        for c in day["channels"]:
            for b in c["breaks"]:
                row = by_key[(c["run_id"], b["code"])]
                assert int(row["amount_minor"]) == b["amount_minor"]
                assert Decimal(row["amount"]) == Decimal(b["amount_minor"]) / 100


async def test_run_csv_parts_stream_in_chunks_and_agree_with_the_run(recon: Recon) -> None:
    run_id = recon.runs[(CHANNELS[1], FIRST_DAY)]
    run = await recon.api("GET", f"/v1/recon/runs/{run_id}")
    async with recon.http.get(
        recon.url + f"/v1/recon/runs/{run_id}/breaks.csv", headers=recon.auth
    ) as resp:
        assert resp.status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
        assert "attachment" in resp.headers["Content-Disposition"]
        breaks = list(csv.DictReader(io.StringIO(await resp.text())))
    api = {b["break_id"]: b for b in await all_breaks(recon, f"&run_id={run_id}")}
    assert {r["break_id"] for r in breaks} == set(api)
    for r in breaks:
        b = api[r["break_id"]]
        if b["amount_minor"] is None:
            assert r["amount"] == r["amount_minor"] == ""
        else:
            assert int(r["amount_minor"]) == b["amount_minor"]
            whole, frac = divmod(abs(b["amount_minor"]), 100)
            assert r["amount"] == f"{'-' if b['amount_minor'] < 0 else ''}{whole}.{frac:02d}"
    matched_raw = await recon.api("GET", f"/v1/recon/runs/{run_id}/matched.csv")
    matched = list(csv.DictReader(io.StringIO(matched_raw.decode())))
    assert len({(m["statement_id"], m["line_number"]) for m in matched}) == run["matched_lines"]
    assert all(m["amount_minor"] and m["currency"] == "EUR" for m in matched)
    per_pass: dict[str, set[tuple[str, str]]] = {}
    for m in matched:
        per_pass.setdefault(m["pass"], set()).add((m["statement_id"], m["line_number"]))
    assert {k: len(v) for k, v in per_pass.items()} == {
        k: v["lines"] for k, v in run["summary"]["passes"].items()
    }
    summary_raw = await recon.api("GET", f"/v1/recon/runs/{run_id}/summary.csv")
    summary = list(csv.DictReader(io.StringIO(summary_raw.decode())))
    passes = {r["key"]: r for r in summary if r["section"] == "pass"}
    for name, figures in run["summary"]["passes"].items():
        assert int(passes[name]["amount_minor"]) == figures["amount_minor"]
        assert int(passes[name]["records"]) == figures["records"]


async def test_a_large_run_downloads_as_xlsx_and_csv_with_every_row(
    recon: Recon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A day of 20,000 lines goes through upload and matching, then downloads whole: the
    workbook's matched sheet holds every matched line (rows are written in constant memory
    and the file is sent in chunks)."""
    from services.recon.adapters import columnar
    from tests.recon.daygen import generate, statement_csv

    channel, day = CHANNELS[0], FIRST_DAY + timedelta(days=DAYS + 5)
    generated = generate(
        {"match": 20_000, "missing_at_bank": 50}, channel=channel, business_date=day, seed=99
    )
    records_dir = next(iter(tmp_path_factory.getbasetemp().glob("console*"))) / "records"
    columnar.write_records(generated.records, records_dir / f"{channel}_{day.isoformat()}.ndjson")
    [st] = generated.statements
    body = await recon.api(
        "POST",
        f"/v1/recon/files?channel={channel}&filename=big.csv",
        data=statement_csv(st),
        headers={"Content-Type": "text/csv"},
        expect=201,
    )
    run_id = body["run"]["run_id"]
    assert body["run"]["matched_lines"] == 20_000
    async with recon.http.get(
        recon.url + f"/v1/recon/runs/{run_id}/report.xlsx", headers=recon.auth
    ) as resp:
        assert resp.status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
        chunks = 0
        data = bytearray()
        async for chunk in resp.content.iter_chunked(256 * 1024):
            chunks += 1
            data += chunk
    assert chunks > 1
    book = openpyxl.load_workbook(io.BytesIO(bytes(data)), read_only=True)
    assert book["matched"].max_row == 20_001  # header + every matched line
    assert book["breaks"].max_row == 51
    book.close()
    raw = await recon.api("GET", f"/v1/recon/runs/{run_id}/matched.csv")
    assert raw.count(b"\r\n") == 20_001
