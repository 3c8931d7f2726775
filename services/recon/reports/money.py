"""Amounts for people: integer minor units shown in major units with the currency's exponent.

The text is computed from the integers (divmod by 10**exponent), never through a float, so
``123456`` EUR is exactly ``1234.56`` and ``500`` JPY is ``500``.
"""

from __future__ import annotations

from services.recon.parsers.amounts import EXPONENTS


def exponent_of(currency: str | None) -> int | None:
    return EXPONENTS.get(currency) if currency else None


def major(amount_minor: int | None, currency: str | None) -> str:
    """``1234.56`` for (123456, EUR); the bare integer when the exponent is unknown."""
    if amount_minor is None:
        return ""
    exp = exponent_of(currency)
    if exp is None:
        return str(amount_minor)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


def grouped(amount_minor: int | None, currency: str | None) -> str:
    """``1,234.56 EUR`` for pages."""
    if amount_minor is None:
        return ""
    text = major(amount_minor, currency)
    sign = "-" if text.startswith("-") else ""
    whole, dot, frac = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{frac} {currency or ''}".rstrip()


def ppm_percent(ppm: int) -> str:
    """Parts per million as a percentage with two decimals, from integers: 987654 → 98.77%."""
    hundredths = (ppm + 50) // 100  # ppm / 10_000 % with two decimals, half up
    return f"{hundredths // 100}.{hundredths % 100:02d}%"


def rate_ppm(part: int, whole: int) -> int:
    return (part * 1_000_000) // whole if whole else 0
