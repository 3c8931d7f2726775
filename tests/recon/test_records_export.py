"""Recon never matches an incomplete records export: a truncated, cut-short or miscounted
export of the router fails the run with a critical alert, and nothing is matched or stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from services.kit.settings import DEFAULT_SERVICE_TOKEN
from services.recon.adapters.parsing import default_parser
from services.recon.adapters.records import RecordsIncomplete, RouterExport
from services.recon.handlers import ReconService
from services.recon.settings import Settings
from tests.recon.conftest import rules_book
from tests.recon.daygen import generate, statement_csv
from tests.support.processes import free_port

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
Body = Callable[[list[dict]], bytes]


def lines(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r, default=str).encode() + b"\n" for r in records)


def complete(records: list[dict]) -> bytes:
    return lines(records) + b'{"end": true, "rows": %d, "truncated": false}\n' % len(records)


BODIES: dict[str, Body] = {
    # What the router sends when the window holds more than ROUTER_EXPORT_ROWS_MAX attempts.
    "truncated": lambda rs: (
        lines(rs[:-1]) + b'{"end": true, "rows": %d, "truncated": true}\n' % (len(rs) - 1)
    ),
    # A router that does not know ?trailer=true, or a stream cut mid-way.
    "no_trailer": lines,
    "cut_mid_line": lambda rs: lines(rs)[:-7],
    # The count disagrees with what arrived.
    "miscounted": lambda rs: (
        lines(rs[:-1]) + b'{"end": true, "rows": %d, "truncated": false}\n' % len(rs)
    ),
}


@pytest.fixture
async def router() -> AsyncIterator[tuple[str, dict[str, object]]]:
    state: dict[str, object] = {"records": [], "body": complete}

    async def export(request: web.Request) -> web.Response:
        assert request.headers.get("X-Service-Token") == DEFAULT_SERVICE_TOKEN
        assert request.query.get("trailer") == "true"
        body = state["body"](state["records"])  # type: ignore[operator]
        return web.Response(body=body, content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_get("/v1/attempts/export", export)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


async def test_a_complete_export_is_stored_without_its_end_record(
    router: tuple[str, dict[str, object]], tmp_path: Path
) -> None:
    url, state = router
    day = generate({"match": 40}, channel="bank_x", seed=3)
    records = [dict(r) for r in day.records]
    state["records"] = records
    async with aiohttp.ClientSession() as session:
        export = RouterExport(session, url, DEFAULT_SERVICE_TOKEN, max_bytes=1 << 20, timeout_s=10)
        got = await export.fetch("bank_x", day.business_date, day.business_date, tmp_path / "r")
    assert got.path.read_bytes() == lines(records)
    assert got.size_bytes == len(lines(records))


@pytest.mark.parametrize("kind", sorted(BODIES))
async def test_an_incomplete_export_fails_the_run_with_an_alert_and_matches_nothing(
    kind: str,
    router: tuple[str, dict[str, object]],
    pool: asyncpg.Pool,
    settings: Settings,
    channel: str,
) -> None:
    url, state = router
    day = generate({"match": 30}, channel=channel, seed=5)
    state["records"] = [dict(r) for r in day.records]
    async with aiohttp.ClientSession() as session:
        export = RouterExport(session, url, DEFAULT_SERVICE_TOKEN, max_bytes=1 << 20, timeout_s=10)
        service = ReconService(pool, settings, rules_book(channel), export, default_parser())
        data = statement_csv(day.statements[0])
        received = await service.receive_file(channel, "day.csv", data, source="cli", now=NOW)
        assert received.status == "accepted"

        state["body"] = BODIES[kind]
        with pytest.raises(RecordsIncomplete):
            await service.run_day(channel, day.business_date, now=NOW)
        alerts = await pool.fetch(
            "SELECT code, severity, message FROM recon_alerts WHERE channel = $1", channel
        )
        assert [(a["code"], a["severity"]) for a in alerts] == [("records_incomplete", "critical")]
        assert "incomplete" in alerts[0]["message"]
        assert (
            await pool.fetchval("SELECT count(*) FROM recon_runs WHERE channel = $1", channel) == 0
        )
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM recon_breaks b JOIN recon_runs r USING (run_id)"
                " WHERE r.channel = $1",
                channel,
            )
            == 0
        )

        # The intake loop retries; once the router sends the whole export the day reconciles.
        state["body"] = complete
        outcome = await service.run_day(channel, day.business_date, now=NOW)
        assert (outcome.summary["matched_lines"], outcome.summary["break_count"]) == (30, 0)
