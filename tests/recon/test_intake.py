"""Intake and runs against real PostgreSQL: files in, breaks, resolutions and alerts out."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import duckdb
import pytest

from services.recon.adapters import columnar
from services.recon.adapters.dropdir import DropDir
from services.recon.adapters.parsing import default_parser
from services.recon.adapters.records import FileRecords
from services.recon.entrypoints.intake import intake_once
from services.recon.handlers import ReconService
from services.recon.settings import Settings
from tests.recon.conftest import rules_book
from tests.recon.daygen import CASES, generate, statement_csv
from tests.support.infra import ROOT

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


async def resolutions(pool: asyncpg.Pool, attempt_ids: list[str]) -> set[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT attempt_id, outcome FROM recon_resolutions WHERE attempt_id = ANY($1::text[])",
        attempt_ids,
    )
    return {(r["attempt_id"], r["outcome"]) for r in rows}


async def test_a_statement_with_every_discrepancy_yields_the_answer_keys_breaks_in_the_database(
    service: ReconService, pool: asyncpg.Pool, channel: str, records_path: Path
) -> None:
    day = generate({c: 3 for c in CASES}, channel=channel, seed=11)
    columnar.write_records(day.records, records_path)
    data = statement_csv(day.statements[0])
    received = await service.receive_file(channel, "day.csv", data, source="cli", now=NOW)
    assert received.status == "accepted" and received.business_date == day.business_date
    outcome = await service.run_day(channel, day.business_date, now=NOW)
    assert not outcome.reused

    rows = await pool.fetch(
        "SELECT code, statement_id, line_number, attempt_id FROM recon_breaks WHERE run_id = $1",
        outcome.run_id,
    )
    by_line = {
        (r["statement_id"], r["line_number"] - 2): r["code"] for r in rows if r["line_number"]
    }
    expected_lines = {k: c for k, (kind, c) in day.line_answers.items() if kind == "break"}
    assert by_line == expected_lines
    record_only = {r["attempt_id"]: r["code"] for r in rows if r["line_number"] is None}
    assert record_only == {
        a: c
        for a, (kind, c) in day.record_answers.items()
        if kind == "break" and c in ("timing", "missing_at_bank")
    }
    # Per-line matches live in the run's Parquet file, not in PostgreSQL.
    assert (
        await pool.fetchval("SELECT count(*) FROM recon_matches WHERE run_id = $1", outcome.run_id)
        == 0
    )
    matches_path = await pool.fetchval(
        "SELECT matches_path FROM recon_runs WHERE run_id = $1", outcome.run_id
    )
    matched = (
        duckdb.connect()
        .execute(f"SELECT attempt_id, pass FROM read_parquet('{matches_path}')")
        .fetchall()
    )
    assert set(matched) == {
        (a, c) for a, (kind, c) in day.record_answers.items() if kind == "match"
    }
    attempts = [r["attempt_id"] for r in day.records]
    assert await resolutions(pool, attempts) == day.resolutions
    published = await pool.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'recon.payout_resolved'"
    )
    mine = [
        json.loads(bytes(r["payload"]))["data"]
        for r in published
        if json.loads(bytes(r["payload"]))["data"]["attempt_id"] in set(attempts)
    ]
    assert {(d["attempt_id"], d["outcome"]) for d in mine} == day.resolutions

    alerts = await pool.fetch(
        "SELECT code, severity, occurrences FROM recon_alerts WHERE channel = $1", channel
    )
    codes = {r["code"]: r["severity"] for r in alerts}
    assert codes["status_mismatch"] == "critical"
    assert set(codes) == set(outcome.summary["breaks"])
    run = await pool.fetchrow("SELECT * FROM recon_runs WHERE run_id = $1", outcome.run_id)
    summary = json.loads(run["summary"])
    assert summary["breaks"]["amount_mismatch"]["count"] == 3
    assert run["rules_version"] == service.rules.for_channel(channel).version()
    assert json.loads(run["inputs"])["files"][0]["sha256"] == received.sha256
    report = Path(outcome.report_path or "") / "breaks.csv"
    assert report.read_text().count("\n") == 1 + len(rows)


async def test_rerunning_the_same_inputs_returns_the_same_run_and_new_inputs_supersede_it(
    service: ReconService, pool: asyncpg.Pool, channel: str, records_path: Path
) -> None:
    day = generate({"match": 5, "amount_mismatch": 2, "unknown_paid": 2}, channel=channel)
    columnar.write_records(day.records, records_path)
    await service.receive_file(
        channel, "d.csv", statement_csv(day.statements[0]), source="cli", now=NOW
    )
    first = await service.run_day(channel, day.business_date, now=NOW)
    events_before = await pool.fetchval("SELECT count(*) FROM outbox")
    again = await service.run_day(channel, day.business_date, now=NOW)
    assert again.reused and again.run_id == first.run_id and again.summary == first.summary
    assert await pool.fetchval("SELECT count(*) FROM outbox") == events_before
    assert await pool.fetchval("SELECT count(*) FROM recon_runs WHERE channel = $1", channel) == 1

    # Our records change (one more payout): a new run replaces the old one, whose breaks close;
    # outcomes already reported are not reported again; repeated alerts count, not duplicate.
    extra = generate({"timing": 1}, channel=channel, seed=99).records[0]
    extra["attempt_id"] = "att_extra_0000001"
    columnar.write_records([*day.records, extra], records_path)
    second = await service.run_day(channel, day.business_date, now=NOW)
    assert not second.reused and second.run_id != first.run_id
    old = await pool.fetchrow(
        "SELECT superseded_by FROM recon_runs WHERE run_id = $1", first.run_id
    )
    assert old["superseded_by"] == second.run_id
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM recon_breaks WHERE run_id = $1 AND status = 'open'", first.run_id
        )
        == 0
    )
    assert second.summary["breaks"]["timing"]["count"] == 1
    assert second.summary["passes"] == first.summary["passes"]
    paid = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_type = 'recon.payout_resolved'"
        " AND convert_from(payload, 'UTF8')::jsonb -> 'data' ->> 'attempt_id' LIKE 'att_unknow%'"
        " AND convert_from(payload, 'UTF8')::jsonb -> 'data' ->> 'run_id' = ANY($1::text[])",
        [first.run_id, second.run_id],
    )
    assert paid == 2
    mismatch = await pool.fetchrow(
        "SELECT occurrences, status FROM recon_alerts WHERE channel = $1 AND code = $2",
        channel,
        "amount_mismatch",
    )
    assert (mismatch["occurrences"], mismatch["status"]) == (2, "open")


async def test_the_same_file_twice_is_recognised_by_its_hash_and_not_processed_again(
    service: ReconService, pool: asyncpg.Pool, channel: str
) -> None:
    data = statement_csv(generate({"match": 2}, channel=channel).statements[0])
    first = await service.receive_file(channel, "a.csv", data, source="upload", now=NOW)
    second = await service.receive_file(channel, "a-again.csv", data, source="upload", now=NOW)
    third = await service.receive_file(channel, "a-third.csv", data, source="upload", now=NOW)
    assert (first.status, second.status, third.status) == ("accepted", "duplicate", "duplicate")
    assert second.file_id == first.file_id
    assert await pool.fetchval("SELECT count(*) FROM recon_files WHERE channel = $1", channel) == 1
    alert = await pool.fetchrow(
        "SELECT occurrences FROM recon_alerts WHERE channel = $1 AND code = 'file_duplicate'",
        channel,
    )
    assert alert["occurrences"] == 2


def _malformed(channel: str) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected reason code)."""
    good = generate({"match": 4, "returned": 1}, channel=channel)
    csv_bytes = statement_csv(good.statements[0])
    st0 = good.statements[0]
    assert st0.closing is not None
    unbalanced = replace(
        st0, closing=replace(st0.closing, amount_minor=st0.closing.amount_minor + 7)
    )
    usd = generate({"match": 2}, channel=channel, currency="USD")
    half = csv_bytes[: len(csv_bytes) // 2]
    truncated = half[: half.rfind(b",")]  # cut inside a row
    bomb = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
        b"<Stmt><Id>&lol3;</Id></Stmt></BkToCstmrStmt></Document>\n"
    )
    return {
        "truncated.csv": (truncated, "statement_malformed"),
        "utf16.csv": (csv_bytes.decode().encode("utf-16"), "statement_malformed"),
        "junk.bin": (bytes(range(256)) * 8, "statement_malformed"),
        "empty.csv": (b"", "file_empty"),
        "bomb.xml": (bomb, "statement_malformed"),
        "dollars.csv": (statement_csv(usd.statements[0]), "currency_unexpected"),
        "unbalanced.csv": (statement_csv(unbalanced), "statement_unbalanced"),
    }


async def test_malformed_files_are_quarantined_whole_with_reason_and_alert_and_nothing_imported(
    pool: asyncpg.Pool, settings: Settings, channel: str, records_path: Path
) -> None:
    service = ReconService(
        pool,
        settings,
        rules_book(channel, currencies=["EUR"]),
        FileRecords(records_path),
        default_parser(),
    )
    drop = DropDir(settings.drop_dir)
    drop.ensure(channel)
    cases = _malformed(channel)
    for name, (data, _code) in cases.items():
        (settings.drop_dir / channel / "inbox" / name).write_bytes(data)
    assert await intake_once(service, drop) == 0  # first sight: sizes recorded, nothing taken
    assert await intake_once(service, drop) == len(cases)

    rows = await pool.fetch(
        "SELECT filename, status, reason_code, sha256 FROM recon_files WHERE channel = $1", channel
    )
    assert {r["filename"]: (r["status"], r["reason_code"]) for r in rows} == {
        name: ("quarantined", code) for name, (_d, code) in cases.items()
    }
    quarantine = settings.drop_dir / channel / "quarantine"
    for row in rows:
        kept = quarantine / f"{row['sha256'][:12]}-{row['filename']}"
        assert kept.read_bytes() == cases[row["filename"]][0]
        reason = json.loads(kept.with_name(kept.name + ".reason.json").read_text())
        assert reason["reason_code"] == row["reason_code"]
    assert not list((settings.drop_dir / channel / "inbox").iterdir())
    assert (
        await pool.fetchval("SELECT count(*) FROM recon_statements WHERE channel = $1", channel)
        == 0
    )
    assert not (settings.data_dir / "lines" / channel).exists()
    assert (
        await pool.fetchval("SELECT count(*) FROM recon_run_requests WHERE channel = $1", channel)
        == 0
    )
    alerts = await pool.fetch(
        "SELECT code, severity, context FROM recon_alerts WHERE channel = $1", channel
    )
    assert len(alerts) == len(cases)
    assert {a["code"] for a in alerts} == {"file_quarantined"}
    assert {json.loads(a["context"])["reason_code"] for a in alerts} == {
        code for _d, code in cases.values()
    }


async def test_a_file_still_being_written_is_not_picked_up_until_renamed_and_stable(
    service: ReconService, settings: Settings, pool: asyncpg.Pool, channel: str, records_path: Path
) -> None:
    day = generate({"match": 3}, channel=channel)
    columnar.write_records(day.records, records_path)
    drop = DropDir(settings.drop_dir)
    drop.ensure(channel)
    inbox = settings.drop_dir / channel / "inbox"
    data = statement_csv(day.statements[0])
    part = inbox / "day.csv.part"
    part.write_bytes(data[:100])
    await intake_once(service, drop)
    await intake_once(service, drop)
    assert part.exists()  # *.part is never taken, however stable
    part.write_bytes(data)
    final = inbox / "day.csv"
    part.rename(final)
    assert await intake_once(service, drop) == 0  # first sight of the final name
    final.write_bytes(data + b"\n")  # still growing (no convention): not taken yet
    assert await intake_once(service, drop) == 0
    assert await intake_once(service, drop) == 1
    archived = list((settings.drop_dir / channel / "archive").iterdir())
    assert [p.name.split("-", 1)[1] for p in archived] == ["day.csv"]
    run = await pool.fetchrow("SELECT * FROM recon_runs WHERE channel = $1", channel)
    assert run is not None and run["matched_lines"] == 3  # the loop reconciled the day


async def test_a_sequence_gap_raises_an_alert_naming_the_missing_number(
    service: ReconService, pool: asyncpg.Pool, channel: str
) -> None:
    for seq, day_offset in ((1, 0), (2, 1), (5, 2)):
        day = generate(
            {"match": 1}, channel=channel, business_date=date(2026, 11, 10 + day_offset), seed=seq
        )
        st0 = replace(day.statements[0], sequence_number=seq)
        assert (
            await service.receive_file(channel, f"{seq}.csv", statement_csv(st0), source="cli")
        ).status == "accepted"
    alerts = await pool.fetch(
        "SELECT code, context FROM recon_alerts WHERE channel = $1 AND code = 'sequence_gap'",
        channel,
    )
    assert [json.loads(a["context"])["expected"] for a in alerts] == [3]


async def test_a_statement_missing_after_the_cutoff_raises_one_alert_and_none_before(
    pool: asyncpg.Pool, settings: Settings, channel: str, records_path: Path
) -> None:
    service = ReconService(
        pool,
        settings,
        rules_book(channel, expect_daily=True, cutoff="06:00"),
        FileRecords(records_path),
        default_parser(),
    )
    before = datetime(2026, 11, 21, 5, 59, tzinfo=UTC)
    await service.check_cutoffs(before)
    alerts_before = await pool.fetch(
        "SELECT business_date FROM recon_alerts WHERE channel = $1 AND code = 'statement_missing'",
        channel,
    )
    # Before the cut-off of the 21st only the 19th (whose cut-off passed) can be missing.
    assert [a["business_date"] for a in alerts_before] == [date(2026, 11, 19)]
    after = datetime(2026, 11, 21, 6, 1, tzinfo=UTC)
    assert await service.check_cutoffs(after) == [channel]
    assert await service.check_cutoffs(after + timedelta(minutes=5)) == []
    rows = await pool.fetch(
        "SELECT business_date, occurrences, severity FROM recon_alerts"
        " WHERE channel = $1 AND code = 'statement_missing' ORDER BY business_date",
        channel,
    )
    assert [(r["business_date"], r["occurrences"]) for r in rows] == [
        (date(2026, 11, 19), 1),
        (date(2026, 11, 20), 1),
    ]
    # A day whose statement arrived is never reported missing.
    day = generate({"match": 1}, channel=channel, business_date=date(2026, 11, 21))
    await service.receive_file(channel, "x.csv", statement_csv(day.statements[0]), source="cli")
    assert await service.check_cutoffs(datetime(2026, 11, 22, 7, 0, tzinfo=UTC)) == []


async def test_timing_breaks_are_carried_and_closed_when_the_next_days_statement_matches(
    service: ReconService, pool: asyncpg.Pool, channel: str, records_path: Path
) -> None:
    d1, d2 = date(2026, 11, 20), date(2026, 11, 21)
    day1 = generate({"match": 2, "timing": 0}, channel=channel, business_date=d1, seed=3)
    # A payout we sent on d1 that the bank books only on d2, and a d1 line valued on d2.
    late = generate({"match": 1}, channel=channel, business_date=d1, seed=4)
    late_record = late.records[0] | {"attempt_id": "att_late_0000001"}
    st1 = day1.statements[0]
    valued_later = replace(st1.lines[0], value_date=d2)
    st1 = replace(st1, lines=[valued_later, *st1.lines[1:]])
    columnar.write_records([*day1.records, late_record], records_path)
    await service.receive_file(channel, "d1.csv", statement_csv(st1), source="cli", now=NOW)
    run1 = await service.run_day(channel, d1, now=NOW)
    assert run1.summary["breaks"]["timing"]["count"] == 2

    late_line = replace(
        late.statements[0].lines[0],
        our_reference="att_late_0000001",
        statement_id=f"{channel}-d2",
        booking_date=d2,
        value_date=d2,
    )
    opening = st1.closing
    assert opening is not None
    closing = opening.amount_minor - late_line.amount_minor - late_line.fee_minor
    st2 = replace(
        st1,
        statement_id=f"{channel}-d2",
        sequence_number=2,
        opening=replace(opening, date=d2),
        closing=replace(opening, amount_minor=closing, date=d2),
        lines=[late_line],
    )
    await service.receive_file(channel, "d2.csv", statement_csv(st2), source="cli", now=NOW)
    run2 = await service.run_day(channel, d2, now=NOW)
    assert run2.summary["breaks"] == {}
    assert run2.summary["passes"]["our_reference"]["lines"] == 2  # the late line + the carried one
    closed = await pool.fetch(
        "SELECT status, closed_reason FROM recon_breaks WHERE run_id = $1 AND code = 'timing'",
        run1.run_id,
    )
    assert [(r["status"], r["closed_reason"]) for r in closed] == [
        ("closed", f"reevaluated:{run2.run_id}")
    ] * 2


async def test_an_unknown_payout_absent_after_the_window_is_resolved_failed(
    service: ReconService, pool: asyncpg.Pool, channel: str, records_path: Path
) -> None:
    day = generate({"match": 1, "unknown_absent": 2}, channel=channel)
    columnar.write_records(day.records, records_path)
    await service.receive_file(channel, "d.csv", statement_csv(day.statements[0]), source="cli")
    outcome = await service.run_day(channel, day.business_date, now=NOW)
    assert outcome.summary["resolutions"] == {"failed": 2}
    failed = [a for a, o in day.resolutions if o == "failed"]
    rows = await pool.fetch(
        "SELECT convert_from(payload, 'UTF8')::jsonb -> 'data' AS d FROM outbox"
        " WHERE event_type = 'recon.payout_resolved'"
        " AND convert_from(payload, 'UTF8')::jsonb -> 'data' ->> 'attempt_id' = ANY($1::text[])",
        failed,
    )
    data = [json.loads(r["d"]) for r in rows]
    assert sorted(d["attempt_id"] for d in data) == sorted(failed)
    assert all(d["outcome"] == "failed" and d["statement_id"] is None for d in data)


async def test_the_columnar_csv_intake_reconciles_exactly_like_the_parser_intake(
    pool: asyncpg.Pool, run_id: str, tmp_path: Path, amqp_prefix: str
) -> None:
    from tests.recon.conftest import make_settings

    summaries = []
    for min_bytes in ("0", str(2**40)):
        channel = f"bank_col{min_bytes[:2]}{uuid.uuid4().hex[:6]}"
        settings = make_settings(
            run_id, tmp_path / min_bytes, amqp_prefix, RECON_COLUMNAR_CSV_MIN_BYTES=min_bytes
        )
        records = tmp_path / f"{min_bytes}.ndjson"
        service = ReconService(
            pool, settings, rules_book(channel), FileRecords(records), default_parser()
        )
        day = generate({c: 3 for c in CASES}, channel=channel, seed=17)
        columnar.write_records(day.records, records)
        data = statement_csv(day.statements[0])
        received = await service.receive_file(channel, "d.csv", data, source="cli", now=NOW)
        assert received.status == "accepted" and received.line_count == len(day.line_answers)
        outcome = await service.run_day(channel, day.business_date, now=NOW)
        summaries.append(outcome.summary)
    assert summaries[0] == summaries[1]
    assert summaries[0]["breaks"]["status_mismatch"]["count"] == 3


SAMPLES = ROOT / "tests" / "fixtures" / "statements"


@pytest.mark.parametrize(
    ("sample", "status", "reason_code"),
    [
        ("mt940/cmxl/mt940.sta", "accepted", None),
        ("camt053/camt053.v2.multi.statement.xml", "accepted", None),
        ("bai2/sample1.txt", "accepted", None),
        ("mt940/jejik/ing.sta", "quarantined", "statement_unbalanced"),
        ("mt940/betterplace/sepa_snippet_broken.sta", "quarantined", "statement_malformed"),
    ],
)
async def test_real_bank_samples_are_taken_whole_or_quarantined_whole(
    service: ReconService,
    pool: asyncpg.Pool,
    channel: str,
    sample: str,
    status: str,
    reason_code: str | None,
) -> None:
    path = SAMPLES / sample
    outcome = await service.receive_file(channel, path.name, path.read_bytes(), source="cli")
    assert (outcome.status, outcome.reason_code) == (status, reason_code), outcome.reason
    statements = await pool.fetchval(
        "SELECT count(*) FROM recon_statements WHERE channel = $1", channel
    )
    assert (statements > 0) == (status == "accepted")
