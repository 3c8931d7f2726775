"""Exact decimal text → integer minor units, with a small ISO 4217 exponent table.

Amounts are never floats: the text is split at the decimal separator and the digits are read as
integers. A currency the table does not know, or a fraction with more significant digits than
the currency allows, is a format error — never a rounding. Trailing zeros beyond the exponent are
exact (``5442.09000`` RON is 544209) and accepted.
"""

from __future__ import annotations

from services.recon.domain.lines import StatementFormatError

# ISO 4217 minor-unit exponents for the currencies our channels and the samples use, plus a few
# withdrawn ones (DEM) that still appear in archived MT940 files. Extend when a channel needs it.
EXPONENTS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2,
    "CZK": 2, "DEM": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2,
    "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KES": 2, "KRW": 0, "KWD": 3, "MAD": 2,
    "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PLN": 2, "RON": 2,
    "RSD": 2, "RUB": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2,
    "UAH": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}  # fmt: skip

_DIGITS = frozenset("0123456789")


def exponent(currency: str, *, line_number: int | None = None) -> int:
    """The number of minor-unit digits of ``currency``; unknown currencies are rejected."""
    exp = EXPONENTS.get(currency)
    if exp is None:
        raise StatementFormatError(
            f"unknown currency {currency!r} (no ISO 4217 exponent known)", line_number=line_number
        )
    return exp


def to_minor(
    text: str, currency: str, *, separator: str = ".", line_number: int | None = None
) -> int:
    """``text`` (unsigned digits with an optional ``separator`` and fraction) in minor units.

    ``"12,5"`` EUR with separator ``","`` is 1250; ``"380115,"`` is 38011500; ``"1.005"`` EUR is
    an error (half a cent cannot be booked).
    """
    exp = EXPONENTS.get(currency)
    if exp is None:
        exp = exponent(currency, line_number=line_number)  # raises
    whole, sep, frac = text.partition(separator)
    if exp == 2 and len(frac) == 2 and whole.isdigit() and frac.isdigit() and text.isascii():
        return int(whole) * 100 + int(frac)  # the common case, checked exactly like the rest
    if not whole:
        whole = "0" if sep and frac else ""
    if not whole or not _DIGITS.issuperset(whole) or not _DIGITS.issuperset(frac):
        raise StatementFormatError(f"not an amount: {text!r}", line_number=line_number)
    if len(frac) > exp:
        extra = frac[exp:]
        if extra.strip("0"):
            raise StatementFormatError(
                f"amount {text!r} has more decimals than {currency} allows ({exp})",
                line_number=line_number,
            )
        frac = frac[:exp]
    return int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if exp else 0)


def signed_to_minor(
    text: str, currency: str, *, separator: str = ".", line_number: int | None = None
) -> int:
    """Like :func:`to_minor` but accepts a leading ``-`` or ``+``."""
    text = text.strip()
    if text[:1] in "+-" and text:
        magnitude = to_minor(text[1:], currency, separator=separator, line_number=line_number)
        return -magnitude if text[0] == "-" else magnitude
    return to_minor(text, currency, separator=separator, line_number=line_number)


def from_minor(amount_minor: int, currency: str, *, separator: str = ".") -> str:
    """The exact decimal text of ``amount_minor`` (for renderers and round-trip tests)."""
    exp = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp)
    return f"{sign}{whole}{separator}{frac:0{exp}d}" if exp else f"{sign}{whole}"
