"""HTTP clients for the TCC participants (ledger, router). Driver and network faults stop here:
callers get a ``Reply`` (a definite answer) or a ``Transient`` (try again later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from services.kit.http_client import correlation_headers


class Transient(Exception):
    """No definite answer (timeout, connection error, 5xx, unreadable body)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str | None:
        value = self.body.get("code")
        return str(value) if value is not None else None

    @property
    def message(self) -> str:
        return str(self.body.get("detail") or self.body.get("title") or f"HTTP {self.status}")


class _Client:
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str, timeout_ms: int
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> Reply:
        data = msgspec.json.encode(body) if body is not None else None
        headers = correlation_headers(self.token)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method,
                self.base_url + path,
                data=data,
                headers=headers,
                timeout=client_timeout or self.timeout,
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Transient(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if status >= 500 or status in (408, 429):
            raise Transient(f"{method} {path}: HTTP {status}")
        try:
            decoded = msgspec.json.decode(raw) if raw else {}
        except msgspec.DecodeError:
            raise Transient(f"{method} {path}: unreadable body (HTTP {status})") from None
        if not isinstance(decoded, dict):
            raise Transient(f"{method} {path}: unexpected body (HTTP {status})")
        return Reply(status, decoded)


class LedgerClient(_Client):
    async def create_account(
        self, account_id: str, currency: str, code: int, *, no_overdraft: bool
    ) -> Reply:
        return await self.call(
            "POST",
            "/v1/accounts",
            {
                "id": account_id,
                "currency": currency,
                "code": code,
                "flags": {
                    "debits_must_not_exceed_credits": no_overdraft,
                    "credits_must_not_exceed_debits": False,
                },
            },
        )

    async def account(self, account_id: str) -> Reply:
        return await self.call("GET", f"/v1/accounts/{account_id}")

    async def transfer(
        self, transfer_id: str, debit: str, credit: str, amount_minor: int, currency: str
    ) -> Reply:
        return await self.call(
            "POST",
            "/v1/transfers",
            {
                "transfers": [
                    {
                        "id": transfer_id,
                        "debit_account_id": debit,
                        "credit_account_id": credit,
                        "amount_minor": amount_minor,
                        "currency": currency,
                    }
                ]
            },
        )

    async def tcc(
        self, action: str, gid: str, branch_id: str, body: dict[str, Any] | None = None
    ) -> Reply:
        return await self.call("POST", f"/v1/tcc/{gid}/{branch_id}/{action}", body or {})


class RouterClient(_Client):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        timeout_ms: int,
        submission_timeout_ms: int,
    ) -> None:
        super().__init__(session, base_url, token, timeout_ms)
        self.submission_timeout = aiohttp.ClientTimeout(total=submission_timeout_ms / 1000)

    async def tcc(
        self, action: str, gid: str, branch_id: str, body: dict[str, Any] | None = None
    ) -> Reply:
        return await self.call("POST", f"/v1/tcc/{gid}/{branch_id}/{action}", body or {})

    async def submit(self, body: dict[str, Any]) -> Reply:
        return await self.call(
            "POST", "/v1/submissions", body, client_timeout=self.submission_timeout
        )

    async def inquire(self, payout_id: str) -> Reply:
        return await self.call(
            "POST",
            f"/v1/submissions/{payout_id}/inquire",
            {},
            client_timeout=self.submission_timeout,
        )

    async def submission(self, payout_id: str) -> Reply:
        return await self.call("GET", f"/v1/submissions/{payout_id}")
