"""Strict, independent readers of the simulator's statement files, used to check them.

They check the format rules on the way (field syntax, schema order of the balances, header
row) and return opening, lines and closing in signed minor units.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal

import defusedxml.ElementTree as SafeET

CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
EXPONENT = {"EUR": 2, "JPY": 0}
SWIFT_X = re.compile(r"^[A-Za-z0-9/\-?:().,'+ _]*$")  # X set, plus "_" of our references


@dataclass
class Line:
    reference: str
    signed_minor: int  # negative = debit
    kind: str  # payout | return | other
    value_date: str
    fee_minor: int = 0


@dataclass
class Read:
    opening_minor: int
    closing_minor: int
    lines: list[Line]
    number: int | None = None

    @property
    def balanced(self) -> bool:
        total = sum(line.signed_minor - line.fee_minor for line in self.lines)
        return self.opening_minor + total == self.closing_minor


def to_minor(text: str, currency: str) -> int:
    value = Decimal(text.replace(",", "."))
    minor = value * (10 ** EXPONENT[currency])
    assert minor == minor.to_integral_value(), f"{text} has more decimals than {currency}"
    return int(minor)


def read_csv(content: bytes, currency: str) -> Read:
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    assert rows and rows[0]["type"] == "opening" and rows[-1]["type"] == "closing"

    def signed(row: dict[str, str]) -> int:
        amount = to_minor(row["amount"], currency)
        return amount if row["direction"] == "C" else -amount

    lines = []
    for row in rows[1:-1]:
        assert row["type"] in ("payout", "return", "transfer") and row["currency"] == currency
        lines.append(
            Line(
                reference=row["reference"],
                signed_minor=signed(row),
                kind="return" if row["direction"] == "C" else "payout",
                value_date=row["value_date"],
                fee_minor=to_minor(row["fee"], currency),
            )
        )
    return Read(signed(rows[0]), signed(rows[-1]), lines)


_BAL = re.compile(r"^([CD])(\d{6})([A-Z]{3})(\d{1,12},\d{0,3})$")
_61 = re.compile(
    r"^(\d{6})(\d{4})?(C|D|RC|RD)([A-Z])?(\d{1,12},\d{0,3})N([A-Z0-9]{3})([^/]{1,16})(//.{1,16})?$"
)


def read_mt940(content: bytes, currency: str) -> Read:
    text = content.decode("ascii")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    raw = text.split("\r\n")[:-1]
    assert raw[-1] == "-"
    fields: list[tuple[str, list[str]]] = []
    for row in raw[:-1]:
        match = re.match(r"^:(\d{2}[A-Z]?):(.*)$", row)
        if match:
            fields.append((match.group(1), [match.group(2)]))
        else:
            fields[-1][1].append(row)
    tags = [tag for tag, _ in fields]
    assert tags[:4] == ["20", "25", "28C", "60F"] and tags[-1] == "62F", tags
    assert len(fields[0][1][0]) <= 16
    assert len(fields[1][1][0]) <= 35
    number = re.fullmatch(r"(\d{1,5})/(\d{1,5})", fields[2][1][0])
    assert number

    def balance(value: str) -> int:
        m = _BAL.match(value)
        assert m and m.group(3) == currency, value
        amount = to_minor(m.group(4), currency)
        return amount if m.group(1) == "C" else -amount

    lines: list[Line] = []
    body = fields[4:-1]
    assert len(body) % 2 == 0
    for (tag61, value61), (tag86, value86) in zip(body[::2], body[1::2], strict=True):
        assert (tag61, tag86) == ("61", "86")
        m = _61.match(value61[0])
        assert m, value61[0]
        assert len(value61) <= 2 and all(len(extra) <= 34 for extra in value61[1:])
        assert len(value86) <= 6 and all(len(x) <= 65 for x in [value86[0], *value86[1:]])
        assert all(SWIFT_X.match(x) for x in [*value61, *value86])
        info = "".join(value86)
        eref = re.search(r"/EREF/([^/]+)", info)
        assert eref
        reference = m.group(7) if m.group(7) != "NONREF" else value61[1]
        assert reference == eref.group(1)
        amount = to_minor(m.group(5), currency)
        kind = {"TRF": "payout", "RTI": "return"}.get(m.group(6), "other")
        charges = re.search(rf"/CHGS/{currency}(\d+,\d*)", info)
        lines.append(
            Line(
                reference=reference,
                signed_minor=amount if m.group(3) == "C" else -amount,
                kind=kind,
                value_date=f"20{m.group(1)[:2]}-{m.group(1)[2:4]}-{m.group(1)[4:]}",
                fee_minor=to_minor(charges.group(1), currency) if charges else 0,
            )
        )
    return Read(balance(fields[3][1][0]), balance(fields[-1][1][0]), lines, int(number.group(1)))


def read_camt053(content: bytes, currency: str) -> Read:
    root = SafeET.fromstring(content)
    ns = {"c": CAMT_NS}
    assert root.tag == f"{{{CAMT_NS}}}Document"
    stmt = root.find("c:BkToCstmrStmt/c:Stmt", ns)
    assert stmt is not None
    order = [child.tag.split("}")[1] for child in stmt]
    expected = ["Id", "ElctrncSeqNb", "CreDtTm", "FrToDt", "Acct", "Bal", "Bal", "TxsSummry"]
    assert order[: len(expected)] == expected and set(order[len(expected) :]) <= {"Ntry"}

    def amount(el: object) -> int:
        amt = el.find("c:Amt", ns)  # type: ignore[attr-defined]
        assert amt.get("Ccy") == currency
        value = to_minor(amt.text, currency)
        ind = el.find("c:CdtDbtInd", ns).text  # type: ignore[attr-defined]
        assert ind in ("CRDT", "DBIT")
        return value if ind == "CRDT" else -value

    balances = {
        b.find("c:Tp/c:CdOrPrtry/c:Cd", ns).text: amount(b) for b in stmt.findall("c:Bal", ns)
    }
    assert set(balances) == {"OPBD", "CLBD"}
    lines = []
    for ntry in stmt.findall("c:Ntry", ns):
        assert ntry.find("c:Sts", ns).text == "BOOK"
        assert ntry.find("c:BookgDt/c:Dt", ns) is not None
        sub = ntry.find("c:BkTxCd/c:Domn/c:Fmly/c:SubFmlyCd", ns).text
        charge = ntry.find("c:Chrgs/c:Amt", ns)
        if charge is not None:
            assert charge.get("Ccy") == currency
            assert ntry.find("c:Chrgs/c:CdtDbtInd", ns).text == "DBIT"
        tags = [child.tag.split("}")[1] for child in ntry]
        assert tags.index("BkTxCd") < tags.index("NtryDtls")
        assert "Chrgs" not in tags or tags.index("BkTxCd") < tags.index("Chrgs") < tags.index(
            "NtryDtls"
        )
        e2e = ntry.find("c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId", ns).text
        lines.append(
            Line(
                reference=e2e,
                signed_minor=amount(ntry),
                kind={"RRTN": "return"}.get(sub, "payout"),
                value_date=ntry.find("c:ValDt/c:Dt", ns).text,
                fee_minor=to_minor(charge.text, currency) if charge is not None else 0,
            )
        )
    summary = stmt.find("c:TxsSummry/c:TtlNtries", ns)
    assert int(summary.find("c:NbOfNtries", ns).text) == len(lines)
    assert to_minor(summary.find("c:Sum", ns).text, currency) == sum(
        abs(x.signed_minor) for x in lines
    )
    number = int(stmt.find("c:ElctrncSeqNb", ns).text)
    return Read(balances["OPBD"], balances["CLBD"], lines, number)


READERS = {"csv": read_csv, "mt940": read_mt940, "camt053": read_camt053}
