"""Minor units ↔ the decimal text bank files use. Integers only, never float."""

from __future__ import annotations

# ISO 4217 minor-unit exponents for the currencies the simulated banks may hold.
EXPONENTS: dict[str, int] = {
    "EUR": 2,
    "GBP": 2,
    "USD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "JPY": 0,
    "BHD": 3,
}


def fmt_amount(amount_minor: int, currency: str, *, decimal_mark: str = ".") -> str:
    """``12345, EUR`` → ``123.45``; MT940 wants ``decimal_mark=","`` and keeps a trailing
    comma for zero-decimal currencies (``1234,``) as the SWIFT 15d format requires."""
    assert amount_minor >= 0, "amounts in files are unsigned; the direction carries the sign"
    exponent = EXPONENTS[currency]
    if exponent == 0:
        return f"{amount_minor}{decimal_mark}" if decimal_mark == "," else str(amount_minor)
    units, minor = divmod(amount_minor, 10**exponent)
    return f"{units}{decimal_mark}{minor:0{exponent}d}"


def fee_for(amount_minor: int, *, fixed_minor: int, rate_bp: int, max_minor: int | None) -> int:
    """Fixed part plus basis points of the amount (rounded half up), capped when configured."""
    variable = (amount_minor * rate_bp + 5_000) // 10_000
    fee = fixed_minor + variable
    return fee if max_minor is None else min(fee, max_minor)
