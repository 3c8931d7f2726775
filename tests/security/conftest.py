"""The whole suite (bank simulator, ledger, router, payout, recon) as real processes for the
security tests, on throw-away databases and broker names of this test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.suite import (
    ADMIN_KEY,
    BANK_KEY,
    FINANCE_KEY,
    SERVICE_TOKEN,
    Suite,
    SuiteSpec,
)

HERE = Path(__file__).parent
BANKS_FILE = HERE.parent / "e2e" / "banks.yaml"
CHANNELS = [
    {"id": "ch_sec_north", "bank": "northbank", "currency": "EUR", "fee_minor": 10},
    {"id": "ch_sec_atlas", "bank": "atlas", "currency": "EUR", "fee_minor": 40},
]
# Small enough that a test can exhaust it quickly, large enough that fuzzing never hits it.
# The channel's own account at the bank: recon quarantines statements of any other account.
NORTHBANK_IBAN = "GB29NWBK60161331926819"
STATEMENT_MAX_BYTES = 64 * 1024
RATE_LIMIT_PER_S = 50
RATE_LIMIT_BURST = 100


@pytest.fixture(scope="package")
def stack(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    workdir = tmp_path_factory.mktemp("security")
    recon_channels = workdir / "recon-channels-security.yaml"
    recon_channels.write_text(
        yaml.safe_dump(
            {
                "channels": {
                    "northbank": {
                        "window_days": 0,
                        "currencies": ["EUR"],
                        "accounts": [NORTHBANK_IBAN],
                        "format": "csv",
                    },
                    "atlas": {"window_days": 0, "currencies": ["EUR"]},
                }
            }
        )
    )
    spec = SuiteSpec(
        workdir=workdir,
        banks_file=BANKS_FILE,
        channels=CHANNELS,
        run_id=run_id,
        name="sec",
        with_recon=True,
        # One PostgreSQL server is shared by every test run on this machine.
        env={"DB_POOL_MAX": "4"},
        service_env={
            "payout": {
                "PAYOUT_RATE_LIMIT_PER_S": str(RATE_LIMIT_PER_S),
                "PAYOUT_RATE_LIMIT_BURST": str(RATE_LIMIT_BURST),
                "PAYOUT_RECOVERY_INTERVAL_MS": "200",
            },
            "recon": {
                "RECON_CHANNELS_FILE": str(recon_channels),
                "RECON_STATEMENT_MAX_BYTES": str(STATEMENT_MAX_BYTES),
            },
        },
    )
    suite = Suite(spec)
    for process in suite:
        # Logs are appended per name and port: a reused port must not carry an older run's lines
        # into the log scan of this one.
        process.log_path.unlink(missing_ok=True)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
        suite.cleanup()


@dataclass
class Merchant:
    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Client:
    """HTTP helpers over the real processes; every call returns (status, body, headers)."""

    def __init__(self, session: aiohttp.ClientSession, suite: Suite) -> None:
        self.session = session
        self.suite = suite
        self.admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.service_headers = {"X-Service-Token": SERVICE_TOKEN}
        self.finance_headers = {"Authorization": f"Bearer {FINANCE_KEY}"}
        self.bank_headers = {"X-Bank-Key": BANK_KEY}

    def url(self, service: str, path: str) -> str:
        return self.suite.urls[service] + path

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.session.request(
            method, self.url(service, path), json=json, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            body: Any = raw
            if resp.content_type in ("application/json", "application/problem+json") and raw:
                body = await resp.json(content_type=None)
            return resp.status, body, dict(resp.headers)

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data, _ = await self.call(
            method, "payout", path, json=body, headers=self.admin_headers
        )
        return status, data

    async def merchant(self, *, funds: int = 10_000_000) -> Merchant:
        status, merchant = await self.admin(
            "POST",
            "/admin/merchants",
            {
                "name": "Security Merchant",
                "currencies": ["EUR"],
                "limits": {},
                "fees": {"fixed": 30, "bps": 10},
            },
        )
        assert status == 201, merchant
        if funds:
            status, funding = await self.admin(
                "POST",
                f"/admin/merchants/{merchant['id']}/fundings",
                {"amount": funds, "currency": "EUR", "reference": f"sec-{uuid.uuid4().hex[:8]}"},
            )
            assert status == 201, funding
        return Merchant(merchant["id"], merchant["secret_key"], merchant["api_keys"][0]["id"])


@pytest.fixture
async def client(stack: Suite) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Client(session, stack)


def payout_body(
    amount: int = 10_000, account: str = "GB29NWBK60161331926819", reference: str | None = None
) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "EUR",
        "beneficiary": {"name": "Jane Doe", "account_number": account, "bank_code": "NRTHGB2L"},
        "reference": reference or f"sec-{uuid.uuid4().hex[:12]}",
    }
