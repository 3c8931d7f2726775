"""``payments recon run`` end to end on real PostgreSQL, with --records instead of the router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.recon.adapters import columnar
from services.recon.cli import group
from tests.recon.daygen import CASES, generate, statement_csv
from tests.support import infra


def test_recon_run_takes_files_in_and_prints_the_days_summary_then_reuses_it(
    recon_dsn: str,
    run_id: str,
    tmp_path: Path,
    channel: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": f"{run_id}_",
        "RECON_DROP_DIR": str(tmp_path / "drop"),
        "RECON_DATA_DIR": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(name, value)
    day = generate({c: 2 for c in CASES}, channel=channel, seed=21)
    statement = tmp_path / "statement.csv"
    statement.write_bytes(statement_csv(day.statements[0]))
    records = tmp_path / "records.ndjson"
    columnar.write_records(day.records, records)
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01 not a statement")
    args = ["run", "--channel", channel, "--date", day.business_date.isoformat()]
    args += ["--records", str(records), "--json", str(statement)]

    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["reused"] is False
    assert summary["line_count"] == len(day.line_answers)
    assert summary["breaks"]["duplicate_at_bank"]["count"] == 2

    again = CliRunner().invoke(group, [*args, str(junk)])
    assert again.exit_code == 1  # a quarantined file makes the command fail ...
    assert "quarantined" in again.stderr
    rerun = json.loads(again.stdout)  # ... but the day is still reconciled: same inputs
    assert rerun["reused"] is True and rerun["run_id"] == summary["run_id"]

    bad = CliRunner().invoke(group, ["run", "--channel", channel, "--date", "2026-13-01"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    # Without --records the router is asked; when it cannot answer the command says so.
    no_router = CliRunner().invoke(
        group,
        ["run", "--channel", channel, "--date", day.business_date.isoformat()],
        env={"ROUTER_URL": "http://127.0.0.1:9"},
    )
    assert no_router.exit_code == 1 and "records are unavailable" in no_router.output


def test_recon_parse_prints_the_canonical_lines_of_a_statement(tmp_path: Path) -> None:
    day = generate({"match": 3}, channel="bank_p")
    path = tmp_path / "s.csv"
    path.write_bytes(statement_csv(day.statements[0]))
    result = CliRunner().invoke(group, ["parse", str(path), "--channel", "bank_p", "--json"])
    assert result.exit_code == 0, result.output
    statements = json.loads(result.output)
    refs = [line["our_reference"] for st in statements for line in st["lines"]]
    assert sorted(refs) == sorted(r["attempt_id"] for r in day.records)
