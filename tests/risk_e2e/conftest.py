"""The whole suite as real processes (bank simulator, ledger, router, payout, recon) for the
risk controls end to end: rule sets published through the payout admin API, payouts through
the merchant API, alerts read back from recon's alert API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from services.kit import db
from tests.support import infra
from tests.support.suite import ADMIN_KEY, FINANCE_KEY, SERVICE_TOKEN, Suite, SuiteSpec

BANKS_FILE = infra.ROOT / "tests" / "e2e" / "banks.yaml"
CHANNELS = [
    {"id": "ch_risk_north", "bank": "northbank", "currency": "EUR", "fee_minor": 10},
    {"id": "ch_risk_atlas", "bank": "atlas", "currency": "EUR", "fee_minor": 40},
]
BANKS = ("northbank", "atlas")
RECON_ALERT_QUEUE = "recon.payout_alerts"


@pytest.fixture(scope="package")
def stack(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    spec = SuiteSpec(
        workdir=tmp_path_factory.mktemp("risk-e2e"),
        banks_file=BANKS_FILE,
        channels=CHANNELS,
        run_id=run_id,
        name="risk",
        with_recon=True,
        # One PostgreSQL server is shared by every test run on this machine.
        env={"DB_POOL_MAX": "4"},
        service_env={
            # The publish-under-load test offers a few hundred requests a second.
            "payout": {"PAYOUT_RATE_LIMIT_PER_S": "5000", "PAYOUT_RATE_LIMIT_BURST": "5000"},
            "recon": {"RECON_INTAKE_ENABLED": "false"},
        },
    )
    suite = Suite(spec)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
        suite.cleanup()
        prefix = spec.amqp_prefix
        # Suite.cleanup removes the payout queues; recon's alert queue is removed here.
        infra.run(infra.delete_broker_names(prefix, [f"{prefix}.{RECON_ALERT_QUEUE}"]))


@dataclass
class Merchant:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Client:
    """HTTP over the real processes; every call returns (status, body)."""

    def __init__(self, session: aiohttp.ClientSession, suite: Suite) -> None:
        self.session = session
        self.suite = suite
        self.admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.service_headers = {"X-Service-Token": SERVICE_TOKEN}
        self.finance_headers = {"Authorization": f"Bearer {FINANCE_KEY}"}

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        async with self.session.request(method, url, json=json, data=data, headers=headers) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None

    def url(self, service: str, path: str) -> str:
        return self.suite.urls[service] + path

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call(
            method, self.url("payout", path), json=body, headers=self.admin_headers
        )

    async def merchant(self, *, funds_minor: int = 5_000_000) -> Merchant:
        status, merchant = await self.admin(
            "POST",
            "/admin/merchants",
            {
                "name": "Risk E2E",
                "currencies": ["EUR"],
                "limits": {},
                "fees": {"fixed": 30, "bps": 10},
            },
        )
        assert status == 201, merchant
        if funds_minor:
            status, funding = await self.admin(
                "POST",
                f"/admin/merchants/{merchant['id']}/fundings",
                {
                    "amount": funds_minor,
                    "currency": "EUR",
                    "reference": f"seed-{uuid.uuid4().hex[:8]}",
                },
            )
            assert status == 201, funding
        return Merchant(merchant["id"], merchant["secret_key"])

    async def create_payout(
        self, merchant: Merchant, body: dict[str, Any], *, payout_url: str | None = None
    ) -> tuple[int, Any]:
        return await self.call(
            "POST",
            (payout_url or self.suite.urls["payout"]) + "/v1/payouts",
            json=body,
            headers={**merchant.headers, "Idempotency-Key": uuid.uuid4().hex},
        )

    async def payout(self, merchant: Merchant, payout_id: str) -> dict[str, Any]:
        status, body = await self.call(
            "GET", self.url("payout", f"/v1/payouts/{payout_id}"), headers=merchant.headers
        )
        assert status == 200, body
        return dict(body)

    async def publish_rules(
        self, document: dict[str, Any], *, payout_url: str | None = None
    ) -> int:
        base = payout_url or self.suite.urls["payout"]
        status, stored = await self.call(
            "POST",
            base + "/admin/risk/rulesets",
            data=yaml.safe_dump(document).encode(),
            headers={**self.admin_headers, "Content-Type": "application/yaml"},
        )
        assert status == 201, stored
        status, published = await self.call(
            "POST",
            base + f"/admin/risk/rulesets/{stored['version']}/publish",
            headers=self.admin_headers,
        )
        assert status == 200 and published["published_at"], published
        return int(stored["version"])

    async def engine_version(self, payout_url: str) -> int:
        status, body = await self.call(
            "GET", payout_url + "/admin/risk/engine", headers=self.admin_headers
        )
        assert status == 200, body
        return int(body["version"])

    async def ledger_account(self, account_id: str) -> dict[str, Any]:
        status, body = await self.call(
            "GET", self.url("ledger", f"/v1/accounts/{account_id}"), headers=self.service_headers
        )
        assert status == 200, body
        return dict(body)

    async def executed(self, bank: str) -> list[dict[str, Any]]:
        """The bank simulator's truth journal: every transfer it received, all pages."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            status, page = await self.call(
                "GET",
                self.url("banksim", f"/admin/banks/{bank}/executed?after={after}&limit=1000"),
                headers=self.service_headers,
            )
            assert status == 200, page
            out.extend(page["transfers"])
            if page["next_after"] is None:
                return out
            after = page["next_after"]

    async def recon_alerts(self, **query: str) -> list[dict[str, Any]]:
        async with self.session.get(
            self.url("recon", "/v1/recon/alerts"), params=query, headers=self.finance_headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["alerts"])


@pytest.fixture
async def client(stack: Suite) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Client(session, stack)


@pytest.fixture
async def payout_db(stack: Suite) -> AsyncIterator[asyncpg.Pool]:
    """Read-only look at what the payout service recorded (risk version, outcome, rules)."""
    dsn = db.service_dsn(stack.spec.database_url, stack.spec.db_prefix, "payout")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    yield pool
    await pool.close()


def payout_body(
    *,
    amount_minor: int = 10_000,
    account: str = "GB29NWBK60161331926819",
    name: str = "Jane Doe",
) -> dict[str, Any]:
    return {
        "amount": amount_minor,
        "currency": "EUR",
        "beneficiary": {"name": name, "account_number": account, "bank_code": "NRTHGB2L"},
        "reference": f"risk-{uuid.uuid4().hex[:12]}",
    }
