"""Pure rules of the console: money in major units from integers, signed sessions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.recon.console import session
from services.recon.parsers.amounts import EXPONENTS, to_minor
from services.recon.reports.money import grouped, major, ppm_percent


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (123456, "EUR", "1234.56"),
        (5, "EUR", "0.05"),
        (-5, "EUR", "-0.05"),
        (500, "JPY", "500"),
        (1234567, "BHD", "1234.567"),
        (0, "KWD", "0.000"),
        (42, "XXX", "42"),  # unknown exponent: the integer, never a guess
        (None, "EUR", ""),
    ],
)
def test_major_units_are_computed_from_the_integer_and_the_currency_exponent(
    minor: int | None, currency: str, text: str
) -> None:
    assert major(minor, currency) == text


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(sorted(EXPONENTS)))
def test_major_text_round_trips_to_the_same_minor_units(minor: int, currency: str) -> None:
    text = major(minor, currency)
    assert Decimal(text) == Decimal(minor) / 10 ** EXPONENTS[currency]
    back = to_minor(text.lstrip("-"), currency)
    assert (-back if text.startswith("-") else back) == minor


def test_grouped_amounts_and_rates_read_well_on_pages() -> None:
    assert grouped(400011899, "EUR") == "4,000,118.99 EUR"
    assert grouped(-123456789, "JPY") == "-123,456,789 JPY"
    assert ppm_percent(781250) == "78.13%"
    assert ppm_percent(1_000_000) == "100.00%"
    assert ppm_percent(0) == "0.00%"


KEYS = {"finance": "finance-key-0123456789", "operator": "operator-key-0123456789"}
SECRET = "s" * 40


def test_a_session_cookie_reads_back_until_it_expires() -> None:
    cookie, issued = session.issue(SECRET, KEYS["finance"], "finance", "Fiona", 60, now=1000)
    assert session.read(cookie, SECRET, KEYS, now=1059) == issued
    assert session.read(cookie, SECRET, KEYS, now=1060) is None


def test_a_tampered_or_foreign_session_cookie_is_no_session() -> None:
    cookie, _ = session.issue(SECRET, KEYS["finance"], "finance", "Fiona", 60, now=1000)
    payload, mac = cookie.split(".")
    forged_role = payload.replace(payload[:4], payload[:4][::-1])
    assert session.read(f"{forged_role}.{mac}", SECRET, KEYS, now=1001) is None
    assert session.read(cookie, "t" * 40, KEYS, now=1001) is None  # another secret
    rotated = {**KEYS, "finance": "finance-key-rotated-000000"}
    assert session.read(cookie, SECRET, rotated, now=1001) is None  # key rotation ends it
    # A finance cookie cannot be replayed as an operator one.
    op_cookie, _ = session.issue(SECRET, KEYS["operator"], "operator", "Oscar", 60, now=1000)
    assert session.read(f"{payload}.{op_cookie.split('.')[1]}", SECRET, KEYS, now=1001) is None
    for junk in ("", "abc", "a.b.c", "x" * 5000, "e30.e30"):
        assert session.read(junk, SECRET, KEYS, now=1001) is None


def test_csrf_tokens_compare_in_constant_time_and_never_match_empty() -> None:
    assert session.csrf_ok("token", "token")
    assert not session.csrf_ok("token", "other")
    assert not session.csrf_ok("", "")
    assert not session.csrf_ok("token", None)
