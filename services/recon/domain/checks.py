"""File-level checks, run before any line is imported: a file that fails is quarantined whole.

- a CSV statement with an opening balance has a closing one, and the reverse (a truncated
  file loses its end; the other formats have trailers their parsers insist on);
- every statement belongs to the channel it was dropped for;
- one currency per account (lines, balances and every statement of the same account);
- the channel accepts that currency (when its rules list currencies);
- opening balance + credits - debits (- fees, when the channel books them in the balance, as
  the bank simulator does) = closing balance (when both balances are present);
- control totals: the line count and the sum of line amounts (absolute, minor units) match
  what the format declares (BAI2 and camt carry them);
- sequence numbers: a gap against the last accepted statement is reported (an alert), not a
  rejection, because the missing statement may still arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.recon.domain.lines import Balance, Direction, Statement
from services.recon.domain.rules import ChannelRules, account_key


@dataclass(frozen=True)
class CheckFailure:
    code: str  # stable: statement_unbalanced, currency_mixed, currency_unexpected, ...
    reason: str
    statement_id: str | None = None
    line_number: int | None = None


@dataclass(frozen=True)
class StatementTotals:
    """What the file-level checks need of one statement: computed from its lines, or by a
    columnar reader without materialising them."""

    channel: str
    statement_id: str
    account: str
    currency: str
    opening: Balance | None
    closing: Balance | None
    line_count: int
    credits_minor: int
    debits_minor: int
    fees_minor: int
    foreign_line: tuple[str, int] | None  # (currency, line number) of the first foreign line
    last_booking: date | None
    control_total_minor: int | None = None
    control_count: int | None = None
    sequence_number: int | None = None
    format: str = "csv"


def totals_of(st: Statement) -> StatementTotals:
    credits = debits = fees = 0
    foreign: tuple[str, int] | None = None
    for line in st.lines:
        assert line.amount_minor > 0, "parsers give positive amounts; direction carries sign"
        if line.direction is Direction.CREDIT:
            credits += line.amount_minor
        else:
            debits += line.amount_minor
        fees += line.fee_minor
        if foreign is None and line.currency != st.currency:
            foreign = (line.currency, line.line_number)
    return StatementTotals(
        channel=st.channel,
        statement_id=st.statement_id,
        account=st.account,
        currency=st.currency,
        opening=st.opening,
        closing=st.closing,
        line_count=len(st.lines),
        credits_minor=credits,
        debits_minor=debits,
        fees_minor=fees,
        foreign_line=foreign,
        last_booking=max((line.booking_date for line in st.lines), default=None),
        control_total_minor=st.control_total_minor,
        control_count=st.control_count,
        sequence_number=st.sequence_number,
        format=st.format,
    )


def check_statements(statements: list[Statement], rules: ChannelRules) -> CheckFailure | None:
    return check_totals([totals_of(st) for st in statements], rules)


def check_totals(statements: list[StatementTotals], rules: ChannelRules) -> CheckFailure | None:
    if not statements:
        return CheckFailure("statement_empty", "the file holds no statement")
    account_currency: dict[str, str] = {}
    for st in statements:
        failure = _check_one(st, rules)
        if failure is not None:
            return failure
        seen = account_currency.setdefault(st.account, st.currency)
        if seen != st.currency:
            return CheckFailure(
                "currency_mixed",
                f"account {st.account} appears in {seen} and {st.currency}",
                st.statement_id,
            )
    return None


def _check_one(st: StatementTotals, rules: ChannelRules) -> CheckFailure | None:
    sid = st.statement_id
    if not st.line_count and st.closing is None and st.opening is None:
        return CheckFailure("statement_empty", "a statement with neither lines nor balance", sid)
    if st.format == "csv" and (st.opening is None) != (st.closing is None):
        # One balance without the other: a CSV file cut short (the structured formats end
        # with a trailer or a closing tag their parser insists on; BAI2 may carry only one).
        missing = "closing" if st.closing is None else "opening"
        return CheckFailure("statement_incomplete", f"the statement has no {missing} balance", sid)
    if st.channel != rules.channel:
        return CheckFailure(
            "channel_mismatch", f"statement is for {st.channel}, not {rules.channel}", sid
        )
    if rules.accounts and account_key(st.account) not in {account_key(a) for a in rules.accounts}:
        # A statement of an account that is not this channel's: a misrouted or forged file.
        return CheckFailure(
            "account_unknown",
            f"account ending {st.account[-4:]} does not belong to channel {rules.channel}",
            sid,
        )
    if rules.currencies and st.currency not in rules.currencies:
        return CheckFailure(
            "currency_unexpected",
            f"currency {st.currency} is not accepted on {rules.channel}"
            f" ({', '.join(rules.currencies)})",
            sid,
        )
    for balance in (st.opening, st.closing):
        if balance is not None and balance.currency != st.currency:
            return CheckFailure(
                "currency_mixed",
                f"balance in {balance.currency} on a {st.currency} account",
                sid,
            )
    if st.foreign_line is not None:
        currency, line_number = st.foreign_line
        return CheckFailure(
            "currency_mixed", f"line in {currency} on a {st.currency} account", sid, line_number
        )
    net = st.credits_minor - st.debits_minor
    if rules.fees_in_balance:
        net -= st.fees_minor  # a charge always leaves the account
    if st.opening is not None and st.closing is not None:
        expected = st.opening.amount_minor + net
        if expected != st.closing.amount_minor:
            return CheckFailure(
                "statement_unbalanced",
                f"opening {st.opening.amount_minor} + lines {net} = {expected}"
                f" but closing is {st.closing.amount_minor}",
                sid,
            )
    if st.control_count is not None and st.control_count != st.line_count:
        return CheckFailure(
            "control_count_mismatch",
            f"control count {st.control_count} but {st.line_count} line(s)",
            sid,
        )
    total = st.credits_minor + st.debits_minor
    if st.control_total_minor is not None and st.control_total_minor != total:
        return CheckFailure(
            "control_total_mismatch",
            f"control total {st.control_total_minor} but lines sum to {total}",
            sid,
        )
    return None


def business_date(statements: list[StatementTotals]) -> date:
    """The day a file reports: its latest closing balance date, else its latest booking."""
    closing = [st.closing.date for st in statements if st.closing is not None]
    if closing:
        return max(closing)
    booked = [st.last_booking for st in statements if st.last_booking is not None]
    assert booked, "a statement without balances or lines has no business date"
    return max(booked)


def sequence_gap(last_seen: int | None, received: int | None) -> tuple[int, int] | None:
    """(expected, received) when ``received`` skips numbers after ``last_seen``."""
    if last_seen is None or received is None:
        return None
    if received > last_seen + 1:
        return last_seen + 1, received
    return None
