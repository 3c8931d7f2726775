from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.recon.domain.lines import StatementFormatError
from services.recon.parsers.amounts import EXPONENTS, from_minor, signed_to_minor, to_minor


@pytest.mark.parametrize(
    ("text", "currency", "separator", "minor"),
    [
        ("12.34", "EUR", ".", 1234),
        ("12,5", "EUR", ",", 1250),
        ("380115,", "EUR", ",", 38011500),
        ("00,12", "EUR", ",", 12),
        ("000000000147,64", "EUR", ",", 14764),
        ("5442.09000", "RON", ".", 544209),  # trailing zeros are exact
        ("2700", "JPY", ".", 2700),
        ("1.234", "KWD", ".", 1234),
        (",5", "EUR", ",", 50),
    ],
)
def test_decimal_text_becomes_exact_minor_units(
    text: str, currency: str, separator: str, minor: int
) -> None:
    assert to_minor(text, currency, separator=separator) == minor


@pytest.mark.parametrize("text", ["1.005", "0.001", "12.3456"])
def test_more_significant_decimals_than_the_currency_has_is_an_error_not_a_rounding(
    text: str,
) -> None:
    with pytest.raises(StatementFormatError, match="more decimals than EUR allows"):
        to_minor(text, "EUR", line_number=7)


def test_a_currency_without_a_known_exponent_is_rejected_naming_the_line() -> None:
    with pytest.raises(StatementFormatError) as e:
        to_minor("1.00", "XXX", line_number=12)
    assert e.value.line_number == 12 and "unknown currency" in e.value.reason


@pytest.mark.parametrize("text", ["", "12a", "1.2.3", "-5", " 5", "١٢"])
def test_text_that_is_not_an_unsigned_amount_is_rejected(text: str) -> None:
    with pytest.raises(StatementFormatError):
        to_minor(text, "EUR")


def test_signed_amounts_keep_their_sign() -> None:
    assert signed_to_minor("-12.50", "EUR") == -1250
    assert signed_to_minor("+3", "JPY") == 3


@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(sorted(EXPONENTS)),
    separator=st.sampled_from([".", ","]),
)
def test_rendering_then_parsing_an_amount_gives_it_back(
    amount: int, currency: str, separator: str
) -> None:
    text = from_minor(amount, currency, separator=separator)
    assert signed_to_minor(text, currency, separator=separator) == amount
