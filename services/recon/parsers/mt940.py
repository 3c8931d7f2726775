"""SWIFT MT940 (customer statement) and MT942 (interim report) → canonical statements.

Why a parser of our own and not the ``mt-940`` library: run against the real samples in
``tests/fixtures/statements/mt940`` the library (5.1.1) accepts the deliberately broken files
without a word (``invalid_statement.sta`` gives an empty result, ``sepa_snippet_broken.sta``
a statement that silently loses its ``:25:``), fails on ASN Bank's blank entry date, and hands
back ``Decimal`` amounts and loosely typed dicts we would have to re-validate anyway. This module
is one pass over the lines with a handful of compiled regular expressions, rejects what is
broken with the line number, and is several times faster (docs/PERFORMANCE.md).

Accepted layout (tags in order; ``:86:`` may follow any ``:61:`` and the balances; ``:NS:``
anywhere)::

    :20: reference  :21: related  :25: account  :28C:/:28: statement[/sequence]
    :34F: floor limit (MT942)  :13:/:13D: date-time (MT942)  :60F:/:60M: opening balance
    :61: line  :86: details  :90D:/:90C: debit/credit count and sum (MT942)
    :62F:/:62M: closing balance  :64: closing available  :65: forward available (repeats)

Real-world quirks handled, each seen in a sample:
- text before the first ``:20:`` (ABN AMRO/ING/Rabobank headers, SWIFT ``{1:..}{2:..}{4:``
  blocks, SOH/ETX bytes) is skipped; ``-``, ``-}{5:}`` and ING's ``-XXX`` end a message;
- a line that looks like a tag but is not one we know (``:26:37`` in a wrapped timestamp,
  Rabobank's ``:940:``) is a continuation line, not a field;
- the entry date may be four blanks (ASN, Citi); the amount may wrap onto the next line
  (Sparkasse); amounts come as ``380115,``, ``0,12``, ``000000000147,64`` or ``500``;
- a date beyond the month's end (``160230``: German banks book interest on a 30-day month) is
  read as the month's last day; a day above 31 or a month above 12 is an error;
- ``DR``/``CR``/``CD`` is a debit/credit mark followed by the funds code; ``RC``/``RD`` are
  reversals (a reversed credit takes money out, so it is a debit line);
- bytes that are not UTF-8 are read as Latin-1 (free text only).

Rejected with :class:`StatementFormatError` naming the line: no ``:20:`` in the file, a known
field before ``:20:``, a field out of order (``:25:`` after a ``:61:``), a malformed balance,
``:28C:`` or ``:61:``, an unknown currency, more decimals than the currency has, an MT940 without
an opening or closing balance (a truncated file), an account with two currencies.

Canonical mapping: ``our_reference`` is the ``:61:`` customer reference, or when that is
``NONREF`` the end-to-end id (a reference longer than 16 characters travels in ``/EREF/``),
``bank_reference`` the part after ``//``, ``end_to_end_id`` the SEPA ``EREF`` in ``:86:``,
``counterparty`` the name in ``:86:`` (``?32``/``?33`` or ``/NAME/``), ``fee_minor`` a
``/CHGS/`` amount when the bank gives one. ``statement_id`` is ``:20:``, with ``#<n>`` (its
position in the file) when an earlier statement of the same file used the same reference.
``booking_date`` is the entry date when present, else the value date. A zero-amount ``:61:``
moves no money and is not a line (Citi sends them for information). MT942: ``control_count``
/ ``control_total_minor`` are the ``:90D:`` + ``:90C:`` counts and sums (gross), and the
statement's ``format`` is ``mt942``.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from services.recon.domain.lines import (
    Balance,
    Direction,
    Statement,
    StatementFormatError,
    StatementLine,
)
from services.recon.parsers.amounts import EXPONENTS, to_minor
from services.recon.parsers.text import decode

# Field order rank; equal ranks may alternate (MT942's :34F:/:13D:), :86: and :NS: are free.
_RANK: dict[str, int] = {
    "20": 0,
    "21": 1,
    "25": 2,
    "28": 3,
    "28C": 3,
    "34F": 4,
    "13": 4,
    "13D": 4,
    "60F": 5,
    "60M": 5,
    "61": 6,
    "90D": 7,
    "90C": 7,
    "62F": 8,
    "62M": 8,
    "64": 9,
    "65": 10,
}
_FREE = frozenset({"86", "NS"})
_KNOWN = frozenset(_RANK) | _FREE
# A field starts with a known tag at the start of a line; longer tags first (28C before 28).
_TAG = re.compile(
    r"^:(" + "|".join(sorted(_KNOWN, key=lambda t: (-len(t), t))) + r"):", re.MULTILINE
)
_REPEATABLE = frozenset({"61", "34F", "65", "90D", "90C"})

_BALANCE = re.compile(r"([CD])(\d{6})([A-Z]{3})?(\d[\d,]*)")
_LINE = re.compile(
    r"(\d{6})(\d{4}|\s{4})?(RC|RD|C|D)([A-Z])?\n?(\d[\d,]*|,\d+)([A-Z][A-Z0-9 ]{3})([^\n]*)"
)
_STATEMENT_NUMBER = re.compile(r"(\d+)(?:/(\d+))?")
_FLOOR = re.compile(r"([A-Z]{3})[CD]?(\d[\d,]*)")
_COUNT_SUM = re.compile(r"(\d+)([A-Z]{3})(\d[\d,]*)")
_END = re.compile(r"-(?:\}.*|[A-Z]{0,3})?\s*")
_ACCOUNT_CURRENCY = re.compile(r"[\d/.\s]([A-Z]{3})\s*$")
_NAME_SUBFIELD = re.compile(r"\?3[23]([^?]*)")
_PURPOSE_MARK = re.compile(r"\?2\d")
_SEPA_KEYWORD = re.compile(r"(EREF|MREF|CRED|SVWZ|ABWA|ABWE|KREF|IBAN|BIC|DEBT|COAM|OAMT)\+")
_SLASH_NAME = re.compile(r"/NAME/([^/\n]*)")
_SLASH_EREF = re.compile(r"/EREF/([^/\n]*)")
_CHARGES = re.compile(r"/CHGS/([A-Z]{3})?(\d[\d,]*)")

_NO_REFERENCE = frozenset({"", "NONREF", "NOTPROVIDED"})


@dataclass(slots=True)
class _Field:
    tag: str
    line_number: int
    value: str  # continuation lines joined with "\n"

    @property
    def first(self) -> str:
        return self.value.partition("\n")[0]


def parse(data: bytes, *, channel: str) -> list[Statement]:
    """Every statement in an MT940/MT942 file, in file order."""
    return parse_text(decode(data), channel=channel)


def parse_text(text: str, *, channel: str) -> list[Statement]:
    """Split at known tags with one regular expression (the C engine does the per-line work),
    then read each statement's fields."""
    statements: list[Statement] = []
    references: set[str] = set()  # :20: values seen so far
    fields: list[_Field] | None = None  # the statement being read
    line_number = 1
    position = 0
    previous: tuple[str, int, int] | None = None  # tag, line, value start
    for m in _TAG.finditer(text):
        start = m.start()
        line_number += text.count("\n", position, start)
        position = start
        if previous is not None:
            fields = _close(text, previous, start, fields, statements, channel, references)
        tag = m.group(1)
        if tag == "20":
            if fields is not None:
                statements.append(_build(fields, channel, statements, references))
            fields = []
        elif fields is None:
            raise StatementFormatError(
                f"field :{tag}: outside a statement (no :20: opens it)", line_number=line_number
            )
        previous = (tag, line_number, m.end())
    if previous is not None:
        fields = _close(text, previous, len(text), fields, statements, channel, references)
    if fields is not None:
        statements.append(_build(fields, channel, statements, references))
    if not statements:
        raise StatementFormatError(
            "not an MT940 file: no :20: statement reference found", line_number=1
        )
    return statements


def _close(
    text: str,
    previous: tuple[str, int, int],
    end: int,
    fields: list[_Field] | None,
    statements: list[Statement],
    channel: str,
    references: set[str],
) -> list[_Field] | None:
    """Add the field that runs up to ``end``; an end-of-message line in it closes the statement
    (what follows it, up to the next tag, is bank framing and carries nothing)."""
    tag, line_number, value_start = previous
    value = text[value_start:end]
    if value.endswith("\n"):
        value = value[:-1]
    closed = False
    if "\n-" in value:
        lines = value.split("\n")
        for k, line in enumerate(lines):
            if k and line[:1] == "-" and _END.fullmatch(line):
                value = "\n".join(lines[:k])
                closed = True
                break
    assert fields is not None
    fields.append(_Field(tag, line_number, value))
    if closed:
        statements.append(_build(fields, channel, statements, references))
        return None
    return fields


def _build(
    fields: list[_Field], channel: str, earlier: list[Statement], references: set[str]
) -> Statement:
    first = fields[0]
    reference = first.first.strip()
    if not reference:
        raise StatementFormatError("empty :20: reference", line_number=first.line_number)
    # Banks reuse :20: (STARTUMS, a zero string) for every statement of a file; the canonical id
    # must still tell them apart: a repeated reference gets its position in the file.
    statement_id = reference
    if reference in references:
        statement_id = f"{reference}#{len(earlier) + 1}"
    references.add(reference)
    account: str | None = None
    account_currency: str | None = None
    sequence_number: int | None = None
    opening = closing = None
    opening_currency = closing_currency = floor_currency = None
    interim = False
    control_count = control_total = 0
    seen: set[str] = set()
    rank = -1
    previous = "20"
    line_fields: list[tuple[_Field, _Field | None]] = []
    for f in fields[1:]:
        tag = f.tag
        if tag in _FREE:
            if tag == "86" and previous == "61":
                line_fields[-1] = (line_fields[-1][0], f)
            previous = tag
            continue
        tag_rank = _RANK[tag]
        if tag_rank < rank or (tag in seen and tag not in _REPEATABLE):
            raise StatementFormatError(
                f"field :{tag}: out of order after :{previous}: in statement {reference!r}",
                line_number=f.line_number,
            )
        rank = tag_rank
        seen.add(tag)
        previous = tag
        value = f.first.strip()
        if tag == "61":
            line_fields.append((f, None))
        elif tag == "25":
            account = value
            found = _ACCOUNT_CURRENCY.search(value)
            if found and found.group(1) in EXPONENTS:
                account_currency = found.group(1)
        elif tag in ("28C", "28"):
            m = _STATEMENT_NUMBER.fullmatch(value)
            if m is None:
                raise StatementFormatError(
                    f"malformed :{tag}: statement number {value!r}", line_number=f.line_number
                )
            sequence_number = int(m.group(1))
        elif tag in ("60F", "60M"):
            opening = _balance(f, account_currency)
            opening_currency = opening.currency
        elif tag in ("62F", "62M"):
            closing = _balance(f, opening_currency or account_currency)
            closing_currency = closing.currency
        elif tag in ("64", "65"):
            _balance(
                f, opening_currency or account_currency
            )  # validated; available balances are not reconciled
        elif tag == "34F":
            interim = True
            m = _FLOOR.fullmatch(value)
            if m is None:
                raise StatementFormatError(
                    f"malformed :34F: floor limit {value!r}", line_number=f.line_number
                )
            floor_currency = m.group(1)
        elif tag in ("13", "13D"):
            interim = True
        elif tag in ("90D", "90C"):
            m = _COUNT_SUM.fullmatch(value)
            if m is None:
                raise StatementFormatError(
                    f"malformed :{tag}: count and sum {value!r}", line_number=f.line_number
                )
            control_count += int(m.group(1))
            control_total += to_minor(
                m.group(3), m.group(2), separator=",", line_number=f.line_number
            )
    if account is None:
        raise StatementFormatError(
            f"statement {reference!r} has no :25: account", line_number=first.line_number
        )
    currency = opening_currency or closing_currency or floor_currency or account_currency
    if currency is None:
        raise StatementFormatError(
            f"statement {reference!r} carries no currency (no balance, :34F: or currency in :25:)",
            line_number=first.line_number,
        )
    for c in (opening_currency, closing_currency, floor_currency):
        if c is not None and c != currency:
            raise StatementFormatError(
                f"statement {reference!r} mixes currencies {currency} and {c}",
                line_number=first.line_number,
            )
    if not interim and (opening is None or closing is None):
        missing = ":60F:/:60M: opening" if opening is None else ":62F:/:62M: closing"
        raise StatementFormatError(
            f"statement {reference!r} has no {missing} balance (truncated?)",
            line_number=fields[-1].line_number,
        )
    lines = []
    for f61, f86 in line_fields:
        line = _line(f61, f86, channel=channel, statement_id=statement_id, currency=currency)
        if line is not None:
            lines.append(line)
    return Statement(
        channel=channel,
        statement_id=statement_id,
        account=account,
        currency=currency,
        format="mt942" if interim else "mt940",
        sequence_number=sequence_number,
        opening=opening,
        closing=closing,
        lines=lines,
        control_total_minor=control_total if interim and control_count else None,
        control_count=control_count if interim and control_count else None,
    )


_DATES: dict[str, date] = {}  # YYMMDD → date; a statement file holds few distinct dates
_DATES_MAX = 100_000


def _date(text: str, line_number: int) -> date:
    """``YYMMDD``; a day past the month's end (30 February) is the month's last day."""
    day = _DATES.get(text)
    if day is None:
        year = int(text[0:2])
        year += 1900 if year >= 80 else 2000
        day = _month_day(year, int(text[2:4]), int(text[4:6]), line_number)
        if len(_DATES) < _DATES_MAX:
            _DATES[text] = day
    return day


def _month_day(year: int, month: int, day: int, line_number: int) -> date:
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise StatementFormatError(
            f"invalid date {year}-{month:02}-{day:02}", line_number=line_number
        )
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day, last))


def _balance(f: _Field, default_currency: str | None = None) -> Balance:
    """``C``/``D``, ``YYMMDD``, currency, amount. Some banks drop the currency of a later balance
    (the ``raphaelm`` sample's ``:62M:C020315105000,00``); it is then the statement's currency.
    """
    value = f.first.strip()
    m = _BALANCE.fullmatch(value)
    if m is None:
        raise StatementFormatError(
            f"malformed :{f.tag}: balance {value!r}", line_number=f.line_number
        )
    mark, day, currency, amount = m.groups()
    if currency is None:
        if default_currency is None:
            raise StatementFormatError(
                f":{f.tag}: balance {value!r} has no currency", line_number=f.line_number
            )
        currency = default_currency
    minor = to_minor(amount, currency, separator=",", line_number=f.line_number)
    return Balance(
        amount_minor=-minor if mark == "D" else minor,
        currency=currency,
        date=_date(day, f.line_number),
    )


def _line(
    f: _Field, details: _Field | None, *, channel: str, statement_id: str, currency: str
) -> StatementLine | None:
    text = f.value
    m = _LINE.match(text)
    if m is None:
        raise StatementFormatError(
            f"malformed :61: statement line {f.first!r}", line_number=f.line_number
        )
    value_text, entry_text, mark, _funds, amount_text, _type, rest = m.groups()
    amount = to_minor(amount_text, currency, separator=",", line_number=f.line_number)
    if amount == 0:
        return None  # moves no money (Citi reports BAI summary codes this way)
    value_date = _date(value_text, f.line_number)
    booking_date = value_date
    if entry_text and entry_text.strip():
        month = int(entry_text[:2])
        year = value_date.year
        if month - value_date.month > 6:  # entry in December for a January value date
            year -= 1
        elif value_date.month - month > 6:  # entry in January for a December value date
            year += 1
        booking_date = _date(f"{year % 100:02d}{entry_text}", f.line_number)
    customer, _, bank = rest.partition("//")
    customer = customer.strip()
    bank = bank.strip()
    supplementary = text[m.end() :]
    detail_text = details.value if details is not None else ""
    fee = 0
    if "/CHGS/" in supplementary or "/CHGS/" in detail_text:
        charge = _CHARGES.search(supplementary) or _CHARGES.search(detail_text)
        if charge is not None:
            fee = to_minor(
                charge.group(2),
                charge.group(1) or currency,
                separator=",",
                line_number=f.line_number,
            )
    counterparty, end_to_end = _details(detail_text) if detail_text else (None, None)
    raw = f":61:{text}" if details is None else f":61:{text}\n:86:{detail_text}"
    return StatementLine(
        channel=channel,
        statement_id=statement_id,
        line_number=f.line_number,
        booking_date=booking_date,
        value_date=value_date,
        direction=Direction.CREDIT if mark in ("C", "RD") else Direction.DEBIT,
        amount_minor=amount,
        currency=currency,
        fee_minor=fee,
        # A reference longer than the field's 16 characters goes out as NONREF with the full
        # one in /EREF/ (the bank simulator does this for our att_ ids).
        our_reference=end_to_end if customer in _NO_REFERENCE else customer,
        bank_reference=None if bank in _NO_REFERENCE else bank,
        end_to_end_id=end_to_end,
        counterparty=counterparty,
        raw=raw,
    )


def _details(text: str) -> tuple[str | None, str | None]:
    """Counterparty name and SEPA end-to-end id from a ``:86:`` (German ``?NN`` or ``/KEY/``)."""
    joined = text.replace("\n", "")
    counterparty = end_to_end = None
    if "?" in joined:
        counterparty = "".join(_NAME_SUBFIELD.findall(joined)).strip() or None
        start = joined.find("EREF+")
        if start >= 0:
            # the purpose lines ?20..?29 are one text cut in 27-character pieces
            tail = _PURPOSE_MARK.sub("", joined[start + 5 :])
            cut = tail.find("?")
            if cut >= 0:
                tail = tail[:cut]
            stop = _SEPA_KEYWORD.search(tail)
            end_to_end = (tail[: stop.start()] if stop else tail).strip() or None
    else:
        name_match = _SLASH_NAME.search(joined)
        if name_match:
            counterparty = name_match.group(1).strip() or None
        eref = _SLASH_EREF.search(joined)
        if eref:
            end_to_end = eref.group(1).strip() or None
    if end_to_end in _NO_REFERENCE:
        end_to_end = None
    return counterparty, end_to_end
