"""Statement parsers: CSV, MT940/MT942, camt.053/054 and BAI2 → the canonical line model.

The engine calls :func:`parse` with the file's bytes and the channel; every parser returns
``list[Statement]`` (services/recon/domain/lines.py) or raises ``StatementFormatError`` naming the
offending line — never a partial result. One module per format; ``detect`` picks one.
"""

from __future__ import annotations

import gc

from services.recon.domain.lines import Statement, StatementFormatError
from services.recon.parsers import bai2, camt, csv_format, mt940
from services.recon.parsers.csv_format import DEFAULT_MAPPING, CsvMapping
from services.recon.parsers.detect import FORMATS, detect_format

__all__ = [
    "DEFAULT_MAPPING",
    "FORMATS",
    "CsvMapping",
    "detect_format",
    "parse",
]


def parse(
    data: bytes,
    *,
    channel: str,
    format: str = "auto",
    csv_mapping: CsvMapping | None = None,
) -> list[Statement]:
    """Every statement in ``data``; ``format="auto"`` detects it from the first bytes.

    ``csv_mapping`` is the channel's column mapping (config), used when the file is CSV.
    Raises ``StatementFormatError`` for a file that is not a valid statement.
    """
    if not data[:4096].strip() and not data.strip():
        raise StatementFormatError("empty file", line_number=1)
    kind = detect_format(data) if format == "auto" else format
    # A parse allocates one small object per line and no reference cycles; the cyclic collector
    # would rescan the growing list of lines again and again (20-25% of the time at 200k
    # lines). It is paused for the call and restored as it was.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(data, kind, format, channel, csv_mapping)
    finally:
        if was_enabled:
            gc.enable()


def _parse(
    data: bytes, kind: str, format: str, channel: str, csv_mapping: CsvMapping | None
) -> list[Statement]:
    if kind in ("mt940", "mt942"):
        return mt940.parse(data, channel=channel)
    if kind in ("camt053", "camt054"):
        return camt.parse(data, channel=channel, expect=None if format == "auto" else kind)
    if kind == "bai2":
        return bai2.parse(data, channel=channel)
    if kind == "csv":
        return csv_format.parse(data, channel=channel, mapping=csv_mapping)
    raise ValueError(f"unknown statement format {format!r}; expected auto or one of {FORMATS}")
