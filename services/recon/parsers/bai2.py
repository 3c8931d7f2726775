"""BAI2 cash-management balance reports → canonical statements (one per ``03`` account).

Records: ``01`` file header, ``02`` group header, ``03`` account identifier and summaries,
``16`` transaction detail, ``88`` continuation (its fields extend the previous record), ``49``
account trailer, ``98`` group trailer, ``99`` file trailer. A record ends with ``/`` except a
``16``'s free text, which runs to the end of the physical record.

Checked here because they are the file's own framing (a file failing them is truncated or
corrupt): record order; every ``49`` control total (the signed sum of every amount in the
account's ``03``/``88``/``16`` records) and record count (``03`` through ``49``, continuations
included); every ``98`` total (sum of its ``49`` totals), account count and record count; the
``99`` total, group count and record count. Any mismatch is a :class:`StatementFormatError`
naming the trailer's line.

Amounts are already in minor units (the currency's implied decimals); a missing currency means
the group's, and a group without one is USD (BAI2 default). Type codes 100-399 are credits,
400-699 debits; a ``16`` with another type code has no defined side and is rejected. Funds
types ``0``/``1``/``2``/``Z``/``V`` (value date and time)/``S`` (three distributed amounts)/``D``
(a count then day/amount pairs) are skipped correctly.

Canonical mapping: one :class:`Statement` per ``03`` account with ``statement_id`` =
``<sender>-<file id>-<group as-of date>-<account>`` (``-2``, ``-3`` … when a group reports
the same account again), ``sequence_number`` = the ``01`` file id,
``opening``/``closing`` = summary code ``010``/``015`` (opening/closing ledger), else
``040``/``045`` (opening/closing available), dated the group's as-of date.
``control_total_minor``/``control_count`` stay None: the BAI2 totals include summary amounts
and count records, and they are verified here already.
A ``16`` with amount zero moves no money and is not a line.
Each ``16`` is a line: ``booking_date`` = the group's as-of date, ``value_date`` = the ``V``
funds-type date when given, ``bank_reference`` = bank reference, ``our_reference`` = customer
reference, ``counterparty`` = None (BAI2 has no party field; the text is in ``raw``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.recon.domain.lines import (
    Balance,
    Direction,
    Statement,
    StatementFormatError,
    StatementLine,
)
from services.recon.parsers.amounts import exponent
from services.recon.parsers.text import decode

_LEDGER = ("010", "015")  # opening, closing ledger
_AVAILABLE = ("040", "045")  # opening, closing available


@dataclass(slots=True)
class _Record:
    code: str
    line_number: int
    fields: list[str]
    raw: list[str] = field(default_factory=list)


def _records(text: str) -> list[_Record]:
    """Physical lines → logical records, with ``88`` continuations folded into their parent."""
    records: list[_Record] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip()
        if not line:
            continue
        code, _, rest = line.partition(",")
        if code == "88":
            if not records:
                raise StatementFormatError(
                    "continuation 88 before any record", line_number=line_number
                )
            parent = records[-1]
            last = parent.fields[-1].rstrip()
            if parent.code == "16" and not last.endswith("/"):
                parent.fields[-1] = f"{last} {rest.rstrip()}"  # the free text goes on
            else:
                parent.fields[-1] = last.removesuffix("/")
                if parent.code == "16":
                    parent.fields[-1] += "," + rest
                else:
                    parent.fields.extend(rest.split(","))
            parent.raw.append(line)
            continue
        if len(code) != 2 or not code.isdigit():
            raise StatementFormatError(f"not a BAI2 record: {line[:20]!r}", line_number=line_number)
        # a 16's free text may hold commas: it is split when the line is read
        fields = [rest] if code == "16" else rest.split(",")
        records.append(_Record(code, line_number, fields, [line]))
    for record in records:
        if record.fields:
            last = record.fields[-1].rstrip()
            record.fields[-1] = last[:-1] if last.endswith("/") else last
    return records


def _int(text: str, what: str, line_number: int) -> int:
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit():
        raise StatementFormatError(f"{what} {text!r} is not a number", line_number=line_number)
    return int(text)


def _date(text: str, line_number: int) -> date:
    if len(text) != 6 or not text.isdigit():
        raise StatementFormatError(f"date {text!r} is not YYMMDD", line_number=line_number)
    try:
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError as e:
        raise StatementFormatError(f"invalid date {text!r}", line_number=line_number) from e


def _field(fields: list[str], index: int) -> str:
    return fields[index].strip() if index < len(fields) else ""


def _skip_funds(fields: list[str], i: int, line_number: int) -> tuple[int, date | None]:
    """Index after the funds-type fields starting at ``i``; the ``V`` value date if any."""
    funds = _field(fields, i)
    i += 1
    if funds == "S":
        for k in range(3):
            if _field(fields, i + k):
                _int(fields[i + k], "distributed amount", line_number)
        return i + 3, None
    if funds == "V":
        value = _field(fields, i)
        return i + 2, _date(value, line_number) if value else None
    if funds == "D":
        count = _int(_field(fields, i) or "0", "distribution count", line_number)
        return i + 1 + 2 * count, None
    if funds not in ("", "0", "1", "2", "Z"):
        raise StatementFormatError(f"unknown funds type {funds!r}", line_number=line_number)
    return i, None


@dataclass(slots=True)
class _Account:
    record: _Record
    account: str
    currency: str
    summaries: dict[str, int]
    total: int
    count: int = 1
    lines: list[StatementLine] = field(default_factory=list)
    statement_id: str = ""


def parse(data: bytes, *, channel: str) -> list[Statement]:
    records = _records(decode(data))
    if not records or records[0].code != "01":
        raise StatementFormatError("BAI2 file must start with a 01 file header", line_number=1)
    header = records[0]
    sender = _field(header.fields, 0)
    file_id = _field(header.fields, 4)
    statements: list[Statement] = []
    file_total = groups = 0
    group_total = group_accounts = group_records = 0
    group_date: date | None = None
    group_currency = "USD"
    account: _Account | None = None
    seen: dict[str, int] = {}
    expected = "02"
    for record in records[1:]:
        code, f, n = record.code, record.fields, record.line_number
        if code not in expected.split("|"):
            raise StatementFormatError(
                f"record {code} where {expected} was expected", line_number=n
            )
        if code == "02":
            group_date = _date(_field(f, 3), n)
            group_currency = _field(f, 5) or "USD"
            exponent(group_currency, line_number=n)
            group_total = group_accounts = 0
            group_records = 1
            expected = "03|98"
        elif code == "03":
            assert group_date is not None
            currency = _field(f, 1) or group_currency
            exponent(currency, line_number=n)
            summaries: dict[str, int] = {}
            total = 0
            i = 2
            while i < len(f) and _field(f, i):
                type_code = _field(f, i)
                amount_text = _field(f, i + 1)
                if amount_text:
                    amount = _int(amount_text, f"summary {type_code} amount", n)
                    summaries.setdefault(type_code, amount)
                    total += amount
                i, _ = _skip_funds(f, i + 3, n)  # item count at i + 2
            account = _Account(record, _field(f, 0), currency, summaries, total)
            statement_id = f"{sender}-{file_id}-{group_date:%Y%m%d}-{account.account}"
            seen[statement_id] = seen.get(statement_id, 0) + 1
            if seen[statement_id] > 1:  # the same account reported twice in one group
                statement_id += f"-{seen[statement_id]}"
            account.statement_id = statement_id
            group_records += 1
            expected = "16|49"
        elif code == "16":
            assert account is not None and group_date is not None
            account.count += 1
            group_records += 1
            line = _line(record, account, group_date, channel)
            if line is not None:  # a zero amount moves no money
                account.lines.append(line)
        elif code == "49":
            assert account is not None and group_date is not None
            account.count += 1
            group_records += 1
            declared_total = _int(_field(f, 0), "account control total", n)
            declared_count = _int(_field(f, 1), "account record count", n)
            if declared_total != account.total or declared_count != account.count:
                raise StatementFormatError(
                    f"account {account.account}: 49 declares total {declared_total} over "
                    f"{declared_count} records, the records hold {account.total} over "
                    f"{account.count}",
                    line_number=n,
                )
            statements.append(_statement(account, group_date, channel, file_id))
            group_total += account.total
            group_accounts += 1
            account = None
            expected = "03|98"
        elif code == "98":
            group_records += 1
            declared = (
                _int(_field(f, 0), "group control total", n),
                _int(_field(f, 1), "group account count", n),
                _int(_field(f, 2), "group record count", n),
            )
            if declared != (group_total, group_accounts, group_records):
                raise StatementFormatError(
                    f"group trailer declares total/accounts/records {declared}, the group holds "
                    f"{(group_total, group_accounts, group_records)}",
                    line_number=n,
                )
            file_total += group_total
            groups += 1
            expected = "02|99"
        elif code == "99":
            declared = (
                _int(_field(f, 0), "file control total", n),
                _int(_field(f, 1), "file group count", n),
                _int(_field(f, 2), "file record count", n),
            )
            physical_records = sum(len(r.raw) for r in records)
            if declared != (file_total, groups, physical_records):
                raise StatementFormatError(
                    f"file trailer declares total/groups/records {declared}, the file holds "
                    f"{(file_total, groups, physical_records)}",
                    line_number=n,
                )
            expected = ""
        else:
            raise StatementFormatError(f"unknown record type {code}", line_number=n)
        group_records += len(record.raw) - 1  # continuation records count as records
        if account is not None and code in ("03", "16"):
            account.count += len(record.raw) - 1
    if expected:
        raise StatementFormatError(
            "BAI2 file ends without its 99 trailer (truncated?)",
            line_number=records[-1].line_number,
        )
    return statements


def _line(record: _Record, account: _Account, as_of: date, channel: str) -> StatementLine | None:
    n = record.line_number
    pieces = record.fields[0].split(",", 3)
    if len(pieces) < 3:
        raise StatementFormatError(
            "16 record needs type code, amount and funds type", line_number=n
        )
    type_code, amount_text, funds = (p.strip() for p in pieces[:3])
    tail = pieces[3] if len(pieces) > 3 else ""
    amount = _int(amount_text or "0", "amount", n)
    if amount < 0:
        raise StatementFormatError("detail amount is negative", line_number=n)
    account.total += amount
    if not type_code.isdigit():
        raise StatementFormatError(f"type code {type_code!r} is not a number", line_number=n)
    code = int(type_code)
    if 100 <= code <= 399:
        direction = Direction.CREDIT
    elif 400 <= code <= 699:
        direction = Direction.DEBIT
    else:
        raise StatementFormatError(f"type code {type_code} has no debit/credit side", line_number=n)
    if amount == 0:
        return None
    # After the funds type: its own fields (S: 3, V: 2, D: count + pairs), then bank
    # reference, customer reference and the free text (which may hold commas).
    extra = {"S": 3, "V": 2}.get(funds, 0)
    if funds == "D":
        extra = 1 + 2 * _int(tail.split(",", 1)[0].strip() or "0", "distribution count", n)
    parts = tail.split(",", extra + 2)
    parts += [""] * (extra + 3 - len(parts))
    _, value_date = _skip_funds([type_code, amount_text, funds, *parts[:extra]], 2, n)
    bank_ref, customer_ref = parts[extra], parts[extra + 1]
    return StatementLine(
        channel=channel,
        statement_id=account.statement_id,
        line_number=n,
        booking_date=as_of,
        value_date=value_date or as_of,
        direction=direction,
        amount_minor=amount,
        currency=account.currency,
        fee_minor=0,
        our_reference=customer_ref.strip() or None,
        bank_reference=bank_ref.strip() or None,
        end_to_end_id=None,
        counterparty=None,
        raw="\n".join(record.raw),
    )


def _statement(account: _Account, as_of: date, channel: str, file_id: str) -> Statement:
    opening = closing = None
    for opening_code, closing_code in (_LEDGER, _AVAILABLE):
        if opening_code in account.summaries or closing_code in account.summaries:
            if opening_code in account.summaries:
                opening = Balance(account.summaries[opening_code], account.currency, as_of)
            if closing_code in account.summaries:
                closing = Balance(account.summaries[closing_code], account.currency, as_of)
            break

    return Statement(
        channel=channel,
        statement_id=account.statement_id,
        account=account.account,
        currency=account.currency,
        format="bai2",
        sequence_number=int(file_id) if file_id.isdigit() else None,
        opening=opening,
        closing=closing,
        lines=account.lines,
        # BAI2's own totals (summaries included) and record counts were verified above; they
        # are not "sum and count of the lines", so they are not handed on as such.
        control_total_minor=None,
        control_count=None,
    )
