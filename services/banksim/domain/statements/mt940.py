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
Transaction types: ``NTRF`` payout, ``NCHG`` charge, ``NRTI`` returned item.

**Fees are their own lines**: a ``D ... NCHG`` line carrying the payout's reference, right after
the payout. A return is a ``C ... NRTI`` line carrying the original payout's reference, with
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


def _info(*parts: str) -> list[str]:
    text = "".join(parts)
    chunks = [text[i : i + LINE_MAX] for i in range(0, len(text), LINE_MAX)][:6]
    return [f":86:{chunks[0]}", *chunks[1:]]


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
        out += _info(f"/EREF/{m.reference}/BENM//NAME/{name}/REMI/PAYOUT")
        if m.fee_minor:
            out += _line(
                m,
                credit=False,
                amount_minor=m.fee_minor,
                tx_type="CHG",
                bank_ref=m.bank_reference,
                cur=cur,
            )
            out += _info(f"/EREF/{m.reference}/REMI/CHARGES")
    out += [_balance("62F", st.closing_minor, st), "-"]
    return ("\r\n".join(out) + "\r\n").encode("ascii", errors="replace")
