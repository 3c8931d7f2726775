"""HTTP client for the bank simulator: sends, inquires, and turns transport faults into
outcomes. Stateless apart from the shared session; never raises for a bank's behaviour."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from services.router.adapters.connectors.banksim import transformers
from services.router.domain.attempts import BankOutcome
from services.router.domain.health import OutcomeClass

BANK_KEY_HEADER = "X-Bank-Key"


@dataclass(frozen=True, slots=True)
class Timed:
    outcome: BankOutcome
    latency_ms: float


async def _read(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


class BanksimClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        client_key: str,
        *,
        timeout_ms: int,
        connect_timeout_ms: int,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {BANK_KEY_HEADER: client_key}
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_ms / 1000, connect=connect_timeout_ms / 1000
        )

    async def send(
        self,
        bank: str,
        *,
        reference: str,
        amount_minor: int,
        currency: str,
        beneficiary: dict[str, Any],
        callback_url: str | None,
        request_id: str | None = None,
    ) -> Timed:
        body: dict[str, Any] = {
            "reference": reference,
            "amount_minor": amount_minor,
            "currency": currency,
            "beneficiary": beneficiary,
        }
        if callback_url:
            body["callback_url"] = callback_url
        headers = dict(self._headers)
        if request_id:
            headers["Request-Id"] = request_id
        started = time.monotonic()
        try:
            async with self._session.post(
                f"{self._base}/banks/{bank}/transfers",
                json=body,
                headers=headers,
                timeout=self._timeout,
            ) as response:
                payload = await _read(response)
                outcome = transformers.from_transfer_response(
                    response.status, payload, reference=reference
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The connection was never established: the request cannot have reached the bank.
            outcome = BankOutcome(
                OutcomeClass.DEFINITE_NON_EXECUTION,
                failure_code="connection_refused",
                failure_message=f"could not connect: {type(exc).__name__}",
            )
        except TimeoutError:
            outcome = BankOutcome(
                OutcomeClass.UNKNOWN_OUTCOME,
                failure_code="timeout",
                failure_message="no reply within the timeout",
            )
        except (aiohttp.ClientError, OSError) as exc:
            # Reset or disconnect after sending: the bank may have executed it.
            outcome = BankOutcome(
                OutcomeClass.UNKNOWN_OUTCOME,
                failure_code="connection_lost",
                failure_message=f"{type(exc).__name__} after sending",
            )
        return Timed(outcome, (time.monotonic() - started) * 1000)

    async def inquire(self, bank: str, reference: str, request_id: str | None = None) -> Timed:
        headers = dict(self._headers)
        if request_id:
            headers["Request-Id"] = request_id
        started = time.monotonic()
        try:
            async with self._session.get(
                f"{self._base}/banks/{bank}/transfers/{reference}",
                headers=headers,
                timeout=self._timeout,
            ) as response:
                payload = await _read(response)
                outcome = transformers.from_inquiry_response(
                    response.status, payload, reference=reference
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            outcome = BankOutcome(
                OutcomeClass.UNKNOWN_OUTCOME,
                failure_code="inquiry_unreachable",
                failure_message=type(exc).__name__,
            )
        return Timed(outcome, (time.monotonic() - started) * 1000)
