"""Report writers: CSV rows encoded in chunks for a chunked HTTP response, and an XLSX workbook
built with xlsxwriter's ``constant_memory`` mode (each row goes to a temporary file as soon as
the next one starts, so memory stays flat whatever the run size).

Money columns come in pairs: ``<name>`` in major units (exact text from the integers; a number
cell in XLSX with the currency's decimals) and ``<name>_minor`` (the integer, the truth).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import xlsxwriter

from services.recon.reports.money import exponent_of, major
from services.recon.reports.source import Figures

XLSX_ROWS_MAX = 1_048_576  # Excel's sheet limit; a longer part continues on "<name> (2)" …
MONEY = ("amount_minor", "expected_amount_minor", "fee_minor", "expected_fee_minor")

BREAK_COLUMNS = (
    "break_id",
    "code",
    "severity",
    "status",
    "business_date",
    "statement_id",
    "line_number",
    "attempt_id",
    "payout_id",
    "currency",
    "amount",
    "expected_amount",
    "fee",
    "expected_fee",
    "amount_minor",
    "expected_amount_minor",
    "fee_minor",
    "expected_fee_minor",
    "value_date",
    "record_date",
    "detail",
    "closed_reason",
)
MATCHED_COLUMNS = (
    "statement_id",
    "line_number",
    "attempt_id",
    "pass",
    "booking_date",
    "value_date",
    "currency",
    "amount",
    "fee",
    "amount_minor",
    "fee_minor",
    "bank_reference",
)


def with_major(row: dict[str, Any]) -> dict[str, Any]:
    """Add the major-unit text of each money column present in ``row``."""
    out = dict(row)
    for name in MONEY:
        if name in row:
            out[name.removesuffix("_minor")] = major(row[name], row.get("currency"))
    return out


def _text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


class CsvChunks:
    """Rows → UTF-8 CSV bytes, handed out in chunks of about ``chunk_bytes``."""

    def __init__(self, columns: Sequence[str], chunk_bytes: int = 64 * 1024) -> None:
        self.columns = columns
        self.chunk_bytes = chunk_bytes
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")
        self.writer.writerow(columns)

    def add(self, row: dict[str, Any]) -> bytes | None:
        self.writer.writerow([_text(row.get(c)) for c in self.columns])
        if self.buffer.tell() >= self.chunk_bytes:
            return self.flush()
        return None

    def flush(self) -> bytes:
        data = self.buffer.getvalue().encode()
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


def summary_rows(run: dict[str, Any], figures: Figures) -> list[list[Any]]:
    """The summary part as rows (CSV and the XLSX summary sheet share it)."""
    rows: list[list[Any]] = [
        ["section", "key", "currency", "count", "records", "open", "amount", "amount_minor"],
    ]
    for key in (
        "run_id",
        "channel",
        "business_date",
        "rules_version",
        "line_count",
        "record_count",
        "matched_lines",
        "break_count",
        "match_rate_ppm",
        "started_at",
        "finished_at",
        "superseded_by",
    ):
        rows.append(["run", key, "", _text(run.get(key)), "", "", "", ""])
    for (name, currency), f in sorted(figures.passes.items()):
        rows.append(
            [
                "pass",
                name,
                currency,
                f["lines"],
                f["records"],
                "",
                major(f["amount_minor"], currency),
                f["amount_minor"],
            ]
        )
    for (code, currency), f in sorted(figures.breaks.items()):
        rows.append(
            [
                "break",
                code,
                currency,
                f["count"],
                "",
                f["open"],
                major(f["amount_minor"], currency),
                f["amount_minor"],
            ]
        )
    return rows


class Workbook:
    """summary, breaks and matched sheets in one workbook written to ``path``."""

    def __init__(self, path: Path) -> None:
        self.book = xlsxwriter.Workbook(
            str(path),
            {"constant_memory": True, "tmpdir": str(path.parent), "strings_to_numbers": False},
        )
        self.bold = self.book.add_format({"bold": True})
        self.money_formats: dict[int, Any] = {}
        self.summary = self.book.add_worksheet("summary")
        self.parts: dict[str, dict[str, Any]] = {}
        for name, columns in (("breaks", BREAK_COLUMNS), ("matched", MATCHED_COLUMNS)):
            self.parts[name] = {"columns": columns, "sheet": None, "row": 0, "n": 0}
            self._new_sheet(name)

    def _money_format(self, exp: int) -> Any:
        if exp not in self.money_formats:
            pattern = "#,##0" + ("." + "0" * exp if exp else "")
            self.money_formats[exp] = self.book.add_format({"num_format": pattern})
        return self.money_formats[exp]

    def _new_sheet(self, name: str) -> None:
        part = self.parts[name]
        part["n"] += 1
        title = name if part["n"] == 1 else f"{name} ({part['n']})"
        sheet = self.book.add_worksheet(title)
        sheet.write_row(0, 0, part["columns"], self.bold)
        sheet.freeze_panes(1, 0)
        part["sheet"], part["row"] = sheet, 1

    def add(self, name: str, row: dict[str, Any]) -> None:
        part = self.parts[name]
        if part["row"] >= XLSX_ROWS_MAX:
            self._new_sheet(name)
        sheet, r = part["sheet"], part["row"]
        currency = row.get("currency")
        exp = exponent_of(currency)
        for c, column in enumerate(part["columns"]):
            value = row.get(column)
            if value is None:
                continue
            minor_name = column + "_minor"
            if minor_name in MONEY and column not in MONEY:
                minor = row.get(minor_name)
                if minor is not None and exp is not None:
                    # The cell's number is parsed from the exact decimal text; XLSX stores
                    # IEEE doubles, exact for any amount below 2**53 minor units.
                    sheet.write_number(r, c, float(major(minor, currency)), self._money_format(exp))
                elif minor is not None:
                    sheet.write_number(r, c, minor)
                continue
            if isinstance(value, int):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, str(_text(value)))
        part["row"] = r + 1

    def add_many(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.add(name, row)

    def write_summary(self, run: dict[str, Any], figures: Figures) -> None:
        for r, row in enumerate(summary_rows(run, figures)):
            for c, value in enumerate(row):
                if r == 0:
                    self.summary.write_string(r, c, value, self.bold)
                elif c == 6 and value != "":
                    exp = exponent_of(row[2]) or 0
                    self.summary.write_number(r, c, float(value), self._money_format(exp))
                elif isinstance(value, int):
                    self.summary.write_number(r, c, value)
                elif value != "":
                    self.summary.write_string(r, c, str(value))

    def close(self) -> None:
        self.book.close()
