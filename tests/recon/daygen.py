"""Generated reconciliation days with an answer key: what every line and record must become.

Amounts are chosen so that only the intended candidates can meet in the amount-based passes:
ordinary payouts use 1000 + 7i, lines we know nothing about use 10^8 + 7i + 3, and the fee is
25 (not a multiple of 7), so no accidental equality exists unless a case builds one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.recon.domain.lines import Balance, Direction, Statement, StatementLine
from services.recon.domain.rules import ChannelRules

FEE = 25
CASES = (
    "match",
    "bank_reference",
    "amount_date",
    "one_to_many",
    "fee_adjusted",
    "amount_mismatch",
    "fee_mismatch",
    "duplicate_at_bank",
    "missing_in_ledger",
    "missing_at_bank",
    "timing",
    "returned",
    "status_mismatch",
    "ambiguous_match",
    "unknown_paid",
    "unknown_absent",
    "failed_absent",
)


def rules_for(channel: str) -> ChannelRules:
    return ChannelRules(
        channel=channel,
        window_days=2,
        one_to_many_group_by=("currency", "record_date", "channel_id"),
    )


@dataclass
class Day:
    channel: str
    business_date: date
    statements: list[Statement]
    records: list[dict[str, Any]]
    # (statement_id, line_number) -> (kind, code); attempt_id -> (kind, code)
    line_answers: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    record_answers: dict[str, tuple[str, str]] = field(default_factory=dict)
    resolutions: set[tuple[str, str]] = field(default_factory=set)  # (attempt_id, outcome)


def generate(
    counts: dict[str, int],
    *,
    channel: str = "bank_a",
    business_date: date = date(2026, 11, 20),
    seed: int = 1,
    currency: str = "EUR",
) -> Day:
    rnd = random.Random(seed)
    sid = f"{channel}-{business_date.isoformat()}"
    lines: list[dict[str, Any]] = []
    day = Day(channel, business_date, [], [])
    seq = iter(range(1, 10_000_000))

    def record(case: str, *, status: str = "succeeded", days_ago: int = 0, **extra: Any) -> dict:
        i = next(seq)
        created = datetime.combine(business_date - timedelta(days=days_ago), time(10), UTC)
        rec = {
            "attempt_id": f"att_{case[:6]}_{i:07d}",
            "payout_id": f"po_{i:07d}",
            "bank": channel,
            "channel_id": "ch_main",
            "amount_minor": 1000 + 7 * i,
            "currency": currency,
            "fee_minor": FEE,
            "status": status,
            "created_at": created.isoformat(),
            "resolved_at": None,
            "bank_reference": None,
        }
        rec.update(extra)
        day.records.append(rec)
        return rec

    def line(rec: dict | None, answer: tuple[str, str], **fields: Any) -> None:
        base = {
            "direction": Direction.DEBIT,
            "amount_minor": rec["amount_minor"] if rec else 0,
            "fee_minor": FEE,
            "our_reference": rec["attempt_id"] if rec else None,
            "bank_reference": f"BR{len(lines):08d}",
            "value_date": business_date,
        }
        base.update(fields)
        base["answer"] = answer
        lines.append(base)

    for case in CASES:
        for _ in range(counts.get(case, 0)):
            if case == "match":
                rec = record(case)
                line(rec, ("match", "our_reference"))
                day.record_answers[rec["attempt_id"]] = ("match", "our_reference")
            elif case == "bank_reference":
                rec = record(case, bank_reference=f"BK{next(seq):09d}")
                line(rec, ("match", "bank_reference"), our_reference=None)
                lines[-1]["bank_reference"] = rec["bank_reference"]
                day.record_answers[rec["attempt_id"]] = ("match", "bank_reference")
            elif case == "amount_date":
                rec = record(case)
                line(rec, ("match", "amount_date"), our_reference=None)
                day.record_answers[rec["attempt_id"]] = ("match", "amount_date")
            elif case == "one_to_many":
                group = f"ch_batch{next(seq)}"
                members = [record(case, channel_id=group) for _ in range(rnd.randint(2, 4))]
                total = sum(m["amount_minor"] for m in members)
                line(None, ("match", "one_to_many"), amount_minor=total, our_reference=None)
                for m in members:
                    day.record_answers[m["attempt_id"]] = ("match", "one_to_many")
            elif case == "fee_adjusted":
                rec = record(case)
                line(
                    rec,
                    ("match", "fee_adjusted"),
                    our_reference=None,
                    amount_minor=rec["amount_minor"] + FEE,
                )
                day.record_answers[rec["attempt_id"]] = ("match", "fee_adjusted")
            elif case == "amount_mismatch":
                rec = record(case)
                line(rec, ("break", case), amount_minor=rec["amount_minor"] + 1)
                day.record_answers[rec["attempt_id"]] = ("break", case)
            elif case == "fee_mismatch":
                rec = record(case)
                line(rec, ("break", case), fee_minor=FEE + 5)
                day.record_answers[rec["attempt_id"]] = ("break", case)
            elif case == "duplicate_at_bank":
                rec = record(case)
                # The earlier of the two lines in the file matches; the later is the duplicate.
                line(rec, ("dup", rec["attempt_id"]))
                line(rec, ("dup", rec["attempt_id"]))
                day.record_answers[rec["attempt_id"]] = ("match", "our_reference")
            elif case == "missing_in_ledger":
                amount = 100_000_000 + 7 * next(seq) + 3
                line(None, ("break", case), amount_minor=amount, our_reference=None)
            elif case == "missing_at_bank":
                rec = record(case, days_ago=3)
                day.record_answers[rec["attempt_id"]] = ("break", case)
            elif case == "timing":
                rec = record(case, days_ago=rnd.randint(0, 1))
                day.record_answers[rec["attempt_id"]] = ("break", case)
            elif case == "returned":
                rec = record(case)
                line(rec, ("match", "our_reference"))
                line(rec, ("break", case), direction=Direction.CREDIT)
                day.record_answers[rec["attempt_id"]] = ("match", "our_reference")
                day.resolutions.add((rec["attempt_id"], "returned"))
            elif case == "status_mismatch":
                rec = record(case, status="failed")
                line(rec, ("break", case))
                day.record_answers[rec["attempt_id"]] = ("break", case)
            elif case == "ambiguous_match":
                a = record(case)
                b = record(case, amount_minor=a["amount_minor"])
                line(None, ("break", case), amount_minor=a["amount_minor"], our_reference=None)
                day.record_answers[a["attempt_id"]] = ("break", "timing")
                day.record_answers[b["attempt_id"]] = ("break", "timing")
            elif case == "unknown_paid":
                rec = record(case, status="unknown")
                line(rec, ("match", "our_reference"))
                day.record_answers[rec["attempt_id"]] = ("match", "our_reference")
                day.resolutions.add((rec["attempt_id"], "paid"))
            elif case == "unknown_absent":
                rec = record(case, status="unknown", days_ago=3)
                day.record_answers[rec["attempt_id"]] = ("resolved", "resolved")
                day.resolutions.add((rec["attempt_id"], "failed"))
            elif case == "failed_absent":
                rec = record(case, status="failed")
                day.record_answers[rec["attempt_id"]] = ("agreed", "agreed")

    rnd.shuffle(lines)
    opening = 1_000_000_000
    net = 0
    st_lines: list[StatementLine] = []
    seen_dups: set[str] = set()
    for number, fields in enumerate(lines, start=1):
        direction = fields["direction"]
        amount = fields["amount_minor"]
        net += amount if direction is Direction.CREDIT else -amount
        net -= fields["fee_minor"]  # the bank books the fee in the balance
        st_lines.append(
            StatementLine(
                channel=channel,
                statement_id=sid,
                line_number=number,
                booking_date=business_date,
                value_date=fields["value_date"],
                direction=direction,
                amount_minor=amount,
                currency=currency,
                fee_minor=fields["fee_minor"],
                our_reference=fields["our_reference"],
                bank_reference=fields["bank_reference"],
                end_to_end_id=None,
                counterparty="Beneficiary",
                raw=f"line {number}",
            )
        )
        answer = fields["answer"]
        if answer[0] == "dup":
            first = answer[1] not in seen_dups
            seen_dups.add(answer[1])
            answer = ("match", "our_reference") if first else ("break", "duplicate_at_bank")
        day.line_answers[(sid, number)] = answer
    day.statements.append(
        Statement(
            channel=channel,
            statement_id=sid,
            account="DE00TEST",
            currency=currency,
            format="csv",
            sequence_number=1,
            opening=Balance(opening, currency, business_date),
            closing=Balance(opening + net, currency, business_date),
            lines=st_lines,
        )
    )
    return day


def statement_csv(st: Statement) -> bytes:
    """The statement as CSV in the parsers' default mapping. Line n of ``st`` lands on
    physical line n + 2 (header, then the opening row)."""
    import csv
    import io

    def money(minor: int) -> str:
        sign = "-" if minor < 0 else ""
        return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "type",
            "date",
            "value_date",
            "amount",
            "direction",
            "currency",
            "reference",
            "bank_reference",
            "fee",
            "counterparty",
            "account",
            "statement_id",
            "sequence",
        ]
    )
    seq = "" if st.sequence_number is None else str(st.sequence_number)
    ident = [st.account, st.statement_id, seq]

    def balance(kind: str, b: Balance | None) -> list[str]:
        assert b is not None
        return [
            kind,
            b.date.isoformat(),
            "",
            money(b.amount_minor),
            "",
            b.currency,
            "",
            "",
            "",
            "",
            *ident,
        ]

    rows = [balance("opening", st.opening)]
    for ln in sorted(st.lines, key=lambda x: x.line_number):
        rows.append(
            [
                "txn",
                ln.booking_date.isoformat(),
                ln.value_date.isoformat(),
                money(ln.amount_minor),
                ln.direction.value,
                ln.currency,
                ln.our_reference or "",
                ln.bank_reference or "",
                money(ln.fee_minor),
                ln.counterparty or "",
                *ident,
            ]
        )
    rows.append(balance("closing", st.closing))
    writer.writerows(rows)
    return out.getvalue().encode()
