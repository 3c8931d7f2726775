"""Bytes → text for the line-based formats (MT940, BAI2, CSV)."""

from __future__ import annotations

# Control characters some banks wrap files in (SOH/ETX from mBank's transmission framing, a
# stray NUL, a UTF-8 byte-order mark). They carry no statement data.
_FRAMING = "\ufeff\x00\x01\x02\x03\x04\x1a"


def decode(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, else Latin-1 (which never fails).

    Bank files are mostly ASCII; the non-ASCII bytes are in free text (names, remittance
    information) where a wrong guess costs a mangled character, never a wrong amount. Line
    endings are normalised to ``\\n``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip(_FRAMING)
