"""The matching engine against generated days with an answer key (no database needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.recon.adapters import columnar
from services.recon.domain.lines import Direction
from services.recon.domain.matching import Engine, MatchInputs, MatchSummary, connect
from services.recon.domain.rules import ChannelRules
from tests.recon.daygen import CASES, Day, generate, rules_for

CASE_CODE = {
    "bank_reference": "bank_reference",
    "amount_date": "amount_date",
    "one_to_many": "one_to_many",
    "fee_adjusted": "fee_adjusted",
    "unknown_paid": "our_reference",
    "unknown_absent": "resolved",
    "failed_absent": "agreed",
} | {c: c for c in CASES if c not in ("match", "unknown_paid", "unknown_absent", "failed_absent")}


def run(day: Day, workdir: Path, rules: ChannelRules | None = None, settled=()) -> Engine:
    lines = workdir / "lines.parquet"
    records = workdir / "records.ndjson"
    columnar.write_lines(day.statements, lines)
    columnar.write_records(day.records, records)
    engine = Engine(connect(threads=1, memory_limit_mb=256))
    engine.run(
        MatchInputs(
            columnar.lines_sql([lines]),
            columnar.records_ndjson_sql(records),
            day.business_date,
            rules or rules_for(day.channel),
        ),
        list(settled),
    )
    return engine


def assert_matches_answer_key(engine: Engine, day: Day) -> None:
    lines = {(s, n): (k, c) for s, n, k, c in engine.line_outcomes()}
    records = {a: (k, c) for a, k, c in engine.record_outcomes()}
    assert lines == day.line_answers
    assert records == day.record_answers
    assert {(r[0], r[2]) for r in engine.resolutions()} == day.resolutions


@pytest.mark.parametrize("case", [c for c in CASES if c != "match"])
def test_each_break_type_and_pass_from_a_generated_day_equals_the_answer_key(
    case: str, tmp_path: Path
) -> None:
    day = generate({"match": 20, case: 4}, seed=hash(case) % 1000)
    engine = run(day, tmp_path)
    assert_matches_answer_key(engine, day)
    # The case really happened (the answer key is not vacuous): its code is observed.
    observed = {c for _s, _n, _k, c in engine.line_outcomes()}
    observed |= {c for _a, _k, c in engine.record_outcomes()}
    assert CASE_CODE[case] in observed


def test_a_mixed_day_with_every_case_is_fully_accounted_and_summarised(tmp_path: Path) -> None:
    day = generate({c: 5 for c in CASES}, seed=7)
    engine = run(day, tmp_path)
    assert_matches_answer_key(engine, day)
    summary: MatchSummary = engine._summary()
    expected_breaks: dict[str, int] = {}
    for kind, code in list(day.line_answers.values()):
        if kind == "break":
            expected_breaks[code] = expected_breaks.get(code, 0) + 1
    for kind, code in day.record_answers.values():
        # breaks that hold a line were counted with the line already
        if kind == "break" and code in ("timing", "missing_at_bank"):
            expected_breaks[code] = expected_breaks.get(code, 0) + 1
    assert {k: v["count"] for k, v in summary.breaks.items()} == expected_breaks
    assert summary.passes["one_to_many"]["lines"] == 5
    assert summary.passes["one_to_many"]["records"] > 5


def test_ambiguous_candidates_are_never_matched_and_name_the_candidates(tmp_path: Path) -> None:
    day = generate({"ambiguous_match": 1, "match": 2})
    engine = run(day, tmp_path)
    rows = engine.con.execute(
        "SELECT code, detail FROM b WHERE code = 'ambiguous_match'"
    ).fetchall()
    assert len(rows) == 1
    candidates = rows[0][1].removeprefix("candidates: ").split(",")
    ambiguous = [r["attempt_id"] for r in day.records if r["attempt_id"].startswith("att_ambigu")]
    assert sorted(candidates) == sorted(ambiguous)
    matched = {a for _s, _n, a, *_ in engine.con.execute("SELECT * FROM m").fetchall()}
    assert not matched & set(ambiguous)


def test_a_line_for_a_payout_settled_by_an_earlier_run_is_a_duplicate(tmp_path: Path) -> None:
    day = generate({"match": 3})
    settled = day.records[0]["attempt_id"]
    engine = run(day, tmp_path, settled=[settled])
    outcome = {
        r[0]: r[1]
        for r in engine.con.execute(
            "SELECT attempt_id, code FROM lo WHERE attempt_id IS NOT NULL"
        ).fetchall()
    }
    assert outcome[settled] == "duplicate_at_bank"
    assert settled not in {a for a, _k, _c in engine.record_outcomes()}


def test_a_line_valued_after_the_business_day_is_timing_not_a_match(tmp_path: Path) -> None:
    day = generate({"match": 2})
    st0 = day.statements[0]
    late = replace(st0.lines[0], value_date=day.business_date.replace(day=21))
    day.statements[0] = replace(st0, lines=[late, *st0.lines[1:]])
    engine = run(day, tmp_path)
    by_line = {(s, n): (k, c) for s, n, k, c in engine.line_outcomes()}
    assert by_line[(late.statement_id, late.line_number)] == ("break", "timing")
    assert ("break", "timing") in {(k, c) for _a, k, c in engine.record_outcomes()}


def test_gross_channels_compare_the_line_net_of_its_fee(tmp_path: Path) -> None:
    day = generate({"match": 3})
    st0 = day.statements[0]
    gross = [replace(line, amount_minor=line.amount_minor + line.fee_minor) for line in st0.lines]
    day.statements[0] = replace(st0, lines=gross)
    rules = replace(rules_for(day.channel), amount_basis="gross")
    engine = run(day, tmp_path, rules)
    assert {c for _s, _n, _k, c in engine.line_outcomes()} == {"our_reference"}
    net_rules = replace(rules, amount_basis="net", passes=("our_reference",))
    engine = run(day, tmp_path, net_rules)
    assert {c for _s, _n, _k, c in engine.line_outcomes()} == {"amount_mismatch"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    counts=st.fixed_dictionaries({c: st.integers(min_value=0, max_value=4) for c in CASES}),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_for_random_days_every_line_and_record_is_accounted_exactly_once(
    counts: dict[str, int], seed: int, tmp_path: Path
) -> None:
    day = generate(counts, seed=seed)
    engine = run(day, tmp_path)
    line_keys = [(s, n) for s, n, _k, _c in engine.line_outcomes()]
    record_keys = [a for a, _k, _c in engine.record_outcomes()]
    # Exactly once: no line or record twice, none missing, on either side.
    assert sorted(line_keys) == sorted(day.line_answers)
    assert len(set(line_keys)) == len(line_keys)
    assert sorted(record_keys) == sorted(r["attempt_id"] for r in day.records)
    assert len(set(record_keys)) == len(record_keys)
    assert_matches_answer_key(engine, day)
    # Money is conserved: matched + broken line amounts equal the statement's debits+credits.
    total = sum(line.amount_minor for s in day.statements for line in s.lines)
    per_line = engine.con.execute("SELECT coalesce(sum(amount_minor), 0) FROM l").fetchone()[0]
    assert per_line == total
    assert all(
        line.direction in (Direction.DEBIT, Direction.CREDIT)
        for s in day.statements
        for line in s.lines
    )
