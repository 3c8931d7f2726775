"""Rows of a run's report, read in bounded chunks so a run of a million lines never sits in
memory: breaks through a PostgreSQL server-side cursor; matched lines from the run's matches
file (Parquet, written by the run already joined with the lines' figures and sorted by
statement_id, line_number, attempt_id), read through DuckDB in chunks.

Runs made before matches were kept as Parquet (``matches_path`` NULL) have their matches in
``recon_matches``: those are read as a merge join of the matches (server-side cursor, sorted)
with the statement lines' columnar copy (DuckDB, sorted, fetched in chunks).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import duckdb

from services.recon.adapters.columnar import quote

CHUNK_ROWS = 5000  # rows per fetch from either side; bounds memory whatever the run size

BREAK_FIELDS = (
    "break_id",
    "code",
    "severity",
    "status",
    "channel",
    "business_date",
    "statement_id",
    "line_number",
    "attempt_id",
    "payout_id",
    "currency",
    "amount_minor",
    "expected_amount_minor",
    "fee_minor",
    "expected_fee_minor",
    "value_date",
    "record_date",
    "detail",
    "closed_reason",
)
MATCHED_FIELDS = (
    "statement_id",
    "line_number",
    "attempt_id",
    "pass",
    "booking_date",
    "value_date",
    "currency",
    "amount_minor",
    "fee_minor",
    "bank_reference",
)


@dataclass
class Figures:
    """Totals gathered while the rows stream past: (pass|code, currency) → counts, amounts."""

    passes: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    breaks: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    matched_rows: int = 0
    break_rows: int = 0

    def add_break(self, row: dict[str, Any]) -> None:
        self.break_rows += 1
        key = (row["code"], row["currency"] or "")
        slot = self.breaks.setdefault(key, {"count": 0, "open": 0, "amount_minor": 0})
        slot["count"] += 1
        slot["open"] += row["status"] == "open"
        slot["amount_minor"] += row["amount_minor"] or 0

    def add_line(self, row: dict[str, Any], first_of_line: bool, new_record: bool) -> None:
        self.matched_rows += 1
        key = (row["pass"], row["currency"] or "")
        slot = self.passes.setdefault(key, {"lines": 0, "records": 0, "amount_minor": 0})
        slot["records"] += new_record
        if first_of_line:
            slot["lines"] += 1
            slot["amount_minor"] += row["amount_minor"] or 0


async def run_row(conn: Any, run_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recon_runs WHERE run_id = $1", run_id)


def run_summary(row: asyncpg.Record) -> dict[str, Any]:
    return dict(json.loads(row["summary"]))


async def breaks(pool: asyncpg.Pool, run_id: str) -> AsyncIterator[dict[str, Any]]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        cursor = conn.cursor(
            f"SELECT {', '.join(BREAK_FIELDS)} FROM recon_breaks WHERE run_id = $1"
            " ORDER BY break_id",
            run_id,
            prefetch=CHUNK_ROWS,
        )
        async for record in cursor:
            yield dict(record)


async def _lines_paths(conn: Any, run_id: str, channel: str) -> list[Path]:
    rows = await conn.fetch(
        """SELECT DISTINCT f.lines_path FROM recon_files f
           WHERE f.status = 'accepted' AND f.file_id IN (
               SELECT s.file_id FROM recon_statements s
               WHERE s.channel = $2 AND s.statement_id IN (
                   SELECT DISTINCT statement_id FROM recon_matches WHERE run_id = $1))""",
        run_id,
        channel,
    )
    return sorted(Path(r["lines_path"]) for r in rows if r["lines_path"])


class _Lines:
    """The statement lines of ``paths`` sorted by (statement_id, line_number), in chunks."""

    def __init__(self, paths: list[Path], memory_limit_mb: int) -> None:
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET threads = 1")
        self.con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        files = ", ".join(quote(str(p)) for p in paths)
        self.result = self.con.execute(
            "SELECT statement_id, line_number, booking_date, value_date, currency, amount_minor,"
            f" fee_minor, bank_reference FROM read_parquet([{files}])"
            " ORDER BY statement_id, line_number"
        )

    def fetch(self) -> list[tuple[Any, ...]]:
        return list(self.result.fetchmany(CHUNK_ROWS))

    def close(self) -> None:
        self.con.close()


class _Matches:
    """A run's matches file in its written order, in chunks."""

    def __init__(self, path: Path, memory_limit_mb: int) -> None:
        self.con = duckdb.connect(":memory:")
        # One thread keeps the file's order (it is written sorted); no sort needed here.
        self.con.execute("SET threads = 1")
        self.con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        self.result = self.con.execute(
            f"SELECT {', '.join(MATCHED_FIELDS)} FROM read_parquet({quote(str(path))})"
        )

    def fetch(self) -> list[tuple[Any, ...]]:
        return list(self.result.fetchmany(CHUNK_ROWS))

    def close(self) -> None:
        self.con.close()


async def matched(
    pool: asyncpg.Pool, run_id: str, channel: str, *, memory_limit_mb: int = 256
) -> AsyncIterator[dict[str, Any]]:
    """Each match (a line may settle several records) with its statement line's figures."""
    async with pool.acquire() as conn:
        matches_path = await conn.fetchval(
            "SELECT matches_path FROM recon_runs WHERE run_id = $1", run_id
        )
    if matches_path is not None:
        reader = await asyncio.to_thread(_Matches, Path(matches_path), memory_limit_mb)
        try:
            while chunk := await asyncio.to_thread(reader.fetch):
                for values in chunk:
                    yield dict(zip(MATCHED_FIELDS, values, strict=True))
        finally:
            await asyncio.to_thread(reader.close)
        return
    async for row in _matched_legacy(pool, run_id, channel, memory_limit_mb=memory_limit_mb):
        yield row


async def _matched_legacy(
    pool: asyncpg.Pool, run_id: str, channel: str, *, memory_limit_mb: int
) -> AsyncIterator[dict[str, Any]]:
    async with pool.acquire() as conn:
        paths = [p for p in await _lines_paths(conn, run_id, channel) if p.exists()]
    lines = await asyncio.to_thread(_Lines, paths, memory_limit_mb) if paths else None
    try:
        buffer: list[tuple[Any, ...]] = []
        index = 0
        exhausted = lines is None

        async def next_line() -> tuple[Any, ...] | None:
            nonlocal buffer, index, exhausted
            if index >= len(buffer):
                if exhausted:
                    return None
                assert lines is not None
                buffer, index = await asyncio.to_thread(lines.fetch), 0
                if not buffer:
                    exhausted = True
                    return None
            return buffer[index]

        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            cursor = conn.cursor(
                """SELECT statement_id, line_number, attempt_id, pass FROM recon_matches
                   WHERE run_id = $1 ORDER BY statement_id COLLATE "C", line_number, attempt_id""",
                run_id,
                prefetch=CHUNK_ROWS,
            )
            async for match in cursor:
                key = (match["statement_id"], match["line_number"])
                line = await next_line()
                while line is not None and (line[0], line[1]) < key:
                    index += 1
                    line = await next_line()
                found = line is not None and (line[0], line[1]) == key
                yield {
                    "statement_id": key[0],
                    "line_number": key[1],
                    "attempt_id": match["attempt_id"],
                    "pass": match["pass"],
                    "booking_date": line[2] if found and line else None,
                    "value_date": line[3] if found and line else None,
                    "currency": line[4] if found and line else None,
                    "amount_minor": line[5] if found and line else None,
                    "fee_minor": line[6] if found and line else None,
                    "bank_reference": line[7] if found and line else None,
                }
    finally:
        if lines is not None:
            await asyncio.to_thread(lines.close)


async def matched_with_figures(
    pool: asyncpg.Pool, run_id: str, channel: str, figures: Figures, memory_limit_mb: int
) -> AsyncIterator[dict[str, Any]]:
    previous: tuple[str, int] | None = None
    seen_records: set[tuple[str, str]] = set()  # (pass, attempt): bounded by one line's group
    async for row in matched(pool, run_id, channel, memory_limit_mb=memory_limit_mb):
        key = (row["statement_id"], row["line_number"])
        first = key != previous
        if first:
            seen_records.clear()
        record_key = (row["pass"], row["attempt_id"])
        figures.add_line(row, first, record_key not in seen_records)
        seen_records.add(record_key)
        previous = key
        yield row


async def daily(conn: Any, start: date, end: date) -> list[dict[str, Any]]:
    """The current run of each (channel, business day) in [start, end] with its break figures
    by type and currency (open and all), oldest day first."""
    runs = await conn.fetch(
        """SELECT run_id, channel, business_date, line_count, record_count, matched_lines,
                  break_count
           FROM recon_runs WHERE superseded_by IS NULL AND business_date BETWEEN $1 AND $2
           ORDER BY business_date, channel""",
        start,
        end,
    )
    figures = await conn.fetch(
        """SELECT b.run_id, b.code, b.currency, count(*) AS count,
                  count(*) FILTER (WHERE b.status = 'open') AS open_count,
                  coalesce(sum(b.amount_minor), 0) AS amount_minor
           FROM recon_breaks b JOIN recon_runs r USING (run_id)
           WHERE r.superseded_by IS NULL AND r.business_date BETWEEN $1 AND $2
           GROUP BY b.run_id, b.code, b.currency ORDER BY b.run_id, b.code, b.currency""",
        start,
        end,
    )
    by_run: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        by_run.setdefault(f["run_id"], []).append(
            {
                "code": f["code"],
                "currency": f["currency"],
                "count": int(f["count"]),
                "open_count": int(f["open_count"]),
                "amount_minor": int(f["amount_minor"]),
            }
        )
    return [{**dict(r), "breaks": by_run.get(r["run_id"], [])} for r in runs]


async def run_currencies(conn: Any, run: Any) -> list[str]:
    """The currencies of the run's statement lines (its input files' columnar copies)."""
    file_ids = [f["file_id"] for f in json.loads(run["inputs"]).get("files", [])]
    rows = await conn.fetch(
        "SELECT lines_path FROM recon_files WHERE file_id = ANY($1::text[])", file_ids
    )
    paths = [Path(r["lines_path"]) for r in rows if r["lines_path"]]
    paths = [p for p in paths if p.exists()]
    if not paths:
        return []

    def distinct() -> list[str]:
        con = duckdb.connect(":memory:")
        try:
            files = ", ".join(quote(str(p)) for p in paths)
            result = con.execute(
                f"SELECT DISTINCT currency FROM read_parquet([{files}]) ORDER BY 1"
            ).fetchall()
            return [r[0] for r in result if r[0]]
        finally:
            con.close()

    return await asyncio.to_thread(distinct)
