"""Per-line matches are kept as Parquet beside the run (not in PostgreSQL): a later day's run
reads them to know which payouts are settled, a rerun of the same inputs keeps the same file,
and a run that fails to commit leaves no file behind."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import duckdb

from services.recon.adapters import columnar
from services.recon.domain.lines import Balance
from services.recon.handlers import ReconService
from tests.recon.daygen import generate, statement_csv

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_later_day_reads_earlier_matches_from_parquet_and_reruns_keep_the_file(
    service: ReconService, pool: asyncpg.Pool, channel: str, records_path: Path
) -> None:
    day1 = generate({"match": 4}, channel=channel, seed=1)
    columnar.write_records(day1.records, records_path)
    got = await service.receive_file(
        channel, "d1.csv", statement_csv(day1.statements[0]), source="cli", now=NOW
    )
    assert got.status == "accepted"
    first = await service.run_day(channel, day1.business_date, now=NOW)
    assert first.summary["matched_lines"] == 4 and first.summary["break_count"] == 0
    path = Path(
        await pool.fetchval("SELECT matches_path FROM recon_runs WHERE run_id = $1", first.run_id)
    )
    assert path.is_relative_to(service.settings.data_dir) and path.exists()
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT statement_id, line_number, attempt_id, pass, amount_minor, currency"
            f" FROM read_parquet('{path}')"
        )
        .fetchall()
    )
    by_ref = {line.our_reference: line for line in day1.statements[0].lines}
    assert sorted(r[2] for r in rows) == sorted(r["attempt_id"] for r in day1.records)
    assert rows == sorted(rows)  # written in (statement_id, line_number) order
    for sid, number, attempt, pass_name, amount, currency in rows:
        line = by_ref[attempt]
        # Line n of the statement is physical line n + 2 of its CSV (header, opening row).
        assert (sid, number, pass_name) == (
            line.statement_id,
            line.line_number + 2,
            "our_reference",
        )
        assert (amount, currency) == (line.amount_minor, line.currency)
    assert await pool.fetchval("SELECT count(*) FROM recon_matches") == 0
    before = digest(path)

    # Day 2: the bank books day 1's first payout a second time, and a new payout once. The
    # export still carries day 1's payouts (lookback): only day 1's Parquet says they settled.
    day2_date = day1.business_date + timedelta(days=1)
    day2 = generate({"match": 1}, channel=channel, business_date=day2_date, seed=2)
    new_record = {**day2.records[0], "attempt_id": "att_day2_0000001", "payout_id": "po_day2_1"}
    template = day2.statements[0]
    again = day1.statements[0].lines[0]
    lines = [
        replace(template.lines[0], our_reference=new_record["attempt_id"]),
        replace(
            template.lines[0],
            line_number=2,
            our_reference=again.our_reference,
            amount_minor=again.amount_minor,
            raw="line 2",
        ),
    ]
    opening = template.opening
    assert opening is not None
    net = -sum(line.amount_minor + line.fee_minor for line in lines)
    statement = replace(
        template,
        sequence_number=2,
        lines=lines,
        closing=Balance(opening.amount_minor + net, opening.currency, day2_date),
    )
    columnar.write_records([*day1.records, new_record], records_path)
    got = await service.receive_file(
        channel, "d2.csv", statement_csv(statement), source="cli", now=NOW
    )
    assert got.status == "accepted"
    second = await service.run_day(channel, day2_date, now=NOW)
    assert second.summary["matched_lines"] == 1
    assert {k: v["count"] for k, v in second.summary["breaks"].items()} == {"duplicate_at_bank": 1}
    assert second.summary["record_count"] == 1  # day 1's payouts are not expected again

    # The same inputs again: the same runs, the same files, nothing rewritten.
    for run, day in ((first, day1.business_date), (second, day2_date)):
        if run is first:
            columnar.write_records(day1.records, records_path)
        else:
            columnar.write_records([*day1.records, new_record], records_path)
        rerun = await service.run_day(channel, day, now=NOW)
        assert rerun.reused and rerun.run_id == run.run_id and rerun.summary == run.summary
    assert digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [f"{first.run_id}.parquet", f"{second.run_id}.parquet"]
    )
