"""CSV statements: one header row, an ``opening`` row, one row per booking, a ``closing`` row.

Columns: ``type, date, value_date, reference, bank_reference, direction, amount, fee,
currency, counterparty, description, balance, account, statement_id, sequence``. ``type`` is
``opening``/``closing`` for the balances and ``payout``/``return``/``transfer`` for lines;
``date`` is the booking date. Amounts are unsigned decimals in the currency's minor-unit
precision (``direction`` D/C carries the sign); ``balance`` is the signed running balance
after the row. **Fees are a field** (``fee``) of the payout's own row and are included in the
running balance. A return is a C row whose ``reference`` is the original payout's reference.
The balance rows carry the balance in ``amount`` (with its direction) and in ``balance``.
These names are what reconciliation's default CSV mapping reads.
"""

from __future__ import annotations

import csv
import io

from services.banksim.domain.money import fmt_amount
from services.banksim.domain.statements.model import Statement

HEADER = (
    "type",
    "date",
    "value_date",
    "reference",
    "bank_reference",
    "direction",
    "amount",
    "fee",
    "currency",
    "counterparty",
    "description",
    "balance",
    "account",
    "statement_id",
    "sequence",
)


def _signed(amount_minor: int, currency: str) -> str:
    text = fmt_amount(abs(amount_minor), currency)
    return f"-{text}" if amount_minor < 0 else text


def render(st: Statement) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    cur = st.currency
    day = st.business_date.isoformat()
    zero = fmt_amount(0, cur)
    identity = (st.iban, st.file_id, str(st.statement_number))

    def balance_row(kind: str, balance: int) -> None:
        writer.writerow(
            (
                kind,
                day,
                day,
                "",
                st.file_id,
                "C" if balance >= 0 else "D",
                fmt_amount(abs(balance), cur),
                zero,
                cur,
                "",
                f"{kind} balance",
                _signed(balance, cur),
                *identity,
            )
        )

    balance_row("opening", st.opening_minor)
    running = st.opening_minor
    for m in st.movements:
        running += m.net_minor
        description = {
            "payout": f"PAYOUT {m.reference}",
            "return": f"RETURN OF {m.reference} {m.return_reason or ''}".strip(),
            "unknown": "TRANSFER",
        }[m.kind]
        writer.writerow(
            (
                {"payout": "payout", "return": "return", "unknown": "transfer"}[m.kind],
                m.booking_date.isoformat(),
                m.value_date.isoformat(),
                m.reference,
                m.bank_reference,
                "C" if m.is_credit else "D",
                fmt_amount(m.amount_minor, cur),
                fmt_amount(m.fee_minor, cur),
                cur,
                m.counterparty,
                description,
                _signed(running, cur),
                *identity,
            )
        )
    balance_row("closing", st.closing_minor)
    return buffer.getvalue().encode("utf-8")
