"""Report downloads: a run's parts as CSV (chunked as the rows are read), the run as XLSX
(built on disk in constant memory, then sent in chunks), the daily cross-channel summary."""

from __future__ import annotations

import asyncio
import re
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from services.kit.errors import ProblemError
from services.recon.keys import service_key, settings_key
from services.recon.reports import source, writers
from services.recon.reports.money import rate_ppm

_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
PARTS = ("summary", "breaks", "matched")
SEND_CHUNK_BYTES = 256 * 1024
RANGE_DAYS_MAX = 366
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _pool(request: web.Request) -> Any:
    return request.app[service_key].pool


def _memory_mb(request: web.Request) -> int:
    return max(64, request.app[settings_key].duckdb_memory_limit_mb // 4)


async def load_run(request: web.Request, run_id: str) -> dict[str, Any]:
    if not _ID.match(run_id):
        raise ProblemError(404, "run_not_found", "Run not found", run_id)
    async with _pool(request).acquire() as conn:
        row = await source.run_row(conn, run_id)
    if row is None:
        raise ProblemError(404, "run_not_found", "Run not found", run_id)
    run = dict(row)
    run["match_rate_ppm"] = rate_ppm(run["matched_lines"], run["line_count"])
    return run


def date_range(query: Any) -> tuple[date, date]:
    """``from``/``to`` (inclusive) from a query; 30 days up to today by default."""
    today = datetime.now(UTC).date()
    values: dict[str, date] = {}
    for name, default in (("from", today - timedelta(days=30)), ("to", today)):
        raw = query.get(name)
        if raw in (None, ""):
            values[name] = default
            continue
        try:
            values[name] = date.fromisoformat(raw)
        except ValueError:
            raise ProblemError(
                400, "invalid_query", "Invalid query", f"{name} must be a date YYYY-MM-DD"
            ) from None
    if values["from"] > values["to"]:
        raise ProblemError(400, "invalid_query", "Invalid query", "from must not be after to")
    if (values["to"] - values["from"]).days >= RANGE_DAYS_MAX:
        raise ProblemError(
            400, "range_too_long", "Range too long", f"at most {RANGE_DAYS_MAX} days at once"
        )
    return values["from"], values["to"]


def _download(request: web.Request, filename: str, content_type: str) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    return response


async def run_csv(request: web.Request) -> web.StreamResponse:
    part = request.match_info["part"]
    if part not in PARTS:
        raise ProblemError(
            404, "report_part_invalid", "No such report part", f"part is one of {PARTS}"
        )
    run = await load_run(request, request.match_info["run_id"])
    pool = _pool(request)
    name = f"{run['channel']}_{run['business_date'].isoformat()}_{run['run_id']}_{part}.csv"
    if part == "summary":
        figures = source.Figures()
        async for _ in source.matched_with_figures(
            pool, run["run_id"], run["channel"], figures, _memory_mb(request)
        ):
            pass
        async for row in source.breaks(pool, run["run_id"]):
            figures.add_break(row)
        rows = writers.summary_rows(run, figures)
        chunks = writers.CsvChunks(rows[0])
        for values in rows[1:]:
            chunks.add(dict(zip(rows[0], values, strict=True)))
        response = _download(request, name, "text/csv; charset=utf-8")
        await response.prepare(request)
        await response.write(chunks.flush())
        await response.write_eof()
        return response
    columns = writers.BREAK_COLUMNS if part == "breaks" else writers.MATCHED_COLUMNS
    rows_iter = (
        source.breaks(pool, run["run_id"])
        if part == "breaks"
        else source.matched(
            pool, run["run_id"], run["channel"], memory_limit_mb=_memory_mb(request)
        )
    )
    response = _download(request, name, "text/csv; charset=utf-8")
    await response.prepare(request)
    chunks = writers.CsvChunks(columns)
    async for row in rows_iter:
        data = chunks.add(writers.with_major(row))
        if data:
            await response.write(data)
    await response.write(chunks.flush())
    await response.write_eof()
    return response


async def build_xlsx(request: web.Request, run: dict[str, Any], path: Path) -> None:
    """Write the workbook: rows go to the sheets in batches in a worker thread."""
    pool = _pool(request)
    book = await asyncio.to_thread(writers.Workbook, path)
    figures = source.Figures()
    batch: list[dict[str, Any]] = []
    try:
        async for row in source.breaks(pool, run["run_id"]):
            figures.add_break(row)
            batch.append(writers.with_major(row))
            if len(batch) >= source.CHUNK_ROWS:
                await asyncio.to_thread(book.add_many, "breaks", batch)
                batch = []
        await asyncio.to_thread(book.add_many, "breaks", batch)
        batch = []
        async for row in source.matched_with_figures(
            pool, run["run_id"], run["channel"], figures, _memory_mb(request)
        ):
            batch.append(writers.with_major(row))
            if len(batch) >= source.CHUNK_ROWS:
                await asyncio.to_thread(book.add_many, "matched", batch)
                batch = []
        await asyncio.to_thread(book.add_many, "matched", batch)
        await asyncio.to_thread(book.write_summary, run, figures)
    finally:
        await asyncio.to_thread(book.close)


async def run_xlsx(request: web.Request) -> web.StreamResponse:
    run = await load_run(request, request.match_info["run_id"])
    tmp_root = request.app[settings_key].data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    name = f"{run['channel']}_{run['business_date'].isoformat()}_{run['run_id']}.xlsx"
    response = _download(request, name, XLSX_TYPE)
    # Headers go out at once: a million-line workbook takes minutes to assemble and the
    # browser shows the download meanwhile. A failure after this point cuts the transfer
    # short, and a truncated zip never opens, so it cannot pass for a report.
    await response.prepare(request)
    with tempfile.TemporaryDirectory(prefix="xlsx-", dir=tmp_root) as work:
        path = Path(work) / "report.xlsx"
        await build_xlsx(request, run, path)
        with path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, SEND_CHUNK_BYTES):
                await response.write(chunk)
        await response.write_eof()
        return response


async def daily_summary_rows(request: web.Request) -> list[dict[str, Any]]:
    start, end = date_range(request.query)
    async with _pool(request).acquire() as conn:
        return await source.daily(conn, start, end)


def daily_body(runs: list[dict[str, Any]]) -> dict[str, Any]:
    days: dict[date, list[dict[str, Any]]] = {}
    for run in runs:
        days.setdefault(run["business_date"], []).append(
            {
                "channel": run["channel"],
                "business_date": run["business_date"].isoformat(),
                "run_id": run["run_id"],
                "line_count": run["line_count"],
                "record_count": run["record_count"],
                "matched_lines": run["matched_lines"],
                "match_rate_ppm": rate_ppm(run["matched_lines"], run["line_count"]),
                "break_count": run["break_count"],
                "open_breaks": sum(b["open_count"] for b in run["breaks"]),
                "breaks": run["breaks"],
            }
        )
    out = []
    for day, channels in sorted(days.items()):
        lines = sum(c["line_count"] for c in channels)
        matched = sum(c["matched_lines"] for c in channels)
        out.append(
            {
                "business_date": day.isoformat(),
                "channels": channels,
                "line_count": lines,
                "matched_lines": matched,
                "match_rate_ppm": rate_ppm(matched, lines),
                "break_count": sum(c["break_count"] for c in channels),
                "open_breaks": sum(c["open_breaks"] for c in channels),
            }
        )
    return {"days": out}


DAILY_CSV_COLUMNS = (
    "business_date",
    "channel",
    "run_id",
    "line_count",
    "matched_lines",
    "match_rate_ppm",
    "code",
    "currency",
    "count",
    "open_count",
    "amount",
    "amount_minor",
)


async def daily_csv(request: web.Request) -> web.StreamResponse:
    start, end = date_range(request.query)
    async with _pool(request).acquire() as conn:
        runs = await source.daily(conn, start, end)
    response = _download(
        request, f"recon_daily_{start.isoformat()}_{end.isoformat()}.csv", "text/csv; charset=utf-8"
    )
    await response.prepare(request)
    chunks = writers.CsvChunks(DAILY_CSV_COLUMNS)
    for run in runs:
        base = {
            "business_date": run["business_date"],
            "channel": run["channel"],
            "run_id": run["run_id"],
            "line_count": run["line_count"],
            "matched_lines": run["matched_lines"],
            "match_rate_ppm": rate_ppm(run["matched_lines"], run["line_count"]),
        }
        for figures in run["breaks"] or [{}]:
            data = chunks.add(writers.with_major({**base, **figures}))
            if data:
                await response.write(data)
    await response.write(chunks.flush())
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/recon/summary/daily.csv", daily_csv)
    r.add_get("/v1/recon/runs/{run_id}/report.xlsx", run_xlsx)
    r.add_get("/v1/recon/runs/{run_id}/{part}.csv", run_csv)
