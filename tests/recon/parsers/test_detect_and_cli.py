"""Format auto-detection on every sample, the parse() entry point and ``payments recon parse``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from services.recon.domain.lines import StatementFormatError
from services.recon.parsers import detect_format, parse
from services.recon.parsers.cli import parse as parse_command
from tests.recon.parsers.samples import STATEMENTS, sample, samples

ALL = samples("mt940") + samples("camt053") + samples("bai2")
UNDETECTABLE = {"mt940/self-provided/invalid_statement.sta"}  # "1".."10": no format at all


def _expected_format(name: str) -> str:
    return {"mt940": "mt940", "camt053": "camt053", "bai2": "bai2"}[name.split("/")[0]]


@pytest.mark.parametrize("name", sorted(set(ALL) - UNDETECTABLE))
def test_auto_detection_names_every_samples_format(name: str) -> None:
    assert detect_format(sample(name)) == _expected_format(name)


def test_a_file_of_bare_numbers_is_not_guessed_into_a_format() -> None:
    (name,) = UNDETECTABLE
    with pytest.raises(StatementFormatError, match="unrecognised statement format"):
        detect_format(sample(name))


@pytest.mark.parametrize("data", [b"", b"   \n", b"\x00\x01\x02", b"<html><body>hi</body></html>"])
def test_empty_or_foreign_files_are_rejected_not_parsed(data: bytes) -> None:
    with pytest.raises(StatementFormatError):
        parse(data, channel="c")


@pytest.mark.parametrize(
    "name",
    [
        "mt940/jejik/generic.sta",
        "camt053/camt053.v2.multi.statement.xml",
        "bai2/sample1.txt",
    ],
)
def test_auto_parse_gives_the_same_statements_as_the_named_format(name: str) -> None:
    named = parse(sample(name), channel="c", format=_expected_format(name))
    assert parse(sample(name), channel="c") == named


def test_a_format_that_does_not_match_the_file_is_rejected() -> None:
    with pytest.raises(StatementFormatError):
        parse(sample("bai2/sample1.txt"), channel="c", format="camt053")
    with pytest.raises(ValueError, match="unknown statement format"):
        parse(sample("bai2/sample1.txt"), channel="c", format="qif")


def test_the_parse_command_prints_canonical_lines_as_json() -> None:
    path = STATEMENTS / "camt053" / "camt053.v2.multi.statement.xml"
    result = CliRunner().invoke(parse_command, [str(path), "--channel", "alpha", "--json"])
    assert result.exit_code == 0, result.output
    statements = json.loads(result.stdout)
    assert [s["statement_id"] for s in statements] == [
        "253EURNL26VAYB8060476890",
        "254EURNL26VAYB8060476890",
    ]
    line = statements[1]["lines"][0]
    assert line["channel"] == "alpha"
    assert (line["direction"], line["amount_minor"], line["currency"]) == ("debit", 700, "EUR")
    assert line["end_to_end_id"] == "000000002" and line["booking_date"] == "2014-12-31"
    assert statements[0]["opening"] == {
        "amount_minor": 1815,
        "currency": "EUR",
        "date": "2014-12-30",
    }


def test_the_parse_command_with_a_format_prints_a_table() -> None:
    path = STATEMENTS / "mt940" / "jejik" / "generic.sta"
    result = CliRunner().invoke(parse_command, [str(path), "--format", "mt940"])
    assert result.exit_code == 0
    assert "mt940 statement GENERIC" in result.stdout and "-10.00 EUR" in result.stdout


def test_the_parse_command_fails_with_the_reason_and_line_of_a_rejected_file() -> None:
    path = STATEMENTS / "mt940" / "betterplace" / "sepa_snippet_broken.sta"
    result = CliRunner().invoke(parse_command, [str(path), "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "rejected" in result.stderr and "(line 6)" in result.stderr


def test_parsing_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    assert gc.isenabled()
    parse(sample("mt940/jejik/generic.sta"), channel="c")
    assert gc.isenabled()
    with pytest.raises(StatementFormatError):
        parse(sample("mt940/betterplace/sepa_snippet_broken.sta"), channel="c")
    assert gc.isenabled()
    gc.disable()
    try:
        parse(sample("bai2/sample1.txt"), channel="c")
        assert not gc.isenabled()
    finally:
        gc.enable()
