"""Router test harness: the real bank simulator process, a fresh router database per test,
and the router app served in-process (real PostgreSQL, real RabbitMQ, real HTTP)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from services.kit import db, migrations
from services.router.app import create_app
from services.router.keys import service_key
from services.router.settings import Settings, from_env
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port

HERE = Path(__file__).parent
BANK_KEY = "router-tests-bank-key-0123456789"
CALLBACK_SECRET = "router-tests-callback-secret-0123"
SERVICE_TOKEN = "router-tests-service-token-0123"
BANKS = ("northbank", "meridian", "atlas")
MIGRATIONS = infra.ROOT / "services" / "router" / "migrations"

# One channel per bank, all EUR, fees that rank northbank > atlas > meridian for 10.00 EUR.
DEFAULT_CHANNELS: list[dict[str, Any]] = [
    {"id": "ch_north", "bank": "northbank", "currency": "EUR", "fee_minor": 10},
    {"id": "ch_atlas", "bank": "atlas", "currency": "EUR", "fee_minor": 20},
    {"id": "ch_meridian", "bank": "meridian", "currency": "EUR", "fee_minor": 30},
]


@pytest.fixture(scope="package")
def banksim(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    port = free_port()
    proc = ServiceProcess(
        "banksim-router-tests",
        "services.banksim",
        {
            "BANKSIM_PORT": str(port),
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": f"{run_id}_router_",  # not tests/banksim's database
            "BANKSIM_CONFIG": str(HERE / "banks.yaml"),
            "BANKSIM_CLIENT_KEY": BANK_KEY,
            "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "RECON_DROP_DIR": str(tmp_path_factory.mktemp("drop")),
            "BANKSIM_EOD_ENABLED": "false",
            "BANKSIM_SEED": "7",
        },
        port,
    )
    proc.start()
    yield proc
    # Killed, not drained: replies the chaos tests delayed on purpose would hold a graceful
    # stop for its whole timeout, and this database is thrown away anyway.
    proc.kill()


class BankAdmin:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"X-Service-Token": SERVICE_TOKEN}

    async def behave(self, bank: str, mode: str = "normal", **overrides: Any) -> None:
        body: dict[str, Any] = {"mode": mode}
        if overrides:
            body["overrides"] = overrides
        async with self.session.put(
            f"{self.url}/admin/banks/{bank}/behaviour", json=body, headers=self.headers
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def executed(self, bank: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            async with self.session.get(
                f"{self.url}/admin/banks/{bank}/executed",
                params={"after": after, "limit": 5000},
                headers=self.headers,
            ) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            out.extend(page["transfers"])
            if page["next_after"] is None:
                return out
            after = page["next_after"]

    async def executed_with_status(self, bank: str, status: str) -> list[dict[str, Any]]:
        """One page of the journal filtered by status (``processing``: received, not finished)."""
        async with self.session.get(
            f"{self.url}/admin/banks/{bank}/executed",
            params={"status": status, "limit": 5000},
            headers=self.headers,
        ) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["transfers"])

    async def reset(self) -> None:
        for bank in BANKS:
            await self.behave(bank)


@pytest.fixture
async def bank_admin(banksim: ServiceProcess) -> AsyncIterator[BankAdmin]:
    async with aiohttp.ClientSession() as session:
        admin = BankAdmin(session, banksim.url)
        await admin.reset()
        yield admin
        await admin.reset()


@dataclass
class Router:
    server: TestServer
    settings: Settings
    session: aiohttp.ClientSession
    channels_file: Path
    rules_file: Path

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))

    @property
    def service(self) -> Any:
        return self.server.app[service_key]

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Service-Token": SERVICE_TOKEN}

    async def call(
        self, method: str, path: str, *, json: Any = None, expect: int | None = 200, **kw: Any
    ) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        async with self.session.request(
            method, self.url + path, json=json, headers=headers, **kw
        ) as resp:
            text = await resp.text()
            if expect is not None:
                assert resp.status == expect, (method, path, resp.status, text)
            return await resp.json(content_type=None) if text else None


def write_yaml(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data))
    tmp.replace(path)


RouterFactory = Callable[..., Awaitable[Router]]


@pytest.fixture
async def make_router(
    run_id: str, amqp_prefix: str, banksim: ServiceProcess, tmp_path: Path
) -> AsyncIterator[RouterFactory]:
    """Build a router on a fresh database; several calls with the same ``db`` share one (two
    instances of one deployment)."""
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []
    prefixes: dict[str, str] = {}

    async def factory(
        *,
        channels: list[dict[str, Any]] | None = None,
        rules: list[dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        db_key: str = "main",
    ) -> Router:
        if db_key not in prefixes:
            prefixes[db_key] = f"{run_id}_{secrets.token_hex(3)}_"
            await db.ensure_database(infra.database_url(), prefixes[db_key] + "router")
            await migrations.apply(
                db.service_dsn(infra.database_url(), prefixes[db_key], "router"), MIGRATIONS
            )
        folder = tmp_path / secrets.token_hex(3)
        folder.mkdir()
        channels_file, rules_file = folder / "channels.yaml", folder / "rules.yaml"
        write_yaml(channels_file, {"channels": channels or DEFAULT_CHANNELS})
        write_yaml(rules_file, {"rules": rules or []})
        port = free_port()
        settings = from_env(
            {
                "DATABASE_URL": infra.database_url(),
                "AMQP_URL": infra.amqp_url(),
                "AMQP_PREFIX": amqp_prefix,
                "DB_NAME_PREFIX": prefixes[db_key],
                "SERVICE_TOKEN": SERVICE_TOKEN,
                "ROUTER_PORT": str(port),
                "BANKSIM_URL": banksim.url,
                "BANKSIM_CLIENT_KEY": BANK_KEY,
                "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
                "ROUTER_CHANNELS_FILE": str(channels_file),
                "ROUTER_RULES_FILE": str(rules_file),
                "ROUTER_CONFIG_POLL_MS": "100",
                "ROUTER_BANK_TIMEOUT_MS": "1500",
                "ROUTER_INQUIRY_BASE_MS": "200",
                "ROUTER_INQUIRY_MAX_MS": "1000",
                "ROUTER_RECOVERY_POLL_MS": "100",
                "ROUTER_NOT_FOUND_GRACE_MS": "3000",
                "ROUTER_PROBE_POLL_MS": "200",
                "ROUTER_KILL_SWITCH_REFRESH_MS": "200",
                "ROUTER_HEALTH_QUEUE_EXPIRY_MS": "10000",
                **(env or {}),
            }
        )
        server = TestServer(create_app(settings), port=port)
        await server.start_server()
        session = aiohttp.ClientSession()
        started.append((server, session))
        return Router(server, settings, session, channels_file, rules_file)

    yield factory
    for server, session in reversed(started):
        await session.close()
        await server.close()


def submission(payout_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "payout_id": payout_id or f"po_{secrets.token_hex(8)}",
        "gid": f"gtx_{secrets.token_hex(8)}",
        "merchant_id": "mer_test",
        "amount_minor": 1000,
        "currency": "EUR",
        "beneficiary": {
            "name": "Ada Lovelace",
            "account_number": "DE1234567890",
            "bank_code": "ABC",
        },
        "reference": "merchant-ref-1",
    }
    body.update(overrides)
    return body
