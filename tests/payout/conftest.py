"""The payout service in-process (aiohttp TestServer, its own throw-away database per test)
against the REAL ledger, router, reconciliation and bank simulator, started once per session
as processes on throw-away databases and broker names. The bank simulator is the only
simulated party: a test produces a bank outcome through it (``INVALID…`` account numbers,
behaviour modes), and a flaky participant by stopping the real process."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from services.kit import db, migrations
from services.payout import delivery
from services.payout.app import create_app
from services.payout.entrypoints import consumers
from services.payout.settings import Settings, from_env
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
ADMIN_KEY = "test-admin-key-0123456789"
TOKEN = "payout-tests-service-token-0123456789"
BANK_KEY = "payout-tests-bank-key-0123456789"
CALLBACK_SECRET = "payout-tests-callback-secret-0123"
FINANCE_KEY = "payout-tests-finance-key-0123456789"
BANK = "northbank"
CHANNEL = "ch_payout_north"
CHANNELS = [{"id": CHANNEL, "bank": BANK, "currency": "EUR", "fee_minor": 10}]
PAYOUT_QUEUES = (consumers.ATTEMPTS_CONSUMER, consumers.RECON_CONSUMER, delivery.CONSUMER)


@dataclass
class Participants:
    """The real services a payout talks to, shared by every test of the session."""

    banksim: ServiceProcess
    ledger: ServiceProcess
    router: ServiceProcess
    recon: ServiceProcess
    db_prefix: str
    amqp_prefix: str
    drop_dir: Path


@pytest.fixture(scope="package")
def participants(
    run_id: str, amqp_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Participants]:
    from services.ledger.adapters.roles import drop_app_role
    from services.ledger.settings import from_env as ledger_from_env

    work = tmp_path_factory.mktemp("payout-participants")
    (work / "channels.yaml").write_text(yaml.safe_dump({"channels": CHANNELS}))
    (work / "rules.yaml").write_text(yaml.safe_dump({"rules": []}))
    # No cut-off check (expect_daily false) so a run is the same at any hour.
    recon_channels = {BANK: {"window_days": 0, "currencies": ["EUR"]}}
    (work / "recon-channels.yaml").write_text(yaml.safe_dump({"channels": recon_channels}))
    drop_dir = work / "drop"
    drop_dir.mkdir()
    ports = {name: free_port() for name in ("banksim", "ledger", "router", "recon")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    db_prefix = f"{run_id}_pp_"
    broker_prefix = f"{amqp_prefix}.pp"
    common = {
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": db_prefix,
        "AMQP_URL": infra.amqp_url(),
        "AMQP_PREFIX": broker_prefix,
        "SERVICE_TOKEN": TOKEN,
        "BANKSIM_CLIENT_KEY": BANK_KEY,
        "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
        "LEDGER_URL": urls["ledger"],
        "ROUTER_URL": urls["router"],
        "BANKSIM_URL": urls["banksim"],
        "RECON_DROP_DIR": str(drop_dir),
        "LOG_LEVEL": "info",
        "DB_POOL_MAX": "4",  # one PostgreSQL server is shared by every test run on this machine
    }
    ledger_env = {
        **common,
        "LEDGER_PORT": str(ports["ledger"]),
        "LEDGER_DB_APP_ROLE": f"{db_prefix}ledger_app",
    }
    banksim = ServiceProcess(
        "payout-banksim",
        "services.banksim",
        {
            **common,
            "BANKSIM_PORT": str(ports["banksim"]),
            "BANKSIM_CONFIG": str(HERE / "banks.yaml"),
            "BANKSIM_EOD_ENABLED": "false",
            "BANKSIM_SEED": "23",
        },
        ports["banksim"],
    )
    ledger = ServiceProcess("payout-ledger", "services.ledger", ledger_env, ports["ledger"])
    router = ServiceProcess(
        "payout-router",
        "services.router",
        {
            **common,
            "ROUTER_PORT": str(ports["router"]),
            "ROUTER_CHANNELS_FILE": str(work / "channels.yaml"),
            "ROUTER_RULES_FILE": str(work / "rules.yaml"),
            "ROUTER_BANK_TIMEOUT_MS": "1000",
            # The router's own inquiry loop waits long: what resolves an unknown attempt in these
            # tests is the payout janitor's inquiry (or a bank callback for an accepted one).
            "ROUTER_INQUIRY_BASE_MS": "600000",
            "ROUTER_INQUIRY_MAX_MS": "600000",
            "ROUTER_RECOVERY_POLL_MS": "200",
        },
        ports["router"],
    )
    recon = ServiceProcess(
        "payout-recon",
        "services.recon",
        {
            **common,
            "RECON_PORT": str(ports["recon"]),
            "RECON_DATA_DIR": str(work / "recon-data"),
            "RECON_CHANNELS_FILE": str(work / "recon-channels.yaml"),
            "RECON_SCAN_INTERVAL_MS": "100",
            "RECON_FINANCE_KEY": FINANCE_KEY,
            "DB_POOL_MAX": "3",
        },
        ports["recon"],
    )
    started: list[ServiceProcess] = []
    try:
        for proc in (banksim, ledger, router, recon):
            proc.start(ready_timeout_s=60)
            started.append(proc)
        yield Participants(banksim, ledger, router, recon, db_prefix, broker_prefix, drop_dir)
    finally:
        for proc in reversed(started):
            proc.stop()
        settings = ledger_from_env(ledger_env)
        try:
            infra.run(drop_app_role([settings.owner_dsn], settings.app_role))
        except Exception:  # the role may never have been created
            pass
        infra.run(
            infra.delete_broker_names(
                broker_prefix, [f"{broker_prefix}.{q}" for q in PAYOUT_QUEUES]
            )
        )


@dataclass
class Harness:
    client: TestClient
    settings: Settings
    dsn: str
    parts: Participants
    http: aiohttp.ClientSession
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

    # --- the real participants, over their own HTTP APIs ---

    async def call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, url, json=body, headers={"X-Service-Token": TOKEN}
        ) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None

    async def ledger_account(self, account_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"{self.parts.ledger.url}/v1/accounts/{account_id}")
        assert status == 200, body
        return dict(body)

    async def held(self, merchant: Merchant) -> int:
        """What the ledger holds on the merchant's account (pending debits)."""
        return int((await self.ledger_account(f"{merchant.id}.EUR"))["debits_pending"])

    async def submission(self, payout_id: str) -> tuple[int, Any]:
        """The router's submission of a payout: 404 when no bank was ever asked."""
        return await self.call("GET", f"{self.parts.router.url}/v1/submissions/{payout_id}")

    async def executions(self, payout_id: str) -> int:
        """How many times the bank really executed this payout (its truth journal)."""
        status, submission = await self.submission(payout_id)
        if status == 404:
            return 0
        references = {a["attempt_id"] for a in submission["attempts"]}
        status, page = await self.call(
            "GET", f"{self.parts.banksim.url}/admin/banks/{BANK}/executed?limit=5000"
        )
        assert status == 200, page
        return sum(
            1
            for t in page["transfers"]
            if t["reference"] in references and t["status"] in ("paid", "accepted")
        )

    async def behave(self, mode: str = "normal", **overrides: Any) -> None:
        body: dict[str, Any] = {"mode": mode}
        if overrides:
            body["overrides"] = overrides
        status, data = await self.call(
            "PUT", f"{self.parts.banksim.url}/admin/banks/{BANK}/behaviour", body
        )
        assert status == 200, data

    async def gid_of(self, payout_id: str) -> str:
        return str(await self.fetchval("SELECT gid FROM global_tx WHERE payout_id = $1", payout_id))


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

    async def account(self) -> dict[str, Any]:
        return await self.harness.ledger_account(f"{self.id}.EUR")


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


async def _purge(broker_prefix: str) -> None:
    """Events left by an earlier test's payout instance (same broker names) are dropped."""
    connection = await aio_pika.connect(infra.amqp_url())
    try:
        channel = await connection.channel()
        for name in PAYOUT_QUEUES:
            try:
                queue = await channel.get_queue(f"{broker_prefix}.{name}", ensure=True)
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()
                continue
            await queue.purge()
    finally:
        await connection.close()


@pytest.fixture
async def make_harness(participants: Participants, run_id: str) -> AsyncIterator[Any]:
    """Build a harness; keyword arguments become environment variables of the service."""
    parts = participants
    for proc in (parts.ledger, parts.router):  # a test that stopped one must not leak it
        if proc.proc is None or proc.proc.poll() is not None:
            proc.start(ready_timeout_s=60)
    started: list[TestClient] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    await _purge(parts.amqp_prefix)

    async def build(share_with: Harness | None = None, **env: str) -> Harness:
        """``share_with``: a second instance of the same deployment (same database)."""
        if share_with is not None:
            prefix = share_with.settings.db_name_prefix
        else:
            prefix = f"{run_id}_{uuid.uuid4().hex[:6]}_"
        dsn = db.service_dsn(infra.database_url(), prefix, "payout")
        await db.ensure_database(infra.database_url(), prefix + "payout")
        await migrations.apply(dsn, ROOT / "services" / "payout" / "migrations")
        environ = {
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": prefix,
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": parts.amqp_prefix,
            # The same queue arguments as the participant processes, which inherit it.
            "AMQP_QUEUE_EXPIRES_MS": os.environ.get("AMQP_QUEUE_EXPIRES_MS", "0"),
            "SERVICE_TOKEN": TOKEN,
            "LEDGER_URL": parts.ledger.url,
            "ROUTER_URL": parts.router.url,
            "ADMIN_API_KEY": ADMIN_KEY,
            "PAYOUT_TX_LEASE_S": "2",
            "PAYOUT_RECOVERY_INTERVAL_MS": "50",
            "PAYOUT_RETRY_BASE_MS": "20",
            "PAYOUT_RETRY_MAX_MS": "200",
            "PAYOUT_INQUIRY_SCHEDULE_S": "1",
            "PAYOUT_WEBHOOK_RETRY_BASE_MS": "50",
            "PAYOUT_WEBHOOK_RETRY_MAX_MS": "200",
            "PAYOUT_PARTICIPANT_TIMEOUT_MS": "2000",
            "PAYOUT_SUBMISSION_TIMEOUT_MS": "5000",
            "DB_POOL_MAX": "5",
            **env,
        }
        settings = from_env(environ)
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        started.append(client)
        return Harness(client, settings, dsn, parts, http)

    yield build
    for client in reversed(started):
        await client.close()
    await http.close()
    # Leave the shared bank as the next test expects it.
    async with aiohttp.ClientSession() as session:
        async with session.put(
            f"{parts.banksim.url}/admin/banks/{BANK}/behaviour",
            json={"mode": "normal"},
            headers={"X-Service-Token": TOKEN},
        ) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
async def harness(make_harness: Any) -> Harness:
    built: Harness = await make_harness()
    return built
