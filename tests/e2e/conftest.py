"""The whole suite as real processes: bank simulator, ledger, router and payout, on throw-away
databases and broker names of this test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support import infra
from tests.support.processes import ServiceProcess, free_port

HERE = Path(__file__).parent
TOKEN = "e2e-service-token-0123456789"
BANK_KEY = "e2e-bank-client-key-0123456789"
CALLBACK_SECRET = "e2e-bank-callback-secret-0123"
ADMIN_KEY = "e2e-admin-key-0123456789"
BANKS = ("northbank", "atlas")
# northbank is cheaper, so it is chosen first; atlas is the fallback.
CHANNELS = [
    {"id": "ch_e2e_north", "bank": "northbank", "currency": "EUR", "fee_minor": 10},
    {"id": "ch_e2e_atlas", "bank": "atlas", "currency": "EUR", "fee_minor": 40},
]


@dataclass
class Suite:
    banksim: ServiceProcess
    ledger: ServiceProcess
    router: ServiceProcess
    payout: ServiceProcess
    ledger_settings: Any

    @property
    def processes(self) -> list[ServiceProcess]:
        return [self.banksim, self.ledger, self.router, self.payout]


@pytest.fixture(scope="package")
def suite(
    run_id: str, amqp_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    from services.ledger.adapters.roles import drop_app_role
    from services.ledger.settings import from_env as ledger_from_env

    config = tmp_path_factory.mktemp("e2e-config")
    (config / "channels.yaml").write_text(yaml.safe_dump({"channels": CHANNELS}))
    (config / "rules.yaml").write_text(yaml.safe_dump({"rules": []}))
    ports = {name: free_port() for name in ("banksim", "ledger", "router", "payout")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = {
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": f"{run_id}_e2e_",
        "AMQP_URL": infra.amqp_url(),
        "AMQP_PREFIX": f"{amqp_prefix}.e2e",
        "SERVICE_TOKEN": TOKEN,
        "BANKSIM_CLIENT_KEY": BANK_KEY,
        "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
        "LEDGER_URL": urls["ledger"],
        "ROUTER_URL": urls["router"],
        "BANKSIM_URL": urls["banksim"],
        "LOG_LEVEL": "info",
        "DB_POOL_MAX": "6",  # one PostgreSQL server is shared by every test run on this machine
    }
    ledger_env = {
        **common,
        "LEDGER_PORT": str(ports["ledger"]),
        "LEDGER_DB_APP_ROLE": f"{run_id}_e2e_ledger_app",
    }
    banksim = ServiceProcess(
        "e2e-banksim",
        "services.banksim",
        {
            **common,
            "BANKSIM_PORT": str(ports["banksim"]),
            "BANKSIM_CONFIG": str(HERE / "banks.yaml"),
            "RECON_DROP_DIR": str(tmp_path_factory.mktemp("e2e-drop")),
            "BANKSIM_EOD_ENABLED": "false",
            "BANKSIM_SEED": "11",
        },
        ports["banksim"],
    )
    ledger = ServiceProcess("e2e-ledger", "services.ledger", ledger_env, ports["ledger"])
    router = ServiceProcess(
        "e2e-router",
        "services.router",
        {
            **common,
            "ROUTER_PORT": str(ports["router"]),
            "ROUTER_CHANNELS_FILE": str(config / "channels.yaml"),
            "ROUTER_RULES_FILE": str(config / "rules.yaml"),
            "ROUTER_BANK_TIMEOUT_MS": "1500",
            # The router's own inquiry loop waits long, so the payout janitor's inquiry is what
            # resolves a lost response in these tests.
            "ROUTER_INQUIRY_BASE_MS": "600000",
            "ROUTER_INQUIRY_MAX_MS": "600000",
            "ROUTER_RECOVERY_POLL_MS": "200",
        },
        ports["router"],
    )
    payout = ServiceProcess(
        "e2e-payout",
        "services.payout",
        {
            **common,
            "PAYOUT_PORT": str(ports["payout"]),
            "ADMIN_API_KEY": ADMIN_KEY,
            "PAYOUT_TX_LEASE_S": "2",
            "PAYOUT_RECOVERY_INTERVAL_MS": "100",
            "PAYOUT_RETRY_BASE_MS": "50",
            "PAYOUT_RETRY_MAX_MS": "500",
            "PAYOUT_INQUIRY_SCHEDULE_S": "1,2",
            "PAYOUT_WEBHOOK_RETRY_BASE_MS": "100",
            "PAYOUT_WEBHOOK_RETRY_MAX_MS": "400",
            "PAYOUT_PARTICIPANT_TIMEOUT_MS": "5000",
            "PAYOUT_SUBMISSION_TIMEOUT_MS": "15000",
            "DB_POOL_MAX": "6",  # the shared server has max_connections=100
        },
        ports["payout"],
    )
    started: list[ServiceProcess] = []
    try:
        for proc in (banksim, ledger, router, payout):
            proc.start(ready_timeout_s=60)
            started.append(proc)
        yield Suite(banksim, ledger, router, payout, ledger_from_env(ledger_env))
    finally:
        for proc in reversed(started):
            proc.stop()
        settings = ledger_from_env(ledger_env)
        try:
            infra.run(drop_app_role([settings.owner_dsn], settings.app_role))
        except Exception:  # the role may never have been created
            pass
        prefix = f"{amqp_prefix}.e2e"
        infra.run(
            infra.delete_broker_names(
                prefix,
                [
                    f"{prefix}.{q}"
                    for q in (
                        "payout.attempt_outcomes",
                        "payout.recon_outcomes",
                        "payout.webhooks",
                    )
                ],
            )
        )


class Api:
    """HTTP helpers over the real processes."""

    def __init__(self, session: aiohttp.ClientSession, suite: Suite) -> None:
        self.session = session
        self.suite = suite
        self.service = {"X-Service-Token": TOKEN}
        self.admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def call(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.session.request(method, url, json=json, headers=headers) as resp:
            text = await resp.text()
            body = await resp.json(content_type=None) if text else None
            return resp.status, body, dict(resp.headers)

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data, _ = await self.call(
            method, self.suite.payout.url + path, json=body, headers=self.admin_headers
        )
        return status, data

    async def behave(self, bank: str, mode: str = "normal", **overrides: Any) -> None:
        body: dict[str, Any] = {"mode": mode}
        if overrides:
            body["overrides"] = overrides
        status, data, _ = await self.call(
            "PUT",
            f"{self.suite.banksim.url}/admin/banks/{bank}/behaviour",
            json=body,
            headers=self.service,
        )
        assert status == 200, data

    async def executed(self, bank: str) -> list[dict[str, Any]]:
        status, page, _ = await self.call(
            "GET",
            f"{self.suite.banksim.url}/admin/banks/{bank}/executed?limit=5000",
            headers=self.service,
        )
        assert status == 200, page
        return list(page["transfers"])

    async def ledger_account(self, account_id: str) -> dict[str, Any]:
        status, body, _ = await self.call(
            "GET", f"{self.suite.ledger.url}/v1/accounts/{account_id}", headers=self.service
        )
        assert status == 200, body
        return dict(body)

    async def submission(self, payout_id: str) -> dict[str, Any]:
        status, body, _ = await self.call(
            "GET", f"{self.suite.router.url}/v1/submissions/{payout_id}", headers=self.service
        )
        assert status == 200, body
        return dict(body)

    async def merchant(
        self,
        *,
        funds: int = 10_000_000,
        limits: dict[str, int | None] | None = None,
        fees: dict[str, int] | None = None,
    ) -> Merchant:
        status, merchant = await self.admin(
            "POST",
            "/admin/merchants",
            {
                "name": "E2E Merchant",
                "currencies": ["EUR"],
                "limits": limits or {},
                "fees": fees or {"fixed": 30, "bps": 10},
            },
        )
        assert status == 201, merchant
        if funds:
            status, funding = await self.admin(
                "POST",
                f"/admin/merchants/{merchant['id']}/fundings",
                {"amount": funds, "currency": "EUR", "reference": f"seed-{uuid.uuid4().hex[:8]}"},
            )
            assert status == 201, funding
        return Merchant(self, merchant["id"], merchant["secret_key"])


@dataclass
class Merchant:
    api: Api
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def create(
        self, body: dict[str, Any], key: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        return await self.api.call(
            "POST",
            self.api.suite.payout.url + "/v1/payouts",
            json=body,
            headers={**self.headers, "Idempotency-Key": key or uuid.uuid4().hex},
        )

    async def get(self, path: str) -> tuple[int, Any]:
        status, body, _ = await self.api.call(
            "GET", self.api.suite.payout.url + path, headers=self.headers
        )
        return status, body

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        status, data, _ = await self.api.call(
            "POST", self.api.suite.payout.url + path, json=body, headers=self.headers
        )
        return status, data

    async def payout(self, payout_id: str) -> dict[str, Any]:
        status, body = await self.get(f"/v1/payouts/{payout_id}")
        assert status == 200, body
        return dict(body)

    async def account(self) -> dict[str, Any]:
        return await self.api.ledger_account(f"{self.id}.EUR")


def payout_body(
    amount: int = 10_000, account: str = "GB29NWBK60161331926819", reference: str | None = None
) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "EUR",
        "beneficiary": {"name": "Jane Doe", "account_number": account, "bank_code": "NRTHGB2L"},
        "reference": reference or f"e2e-{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture
async def api(suite: Suite) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        client = Api(session, suite)
        for bank in BANKS:
            await client.behave(bank)
        yield client
        for bank in BANKS:
            await client.behave(bank)
