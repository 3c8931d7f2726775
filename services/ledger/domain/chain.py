"""The tamper-evident chain: each transfer's hash covers its own fields and its predecessor's
hash, in commit (``seq``) order. Changing, inserting or deleting any row breaks every later
link, so ``verify`` finds the first row that no longer matches."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

GENESIS_HASH = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SEPARATOR = "\x1f"


def epoch_us(moment: datetime | None) -> int:
    """Exact integer microseconds (float timestamps would round differently on re-read)."""
    if moment is None:
        return -1
    return (moment - _EPOCH) // _MICROSECOND


def transfer_hash(
    prev_hash: bytes,
    *,
    seq: int,
    id: str,
    kind: str,
    debit_account_id: str,
    credit_account_id: str,
    amount_minor: int,
    currency: str,
    pending_delta_minor: int,
    posted_delta_minor: int,
    pending_id: str | None,
    timeout_s: int,
    expires_at: datetime | None,
    code: int,
    body_hash: bytes,
    created_at: datetime,
) -> bytes:
    fields = (
        seq,
        id,
        kind,
        debit_account_id,
        credit_account_id,
        amount_minor,
        currency,
        pending_delta_minor,
        posted_delta_minor,
        pending_id or "",
        timeout_s,
        epoch_us(expires_at),
        code,
        body_hash.hex(),
        epoch_us(created_at),
    )
    digest = hashlib.sha256(prev_hash)
    digest.update(_SEPARATOR.join(map(str, fields)).encode())
    return digest.digest()
