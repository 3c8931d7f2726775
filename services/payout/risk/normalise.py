"""Canonical forms of beneficiary identifiers, so list entries match however they are typed."""

from __future__ import annotations

import unicodedata


def normalise_name(name: str) -> str:
    """Casefold, strip accents, collapse whitespace: ``" José  ÁLVAREZ "`` → ``"jose alvarez"``."""
    if name.isascii():
        return " ".join(name.casefold().split())
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def normalise_account(account: str) -> str:
    """IBANs and account numbers are written with spaces or dashes; compare without them."""
    return "".join(ch for ch in account if ch not in " -\t").upper()


def normalise_bank(bank_code: str) -> str:
    return bank_code.strip().upper()
