"""What a statement says, independent of the file format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class Movement:
    """One booking from the truth journal: an executed payout, or the return of one."""

    kind: str  # payout | return | unknown
    reference: str  # OUR reference (the caller's att_…); for a return, the original's
    bank_reference: str
    amount_minor: int  # > 0; payouts and unknown lines are debits, returns credits
    fee_minor: int  # charged on this payout, >= 0
    booking_date: date
    value_date: date
    counterparty: str
    return_reason: str | None = None

    def __post_init__(self) -> None:
        assert self.amount_minor > 0 and self.fee_minor >= 0
        assert self.kind in ("payout", "return", "unknown")

    @property
    def is_credit(self) -> bool:
        return self.kind == "return"

    @property
    def net_minor(self) -> int:
        """Signed effect on the account balance, fee included."""
        if self.is_credit:
            return self.amount_minor - self.fee_minor
        return -(self.amount_minor + self.fee_minor)


@dataclass(frozen=True)
class Statement:
    bank: str
    bank_display_name: str
    bic: str
    iban: str
    currency: str
    business_date: date
    statement_number: int
    generation: int
    created_at: datetime
    opening_minor: int  # signed
    closing_minor: int  # signed; opening + Σ net unless a discrepancy broke it on purpose
    movements: tuple[Movement, ...]

    @property
    def file_id(self) -> str:
        """Unique per bank, currency, day and generation; fits MT940 :20: (16x)."""
        day = f"{self.business_date:%y%m%d}"
        return f"{self.bank[:4].upper()}{self.currency}{day}{self.generation:03d}"


def closing_of(opening_minor: int, movements: tuple[Movement, ...] | list[Movement]) -> int:
    return opening_minor + sum(m.net_minor for m in movements)
