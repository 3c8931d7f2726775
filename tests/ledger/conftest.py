"""Ledger fixtures: a throw-away database per session, the service's own role (named for this
run, dropped at the end), and an in-process app served over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.ledger.__main__ import prepare
from services.ledger.adapters.roles import drop_app_role
from services.ledger.app import create_app
from services.ledger.settings import Settings, from_env
from tests.support import infra

TOKEN = "ledger-test-service-token"


def ledger_env(run_id: str, prefix: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": prefix or f"{run_id}_",
        "LEDGER_DB_APP_ROLE": f"{run_id}_ledger_app",
        "SERVICE_TOKEN": TOKEN,
        "LOG_LEVEL": "warning",
        "LEDGER_EXPIRY_SWEEP_INTERVAL_MS": "50",
        "DB_POOL_MAX": "4",
        "AMQP_URL": infra.amqp_url(),
        "AMQP_PREFIX": f"test.{run_id}.ledger",
        "AMQP_QUEUE_EXPIRES_MS": "120000",
        **extra,
    }


@pytest.fixture(scope="package")
def granted_dsns() -> list[str]:
    """Every ledger database of this run in which the run's app role got grants."""
    return []


@pytest.fixture(scope="package")
def app_role(run_id: str, granted_dsns: list[str]) -> Iterator[str]:
    role = f"{run_id}_ledger_app"
    yield role
    if granted_dsns:
        infra.run(drop_app_role(granted_dsns, role))


@pytest.fixture(scope="package")
def settings(run_id: str, app_role: str, granted_dsns: list[str]) -> Settings:
    prepared = from_env(ledger_env(run_id))
    assert prepared.app_role == app_role
    infra.run(prepare(prepared))
    granted_dsns.append(prepared.owner_dsn)
    return prepared


async def fresh_settings(run_id: str, granted_dsns: list[str], name: str, **extra: str) -> Settings:
    """A separate ledger database (for tests that break the chain or need a clean slate)."""
    prepared = from_env(ledger_env(run_id, prefix=f"{run_id}_{name}_", **extra))
    await prepare(prepared)
    granted_dsns.append(prepared.owner_dsn)
    return prepared


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings)
    async with TestClient(TestServer(app), headers={"X-Service-Token": TOKEN}) as test_client:
        yield test_client


@pytest.fixture
async def owner(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.owner_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def tag() -> str:
    """A prefix that keeps this test's accounts and transfers apart from every other test's."""
    return uuid.uuid4().hex[:10]
