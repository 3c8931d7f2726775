"""The simulator's answer key speaks recon's language: every ``expected_break`` is a break code
of recon's taxonomy, or the quarantine reason recon gives a file that does not balance."""

from __future__ import annotations

import copy
import random
from datetime import date

from services.banksim.domain.statements import discrepancies
from services.banksim.domain.statements.model import Movement
from services.recon.domain.taxonomy import BreakCode

DAY = date(2026, 1, 5)


def _movements(n: int) -> list[Movement]:
    return [
        Movement(
            kind="payout",
            reference=f"att_{i:04d}",
            bank_reference=f"B{i:015d}",
            amount_minor=1000 + i,
            fee_minor=10,
            booking_date=DAY,
            value_date=DAY,
            counterparty="Ada",
        )
        for i in range(n)
    ]


def test_every_expected_break_is_a_recon_break_code_or_its_balance_quarantine() -> None:
    codes = {code.value for code in BreakCode}
    for kind, expected in discrepancies.EXPECTED_BREAK.items():
        if kind == "balance_broken":
            assert expected == "statement_unbalanced"
        else:
            assert expected in codes, (kind, expected)
    assert discrepancies.EXPECTED_BREAK["duplicate_line"] == "duplicate_at_bank"


def test_injected_answers_carry_the_recon_names() -> None:
    injected = discrepancies.apply(
        copy.deepcopy(_movements(6)),
        [discrepancies.Injection("duplicate_line"), discrepancies.Injection("balance_broken")],
        random.Random(3),
        DAY,
    )
    names = {a["kind"]: a["expected_break"] for a in injected.answers}
    assert names == {
        "duplicate_line": "duplicate_at_bank",
        "balance_broken": "statement_unbalanced",
    }
