"""Finance API additions (``contracts.finance``). The recon service's finance-key middleware
guards every ``/v1/recon/`` path, so these views only see finance callers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contracts.finance import ResolveBreak
from services.kit.errors import REQUEST_ID_KEY, ProblemError, json_response, read_json
from services.recon.console import breaks
from services.recon.entrypoints.http import break_body
from services.recon.keys import service_key, settings_key
from services.recon.reports import views as reports


async def search_breaks(request: web.Request) -> web.Response:
    flt = breaks.BreakFilter.parse(request.query)
    after = breaks.decode_cursor(request.query.get("cursor"))
    limit = breaks.page_limit(request.query.get("limit"), request.app[settings_key].page_size_max)
    async with request.app[service_key].pool.acquire() as conn:
        rows, next_cursor = await breaks.search(conn, flt, after=after, limit=limit)
    return json_response({"breaks": [break_body(r) for r in rows], "next_cursor": next_cursor})


async def detail_body(conn: Any, row: Any) -> dict[str, Any]:
    trail = await breaks.audit(conn, row["break_id"])
    return {**break_body(row), "audit": [breaks.audit_body(a) for a in trail]}


async def get_break(request: web.Request) -> web.Response:
    break_id = request.match_info["break_id"]
    async with request.app[service_key].pool.acquire() as conn:
        row = await breaks.get(conn, break_id)
        if row is None:
            raise ProblemError(404, "break_not_found", "Break not found", break_id)
        return json_response(await detail_body(conn, row))


async def resolve_break(request: web.Request) -> web.Response:
    body: ResolveBreak = await read_json(request, ResolveBreak)
    pool = request.app[service_key].pool
    row = await breaks.resolve(
        pool,
        request.match_info["break_id"],
        comment=body.comment,
        actor=body.actor,
        role="finance",
        request_id=request.get(REQUEST_ID_KEY),
    )
    async with pool.acquire() as conn:
        return json_response(await detail_body(conn, row))


async def daily_summary(request: web.Request) -> web.Response:
    return json_response(reports.daily_body(await reports.daily_summary_rows(request)))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/recon/breaks/search", search_breaks)  # before {break_id}
    r.add_get("/v1/recon/breaks/{break_id}", get_break)
    r.add_post("/v1/recon/breaks/{break_id}/resolve", resolve_break)
    r.add_get("/v1/recon/summary/daily", daily_summary)
