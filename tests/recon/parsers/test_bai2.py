"""BAI2: the real samples with their control totals, and files that break the framing."""

from __future__ import annotations

from datetime import date

import pytest

from services.recon.domain.lines import Direction, StatementFormatError
from services.recon.parsers import bai2
from tests.recon.parsers.samples import sample

SMALL = """01,BANK1,ACME,261120,0600,7,,,2/
02,ACME,BANK1,1,261120,,EUR,2/
03,ACC-1,EUR,010,100000,,,015,88000,,/
16,475,10000,V,261121,,B-1,att_1,PAYOUT TO JANE/
88,DOE AND SONS
16,175,500,0,B-2,att_2,RETURN/
16,495,2500,S,1000,1000,500,B-3,att_3,WITH, COMMAS/
49,201000,6/
98,201000,1,8/
99,201000,1,10/
"""


def test_sample1_has_two_reports_of_one_account_with_verified_totals() -> None:
    first, second = bai2.parse(sample("bai2/sample1.txt"), channel="c")
    assert first.account == second.account == "10200123456"
    assert first.statement_id != second.statement_id
    assert (len(first.lines), len(second.lines)) == (11, 6)
    assert first.currency == "CAD" and first.sequence_number == 1
    assert first.lines[0].value_date == date(2006, 3, 16)
    assert first.lines[0].booking_date == date(2006, 3, 17)
    assert first.lines[0].direction is Direction.DEBIT  # 409
    assert first.lines[3].direction is Direction.CREDIT  # 108
    assert first.opening is not None and first.closing is not None  # 040/045 available
    net = sum(
        ln.amount_minor if ln.direction is Direction.CREDIT else -ln.amount_minor
        for ln in first.lines
    )
    assert first.opening.amount_minor + net == first.closing.amount_minor


def test_sample2_continuations_funds_types_and_usd_default() -> None:
    statements = bai2.parse(sample("bai2/sample2.txt"), channel="c")
    assert [st.account for st in statements] == [
        "0123456789",
        "9876543210",
        "4589761203",
        "0975312468",
        "7890654321",
    ]
    assert all(st.currency == "USD" for st in statements)
    lock_box = statements[2].lines[0]
    assert (lock_box.amount_minor, lock_box.value_date) == (20000000, date(2004, 6, 22))
    assert (lock_box.bank_reference, lock_box.our_reference) == ("SP4738", "YRC065321")
    assert "ARAMCO" in lock_box.raw  # the 88 continuation belongs to this line
    assert statements[0].opening is not None and statements[0].opening.amount_minor == 4350000


def test_a_small_report_reads_references_value_dates_and_text_with_commas() -> None:
    (st,) = bai2.parse(SMALL.encode(), channel="c")
    assert st.opening is not None and st.closing is not None
    assert (st.opening.amount_minor, st.closing.amount_minor) == (100000, 88000)
    assert [(ln.direction, ln.amount_minor, ln.our_reference) for ln in st.lines] == [
        (Direction.DEBIT, 10000, "att_1"),
        (Direction.CREDIT, 500, "att_2"),
        (Direction.DEBIT, 2500, "att_3"),
    ]
    assert st.lines[0].value_date == date(2026, 11, 21)
    assert st.lines[2].bank_reference == "B-3"
    assert st.control_total_minor is None and st.control_count is None


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("49,201000,6/", "49,201001,6/", 8, "declares total 201001"),
        ("49,201000,6/", "49,201000,5/", 8, "over 5 records"),
        ("98,201000,1,8/", "98,201000,2,8/", 9, "group trailer"),
        ("99,201000,1,10/", "99,201000,1,11/", 10, "file trailer"),
        ("16,175,500,0,", "16,775,500,0,", 6, "no debit/credit side"),
        ("16,175,500,0,", "16,175,5x0,0,", 6, "not a number"),
        ("02,ACME,BANK1,1,261120,,EUR", "02,ACME,BANK1,1,261120,,XYZ", 2, "unknown currency"),
        ("16,175,500,0,", "16,175,500,Q,", 6, "unknown funds type"),
    ],
)
def test_a_broken_bai2_file_is_rejected_naming_the_line(
    old: str, new: str, line: int, words: str
) -> None:
    with pytest.raises(StatementFormatError) as e:
        bai2.parse(SMALL.replace(old, new).encode(), channel="c")
    assert e.value.line_number == line and words in e.value.reason


def test_a_truncated_bai2_file_is_rejected() -> None:
    truncated = "".join(SMALL.splitlines(keepends=True)[:6])
    with pytest.raises(StatementFormatError, match="ends without its 99 trailer"):
        bai2.parse(truncated.encode(), channel="c")


def test_records_out_of_order_are_rejected() -> None:
    lines = SMALL.splitlines(keepends=True)
    swapped = "".join([lines[0], lines[1], lines[3], lines[2], *lines[4:]])
    with pytest.raises(StatementFormatError) as e:
        bai2.parse(swapped.encode(), channel="c")
    assert e.value.line_number == 3 and "record 16 where 03|98 was expected" in e.value.reason
