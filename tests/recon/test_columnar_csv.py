"""The columnar CSV reader gives exactly the parser's lines, or steps aside."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.recon.adapters import columnar, columnar_csv
from services.recon.domain import checks
from services.recon.parsers import parse
from services.recon.parsers.csv_format import CsvMapping
from tests.recon.daygen import CASES, generate, rules_for, statement_csv


def read(data: bytes, tmp_path: Path, mapping: CsvMapping | None = None, **kw: Any):
    source = tmp_path / "statement.csv"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    kw.setdefault("dest", tmp_path / "fast.parquet")
    return columnar_csv.read(source, channel="bank_a", mapping=mapping, sha256=sha, **kw)


def both(data: bytes, tmp_path: Path, mapping: CsvMapping | None = None, block_bytes: int = 0):
    blocks = {"block_bytes": block_bytes} if block_bytes else {}
    fast = read(data, tmp_path, mapping, **blocks)
    statements = parse(data, channel="bank_a", format="csv", csv_mapping=mapping)
    columnar.write_lines(statements, tmp_path / "slow.parquet")
    return fast, statements


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    counts=st.fixed_dictionaries({c: st.integers(min_value=0, max_value=3) for c in CASES}),
    seed=st.integers(min_value=0, max_value=1000),
    currency=st.sampled_from(["EUR", "USD", "GBP"]),
    # Blocks shorter than a line, of a few lines, and the whole file at once.
    block_bytes=st.sampled_from([1, 200, 700, columnar_csv.BLOCK_BYTES]),
)
def test_columnar_lines_and_totals_equal_the_parsers_on_generated_statements(
    counts: dict[str, int], seed: int, currency: str, block_bytes: int, tmp_path: Path
) -> None:
    counts = counts | {"match": 1}
    day = generate(counts, seed=seed, currency=currency)
    data = statement_csv(day.statements[0])
    fast, statements = both(data, tmp_path, block_bytes=block_bytes)
    assert fast is not None
    slow_lines = pl.read_parquet(tmp_path / "slow.parquet")
    fast_lines = pl.read_parquet(tmp_path / "fast.parquet")
    assert fast_lines.equals(slow_lines)
    assert fast.totals == [checks.totals_of(s) for s in statements]
    assert fast.line_count == slow_lines.height


def test_two_statements_in_one_file_and_broken_balances_give_the_same_verdict(
    tmp_path: Path,
) -> None:
    a = generate({"match": 3, "returned": 1}, channel="bank_a", seed=1).statements[0]
    b = replace(
        generate({"match": 2}, channel="bank_a", seed=2).statements[0],
        statement_id="second",
        account="DE00OTHER",
        sequence_number=7,
    )
    b = replace(b, lines=[replace(x, statement_id="second") for x in b.lines])
    assert b.closing is not None
    b = replace(b, closing=replace(b.closing, amount_minor=b.closing.amount_minor + 1))
    data = statement_csv(a) + b"\n".join(statement_csv(b).split(b"\n")[1:])
    fast, statements = both(data, tmp_path, block_bytes=300)  # the statements span blocks
    assert fast is not None
    slow_totals = [checks.totals_of(s) for s in statements]
    assert fast.totals == slow_totals and len(slow_totals) == 2
    rules = rules_for("bank_a")
    verdict = checks.check_totals(fast.totals, rules)
    assert verdict == checks.check_totals(slow_totals, rules)
    assert verdict is not None and verdict.code == "statement_unbalanced"
    assert pl.read_parquet(tmp_path / "fast.parquet").equals(
        pl.read_parquet(tmp_path / "slow.parquet")
    )


def test_raw_lines_keep_their_spaces_and_non_ascii_text(tmp_path: Path) -> None:
    data = statement_csv(generate({"match": 3}, channel="bank_a").statements[0])
    data = data.replace(b"Beneficiary", "  Bénéficiaire ".encode(), 1)
    fast, _ = both(data, tmp_path)
    assert fast is not None
    assert pl.read_parquet(tmp_path / "fast.parquet").equals(
        pl.read_parquet(tmp_path / "slow.parquet")
    )
    raws = pl.read_parquet(tmp_path / "fast.parquet").get_column("raw").to_list()
    assert any("  Bénéficiaire " in r for r in raws)


def test_anything_not_plain_is_left_to_the_parser(tmp_path: Path) -> None:
    good = statement_csv(generate({"match": 3}, channel="bank_a").statements[0])
    text = good.decode()
    not_plain = {
        "quoted": text.replace("Beneficiary", '"Bene, ficiary"'),
        "crlf": text.replace("\n", "\r\n"),
        "preamble": "# exported by the bank\n" + text,
        "blank line": text.replace("\n", "\n\n", 1),
        "three decimals": text.replace(",0.25,", ",0.250,", 1),
        "unknown direction": text.replace(",debit,", ",sideways,", 1),
        "odd date": text.replace("2026-11-20", "2026-11-2x", 1),
        "unknown currency": text.replace(",EUR,", ",XXX,"),
        # The reader splits raw lines on this byte; a file holding it goes to the parser.
        "unit separator": text.replace("Beneficiary", "Bene\x1fficiary", 1),
    }
    for name, variant in not_plain.items():
        data = variant.encode()
        dest = tmp_path / f"{name}.parquet"
        for block_bytes in (columnar_csv.BLOCK_BYTES, 150):  # and where it is in a later block
            assert read(data, tmp_path, dest=dest, block_bytes=block_bytes) is None, name
            assert not dest.exists(), name
            assert [p.name for p in tmp_path.iterdir()] == ["statement.csv"], name
    latin1 = text.replace("Beneficiary", "Bénéficiaire").encode("latin-1")
    assert read(latin1, tmp_path, dest=tmp_path / "l") is None
    semicolons = CsvMapping(delimiter=";")
    assert read(good, tmp_path, semicolons, dest=tmp_path / "s") is None


def test_a_blank_line_or_trailing_framing_at_a_block_boundary_is_left_to_the_parser(
    tmp_path: Path,
) -> None:
    good = statement_csv(generate({"match": 5}, channel="bank_a").statements[0])
    third = good.index(b"\n", good.index(b"\n", good.index(b"\n") + 1) + 1)
    blank = good[: third + 1] + b"\n" + good[third + 1 :]
    # The first block ends exactly before the blank line: the next one starts with it.
    assert read(good, tmp_path, block_bytes=third + 1) is not None
    assert read(blank, tmp_path, block_bytes=third + 1) is None
    assert read(good + b"\x1a", tmp_path, block_bytes=third + 1) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no parts left
