"""camt.053/054: every sample against the upstream expected JSON, unsafe XML refused, round trip."""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.recon.domain.lines import Direction, Statement, StatementFormatError
from services.recon.parsers import camt
from services.recon.parsers.amounts import from_minor
from tests.recon.parsers.samples import STATEMENTS, sample, samples

EXPECTED = sorted(p.stem for p in (STATEMENTS / "camt053" / "expected").glob("*.json"))


def _day(value: dict[str, Any] | None) -> date | None:
    return None if value is None else date.fromisoformat(value["0"][:10])


def _money(value: dict[str, Any]) -> tuple[int, str]:
    return int(value["getAmount"]), value["getCurrency"]["getCode"]


def test_every_camt_sample_except_the_wrong_one_has_expected_results() -> None:
    xml = {name.removeprefix("camt053/").removesuffix(".xml") for name in samples("camt053")}
    assert xml - set(EXPECTED) == {"camt053.v2.wrong"}


@pytest.mark.parametrize("name", EXPECTED)
def test_a_camt053_sample_equals_the_upstream_expected_json_field_by_field(name: str) -> None:
    expected = json.loads((STATEMENTS / "camt053" / "expected" / f"{name}.json").read_text())
    statements = camt.parse(sample(f"camt053/{name}.xml"), channel="bank_x")
    by_id = {st.statement_id: st for st in statements}
    records = [r for r in expected["getRecords"] if isinstance(r, dict)]
    for record in records:  # the statements the JSON spells out in full
        st = by_id[record["getId"]]
        assert st.account == record["getAccount"]["getIdentification"]
        _check_balances(st, record["getBalances"])
    entries = expected["getEntries"]
    if not entries:
        assert all(not st.lines for st in statements)
    for entry in entries:
        record = entry["getRecord"]
        st = by_id[record["getId"]] if isinstance(record, dict) else _only(statements)
        if isinstance(record, dict):
            assert st.account == record["getAccount"]["getIdentification"]
            assert st.sequence_number == (
                int(record["getElectronicSequenceNumber"])
                if record["getElectronicSequenceNumber"]
                else None
            )
            _check_balances(st, record["getBalances"])
        line = st.lines[entry["getIndex"]]
        amount, currency = _money(entry["getAmount"])
        signed = -line.amount_minor if line.direction is Direction.DEBIT else line.amount_minor
        assert (signed, line.currency) == (amount, currency)
        assert line.direction is (
            Direction.CREDIT if entry["getCreditDebitIndicator"] == "CRDT" else Direction.DEBIT
        )
        assert line.booking_date == _day(entry["getBookingDate"])
        assert line.value_date == (_day(entry["getValueDate"]) or line.booking_date)
        detail = entry["getTransactionDetail"] or {}
        reference = detail.get("getReference") or {}
        assert line.end_to_end_id == reference.get("getEndToEndId")
        assert line.our_reference == (
            reference.get("getEndToEndId") or reference.get("getInstructionId")
        )
        assert line.bank_reference == (
            entry["getAccountServicerReference"] or reference.get("getAccountServicerReference")
        )
        assert line.fee_minor == 0 and entry["getCharges"] is None


def _only(statements: list[Statement]) -> Statement:
    (st,) = statements
    return st


def _check_balances(st: Statement, balances: list[dict[str, Any]]) -> None:
    openings = [b for b in balances if b["getType"] == "opening"]
    closings = [b for b in balances if b["getType"] == "closing"]
    for mine, theirs in ((st.opening, openings), (st.closing, closings)):
        if not theirs:
            assert mine is None
            continue
        assert mine is not None
        amount, currency = _money(theirs[0]["getAmount"])
        assert (mine.amount_minor, mine.currency, mine.date) == (
            amount,
            currency,
            _day(theirs[0]["getDate"]),
        )


def test_the_v8_booking_date_time_keeps_the_banks_own_date() -> None:
    (st,) = camt.parse(sample("camt053/camt053.v8.xml"), channel="c")
    assert st.lines[0].booking_date == date(2014, 12, 31)
    assert st.lines[0].counterparty == "NAME NAME"  # Dbtr/Pty/Nm on a credit


def test_multi_statement_lines_name_their_own_statement_and_physical_line() -> None:
    first, second = camt.parse(sample("camt053/camt053.v2.multi.statement.xml"), channel="c")
    raw = sample("camt053/camt053.v2.multi.statement.xml").decode().split("\n")
    for statement in (first, second):
        for line in statement.lines:
            assert line.statement_id == statement.statement_id
            assert raw[line.line_number - 1].strip().startswith("<Ntry")
            assert "<Amt" in line.raw
    assert second.lines[0].counterparty == "Company Name 2"  # Cdtr on a debit


def test_the_wrong_sample_without_a_statement_is_rejected() -> None:
    with pytest.raises(StatementFormatError) as e:
        camt.parse(sample("camt053/camt053.v2.wrong.xml"), channel="c")
    assert "without a <Stmt>" in e.value.reason and e.value.line_number == 2


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<Stmt><Id>&lol9;</Id></Stmt></BkToCstmrStmt></Document>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!-- a comment first does not hide it -->
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<Stmt><Id>&x;</Id></Stmt></BkToCstmrStmt></Document>
"""


@pytest.mark.parametrize(("data", "line"), [(BILLION_LAUGHS, 2), (EXTERNAL_ENTITY, 3)])
def test_xml_with_a_dtd_is_refused_at_once_naming_its_line(data: bytes, line: int) -> None:
    started = time.perf_counter()
    with pytest.raises(StatementFormatError) as e:
        camt.parse(data, channel="c")
    assert time.perf_counter() - started < 0.5
    assert "DTD" in e.value.reason and e.value.line_number == line


def test_truncated_xml_is_rejected_with_the_parsers_line() -> None:
    data = sample("camt053/camt053.v2.minimal.xml")[:2000]
    with pytest.raises(StatementFormatError) as e:
        camt.parse(data, channel="c")
    assert "malformed XML" in e.value.reason
    assert e.value.line_number is not None and e.value.line_number > 1


def test_an_entry_amount_with_too_many_decimals_is_rejected_naming_its_line() -> None:
    data = sample("camt053/camt053.v2.minimal.xml").replace(
        b'<Amt Ccy="EUR">8.85</Amt>', b'<Amt Ccy="EUR">8.855</Amt>'
    )
    with pytest.raises(StatementFormatError) as e:
        camt.parse(data, channel="c")
    assert "more decimals than EUR allows" in e.value.reason
    assert e.value.line_number == 90


def test_a_camt052_report_is_not_taken_for_a_statement() -> None:
    data = sample("camt053/camt053.v2.minimal.xml").replace(b"camt.053.001.02", b"camt.052.001.02")
    with pytest.raises(StatementFormatError, match=r"not a camt\.053/054"):
        camt.parse(data, channel="c")


def _document(kind: str, entries: list[tuple[int, bool, str, int]], currency: str) -> bytes:
    """A camt document with one statement/notification holding ``entries``."""
    root, record = (
        ("BkToCstmrStmt", "Stmt") if kind == "053" else ("BkToCstmrDbtCdtNtfctn", "Ntfctn")
    )
    parts = [
        '<?xml version="1.0"?>\n',
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.08">',
        f"<{root}><GrpHdr><MsgId>M1</MsgId></GrpHdr><{record}><Id>S1</Id>",
        f"<Acct><Id><Othr><Id>ACC-1</Id></Othr></Id><Ccy>{currency}</Ccy></Acct>",
    ]
    total = sum(e[0] for e in entries)
    parts.append(
        f"<TxsSummry><TtlNtries><NbOfNtries>{len(entries)}</NbOfNtries>"
        f"<Sum>{from_minor(total, currency)}</Sum></TtlNtries></TxsSummry>"
    )
    for amount, credit, ref, fee in entries:
        party = "Dbtr" if credit else "Cdtr"
        charges = (
            f'<Chrgs><TtlChrgsAndTaxAmt Ccy="{currency}">{from_minor(fee, currency)}'
            "</TtlChrgsAndTaxAmt></Chrgs>"
            if fee
            else ""
        )
        parts.append(
            f'\n<Ntry><Amt Ccy="{currency}">{from_minor(amount, currency)}</Amt>'
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            "<BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-21</Dt></ValDt>"
            f"<AcctSvcrRef>B-{ref}</AcctSvcrRef>{charges}<NtryDtls><TxDtls><Refs>"
            f"<EndToEndId>{ref}</EndToEndId></Refs><RltdPties><{party}><Pty><Nm>N {ref}</Nm>"
            f"</Pty></{party}></RltdPties></TxDtls></NtryDtls></Ntry>"
        )
    parts.append(f"</{record}></{root}></Document>\n")
    return "".join(parts).encode()


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["053", "054"]),
    currency=st.sampled_from(["EUR", "JPY", "BHD"]),
    entries=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**13),
            st.booleans(),
            st.from_regex(r"att_[a-z0-9]{1,20}", fullmatch=True),
            st.integers(min_value=0, max_value=999),
        ),
        max_size=25,
    ),
)
def test_rendering_camt_then_parsing_it_gives_back_every_entry(
    kind: str, currency: str, entries: list[tuple[int, bool, str, int]]
) -> None:
    (parsed,) = camt.parse(_document(kind, entries, currency), channel="c")
    assert parsed.format == f"camt{kind}" and parsed.account == "ACC-1"
    assert parsed.control_count == len(entries)
    assert parsed.control_total_minor == sum(e[0] for e in entries)
    assert [
        (ln.amount_minor, ln.direction is Direction.CREDIT, ln.our_reference, ln.fee_minor)
        for ln in parsed.lines
    ] == entries
    for line, (_, _, ref, _) in zip(parsed.lines, entries, strict=True):
        assert line.bank_reference == f"B-{ref}" and line.counterparty == f"N {ref}"
        assert (line.booking_date, line.value_date) == (date(2026, 11, 20), date(2026, 11, 21))


def test_a_camt054_is_refused_when_a_camt053_was_asked_for() -> None:
    data = _document("054", [(100, True, "att_1", 0)], "EUR")
    with pytest.raises(StatementFormatError, match="expected camt053, found camt054"):
        camt.parse(data, channel="c", expect="camt053")


def test_raw_is_the_entrys_source_text_and_a_prefixed_document_parses_the_same() -> None:
    data = sample("camt053/camt053.v2.minimal.xml")
    (plain,) = camt.parse(data, channel="c")
    text = data.decode()
    start = text.index("<Ntry>")
    assert plain.lines[0].raw == text[start : text.index("</Ntry>") + len("</Ntry>")]
    prefixed = (
        text.replace('xmlns="urn:', 'xmlns:c="urn:')
        .replace("<", "<c:")
        .replace("<c:/", "</c:")
        .replace("<c:?xml", "<?xml")
        .replace("<c:!--", "<!--")
    )
    (other,) = camt.parse(prefixed.encode(), channel="c")
    assert other.lines[0].raw.startswith("<c:Ntry>") and other.lines[0].raw.endswith("</c:Ntry>")
    strip = lambda st: [(ln.amount_minor, ln.direction, ln.booking_date) for ln in st.lines]  # noqa: E731
    assert strip(other) == strip(plain) and other.opening == plain.opening


def test_a_comment_holding_an_entry_tag_does_not_mix_up_raw_texts() -> None:
    data = sample("camt053/camt053.v2.multi.statement.xml").replace(
        b"<Stmt>", b"<!-- <Ntry>decoy</Ntry> --><Stmt>", 1
    )
    first, second = camt.parse(data, channel="c")
    assert "decoy" not in first.lines[0].raw and "8.85" in first.lines[0].raw
    assert "7.00" in second.lines[0].raw
