"""CSV statements, read through a per-channel column mapping (a new CSV bank needs config only).

The file: optional preamble lines starting with ``#`` (ignored), one header row naming the
columns, then one row per record. A :class:`CsvMapping` says which header names hold which
field; a mapped column that is absent from the header is simply empty, except ``date`` and
``amount`` which every file must have.

Conventions (the default mapping reads the bank simulator's files as they are):
- **direction**: when the mapping's ``direction`` column is in the header, its value says the
  side (``debit_values``/``credit_values``, case-insensitive) and the amount must be unsigned;
  otherwise the amount is signed and a negative amount is a debit.
- **balances**: rows whose ``record_type`` column (default ``type``) reads ``opening`` or
  ``closing`` are the statement's balances, not lines; their amount is signed (or carries a
  direction, ``credit`` = positive balance), and their date/currency columns apply. Rows with
  any other value (or an empty one, or files without the column) are lines.
- **statement identity**: optional ``account``, ``statement_id`` and ``sequence`` columns; rows
  with different ``(account, statement_id)`` form separate statements, in first-seen order.
  Without a ``statement_id`` column the id is ``<channel>-<first 16 hex digits of the file's
  SHA-256>`` — stable, so a re-run names the same statement.
- **currency**: the ``currency`` column, else ``default_currency``; one of them must give one.
- **amounts**: exact, with ``decimal_separator`` and an optional ``thousands_separator``; a
  currency with an unknown exponent or an amount with more decimals than it allows is an error.
- **dates**: ``date_format`` (``strptime``; ISO ``%Y-%m-%d`` takes a fast path). ``value_date``
  defaults to the booking date when the column is absent or empty.
- a zero amount moves no money and is not a line;
- ``line_number`` is the physical line of the row (1-based, counting preamble and header);
  ``raw`` its text.

Example for a bank with semicolons, decimal commas and signed amounts::

    CsvMapping(delimiter=";", date="Buchungstag", value_date="Valuta", amount="Betrag",
               direction=None, currency=None, default_currency="EUR", reference="Referenz",
               decimal_separator=",", thousands_separator=".", date_format="%d.%m.%Y")
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime

from services.recon.domain.lines import (
    Balance,
    Direction,
    Statement,
    StatementFormatError,
    StatementLine,
)
from services.recon.parsers.amounts import signed_to_minor, to_minor
from services.recon.parsers.text import decode

_ROWS_MAX = 50_000_000  # a limit on everything: far above any daily statement


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """Which header column holds which field; ``None`` means the bank does not send it."""

    delimiter: str = ","
    quotechar: str = '"'
    date: str = "date"
    value_date: str | None = "value_date"
    amount: str = "amount"
    direction: str | None = "direction"
    debit_values: frozenset[str] = field(
        default_factory=lambda: frozenset({"debit", "d", "dbit", "dr", "-"})
    )
    credit_values: frozenset[str] = field(
        default_factory=lambda: frozenset({"credit", "c", "crdt", "cr", "+"})
    )
    currency: str | None = "currency"
    default_currency: str | None = None
    reference: str | None = "reference"
    bank_reference: str | None = "bank_reference"
    end_to_end_id: str | None = "end_to_end_id"
    fee: str | None = "fee"
    counterparty: str | None = "counterparty"
    account: str | None = "account"
    statement_id: str | None = "statement_id"
    sequence: str | None = "sequence"
    record_type: str | None = "type"
    opening_value: str = "opening"
    closing_value: str = "closing"
    decimal_separator: str = "."
    thousands_separator: str | None = None
    date_format: str = "%Y-%m-%d"

    def __post_init__(self) -> None:
        assert len(self.delimiter) == 1, "delimiter is one character"
        assert self.decimal_separator != self.thousands_separator


DEFAULT_MAPPING = CsvMapping()


@dataclass(slots=True)
class _Group:
    account: str
    statement_id: str
    sequence: int | None
    currency: str | None = None
    opening: Balance | None = None
    closing: Balance | None = None
    lines: list[StatementLine] = field(default_factory=list)


def parse(data: bytes, *, channel: str, mapping: CsvMapping | None = None) -> list[Statement]:
    """Every statement in a CSV file read with ``mapping`` (default: :data:`DEFAULT_MAPPING`)."""
    m = mapping or DEFAULT_MAPPING
    text = decode(data)
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    start = 0
    while start < len(physical) and (not physical[start].strip() or physical[start][0] == "#"):
        start += 1
    if start == len(physical):
        raise StatementFormatError("CSV file without a header row", line_number=1)
    reader = csv.reader(physical[start:], delimiter=m.delimiter, quotechar=m.quotechar, strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as e:
        raise StatementFormatError(f"malformed CSV header: {e}", line_number=start + 1) from e
    columns = {name: i for i, name in enumerate(header)}
    for required in (m.date, m.amount):
        if required not in columns:
            raise StatementFormatError(
                f"CSV header has no {required!r} column (mapping for channel {channel!r})",
                line_number=start + 1,
            )

    def col(name: str | None) -> int | None:
        return columns.get(name) if name is not None else None

    i_date, i_amount = columns[m.date], columns[m.amount]
    i_value, i_direction, i_currency = col(m.value_date), col(m.direction), col(m.currency)
    i_reference, i_bank, i_e2e = col(m.reference), col(m.bank_reference), col(m.end_to_end_id)
    i_fee, i_counterparty, i_type = col(m.fee), col(m.counterparty), col(m.record_type)
    i_account, i_statement, i_sequence = col(m.account), col(m.statement_id), col(m.sequence)
    width = len(header)
    debit_values = {v.lower() for v in m.debit_values}
    opening_value, closing_value = m.opening_value.lower(), m.closing_value.lower()
    credit_values = {v.lower() for v in m.credit_values}
    default_id = f"{channel}-{hashlib.sha256(data).hexdigest()[:16]}"
    dates: dict[str, date] = {}
    iso = m.date_format == "%Y-%m-%d"

    def parse_date(text: str, line_number: int) -> date:
        day = dates.get(text)
        if day is None:
            try:
                day = (
                    date.fromisoformat(text)
                    if iso
                    else datetime.strptime(text, m.date_format).date()
                )
            except ValueError as e:
                raise StatementFormatError(
                    f"date {text!r} does not match {m.date_format}", line_number=line_number
                ) from e
            dates[text] = day
        return day

    def amount_of(text: str, currency: str, line_number: int, *, signed: bool) -> int:
        if m.thousands_separator:
            text = text.replace(m.thousands_separator, "")
        if signed:
            return signed_to_minor(
                text, currency, separator=m.decimal_separator, line_number=line_number
            )
        return to_minor(
            text.strip(), currency, separator=m.decimal_separator, line_number=line_number
        )

    groups: dict[tuple[str, str], _Group] = {}
    group: _Group | None = None
    previous_line = start + 1
    rows = 0
    try:
        for row in reader:
            line_number = start + reader.line_num
            first_physical = previous_line + 1
            previous_line = line_number
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            rows += 1
            if rows > _ROWS_MAX:
                raise StatementFormatError(f"more than {_ROWS_MAX} rows", line_number=line_number)
            if len(row) != width:
                raise StatementFormatError(
                    f"row has {len(row)} fields, the header has {width}", line_number=line_number
                )
            account = row[i_account].strip() if i_account is not None else ""
            statement_id = row[i_statement].strip() if i_statement is not None else default_id
            key = (account, statement_id)
            if group is None or (group.account, group.statement_id) != key:
                group = groups.get(key)
                if group is None:
                    sequence_text = row[i_sequence].strip() if i_sequence is not None else ""
                    if sequence_text and not sequence_text.isdigit():
                        raise StatementFormatError(
                            f"sequence {sequence_text!r} is not a number", line_number=line_number
                        )
                    group = _Group(
                        account,
                        statement_id or default_id,
                        int(sequence_text) if sequence_text else None,
                    )
                    groups[key] = group
            currency = (
                row[i_currency].strip() if i_currency is not None else ""
            ) or m.default_currency
            if not currency:
                raise StatementFormatError("row without a currency", line_number=line_number)
            if group.currency is None:
                group.currency = currency
            booking = parse_date(row[i_date].strip(), line_number)
            direction_text = row[i_direction].strip().lower() if i_direction is not None else ""
            amount_text = row[i_amount]
            kind = row[i_type].strip().lower() if i_type is not None else ""
            if kind in (opening_value, closing_value):
                amount = amount_of(amount_text, currency, line_number, signed=True)
                if direction_text in debit_values:
                    amount = -abs(amount)
                balance = Balance(amount_minor=amount, currency=currency, date=booking)
                if kind == opening_value:
                    group.opening = balance
                else:
                    group.closing = balance
                continue
            if i_direction is not None:
                if direction_text in debit_values:
                    direction = Direction.DEBIT
                elif direction_text in credit_values:
                    direction = Direction.CREDIT
                else:
                    raise StatementFormatError(
                        f"direction {row[i_direction]!r} is neither debit nor credit",
                        line_number=line_number,
                    )
                amount = amount_of(amount_text, currency, line_number, signed=False)
            else:
                amount = amount_of(amount_text, currency, line_number, signed=True)
                direction = Direction.DEBIT if amount < 0 else Direction.CREDIT
                amount = abs(amount)
            if amount == 0:
                continue  # moves no money
            value_text = row[i_value].strip() if i_value is not None else ""
            fee_text = row[i_fee].strip() if i_fee is not None else ""
            group.lines.append(
                StatementLine(
                    channel=channel,
                    statement_id=group.statement_id,
                    line_number=line_number,
                    booking_date=booking,
                    value_date=parse_date(value_text, line_number) if value_text else booking,
                    direction=direction,
                    amount_minor=amount,
                    currency=currency,
                    fee_minor=amount_of(fee_text, currency, line_number, signed=False)
                    if fee_text
                    else 0,
                    our_reference=_cell(row, i_reference),
                    bank_reference=_cell(row, i_bank),
                    end_to_end_id=_cell(row, i_e2e),
                    counterparty=_cell(row, i_counterparty),
                    raw=physical[line_number - 1]
                    if first_physical == line_number
                    else "\n".join(physical[first_physical - 1 : line_number]),
                )
            )
    except csv.Error as e:
        raise StatementFormatError(
            f"malformed CSV: {e}", line_number=start + reader.line_num
        ) from e
    if not groups:
        raise StatementFormatError("CSV file without rows", line_number=start + 1)
    return [
        Statement(
            channel=channel,
            statement_id=g.statement_id,
            account=g.account,
            currency=g.currency or "",
            format="csv",
            sequence_number=g.sequence,
            opening=g.opening,
            closing=g.closing,
            lines=g.lines,
        )
        for g in groups.values()
    ]


def _cell(row: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    value = row[index].strip()
    return value or None
