"""The bank simulator's statement files (its own renderers) read back exactly by the parsers.

This is the contract between the two: every movement the simulator books comes back as one line
with our reference, amount, fee, dates and direction, and the balances add up the way the
simulator books them (fees inside the balance)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.banksim.domain.statements import camt053, csv_format, mt940
from services.banksim.domain.statements.model import Movement, Statement, closing_of
from services.recon.domain.lines import Direction
from services.recon.parsers import detect_format, parse

RENDERERS = {"csv": csv_format.render, "mt940": mt940.render, "camt053": camt053.render}
DAY = date(2026, 11, 20)

_MOVEMENTS = st.lists(
    st.builds(
        Movement,
        kind=st.sampled_from(["payout", "return", "unknown"]),
        reference=st.from_regex(r"att_[0-9a-z]{8,26}", fullmatch=True),
        bank_reference=st.from_regex(r"BK[0-9A-Z]{6,14}", fullmatch=True),
        amount_minor=st.integers(min_value=1, max_value=10**11),
        fee_minor=st.integers(min_value=0, max_value=5000),
        booking_date=st.just(DAY),
        value_date=st.sampled_from([DAY, date(2026, 11, 23)]),
        counterparty=st.sampled_from(["Jane Doe", "ACME GmbH", "O'Brien & Co"]),
    ).filter(lambda m: m.kind == "payout" or m.fee_minor == 0),  # only payouts carry a fee
    max_size=8,
)


def _statement(currency: str, opening: int, movements: list[Movement]) -> Statement:
    return Statement(
        bank="alpha",
        bank_display_name="Alpha Bank",
        bic="ALPHDEFF",
        iban="DE89370400440532013000",
        currency=currency,
        business_date=DAY,
        statement_number=41,
        generation=1,
        created_at=datetime(2026, 11, 21, 6, 0, tzinfo=UTC),
        opening_minor=opening,
        closing_minor=closing_of(opening, movements),
        movements=tuple(movements),
    )


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
@settings(max_examples=15, deadline=None)
@given(
    movements=_MOVEMENTS,
    currency=st.sampled_from(["EUR", "JPY", "USD"]),
    opening=st.integers(min_value=-(10**9), max_value=10**12),
)
def test_a_simulator_statement_reads_back_line_for_line(
    fmt: str, movements: list[Movement], currency: str, opening: int
) -> None:
    source = _statement(currency, opening, movements)
    data = RENDERERS[fmt](source)
    assert detect_format(data) == fmt
    (parsed,) = parse(data, channel="alpha")
    assert parsed.currency == currency and parsed.account == source.iban
    assert parsed.sequence_number == source.statement_number
    assert parsed.opening is not None and parsed.closing is not None
    assert (parsed.opening.amount_minor, parsed.closing.amount_minor) == (
        source.opening_minor,
        source.closing_minor,
    )
    assert parsed.closing.date == DAY
    got = [
        (
            ln.our_reference,
            ln.amount_minor,
            ln.fee_minor,
            ln.direction is Direction.CREDIT,
            ln.booking_date,
            ln.value_date,
        )
        for ln in parsed.lines
    ]
    expected = [
        (m.reference, m.amount_minor, m.fee_minor, m.is_credit, m.booking_date, m.value_date)
        for m in movements
    ]
    assert got == expected
    assert [ln.bank_reference for ln in parsed.lines] == [m.bank_reference for m in movements]
    net = sum(
        (ln.amount_minor if ln.direction is Direction.CREDIT else -ln.amount_minor) - ln.fee_minor
        for ln in parsed.lines
    )
    assert parsed.opening.amount_minor + net == parsed.closing.amount_minor
