"""Signed callbacks to the client's ``callback_url`` for asynchronous completions.

``Bank-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` — the receiver
recomputes the MAC over the raw body and rejects stale timestamps. Delivery is at least once:
leased in the database, retried with jittered exponential backoff up to a bounded number of
attempts, then marked ``failed`` (the client still has the status inquiry).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
from datetime import datetime, timedelta

import aiohttp

from contracts.wire import encode
from services.banksim.adapters.repository import Repository, TransferRow
from services.banksim.handlers import result_of
from services.kit.logging import get_logger

log = get_logger(__name__)

SIGNATURE_HEADER = "Bank-Signature"
BACKOFF_BASE_MS = 200
BACKOFF_MAX_MS = 60_000
LEASE = timedelta(seconds=30)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff(attempt: int) -> timedelta:
    """Full jitter over an exponential ceiling: retries of many callbacks do not align."""
    ceiling = min(BACKOFF_BASE_MS * 2**attempt, BACKOFF_MAX_MS)
    return timedelta(milliseconds=random.uniform(BACKOFF_BASE_MS / 2, ceiling))


async def deliver_due(
    repo: Repository,
    session: aiohttp.ClientSession,
    *,
    secret: str,
    now: datetime,
    batch_max: int,
    attempts_max: int,
    timeout_s: float,
) -> int:
    claimed = await repo.claim_callbacks(now, batch_max, LEASE)

    async def one(row_attempts: tuple[TransferRow, int]) -> None:
        row, attempts = row_attempts
        assert row.callback_url is not None
        body = encode(result_of(row))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body, int(now.timestamp())),
        }
        try:
            async with session.post(
                row.callback_url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                ok = 200 <= response.status < 300
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, status = False, type(exc).__name__
        if ok:
            await repo.callback_delivered(row.id)
            log.info("bank_callback_delivered", bank=row.bank, reference=row.reference)
            return
        give_up = attempts + 1 >= attempts_max
        await repo.callback_failed(row.id, retry_at=None if give_up else now + backoff(attempts))
        log.warning(
            "bank_callback_failed",
            bank=row.bank,
            reference=row.reference,
            status=status,
            attempt=attempts + 1,
            gave_up=give_up,
        )

    await asyncio.gather(*(one(item) for item in claimed))
    return len(claimed)
