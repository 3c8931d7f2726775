"""PostgreSQL access for reconciliation. Bulk results go in with COPY, never row by row."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg

Conn = Any  # asyncpg.Connection or a pool proxy of one


async def file_by_sha(conn: Conn, sha256: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recon_files WHERE sha256 = $1", sha256)


async def insert_file(
    conn: Conn,
    *,
    file_id: str,
    channel: str,
    sha256: str,
    filename: str,
    size_bytes: int,
    source: str,
    status: str,
    fmt: str | None = None,
    reason_code: str | None = None,
    reason: str | None = None,
    business_date: date | None = None,
    line_count: int = 0,
    lines_path: str | None = None,
    now: datetime,
) -> bool:
    """False when another process recorded the same file first (same SHA-256)."""
    row = await conn.fetchval(
        """INSERT INTO recon_files (file_id, channel, sha256, filename, size_bytes, format,
               status, reason_code, reason, business_date, line_count, lines_path, source,
               received_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT (sha256) DO NOTHING RETURNING 1""",
        file_id,
        channel,
        sha256,
        filename,
        size_bytes,
        fmt,
        status,
        reason_code,
        reason,
        business_date,
        line_count,
        lines_path,
        source,
        now,
    )
    return row is not None


async def insert_statements(conn: Conn, rows: list[tuple[Any, ...]]) -> None:
    await conn.executemany(
        """INSERT INTO recon_statements (file_id, statement_id, channel, account, currency,
               sequence_number, opening_minor, closing_minor, line_count)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        rows,
    )


async def last_sequence(conn: Conn, channel: str, account: str) -> int | None:
    value = await conn.fetchval(
        """SELECT max(sequence_number) FROM recon_statements
           WHERE channel = $1 AND account = $2""",
        channel,
        account,
    )
    return int(value) if value is not None else None


async def request_run(conn: Conn, channel: str, business_date: date) -> None:
    await conn.execute(
        """INSERT INTO recon_run_requests (channel, business_date) VALUES ($1, $2)
           ON CONFLICT (channel, business_date)
           DO UPDATE SET requested_at = now(), not_before = now(), attempts = 0""",
        channel,
        business_date,
    )


async def due_run_requests(
    conn: Conn, channels: list[str], now: datetime, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT channel, business_date, attempts FROM recon_run_requests
               WHERE channel = ANY($1::text[]) AND not_before <= $2
               ORDER BY business_date, channel LIMIT $3""",
            channels,
            now,
            limit,
        )
    )


async def defer_run_request(
    conn: Conn, channel: str, business_date: date, not_before: datetime, error: str
) -> None:
    await conn.execute(
        """UPDATE recon_run_requests SET attempts = attempts + 1, not_before = $3,
               last_error = $4 WHERE channel = $1 AND business_date = $2""",
        channel,
        business_date,
        not_before,
        error[:2000],
    )


async def accepted_files(conn: Conn, channel: str, business_date: date) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT file_id, sha256, filename, lines_path, line_count FROM recon_files
               WHERE channel = $1 AND business_date = $2 AND status = 'accepted'
               ORDER BY sha256""",
            channel,
            business_date,
        )
    )


async def has_statement(conn: Conn, channel: str, business_date: date) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM recon_files WHERE channel = $1
                  AND business_date = $2 AND status = 'accepted')""",
            channel,
            business_date,
        )
    )


async def current_run(conn: Conn, channel: str, business_date: date) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT * FROM recon_runs WHERE channel = $1 AND business_date = $2
             AND superseded_by IS NULL""",
        channel,
        business_date,
    )


async def settled_before(
    conn: Conn, channel: str, business_date: date, attempt_ids: list[str]
) -> list[str]:
    """Of ``attempt_ids``, those a current run of an earlier day already settled."""
    if not attempt_ids:
        return []
    rows = await conn.fetch(
        """SELECT DISTINCT x.attempt_id FROM (
             SELECT m.attempt_id FROM recon_matches m JOIN recon_runs r USING (run_id)
             WHERE m.attempt_id = ANY($3::text[]) AND r.channel = $1
               AND r.business_date < $2 AND r.superseded_by IS NULL
             UNION ALL
             SELECT b.attempt_id FROM recon_breaks b JOIN recon_runs r USING (run_id)
             WHERE b.attempt_id = ANY($3::text[]) AND r.channel = $1
               AND r.business_date < $2 AND r.superseded_by IS NULL
               AND b.code NOT IN ('timing', 'returned', 'duplicate_at_bank')
             UNION ALL
             SELECT s.attempt_id FROM recon_resolutions s JOIN recon_runs r USING (run_id)
             WHERE s.attempt_id = ANY($3::text[]) AND s.outcome = 'failed'
               AND r.channel = $1 AND r.business_date < $2
           ) x""",
        channel,
        business_date,
        attempt_ids,
    )
    return [r["attempt_id"] for r in rows]


async def supersede_current(
    conn: Conn, channel: str, business_date: date, new_run_id: str, now: datetime
) -> str | None:
    old = await conn.fetchval(
        """UPDATE recon_runs SET superseded_by = $3 WHERE channel = $1 AND business_date = $2
             AND superseded_by IS NULL RETURNING run_id""",
        channel,
        business_date,
        new_run_id,
    )
    if old is not None:
        await conn.execute(
            """UPDATE recon_breaks SET status = 'closed', closed_at = $2,
                   closed_reason = 'superseded:' || $3
               WHERE run_id = $1 AND status = 'open'""",
            old,
            now,
            new_run_id,
        )
    return str(old) if old is not None else None


async def insert_run(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO recon_runs (run_id, channel, business_date, identity, inputs,
               rules_version, rules, summary, line_count, record_count, matched_lines,
               break_count, report_path, started_at, finished_at, matches_path)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13,
               $14, $15, $16)""",
        row["run_id"],
        row["channel"],
        row["business_date"],
        row["identity"],
        json.dumps(row["inputs"], sort_keys=True),
        row["rules_version"],
        json.dumps(row["rules"], sort_keys=True, default=str),
        json.dumps(row["summary"], sort_keys=True),
        row["line_count"],
        row["record_count"],
        row["matched_lines"],
        row["break_count"],
        row["report_path"],
        row["started_at"],
        row["finished_at"],
        row.get("matches_path"),
    )


async def earlier_matches_paths(
    conn: Conn, channel: str, business_date: date, since: date
) -> list[str]:
    """The matches files of the current runs of ``channel`` for days in [since, business_date):
    the attempts they matched are settled for a run of ``business_date``."""
    rows = await conn.fetch(
        """SELECT matches_path FROM recon_runs
           WHERE channel = $1 AND business_date >= $2 AND business_date < $3
             AND superseded_by IS NULL AND matches_path IS NOT NULL
           ORDER BY business_date""",
        channel,
        since,
        business_date,
    )
    return [r["matches_path"] for r in rows]


MATCH_COLUMNS = ("run_id", "statement_id", "line_number", "attempt_id", "pass")
BREAK_COLUMNS = (
    "break_id",
    "run_id",
    "channel",
    "business_date",
    "code",
    "severity",
    "statement_id",
    "line_number",
    "attempt_id",
    "payout_id",
    "amount_minor",
    "expected_amount_minor",
    "currency",
    "fee_minor",
    "expected_fee_minor",
    "value_date",
    "record_date",
    "detail",
)


async def copy_csv(conn: Conn, table: str, columns: tuple[str, ...], path: Path) -> None:
    await conn.copy_to_table(table, source=str(path), columns=list(columns), format="csv")


async def close_carried_timing(
    conn: Conn,
    channel: str,
    business_date: date,
    run_id: str,
    attempt_ids: list[str],
    now: datetime,
) -> int:
    """Timing breaks of earlier days for payouts this run re-evaluated: closed (the new run
    holds their current outcome: matched, still timing, or a definite break)."""
    if not attempt_ids:
        return 0
    result = await conn.execute(
        """UPDATE recon_breaks SET status = 'closed', closed_at = $4,
               closed_reason = 'reevaluated:' || $3
           WHERE channel = $1 AND business_date < $2 AND code = 'timing' AND status = 'open'
             AND attempt_id = ANY($5::text[])""",
        channel,
        business_date,
        run_id,
        now,
        attempt_ids,
    )
    return int(result.split()[-1])


async def insert_resolutions(conn: Conn, run_id: str, rows: list[tuple[Any, ...]]) -> list[Any]:
    """Insert (attempt_id, payout_id, outcome, amount, currency, statement_id, line_number);
    returns only the rows that are new (an outcome is reported once, whatever the reruns)."""
    if not rows:
        return []
    return list(
        await conn.fetch(
            """INSERT INTO recon_resolutions (attempt_id, payout_id, outcome, amount_minor,
                   currency, statement_id, line_number, run_id)
               SELECT a, p, o, m, c, s, n, $8
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                           $6::text[], $7::int[]) AS t(a, p, o, m, c, s, n)
               ON CONFLICT (attempt_id, outcome) DO NOTHING
               RETURNING attempt_id, payout_id, outcome, amount_minor, currency, statement_id,
                         line_number""",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            [r[5] for r in rows],
            [r[6] for r in rows],
            run_id,
        )
    )


async def delete_run_request(conn: Conn, channel: str, business_date: date) -> None:
    await conn.execute(
        "DELETE FROM recon_run_requests WHERE channel = $1 AND business_date = $2",
        channel,
        business_date,
    )


async def upsert_alert(
    conn: Conn,
    *,
    alert_id: str,
    cause: str,
    code: str,
    severity: str,
    message: str,
    channel: str | None,
    business_date: date | None,
    context: dict[str, Any],
    now: datetime,
) -> tuple[asyncpg.Record, bool]:
    """Open an alert for ``cause``, or count a repeat on the open one. (row, newly opened)."""
    row = await conn.fetchrow(
        """INSERT INTO recon_alerts (alert_id, cause, code, severity, message, channel,
               business_date, context, first_seen_at, last_seen_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $9)
           ON CONFLICT (cause) WHERE status <> 'closed' DO UPDATE
             SET occurrences = recon_alerts.occurrences + 1, last_seen_at = EXCLUDED.last_seen_at,
                 message = EXCLUDED.message, context = EXCLUDED.context
           RETURNING *, (xmax = 0) AS inserted""",
        alert_id,
        cause,
        code,
        severity,
        message,
        channel,
        business_date,
        json.dumps(context, sort_keys=True, default=str),
        now,
    )
    assert row is not None
    return row, bool(row["inserted"])


async def transition_alert(
    conn: Conn, alert_id: str, target: str, now: datetime
) -> asyncpg.Record | None:
    if target == "acknowledged":
        sql = """UPDATE recon_alerts SET status = 'acknowledged', acknowledged_at = $2
                 WHERE alert_id = $1 AND status = 'open' RETURNING *"""
    else:
        assert target == "closed"
        sql = """UPDATE recon_alerts SET status = 'closed', closed_at = $2
                 WHERE alert_id = $1 AND status <> 'closed' RETURNING *"""
    return await conn.fetchrow(sql, alert_id, now)


async def alert(conn: Conn, alert_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recon_alerts WHERE alert_id = $1", alert_id)


async def list_alerts(
    conn: Conn, *, status: str | None, severity: str | None, code: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT * FROM recon_alerts
               WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR severity = $2)
                 AND ($3::text IS NULL OR code = $3)
               ORDER BY last_seen_at DESC, alert_id LIMIT $4""",
            status,
            severity,
            code,
            limit,
        )
    )


async def list_runs(
    conn: Conn, *, channel: str | None, business_date: date | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT * FROM recon_runs
               WHERE ($1::text IS NULL OR channel = $1) AND ($2::date IS NULL OR business_date = $2)
               ORDER BY finished_at DESC, run_id LIMIT $3""",
            channel,
            business_date,
            limit,
        )
    )


async def run(conn: Conn, run_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recon_runs WHERE run_id = $1", run_id)


async def list_breaks(
    conn: Conn,
    *,
    run_id: str | None,
    channel: str | None,
    code: str | None,
    status: str | None,
    after: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT * FROM recon_breaks
               WHERE ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR channel = $2)
                 AND ($3::text IS NULL OR code = $3) AND ($4::text IS NULL OR status = $4)
                 AND ($5::text IS NULL OR break_id > $5)
               ORDER BY break_id LIMIT $6""",
            run_id,
            channel,
            code,
            status,
            after,
            limit,
        )
    )


async def channels_with_files(conn: Conn) -> list[str]:
    return [r["channel"] for r in await conn.fetch("SELECT DISTINCT channel FROM recon_files")]


async def alert_cause_seen(conn: Conn, cause: str) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM recon_alerts WHERE cause = $1)", cause)
    )


async def carried_timing_lines(
    conn: Conn, channel: str, business_date: date
) -> list[asyncpg.Record]:
    """Bank lines of earlier days whose timing break is still open (value date ahead of the
    statement): carried into the next run, where they match or break for good."""
    return list(
        await conn.fetch(
            """SELECT DISTINCT b.statement_id, b.line_number, f.lines_path
               FROM recon_breaks b JOIN recon_runs r USING (run_id)
               JOIN recon_statements s ON s.statement_id = b.statement_id
                                      AND s.channel = b.channel
               JOIN recon_files f ON f.file_id = s.file_id AND f.status = 'accepted'
               WHERE b.channel = $1 AND b.business_date < $2 AND b.code = 'timing'
                 AND b.status = 'open' AND b.statement_id IS NOT NULL
                 AND r.superseded_by IS NULL
               ORDER BY b.statement_id, b.line_number""",
            channel,
            business_date,
        )
    )


async def matches_files_past_retention(
    conn: Conn, channel: str, finished_before: datetime, day_before: date, lookback_days: int
) -> list[asyncpg.Record]:
    """Runs of ``channel`` whose matches file may go: finished before ``finished_before``, of
    a day before ``day_before`` (no run of today or later reads it), and outside the lookback
    of every day that still has an open ``timing`` break (the run that re-evaluates it reads
    the matches files of the current runs of the days in its lookback). Only committed runs
    are named: a file without its run (a run being persisted) is never one of them."""
    return list(
        await conn.fetch(
            """SELECT r.run_id, r.matches_path FROM recon_runs r
               WHERE r.channel = $1 AND r.matches_path IS NOT NULL
                 AND r.finished_at < $2 AND r.business_date < $3
                 AND NOT EXISTS (
                   SELECT 1 FROM recon_breaks b
                   WHERE b.channel = $1 AND b.code = 'timing' AND b.status = 'open'
                     AND b.business_date - ($4::int + 1) <= r.business_date)
               ORDER BY r.business_date, r.run_id""",
            channel,
            finished_before,
            day_before,
            lookback_days,
        )
    )


async def channels_with_matches_files(conn: Conn) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT channel FROM recon_runs WHERE matches_path IS NOT NULL ORDER BY channel"
    )
    return [r["channel"] for r in rows]
