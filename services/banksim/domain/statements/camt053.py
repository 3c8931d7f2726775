"""camt.053.001.02 (ISO 20022 BankToCustomerStatement), elements in schema order.

``Stmt`` carries ``Id``, ``ElctrncSeqNb`` (the statement number: business days since the bank's
``statement_epoch``), ``CreDtTm``, ``FrToDt``, ``Acct`` (IBAN, currency, servicer BIC), two
``Bal`` (``OPBD`` opening booked, ``CLBD`` closing booked), ``TxsSummry`` control totals over
the entries in the file, then one ``Ntry`` per booking: ``Amt Ccy``, ``CdtDbtInd``, ``Sts``
BOOK, ``BookgDt``/``ValDt``, ``AcctSvcrRef``, ``BkTxCd`` and
``NtryDtls/TxDtls/Refs/EndToEndId`` = **our reference**.

Payouts are PMNT/ICDT/ESCT (EUR) or PMNT/ICDT/DMCT. **Fees are a field**: the payout's entry
carries ``Chrgs/Amt`` (debit, borne by us), its ``Amt`` stays the principal, and the charge is
booked in the balance: CLBD = OPBD + credits - debits - charges (``TxsSummry`` totals are over
the entries' ``Amt``). A return is a CRDT entry PMNT/ICDT/RRTN whose EndToEndId is the
original payout's reference, with ``RtrInf/Rsn/Cd``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, time

from services.banksim.domain.money import fmt_amount
from services.banksim.domain.statements.model import Movement, Statement

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
ET.register_namespace("", NS)


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag), attrib)
    if text is not None:
        el.text = text
    return el


def _path(parent: ET.Element, tags: str, text: str) -> ET.Element:
    node = parent
    for tag in tags.split("/"):
        node = _sub(node, tag)
    node.text = text
    return node


def _balance(stmt: ET.Element, code: str, amount_minor: int, st: Statement) -> None:
    bal = _sub(stmt, "Bal")
    _path(bal, "Tp/CdOrPrtry/Cd", code)
    _sub(bal, "Amt", fmt_amount(abs(amount_minor), st.currency), Ccy=st.currency)
    _sub(bal, "CdtDbtInd", "CRDT" if amount_minor >= 0 else "DBIT")
    _path(bal, "Dt/Dt", st.business_date.isoformat())


def _entry(
    stmt: ET.Element,
    st: Statement,
    m: Movement,
    *,
    amount_minor: int,
    credit: bool,
    family: str,
    subfamily: str,
    bank_ref: str,
    info: str,
) -> None:
    ntry = _sub(stmt, "Ntry")
    _sub(ntry, "Amt", fmt_amount(amount_minor, st.currency), Ccy=st.currency)
    _sub(ntry, "CdtDbtInd", "CRDT" if credit else "DBIT")
    _sub(ntry, "Sts", "BOOK")
    _path(ntry, "BookgDt/Dt", m.booking_date.isoformat())
    _path(ntry, "ValDt/Dt", m.value_date.isoformat())
    _sub(ntry, "AcctSvcrRef", bank_ref)
    domn = _sub(_sub(ntry, "BkTxCd"), "Domn")
    _sub(domn, "Cd", "PMNT")
    fmly = _sub(domn, "Fmly")
    _sub(fmly, "Cd", family)
    _sub(fmly, "SubFmlyCd", subfamily)
    if m.fee_minor and m.kind == "payout":
        charges = _sub(ntry, "Chrgs")
        _sub(charges, "Amt", fmt_amount(m.fee_minor, st.currency), Ccy=st.currency)
        _sub(charges, "CdtDbtInd", "DBIT")
        _sub(charges, "Br", "DEBT")
    tx = _sub(_sub(ntry, "NtryDtls"), "TxDtls")
    refs = _sub(tx, "Refs")
    _sub(refs, "AcctSvcrRef", bank_ref)
    _sub(refs, "EndToEndId", m.reference)
    amt = _sub(_sub(tx, "AmtDtls"), "TxAmt")
    _sub(amt, "Amt", fmt_amount(amount_minor, st.currency), Ccy=st.currency)
    parties = _sub(tx, "RltdPties")
    _path(parties, "Dbtr/Nm" if credit else "Cdtr/Nm", m.counterparty[:140])
    if m.kind == "return":
        rtr = _sub(tx, "RtrInf")
        _path(rtr, "Rsn/Cd", m.return_reason or "AC04")
    _sub(ntry, "AddtlNtryInf", info)


def render(st: Statement) -> bytes:
    doc = ET.Element(_q("Document"))
    root = _sub(doc, "BkToCstmrStmt")
    created = st.created_at.astimezone(UTC).replace(microsecond=0).isoformat()
    hdr = _sub(root, "GrpHdr")
    _sub(hdr, "MsgId", st.file_id)
    _sub(hdr, "CreDtTm", created)
    stmt = _sub(root, "Stmt")
    _sub(stmt, "Id", f"{st.file_id}-{st.iban}"[:35])
    _sub(stmt, "ElctrncSeqNb", str(st.statement_number))
    _sub(stmt, "CreDtTm", created)
    period = _sub(stmt, "FrToDt")
    start = datetime.combine(st.business_date, time(0, 0, 0), UTC)
    end = datetime.combine(st.business_date, time(23, 59, 59), UTC)
    _sub(period, "FrDtTm", start.isoformat())
    _sub(period, "ToDtTm", end.isoformat())
    acct = _sub(stmt, "Acct")
    _path(acct, "Id/IBAN", st.iban)
    _sub(acct, "Ccy", st.currency)
    _path(acct, "Svcr/FinInstnId/BIC", st.bic)
    _balance(stmt, "OPBD", st.opening_minor, st)
    _balance(stmt, "CLBD", st.closing_minor, st)

    entries = [(m.amount_minor, m.is_credit) for m in st.movements]
    summary = _sub(_sub(stmt, "TxsSummry"), "TtlNtries")
    net = sum(a if credit else -a for a, credit in entries)
    _sub(summary, "NbOfNtries", str(len(entries)))
    _sub(summary, "Sum", fmt_amount(sum(a for a, _ in entries), st.currency))
    _sub(summary, "TtlNetNtryAmt", fmt_amount(abs(net), st.currency))
    _sub(summary, "CdtDbtInd", "CRDT" if net >= 0 else "DBIT")

    pmt = "ESCT" if st.currency == "EUR" else "DMCT"
    for m in st.movements:
        if m.kind == "return":
            _entry(
                stmt,
                st,
                m,
                amount_minor=m.amount_minor,
                credit=True,
                family="ICDT",
                subfamily="RRTN",
                bank_ref=m.bank_reference,
                info=f"RETURN OF {m.reference}",
            )
            continue
        _entry(
            stmt,
            st,
            m,
            amount_minor=m.amount_minor,
            credit=False,
            family="ICDT",
            subfamily=pmt,
            bank_ref=m.bank_reference,
            info="PAYOUT",
        )
    ET.indent(doc, space="  ")
    return ET.tostring(doc, encoding="utf-8", xml_declaration=True) + b"\n"
