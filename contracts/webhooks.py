"""Verify the ``Payments-Signature`` header of a webhook — pure standard library, so a merchant
can copy this file into their own code (docs/WEBHOOKS.md).

The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``. Several
``v1`` values may appear while a secret is being rotated; any one matching is enough. The
timestamp is checked against a tolerance so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Payments-Signature"
DEFAULT_TOLERANCE_S = 300


class WebhookSignatureError(ValueError):
    """The header is missing, malformed, too old, or no signature matches."""


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` (what the sender puts in ``Payments-Signature``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Return the signed timestamp if ``header`` is a valid signature of the raw ``body``.

    Raises ``WebhookSignatureError`` otherwise. Pass the body exactly as received (bytes),
    before any JSON parsing: re-serialised JSON would not match.
    """
    if not header:
        raise WebhookSignatureError("missing signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError("malformed signature header")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError("malformed timestamp") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError("signature header needs t= and v1=")
    current = time.time() if now is None else now
    if tolerance_s >= 0 and abs(current - timestamp) > tolerance_s:
        raise WebhookSignatureError("timestamp outside the tolerance")
    expected = compute_signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookSignatureError("no matching signature")
    return timestamp
