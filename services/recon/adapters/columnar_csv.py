"""A columnar reader for large, plain CSV statements: polars instead of one Python object per
line, straight to the Parquet copy the matching engine reads.

It reads the same files as the CSV parser (services/recon/parsers/csv_format.py), with the
same mapping, and must give exactly the same lines (tests/recon/test_columnar_csv.py checks
that on generated files). It only ever *accepts*: anything it does not handle the plain way —
quotes, carriage returns, a preamble, blank lines, non-UTF-8 bytes, another separator or
date format, an amount it would have to interpret, an unknown direction or currency — makes it
return ``None``, and the parser decides (including every error message naming a line).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from services.recon.adapters.columnar import LINE_SCHEMA, _write_atomically
from services.recon.domain.checks import StatementTotals
from services.recon.domain.lines import Balance
from services.recon.parsers.amounts import EXPONENTS
from services.recon.parsers.csv_format import DEFAULT_MAPPING, CsvMapping

_FRAMING = "\ufeff\x00\x01\x02\x03\x04\x1a"
_UNSIGNED = r"^[0-9]+(\.[0-9]+)?$"
_SIGNED = r"^[+-]?[0-9]+(\.[0-9]+)?$"


@dataclass(frozen=True)
class ColumnarStatements:
    totals: list[StatementTotals]
    line_count: int


def simple_mapping(m: CsvMapping) -> bool:
    return (
        m.delimiter == ","
        and m.quotechar == '"'
        and m.decimal_separator == "."
        and m.thousands_separator is None
        and m.date_format == "%Y-%m-%d"
    )


def read(
    data: bytes, *, channel: str, mapping: CsvMapping | None, sha256: str, dest: Path
) -> ColumnarStatements | None:
    """Write the file's lines to ``dest`` (Parquet) and return the statements' totals, or
    ``None`` when the file is not plain enough for this reader (the parser takes it)."""
    m = mapping or DEFAULT_MAPPING
    if not simple_mapping(m) or b'"' in data or b"\r" in data or b"\n\n" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    framed = not text or text != text.strip(_FRAMING) or text.startswith("#")
    del text  # the file's size again in memory: not kept while the frames are built
    if framed or b"\x1f" in data:
        return None
    end = data.find(b"\n")
    header = [name.strip() for name in data[: end if end >= 0 else len(data)].decode().split(",")]
    if len(set(header)) != len(header) or m.date not in header or m.amount not in header:
        return None
    # Physical lines after the header: one per line end, plus a last one without it.
    expected = data.count(b"\n") - (1 if data.endswith(b"\n") else 0)
    try:
        frame = pl.read_csv(
            io.BytesIO(data),
            has_header=True,
            infer_schema=False,
            quote_char=None,
            separator=",",
            new_columns=header,
        )
        # The raw text of each line, as one column (no Python string per line): the file
        # holds no \x1f, so every line is one field.
        raw = (
            pl.read_csv(
                io.BytesIO(data),
                has_header=False,
                skip_rows=1,
                infer_schema=False,
                quote_char=None,
                separator="\x1f",
                new_columns=["raw"],
            )
            .get_column("raw")
            .fill_null("")
        )
    except pl.exceptions.PolarsError:
        return None
    if (
        frame.height != expected
        or raw.len() != expected
        or frame.width != len(header)
        or frame.height == 0
    ):
        return None
    return _convert(frame, raw, header, m, channel, sha256, dest)


def _convert(
    frame: pl.DataFrame,
    raw: pl.Series,
    header: list[str],
    m: CsvMapping,
    channel: str,
    sha256: str,
    dest: Path,
) -> ColumnarStatements | None:
    def cell(name: str | None) -> pl.Expr:
        if name is None or name not in header:
            return pl.lit(None, pl.Utf8)
        return pl.col(name).fill_null("").str.strip_chars()

    def opt(name: str | None) -> pl.Expr:  # empty -> null, like the parser's _cell
        value = cell(name)
        return pl.when(value == "").then(None).otherwise(value)

    default_id = f"{channel}-{sha256[:16]}"
    has_statement_col = m.statement_id is not None and m.statement_id in header
    has_direction = m.direction is not None and m.direction in header
    currency = cell(m.currency).fill_null("")
    if m.default_currency:
        currency = pl.when(currency == "").then(pl.lit(m.default_currency)).otherwise(currency)
    rows = frame.with_row_index("idx").select(
        (pl.col("idx").cast(pl.Int64) + 2).alias("line_number"),
        cell(m.record_type).fill_null("").str.to_lowercase().alias("kind"),
        cell(m.account).fill_null("").alias("account"),
        (cell(m.statement_id) if has_statement_col else pl.lit(default_id)).alias("statement_id"),
        cell(m.sequence).fill_null("").alias("sequence"),
        currency.alias("currency"),
        cell(m.date).alias("date_text"),
        cell(m.value_date).fill_null("").alias("value_text"),
        cell(m.direction).fill_null("").str.to_lowercase().alias("direction_text"),
        cell(m.amount).alias("amount_text"),
        cell(m.fee).fill_null("").alias("fee_text"),
        opt(m.reference).alias("our_reference"),
        opt(m.bank_reference).alias("bank_reference"),
        opt(m.end_to_end_id).alias("end_to_end_id"),
        opt(m.counterparty).alias("counterparty"),
        pl.lit(raw).alias("raw"),
    )
    exponents = rows.get_column("currency").unique().to_list()
    if any(c not in EXPONENTS for c in exponents) or len({EXPONENTS[c] for c in exponents}) != 1:
        return None  # unknown currency (the parser names the line) or mixed exponents
    exp = EXPONENTS[exponents[0]]
    if (rows.get_column("statement_id") == "").any():
        return None
    debit_values = sorted(v.lower() for v in m.debit_values)
    credit_values = sorted(v.lower() for v in m.credit_values)
    is_balance = pl.col("kind").is_in([m.opening_value, m.closing_value])
    signed = not has_direction
    rows = rows.with_columns(
        pl.col("date_text").str.to_date("%Y-%m-%d", strict=False).alias("booking_date"),
        pl.when(pl.col("value_text") == "")
        .then(pl.col("date_text"))
        .otherwise(pl.col("value_text"))
        .str.to_date("%Y-%m-%d", strict=False)
        .alias("value_date"),
        _minor(pl.col("amount_text"), exp, signed=True).alias("signed_minor"),
        pl.when(pl.col("fee_text") == "")
        .then(pl.lit(0, pl.Int64))
        .otherwise(_minor(pl.col("fee_text"), exp, signed=False))
        .alias("fee_minor"),
        pl.col("direction_text").is_in(debit_values).alias("is_debit"),
        pl.col("direction_text").is_in(credit_values).alias("is_credit"),
        pl.col("amount_text").str.contains(_SIGNED if signed else _UNSIGNED).alias("amount_ok"),
    )
    iso = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # what date.fromisoformat and %Y-%m-%d agree on
    bad = rows.filter(
        ~pl.col("date_text").str.contains(iso)
        | ((pl.col("value_text") != "") & ~pl.col("value_text").str.contains(iso))
        | pl.col("booking_date").is_null()
        | pl.col("value_date").is_null()
        | pl.col("signed_minor").is_null()
        | pl.col("fee_minor").is_null()
        | (pl.col("currency") == "")
        | (~is_balance & ~pl.col("amount_ok"))
        | (is_balance & ~pl.col("amount_text").str.contains(_SIGNED))
        | (~is_balance & pl.lit(has_direction) & ~pl.col("is_debit") & ~pl.col("is_credit"))
        | ~pl.col("sequence").str.contains(r"^[0-9]*$")
    )
    if bad.height:
        return None  # the parser has the last word, and the message naming the line
    rows = rows.with_columns(
        pl.when(pl.lit(has_direction))
        .then(pl.when(pl.col("is_debit")).then(pl.lit("debit")).otherwise(pl.lit("credit")))
        .otherwise(
            pl.when(pl.col("signed_minor") < 0).then(pl.lit("debit")).otherwise(pl.lit("credit"))
        )
        .alias("direction"),
        pl.col("signed_minor").abs().alias("amount_minor"),
        pl.lit(channel).alias("channel"),
    )
    lines = rows.filter(~is_balance & (pl.col("amount_minor") != 0))
    _write_atomically(lines.select(list(LINE_SCHEMA)).cast(LINE_SCHEMA), dest)  # type: ignore[arg-type]
    return ColumnarStatements(_totals(rows, lines, m, channel), lines.height)


def _minor(text: pl.Expr, exp: int, *, signed: bool) -> pl.Expr:
    """Exact decimal text -> minor units; null when it has more decimals than ``exp``."""
    body = text.str.strip_prefix("+").str.strip_prefix("-") if signed else text
    whole = body.str.extract(r"^([0-9]+)", 1).cast(pl.Int64, strict=False)
    frac = body.str.extract(r"\.([0-9]+)$", 1).fill_null("")
    scaled = whole * (10**exp)
    if exp:
        scaled = scaled + frac.str.pad_end(exp, "0").cast(pl.Int64, strict=False).fill_null(0)
    value = pl.when(frac.str.len_chars() <= exp).then(scaled).otherwise(None)
    if signed:
        value = pl.when(text.str.starts_with("-")).then(-value).otherwise(value)
    return value


def _totals(
    rows: pl.DataFrame, lines: pl.DataFrame, m: CsvMapping, channel: str
) -> list[StatementTotals]:
    key = ["account", "statement_id"]
    firsts = rows.group_by(key, maintain_order=True).agg(
        pl.col("currency").first().alias("statement_currency"),
        pl.col("sequence").first().alias("sequence"),
    )
    per = (
        lines.join(firsts, on=key, how="left")
        .group_by(key)
        .agg(
            pl.col("amount_minor").filter(pl.col("direction") == "credit").sum().alias("c"),
            pl.col("amount_minor").filter(pl.col("direction") == "debit").sum().alias("d"),
            pl.col("fee_minor").sum().alias("f"),
            pl.len().alias("n"),
            pl.col("booking_date").max().alias("last"),
            pl.col("currency")
            .filter(pl.col("currency") != pl.col("statement_currency"))
            .first()
            .alias("foreign_currency"),
            pl.col("line_number")
            .filter(pl.col("currency") != pl.col("statement_currency"))
            .first()
            .alias("foreign_line"),
        )
    )
    figures = {(r["account"], r["statement_id"]): r for r in per.iter_rows(named=True)}
    balances = rows.filter(pl.col("kind").is_in([m.opening_value, m.closing_value]))
    out: list[StatementTotals] = []
    for first in firsts.iter_rows(named=True):
        k = (first["account"], first["statement_id"])
        mine = balances.filter((pl.col("account") == k[0]) & (pl.col("statement_id") == k[1]))
        f = figures.get(k)
        out.append(
            StatementTotals(
                channel=channel,
                statement_id=first["statement_id"],
                account=first["account"],
                currency=first["statement_currency"],
                opening=_balance(mine, m.opening_value, m),
                closing=_balance(mine, m.closing_value, m),
                line_count=int(f["n"]) if f else 0,
                credits_minor=int(f["c"] or 0) if f else 0,
                debits_minor=int(f["d"] or 0) if f else 0,
                fees_minor=int(f["f"] or 0) if f else 0,
                foreign_line=(
                    (f["foreign_currency"], int(f["foreign_line"]))
                    if f and f["foreign_currency"] is not None
                    else None
                ),
                last_booking=f["last"] if f else None,
                sequence_number=int(first["sequence"]) if first["sequence"] else None,
            )
        )
    return out


def _balance(group_rows: pl.DataFrame, kind: str, m: CsvMapping) -> Balance | None:
    found = group_rows.filter(pl.col("kind") == kind)
    if not found.height:
        return None
    row: dict[str, Any] = found.row(found.height - 1, named=True)  # the parser keeps the last
    amount = int(row["signed_minor"])
    if row["direction_text"] in {v.lower() for v in m.debit_values}:
        amount = -abs(amount)
    return Balance(amount_minor=amount, currency=row["currency"], date=row["booking_date"])
