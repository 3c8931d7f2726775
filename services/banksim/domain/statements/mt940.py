"""MT940 customer statements, per the SWIFT field rules.

Fields: ``:20:`` transaction reference (16x, unique per file), ``:25:`` account (IBAN),
``:28C:`` statement number/sequence number (5n/5n; the statement number counts business days
from the bank's ``statement_epoch``, so consecutive days have consecutive numbers), ``:60F:``
opening balance, ``:61:`` statement lines each followed by ``:86:`` information to the
account owner, ``:62F:`` closing balance, then ``-``. Lines end in CRLF.

``:61:`` = value date YYMMDD, entry date MMDD, D/C mark, amount (15d, comma decimal),
``N`` + transaction type, the **customer reference (our reference)**, ``//`` the bank's
reference. When our reference is longer than the 16 characters the field allows, the customer
reference is ``NONREF`` and the full reference goes in the supplementary details (34x, the
line after ``:61:``); it is always repeated in ``:86:`` as ``/EREF/<reference>``.
Transaction types: ``NTRF`` payout, ``NRTI`` returned item.

**Fees are a field**: the payout's ``:86:`` carries ``/CHGS/<CCY><amount>`` (the charge,
comma decimal), and the charge is booked in the balance: closing = opening + credits - debits -
charges. A return is a ``C ... NRTI`` line carrying the original payout's reference, with
``/RTRN/<reason>`` in ``:86:``.

Free text (names) is reduced to the SWIFT X character set. Our references are written verbatim
even though ``_`` is outside that set: reconciliation matches on them byte for byte.
"""

from __future__ import annotations

import re

from services.banksim.domain.money import fmt_amount
from services.banksim.domain.statements.model import Movement, Statement

_NOT_X = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")
LINE_MAX = 65


def x_text(value: str) -> str:
    return _NOT_X.sub(" ", value).strip()


def _balance(tag: str, amount_minor: int, st: Statement) -> str:
    mark = "C" if amount_minor >= 0 else "D"
    amount = fmt_amount(abs(amount_minor), st.currency, decimal_mark=",")
    return f":{tag}:{mark}{st.business_date:%y%m%d}{st.currency}{amount}"


def _line(
    m: Movement, *, credit: bool, amount_minor: int, tx_type: str, bank_ref: str, cur: str
) -> list[str]:
    amount = fmt_amount(amount_minor, cur, decimal_mark=",")
    assert len(amount) <= 15, "15d amount field"
    customer_ref = m.reference if len(m.reference) <= 16 else "NONREF"
    head = (
        f":61:{m.value_date:%y%m%d}{m.booking_date:%m%d}{'C' if credit else 'D'}"
        f"{amount}N{tx_type}{customer_ref}//{bank_ref[:16]}"
    )
    lines = [head]
    if customer_ref == "NONREF":
        lines.append(m.reference[:34])
    return lines


def _info(*subfields: str) -> list[str]:
    """``:86:`` (6*65x), packed so that no ``/CODE/value`` subfield is split across lines
    unless it is longer than a line by itself."""
    lines: list[str] = []
    current = ""
    for sub in (x for part in subfields for x in _split_subfields(part)):
        if current and len(current) + len(sub) > LINE_MAX:
            lines.append(current)
            current = ""
        current += sub
        while len(current) > LINE_MAX:
            lines.append(current[:LINE_MAX])
            current = current[LINE_MAX:]
    if current:
        lines.append(current)
    assert len(lines) <= 6, "the :86: field holds at most six lines"
    return [f":86:{lines[0]}", *lines[1:]]


def _split_subfields(text: str) -> list[str]:
    """``/EREF/x/CHGS/y`` → ``["/EREF/x", "/CHGS/y"]`` (codes are 2-4 capitals)."""
    parts = re.split(r"(?=/[A-Z]{2,4}/)", text)
    return [p for p in parts if p]


def render(st: Statement) -> bytes:
    cur = st.currency
    out = [
        f":20:{st.file_id}",
        f":25:{st.iban}",
        f":28C:{st.statement_number % 100000}/1",
        _balance("60F", st.opening_minor, st),
    ]
    for m in st.movements:
        name = x_text(m.counterparty).replace("/", " ")[:40]
        if m.kind == "return":
            out += _line(
                m,
                credit=True,
                amount_minor=m.amount_minor,
                tx_type="RTI",
                bank_ref=m.bank_reference,
                cur=cur,
            )
            out += _info(
                f"/EREF/{m.reference}/RTRN/{m.return_reason or 'AC04'}",
                f"/REMI/RETURN OF {m.reference}",
            )
            continue
        out += _line(
            m,
            credit=False,
            amount_minor=m.amount_minor,
            tx_type="TRF",
            bank_ref=m.bank_reference,
            cur=cur,
        )
        charges = (
            f"/CHGS/{cur}{fmt_amount(m.fee_minor, cur, decimal_mark=',')}" if m.fee_minor else ""
        )
        out += _info(f"/EREF/{m.reference}{charges}/BENM//NAME/{name}/REMI/PAYOUT")
    out += [_balance("62F", st.closing_minor, st), "-"]
    return ("\r\n".join(out) + "\r\n").encode("ascii", errors="replace")
