"""MT940/MT942 rules on small hand-written statements, and a render → parse round trip."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.recon.domain.lines import Direction, StatementFormatError
from services.recon.parsers import mt940
from services.recon.parsers.amounts import from_minor


def _statement(
    *body: str, opening: str = "C261120EUR100,00", closing: str = "C261120EUR90,00"
) -> bytes:
    lines = [":20:REF1", ":25:NL91ABNA0417164300", ":28C:7/1", f":60F:{opening}", *body]
    lines += [f":62F:{closing}", "-"]
    return "\r\n".join(lines).encode()


def test_a_reversal_of_a_credit_is_a_debit_and_a_reversal_of_a_debit_a_credit() -> None:
    data = _statement(
        ":61:2611201120RC10,00NTRFatt_1//B1",
        ":61:2611201120RD5,00NTRFatt_2//B2",
        ":61:2611201120D5,00NTRFatt_3//B3",
        closing="C261120EUR90,00",
    )
    (st,) = mt940.parse(data, channel="c")
    assert [ln.direction for ln in st.lines] == [Direction.DEBIT, Direction.CREDIT, Direction.DEBIT]
    assert [ln.our_reference for ln in st.lines] == ["att_1", "att_2", "att_3"]
    assert [ln.bank_reference for ln in st.lines] == ["B1", "B2", "B3"]
    assert st.sequence_number == 7


def test_an_entry_date_in_january_for_a_december_value_date_is_next_year() -> None:
    (st,) = mt940.parse(_statement(":61:2612310102D10,00NTRFatt_1"), channel="c")
    assert st.lines[0].value_date == date(2026, 12, 31)
    assert st.lines[0].booking_date == date(2027, 1, 2)


def test_a_long_reference_sent_as_nonref_is_read_from_eref_with_charges_and_name() -> None:
    data = _statement(
        ":61:2611201120D10,00NTRFNONREF//B1",
        "att_0123456789abcdef0123",
        ":86:/EREF/att_0123456789abcdef0123/CHGS/EUR1,50/BENM//NAME/JANE DOE/REMI/PAYOUT",
    )
    (st,) = mt940.parse(data, channel="c")
    (line,) = st.lines
    assert line.our_reference == line.end_to_end_id == "att_0123456789abcdef0123"
    assert line.fee_minor == 150
    assert line.counterparty == "JANE DOE"


def test_a_missing_crlf_at_the_end_of_the_file_does_not_matter() -> None:
    data = _statement(":61:2611201120D10,00NTRFatt_1").rstrip(b"\r\n-")
    (st,) = mt940.parse(data, channel="c")
    assert st.closing is not None and st.closing.amount_minor == 9000


def test_a_truncated_statement_without_closing_balance_is_rejected_at_its_last_field() -> None:
    data = b":20:REF1\n:25:ACC\n:28C:1/1\n:60F:C261120EUR100,00\n:61:2611201120D10,00NTRFatt_1\n"
    with pytest.raises(StatementFormatError) as e:
        mt940.parse(data, channel="c")
    assert e.value.line_number == 5 and "closing balance" in e.value.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (":61:2613201120D10,00NTRFatt_1", "invalid date"),
        (":61:2611201120D10,001NTRFatt_1", "more decimals than EUR allows"),
        (":61:2611201120X10,00NTRFatt_1", "malformed :61:"),
        (":61:2611321120D10,00NTRFatt_1", "invalid date"),
    ],
)
def test_a_malformed_statement_line_is_rejected_naming_its_line(line: str, reason: str) -> None:
    with pytest.raises(StatementFormatError) as e:
        mt940.parse(_statement(line), channel="c")
    assert e.value.line_number == 5 and reason in e.value.reason


def test_a_balance_in_an_unknown_currency_is_rejected() -> None:
    with pytest.raises(StatementFormatError) as e:
        mt940.parse(_statement(opening="C261120XYZ100,00"), channel="c")
    assert e.value.line_number == 4 and "unknown currency 'XYZ'" in e.value.reason


def test_balances_in_two_currencies_are_rejected() -> None:
    with pytest.raises(StatementFormatError, match="mixes currencies EUR and USD"):
        mt940.parse(_statement(closing="C261120USD90,00"), channel="c")


def test_swift_blocks_and_bank_headers_around_the_message_are_skipped() -> None:
    body = _statement(":61:2611201120D10,00NTRFatt_1").decode()
    data = "{1:F01BANKBEBBAXXX0000000000}{2:O940BANKBEBBXXXXN}{3:}{4:\r\n" + body + "}{5:}\r\n"
    (st,) = mt940.parse(data.encode(), channel="c")
    assert st.lines[0].line_number == 6


def test_an_mt942_interim_report_carries_its_counts_and_sums_instead_of_balances() -> None:
    data = "\r\n".join(
        [
            ":20:INTRA1",
            ":25:NL91ABNA0417164300",
            ":28C:3/1",
            ":34F:EURD0,",
            ":13D:2611201200+0100",
            ":61:2611201120D10,00NTRFatt_1//B1",
            ":61:2611201120C2,50NRTIatt_2//B2",
            ":90D:1EUR10,00",
            ":90C:1EUR2,50",
            "-",
        ]
    ).encode()
    (st,) = mt940.parse(data, channel="c")
    assert st.format == "mt942" and st.currency == "EUR"
    assert st.opening is None and st.closing is None
    assert (st.control_count, st.control_total_minor) == (2, 1250)
    assert sum(ln.amount_minor for ln in st.lines) == st.control_total_minor


_LINES = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=10**12),
        st.booleans(),
        st.integers(min_value=0, max_value=40),
        st.from_regex(r"att_[a-z0-9]{1,12}", fullmatch=True),
    ),
    min_size=0,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(
    rows=_LINES,
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
    opening=st.integers(-(10**9), 10**9),
)
def test_rendering_a_statement_then_parsing_it_gives_back_every_line(
    rows: list[tuple[int, bool, int, str]], currency: str, opening: int
) -> None:
    start = date(2026, 11, 2)
    out = [":20:ROUNDTRIP", ":25:DE89370400440532013000", ":28C:12/1"]
    mark = "C" if opening >= 0 else "D"
    out.append(
        f":60F:{mark}{start:%y%m%d}{currency}{from_minor(abs(opening), currency, separator=',')}"
    )
    balance = opening
    for amount, credit, days, ref in rows:
        day = start + timedelta(days=days)
        balance += amount if credit else -amount
        text = from_minor(amount, currency, separator=",")
        out.append(f":61:{day:%y%m%d}{day:%m%d}{'C' if credit else 'D'}{text}NTRF{ref}//B{amount}")
        out.append(f":86:/EREF/{ref}/BENM//NAME/N {amount}")
    mark = "C" if balance >= 0 else "D"
    out.append(
        f":62F:{mark}{start:%y%m%d}{currency}{from_minor(abs(balance), currency, separator=',')}"
    )
    out.append("-")
    (parsed,) = mt940.parse("\r\n".join(out).encode(), channel="c")
    assert parsed.opening is not None and parsed.closing is not None
    assert (parsed.opening.amount_minor, parsed.closing.amount_minor) == (opening, balance)
    assert [
        (
            ln.amount_minor,
            ln.direction is Direction.CREDIT,
            (ln.value_date - start).days,
            ln.our_reference,
        )
        for ln in parsed.lines
    ] == [(amount, credit, days, ref) for amount, credit, days, ref in rows]
    assert all(
        ln.currency == currency and ln.end_to_end_id == ln.our_reference for ln in parsed.lines
    )
