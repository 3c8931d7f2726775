"""The payout service in-process against real PostgreSQL and RabbitMQ, with scripted ledger and
router stand-ins (tests/payout/fakes.py). Each test gets its own database and broker names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.kit import db, migrations
from services.payout import delivery
from services.payout.app import create_app
from services.payout.entrypoints import consumers
from services.payout.settings import Settings, from_env
from tests.payout.fakes import FakeLedger, FakeRouter
from tests.support import infra

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "test-admin-key-0123456789"


@dataclass
class Harness:
    client: TestClient
    settings: Settings
    dsn: str
    ledger: FakeLedger
    router: FakeRouter
    admin_headers: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {ADMIN_KEY}"}
    )

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.client.request(method, path, json=body, headers=self.admin_headers)
        return resp.status, await resp.json()

    async def merchant(
        self,
        *,
        funds: int = 1_000_000,
        currency: str = "EUR",
        limits: dict[str, int | None] | None = None,
        fees: dict[str, int] | None = None,
    ) -> Merchant:
        body: dict[str, Any] = {"name": "Acme", "currencies": [currency]}
        body["limits"] = limits or {}
        body["fees"] = fees or {"fixed": 25, "bps": 10}
        status, merchant = await self.admin("POST", "/admin/merchants", body)
        assert status == 201, merchant
        if funds:
            status, funding = await self.admin(
                "POST",
                f"/admin/merchants/{merchant['id']}/fundings",
                {"amount": funds, "currency": currency, "reference": "seed"},
            )
            assert status == 201, funding
        return Merchant(self, merchant["id"], merchant["secret_key"])

    async def fetchval(self, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@dataclass
class Merchant:
    harness: Harness
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def post_payout(
        self, body: dict[str, Any], key: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        headers = dict(self.headers)
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
        resp = await self.harness.client.post("/v1/payouts", json=body, headers=headers)
        return resp.status, await resp.json(), dict(resp.headers)

    async def get(self, path: str) -> tuple[int, Any]:
        resp = await self.harness.client.get(path, headers=self.headers)
        return resp.status, await resp.json()

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.harness.client.post(path, json=body, headers=self.headers)
        return resp.status, await resp.json()

    async def status_of(self, payout_id: str) -> str:
        status, body = await self.get(f"/v1/payouts/{payout_id}")
        assert status == 200, body
        return str(body["status"])


def payout_body(
    amount: int = 10_000, account: str = "DE89370400440532013000", reference: str | None = None
) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "EUR",
        "beneficiary": {"name": "Jane Doe", "account_number": account, "bank_code": "NRTHGB2L"},
        "reference": reference or f"ref-{uuid.uuid4().hex[:12]}",
        "metadata": {"order": "42"},
    }


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def make_harness(run_id: str, amqp_prefix: str) -> AsyncIterator[Any]:
    """Build a harness; keyword arguments become environment variables of the service."""
    started: list[tuple[TestClient, list[TestServer], str, str]] = []

    async def build(share_with: Harness | None = None, **env: str) -> Harness:
        """``share_with``: a second instance of the same deployment (database, broker, fakes)."""
        if share_with is not None:
            ledger, router = share_with.ledger, share_with.router
            prefix = share_with.settings.db_name_prefix
            broker_prefix = share_with.settings.amqp_prefix
            ledger_url, router_url = share_with.settings.ledger_url, share_with.settings.router_url
            servers: list[TestServer] = []
        else:
            ledger, router = FakeLedger(), FakeRouter()
            ledger_server = await _serve(ledger.app())
            router_server = await _serve(router.app())
            servers = [ledger_server, router_server]
            ledger_url = str(ledger_server.make_url("")).rstrip("/")
            router_url = str(router_server.make_url("")).rstrip("/")
            tag = uuid.uuid4().hex[:6]
            prefix = f"{run_id}_{tag}_"
            broker_prefix = f"{amqp_prefix}.{tag}"
        dsn = db.service_dsn(infra.database_url(), prefix, "payout")
        await db.ensure_database(infra.database_url(), prefix + "payout")
        await migrations.apply(dsn, ROOT / "services" / "payout" / "migrations")
        environ = {
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": prefix,
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": broker_prefix,
            "LEDGER_URL": ledger_url,
            "ROUTER_URL": router_url,
            "ADMIN_API_KEY": ADMIN_KEY,
            "PAYOUT_TX_LEASE_S": "2",
            "PAYOUT_RECOVERY_INTERVAL_MS": "50",
            "PAYOUT_RETRY_BASE_MS": "20",
            "PAYOUT_RETRY_MAX_MS": "200",
            "PAYOUT_INQUIRY_SCHEDULE_S": "1",
            "PAYOUT_WEBHOOK_RETRY_BASE_MS": "50",
            "PAYOUT_WEBHOOK_RETRY_MAX_MS": "200",
            "PAYOUT_PARTICIPANT_TIMEOUT_MS": "2000",
            "DB_POOL_MAX": "8",
            **env,
        }
        settings = from_env(environ)
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        started.append((client, servers, broker_prefix, settings.instance_id))
        return Harness(client, settings, dsn, ledger, router)

    yield build
    for client, servers, _prefix, _instance in reversed(started):
        await client.close()
        for server in servers:
            await server.close()
    for _client, _servers, broker_prefix, instance in started:
        queues = [
            f"{broker_prefix}.{name}"
            for name in (
                consumers.ATTEMPTS_CONSUMER,
                consumers.RECON_CONSUMER,
                delivery.CONSUMER,
                f"payout.risk.{instance}",
            )
        ]
        await infra.delete_broker_names(broker_prefix, queues)


@pytest.fixture
async def harness(make_harness: Any) -> Harness:
    built: Harness = await make_harness()
    return built
