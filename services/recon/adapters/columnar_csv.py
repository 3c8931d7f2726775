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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from services.recon.adapters.line_parts import LineParts
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


# Bytes of lines per block: a block's frames take ~12x its size, so 16 MiB keeps the reader
# near 200 MB whatever the size of the file.
BLOCK_BYTES = 16 * 1024 * 1024


def simple_mapping(m: CsvMapping) -> bool:
    return (
        m.delimiter == ","
        and m.quotechar == '"'
        and m.decimal_separator == "."
        and m.thousands_separator is None
        and m.date_format == "%Y-%m-%d"
    )


def read(
    path: Path,
    *,
    channel: str,
    mapping: CsvMapping | None,
    sha256: str,
    dest: Path,
    block_bytes: int = BLOCK_BYTES,
) -> ColumnarStatements | None:
    """Write the file's lines to ``dest`` (Parquet) and return the statements' totals, or
    ``None`` when the file is not plain enough for this reader (the parser takes it).

    The file is read in blocks of whole lines (``block_bytes``; more when one line is longer).
    Each block is checked and converted alone, with its line offset; its lines are written as
    a part, and the statements' figures are merged across blocks. ``dest`` appears only when
    every block was read."""
    assert block_bytes > 0
    m = mapping or DEFAULT_MAPPING
    if not simple_mapping(m):
        return None
    merged = _Merged(m, channel)
    with LineParts(dest) as parts, path.open("rb") as file:
        header: list[str] | None = None
        header_bytes = b""
        offset = 0  # data lines before the current block
        last_char = ""
        for block in _blocks(file, block_bytes):
            # Blocks end at a line end, so a block starting with one is a blank line.
            if not _plain(block) or (header is not None and block.startswith(b"\n")):
                return None
            try:
                text = block.decode("utf-8")  # a line end never splits a UTF-8 character
            except UnicodeDecodeError:
                return None
            if header is None and (text[0] in _FRAMING or text.startswith("#")):
                return None
            last_char = text[-1]
            del text  # the block's size again in memory: not kept while frames are built
            if header is None:
                end = block.find(b"\n")
                header_bytes = block[: end + 1] if end >= 0 else block
                header = [name.strip() for name in header_bytes.decode().split(",")]
                if len(set(header)) != len(header) or m.date not in header:
                    return None
                if m.amount not in header:
                    return None
                block = block[len(header_bytes) :]
                if not block:
                    continue
            lines = _read_block(header_bytes, header, block, m, channel, sha256, offset, merged)
            if lines is None:
                return None
            parts.add(lines)
            offset += _block_rows(block)
            del lines, block
        if header is None or offset == 0 or last_char in _FRAMING:
            return None  # empty, a header alone, or framing bytes at the end
        line_count = parts.publish()
    return ColumnarStatements(merged.totals(), line_count)


def _plain(block: bytes) -> bool:
    return not any(b in block for b in (b'"', b"\r", b"\n\n", b"\x1f"))


def _block_rows(block: bytes) -> int:
    """Physical lines in a block: one per line end, plus a last one without it."""
    return block.count(b"\n") + (0 if block.endswith(b"\n") else 1)


def _blocks(file: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """The file in blocks that end at a line end (the last one where the file ends)."""
    carry = b""
    while chunk := file.read(block_bytes):
        buffer = carry + chunk if carry else chunk
        cut = buffer.rfind(b"\n")
        if cut < 0:
            carry = buffer  # a line longer than a block: read on
            continue
        carry = buffer[cut + 1 :]
        yield buffer[: cut + 1]
    if carry:
        yield carry


def _read_block(
    header_bytes: bytes,
    header: list[str],
    block: bytes,
    m: CsvMapping,
    channel: str,
    sha256: str,
    offset: int,
    merged: _Merged,
) -> pl.DataFrame | None:
    expected = _block_rows(block)
    try:
        frame = pl.read_csv(
            io.BytesIO(header_bytes + block),
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
                io.BytesIO(block),
                has_header=False,
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
    if frame.height != expected or raw.len() != expected or frame.width != len(header):
        return None
    return _convert(frame, raw, header, m, channel, sha256, offset, merged)


def _convert(
    frame: pl.DataFrame,
    raw: pl.Series,
    header: list[str],
    m: CsvMapping,
    channel: str,
    sha256: str,
    offset: int,
    merged: _Merged,
) -> pl.DataFrame | None:
    """One block's lines (its statements' figures go to ``merged``), or ``None`` when the
    parser must decide."""

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
        (pl.col("idx").cast(pl.Int64) + (2 + offset)).alias("line_number"),
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
    currencies = rows.get_column("currency").unique().to_list()
    if any(c not in EXPONENTS for c in currencies):
        return None  # unknown currency (the parser names the line)
    exponents = {EXPONENTS[c] for c in currencies}
    if merged.exponent is not None:
        exponents.add(merged.exponent)
    if len(exponents) != 1:
        return None  # mixed exponents in the file
    exp = merged.exponent = exponents.pop()
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
    merged.add(rows, lines)
    return lines


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


class _Merged:
    """Each statement's figures, merged block by block into what the whole file gives: its
    currency and sequence from its first row in the file, the first line (by number) in
    another currency, and the last balance row of each kind (the parser keeps the last)."""

    def __init__(self, m: CsvMapping, channel: str) -> None:
        self.m = m
        self.channel = channel
        self.exponent: int | None = None
        self.firsts: dict[tuple[str, str], tuple[str, str]] = {}  # key -> (currency, sequence)
        # key -> currency -> [credits, debits, fees, lines, last booking, first line number]
        self.figures: dict[tuple[str, str], dict[str, list[Any]]] = {}
        self.balances: dict[tuple[tuple[str, str], str], dict[str, Any]] = {}

    def add(self, rows: pl.DataFrame, lines: pl.DataFrame) -> None:
        key = ["account", "statement_id"]
        firsts = rows.group_by(key, maintain_order=True).agg(
            pl.col("currency").first(), pl.col("sequence").first()
        )
        for account, statement_id, currency, sequence in firsts.iter_rows():
            self.firsts.setdefault((account, statement_id), (currency, sequence))
        per = lines.group_by([*key, "currency"]).agg(
            pl.col("amount_minor").filter(pl.col("direction") == "credit").sum().alias("c"),
            pl.col("amount_minor").filter(pl.col("direction") == "debit").sum().alias("d"),
            pl.col("fee_minor").sum().alias("f"),
            pl.len().alias("n"),
            pl.col("booking_date").max().alias("last"),
            pl.col("line_number").min().alias("first"),
        )
        for r in per.iter_rows(named=True):
            by_currency = self.figures.setdefault((r["account"], r["statement_id"]), {})
            seen = by_currency.get(r["currency"])
            block = [int(r["c"] or 0), int(r["d"] or 0), int(r["f"] or 0), int(r["n"])]
            if seen is None:
                by_currency[r["currency"]] = [*block, r["last"], int(r["first"])]
            else:
                for i in range(4):
                    seen[i] += block[i]
                seen[4] = max(seen[4], r["last"])
                seen[5] = min(seen[5], int(r["first"]))
        kinds = [self.m.opening_value, self.m.closing_value]
        balances = rows.filter(pl.col("kind").is_in(kinds)).select(
            "account",
            "statement_id",
            "kind",
            "signed_minor",
            "direction_text",
            "currency",
            "booking_date",
        )
        for row in balances.iter_rows(named=True):  # in file order: the last one stays
            self.balances[((row["account"], row["statement_id"]), row["kind"])] = row

    def totals(self) -> list[StatementTotals]:
        out: list[StatementTotals] = []
        for k, (currency, sequence) in self.firsts.items():
            mine = self.figures.get(k, {})
            foreign = min(((f[5], c) for c, f in mine.items() if c != currency), default=None)
            out.append(
                StatementTotals(
                    channel=self.channel,
                    statement_id=k[1],
                    account=k[0],
                    currency=currency,
                    opening=self._balance(k, self.m.opening_value),
                    closing=self._balance(k, self.m.closing_value),
                    line_count=sum(f[3] for f in mine.values()),
                    credits_minor=sum(f[0] for f in mine.values()),
                    debits_minor=sum(f[1] for f in mine.values()),
                    fees_minor=sum(f[2] for f in mine.values()),
                    foreign_line=(foreign[1], foreign[0]) if foreign else None,
                    last_booking=max((f[4] for f in mine.values()), default=None),
                    sequence_number=int(sequence) if sequence else None,
                )
            )
        return out

    def _balance(self, k: tuple[str, str], kind: str) -> Balance | None:
        row = self.balances.get((k, kind))
        if row is None:
            return None
        amount = int(row["signed_minor"])
        if row["direction_text"] in {v.lower() for v in self.m.debit_values}:
            amount = -abs(amount)
        return Balance(amount_minor=amount, currency=row["currency"], date=row["booking_date"])
