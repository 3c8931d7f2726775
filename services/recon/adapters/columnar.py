"""Columnar files the matching engine reads: statement lines (Parquet) and our records.

Accepted statements are kept as Parquet beside the archived original, so a later run for the
same day (a second file arrived) reads every accepted line again without re-parsing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from services.recon.domain.lines import Statement
from services.recon.domain.matching import LINE_COLUMNS, RECORD_COLUMNS

LINE_SCHEMA: dict[str, Any] = {
    "channel": pl.Utf8,
    "statement_id": pl.Utf8,
    "line_number": pl.Int32,
    "booking_date": pl.Date,
    "value_date": pl.Date,
    "direction": pl.Utf8,
    "amount_minor": pl.Int64,
    "currency": pl.Utf8,
    "fee_minor": pl.Int64,
    "our_reference": pl.Utf8,
    "bank_reference": pl.Utf8,
    "end_to_end_id": pl.Utf8,
    "counterparty": pl.Utf8,
    "raw": pl.Utf8,
}
assert tuple(LINE_SCHEMA) == LINE_COLUMNS

RECORD_JSON_TYPES = {
    "attempt_id": "VARCHAR",
    "payout_id": "VARCHAR",
    "bank": "VARCHAR",
    "channel_id": "VARCHAR",
    "amount_minor": "BIGINT",
    "currency": "VARCHAR",
    "fee_minor": "BIGINT",
    "status": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
    "resolved_at": "TIMESTAMPTZ",
    "bank_reference": "VARCHAR",
    "executed_at": "TIMESTAMPTZ",
    # The router's export names the submission time sent_at; either is accepted.
    "sent_at": "TIMESTAMPTZ",
}
assert tuple(RECORD_JSON_TYPES)[: len(RECORD_COLUMNS)] == RECORD_COLUMNS


def quote(value: str) -> str:
    """A SQL string literal (paths are ours, but a quote in a directory name must not break)."""
    return "'" + value.replace("'", "''") + "'"


def write_lines(statements: Iterable[Statement], path: Path) -> int:
    lines = [line for st in statements for line in st.lines]
    # One comprehension per column: far cheaper than appending field by field per line.
    columns: dict[str, list[Any]] = {
        name: [getattr(line, name) for line in lines] for name in LINE_COLUMNS
    }
    columns["direction"] = [line.direction.value for line in lines]
    frame = pl.DataFrame(columns, schema=LINE_SCHEMA)
    del columns, lines
    _write_atomically(frame, path)
    return frame.height


def _write_atomically(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def lines_sql(paths: list[Path]) -> str:
    if not paths:
        cols = ", ".join(f"CAST(NULL AS {_duck(t)}) AS {name}" for name, t in LINE_SCHEMA.items())
        return f"SELECT {cols} WHERE false"
    files = ", ".join(quote(str(p)) for p in paths)
    return f"SELECT {', '.join(LINE_COLUMNS)} FROM read_parquet([{files}])"


def carried_lines_sql(paths: list[Path]) -> str | None:
    """Lines of earlier files named in the engine's ``carried_keys`` table."""
    if not paths:
        return None
    files = ", ".join(quote(str(p)) for p in sorted(set(paths)))
    return (
        f"SELECT {', '.join(LINE_COLUMNS)} FROM read_parquet([{files}])"
        " WHERE (statement_id, line_number) IN (SELECT statement_id, line_number FROM carried_keys)"
    )


def _duck(polars_type: Any) -> str:
    return {
        pl.Utf8: "VARCHAR",
        pl.Int32: "INTEGER",
        pl.Int64: "BIGINT",
        pl.Date: "DATE",
    }[polars_type]


def records_ndjson_sql(path: Path) -> str:
    columns = "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in RECORD_JSON_TYPES.items()) + "}"
    selected = ", ".join(
        "coalesce(created_at, sent_at) AS created_at" if c == "created_at" else c
        for c in RECORD_COLUMNS
    )
    return (
        f"SELECT {selected} FROM read_json({quote(str(path))},"
        f" format = 'newline_delimited', columns = {columns})"
    )


def write_records(records: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Our records as NDJSON (the router's export format); used by tests and ad-hoc runs."""
    import msgspec

    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    encoder = msgspec.json.Encoder()
    with path.open("wb") as out:
        for record in records:
            out.write(encoder.encode(dict(record)))
            out.write(b"\n")
            count += 1
    return count
