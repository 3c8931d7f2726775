"""Injected discrepancies: deliberate differences between the file and the truth journal.

Each injection returns an answer-key entry naming the break reconciliation should raise
(``expected_break``, in recon's taxonomy; ``balance_broken`` names the quarantine reason
``statement_unbalanced``, since recon takes such a file whole or not at all), so a test can
check recon against a machine-readable key. Only
``balance_broken`` makes the file itself inconsistent (opening + lines != closing); every other
kind leaves the file balanced, as a real bank's own (wrong) statement would be.
``returned_payout`` needs the journal (the payout must exist), so the use case builds that
movement and the answer; everything here is pure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from services.banksim.domain.statements.model import Movement

EXPECTED_BREAK = {
    "drop_line": "missing_at_bank",
    "unknown_line": "missing_in_ledger",
    "amount_changed": "amount_mismatch",
    "duplicate_line": "duplicate_at_bank",
    "value_date_next_day": "timing",
    "returned_payout": "returned",
    "balance_broken": "statement_unbalanced",
}


class DiscrepancyError(ValueError):
    """The statement has no line the requested discrepancy could act on."""


@dataclass(frozen=True)
class Injection:
    kind: str
    reference: str | None = None
    amount_minor: int | None = None


@dataclass
class Injected:
    movements: list[Movement]
    answers: list[dict[str, Any]]
    closing_delta_minor: int


def _pick(
    movements: list[Movement],
    used: set[int],
    rng: random.Random,
    inj: Injection,
    exclude: frozenset[str],
) -> int:
    candidates = [
        i
        for i, m in enumerate(movements)
        if m.kind == "payout"
        and i not in used
        and (m.reference == inj.reference if inj.reference else m.reference not in exclude)
    ]
    if not candidates:
        which = f" with reference {inj.reference!r}" if inj.reference else ""
        raise DiscrepancyError(f"{inj.kind}: no payout line{which} left to act on")
    index = rng.choice(candidates)
    used.add(index)
    return index


def apply(
    movements: list[Movement],
    injections: list[Injection],
    rng: random.Random,
    day: date,
    *,
    exclude: frozenset[str] = frozenset(),
) -> Injected:
    """Apply the file-only injections in order; indexes refer to the original movements.

    A line is picked at random unless the injection names its reference; random picks avoid
    ``exclude`` (references returned in the same file), so each answer names one clear break.
    """
    out: list[Movement | None] = list(movements)
    extra_after: dict[int, list[Movement]] = {}
    appended: list[Movement] = []
    used: set[int] = set()
    answers: list[dict[str, Any]] = []
    closing_delta = 0
    for inj in injections:
        assert inj.kind in EXPECTED_BREAK, inj.kind
        answer: dict[str, Any] = {"kind": inj.kind, "expected_break": EXPECTED_BREAK[inj.kind]}
        if inj.kind == "drop_line":
            i = _pick(movements, used, rng, inj, exclude)
            m = movements[i]
            out[i] = None
            answer |= {"reference": m.reference, "amount_minor": m.amount_minor}
        elif inj.kind == "amount_changed":
            i = _pick(movements, used, rng, inj, exclude)
            m = movements[i]
            delta = inj.amount_minor or rng.randint(1, max(1, m.amount_minor // 10))
            out[i] = replace(m, amount_minor=m.amount_minor + delta)
            answer |= {
                "reference": m.reference,
                "original_amount_minor": m.amount_minor,
                "amount_minor": m.amount_minor + delta,
            }
        elif inj.kind == "duplicate_line":
            i = _pick(movements, used, rng, inj, exclude)
            m = movements[i]
            extra_after.setdefault(i, []).append(m)
            answer |= {"reference": m.reference, "amount_minor": m.amount_minor}
        elif inj.kind == "value_date_next_day":
            i = _pick(movements, used, rng, inj, exclude)
            m = movements[i]
            moved = m.value_date + timedelta(days=1)
            out[i] = replace(m, value_date=moved)
            answer |= {
                "reference": m.reference,
                "amount_minor": m.amount_minor,
                "original_value_date": m.value_date.isoformat(),
                "value_date": moved.isoformat(),
            }
        elif inj.kind == "unknown_line":
            if inj.reference is not None:
                raise DiscrepancyError("unknown_line: a reference cannot be chosen; it is made up")
            reference = "UNK" + "".join(rng.choice("0123456789ABCDEF") for _ in range(10))
            amount = inj.amount_minor or rng.randint(100, 250_000)
            appended.append(
                Movement(
                    kind="unknown",
                    reference=reference,
                    bank_reference="UNKN" + reference[3:].ljust(12, "0"),
                    amount_minor=amount,
                    fee_minor=0,
                    booking_date=day,
                    value_date=day,
                    counterparty="UNKNOWN BENEFICIARY",
                )
            )
            answer |= {"reference": reference, "amount_minor": amount}
        elif inj.kind == "balance_broken":
            if inj.reference is not None:
                raise DiscrepancyError("balance_broken acts on the closing balance, not a line")
            delta = inj.amount_minor or 1_000
            closing_delta += delta
            answer |= {"amount_minor": delta}
        else:  # returned_payout is built by the use case, which needs the journal
            raise DiscrepancyError(f"{inj.kind} is not a file-only discrepancy")
        answers.append(answer)

    result: list[Movement] = []
    for i, kept in enumerate(out):
        if kept is not None:
            result.append(kept)
        result.extend(extra_after.get(i, []))
    result.extend(appended)
    return Injected(result, answers, closing_delta)
