"""The canonical statement model every parser produces, whatever the file format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class Direction(StrEnum):
    DEBIT = "debit"  # money left the account (a payout)
    CREDIT = "credit"  # money came in (a return, a funding)


@dataclass(frozen=True, slots=True)
class StatementLine:
    channel: str
    statement_id: str
    line_number: int  # 1-based line (or entry) number in the source file, for error reports
    booking_date: date
    value_date: date
    direction: Direction
    amount_minor: int  # always > 0; the direction carries the sign
    currency: str
    fee_minor: int  # charges the bank reports against this line, 0 when none
    our_reference: str | None  # the reference we sent (att_…), when the bank echoes it
    bank_reference: str | None
    end_to_end_id: str | None
    counterparty: str | None
    raw: str  # the source text of the line, for people reading a break


@dataclass(frozen=True, slots=True)
class Balance:
    amount_minor: int  # signed: negative for a debit balance
    currency: str
    date: date


@dataclass(slots=True)
class Statement:
    channel: str
    statement_id: str
    account: str
    currency: str
    format: str  # csv | mt940 | camt053 | camt054 | bai2
    sequence_number: int | None
    opening: Balance | None
    closing: Balance | None
    lines: list[StatementLine] = field(default_factory=list)
    control_total_minor: int | None = None  # when the format carries one (BAI2, camt)
    control_count: int | None = None


class StatementFormatError(ValueError):
    """The file is not a valid statement; ``line_number`` points at the offending line."""

    def __init__(self, reason: str, *, line_number: int | None = None) -> None:
        where = f" (line {line_number})" if line_number is not None else ""
        super().__init__(f"{reason}{where}")
        self.reason = reason
        self.line_number = line_number
