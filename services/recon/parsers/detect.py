"""Which statement format a file is in, from its first bytes."""

from __future__ import annotations

import re

from services.recon.domain.lines import StatementFormatError

FORMATS = ("csv", "mt940", "camt053", "camt054", "bai2")

_HEAD_BYTES = 64 * 1024
_CAMT = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.(053|054)\.")
_MT940_TAG = re.compile(
    rb"(?m)^(?:\{1:|:(?:20|21|25|28C?|34F|13D?|60[FM]|61|62[FM]|64|65|86|90[CD]|NS):)"
)
_CSV_DELIMITERS = (b",", b";", b"\t", b"|")


def detect_format(data: bytes) -> str:
    """``csv``, ``mt940``, ``camt053``, ``camt054`` or ``bai2``; an unknown layout is an error.

    XML with a camt namespace → camt; a first record ``01,`` → BAI2; a SWIFT tag at the start
    of a line (``:20:``, ``:61:`` …) or a ``{1:`` block → MT940; a first row with a delimiter
    and at least two columns → CSV. Only the first 64 KiB are looked at.
    """
    head = data[:_HEAD_BYTES].lstrip(b"\xef\xbb\xbf\x00\x01\x02 \t\r\n")
    if not head:
        raise StatementFormatError("empty file", line_number=1)
    if head.startswith(b"<"):
        m = _CAMT.search(head)
        if m is None:
            raise StatementFormatError("XML but not a camt.053/054 document", line_number=1)
        return "camt" + m.group(1).decode()
    if head.startswith(b"01,"):
        return "bai2"
    if _MT940_TAG.search(head):
        return "mt940"
    first = head.split(b"\n", 1)[0]
    if any(first.count(d) >= 1 for d in _CSV_DELIMITERS):
        return "csv"
    raise StatementFormatError(
        "unrecognised statement format (not CSV, MT940, camt.053/054 or BAI2)", line_number=1
    )
