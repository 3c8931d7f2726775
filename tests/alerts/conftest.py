"""The recon app in-process on a real PostgreSQL database and a real RabbitMQ, as the alert
hub: ``payout.alert`` events are published on the broker the way the payout service's relay
publishes them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.wire import Envelope
from services.kit import db, migrations
from services.kit.amqp import Broker
from services.recon.adapters.records import FileRecords
from services.recon.app import SERVICE, create_app
from services.recon.domain.rules import load_rules
from services.recon.entrypoints.consumers import PAYOUT_ALERTS_CONSUMER
from services.recon.settings import Settings, from_env
from tests.support import infra

FINANCE_KEY = "alerts-finance-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {FINANCE_KEY}"}


@pytest.fixture(scope="package")
def alerts_db_prefix(run_id: str) -> str:
    return f"{run_id}_alerts_"


@pytest.fixture(scope="package")
def alerts_dsn(alerts_db_prefix: str) -> str:
    async def create() -> str:
        dsn = db.service_dsn(infra.database_url(), alerts_db_prefix, SERVICE)
        await db.ensure_database(infra.database_url(), alerts_db_prefix + SERVICE)
        await migrations.apply(dsn, infra.ROOT / "services" / SERVICE / "migrations")
        return dsn

    return infra.run(create())


@pytest.fixture
async def pool(alerts_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(alerts_dsn, max_size=2)
    yield p
    await p.close()


@pytest.fixture
def settings(alerts_dsn: str, alerts_db_prefix: str, amqp_prefix: str, tmp_path: Path) -> Settings:
    return from_env(
        {
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": alerts_db_prefix,
            "DB_POOL_MAX": "4",
            "AMQP_URL": infra.amqp_url(),
            # One broker prefix per test: its own exchange and queues.
            "AMQP_PREFIX": f"{amqp_prefix}.alerts{uuid.uuid4().hex[:6]}",
            "RECON_DROP_DIR": str(tmp_path / "drop"),
            "RECON_DATA_DIR": str(tmp_path / "data"),
            "RECON_FINANCE_KEY": FINANCE_KEY,
            "RECON_CHANNELS_FILE": "-",
        }
    )


class Hub:
    """Start and stop the recon app; publish ``payout.alert`` as the payout relay does."""

    def __init__(self, settings: Settings, records: Path) -> None:
        self.settings = settings
        self.records = records
        self.client: TestClient | None = None
        self.publisher = Broker(settings.amqp_url, settings.amqp_prefix)

    @property
    def queue(self) -> str:
        return self.publisher.names.queue(PAYOUT_ALERTS_CONSUMER)

    async def start(self) -> TestClient:
        app = create_app(
            self.settings,
            rules=load_rules({"channels": {}}),
            records=FileRecords(self.records),
            run_intake=False,
        )
        self.client = TestClient(TestServer(app))
        await self.client.start_server()
        return self.client

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def publish(self, envelope: Envelope) -> None:
        if not self.publisher.is_connected:
            await self.publisher.connect()
        await self.publisher.publish(envelope)

    async def ready_messages(self) -> int:
        """Messages waiting in recon's queue (unacknowledged ones return here on close)."""
        connection = await aio_pika.connect(self.settings.amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def alerts(self, **query: str) -> list[dict[str, Any]]:
        assert self.client is not None
        resp = await self.client.get("/v1/recon/alerts", params=query, headers=AUTH)
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["alerts"])

    async def drain(self, landed: Callable[[], Awaitable[bool]]) -> None:
        """Run until ``landed`` and every message was acknowledged: after a stop, a message
        whose handler had not finished is back in the queue, so the app runs again."""
        from tests.support.waiting import wait_until

        for _ in range(5):
            if self.client is None:
                await self.start()
            await wait_until(landed, timeout_s=15, message="the alerts to land")
            await wait_until(
                lambda: _is_zero(self.ready_messages()), timeout_s=15, message="an empty queue"
            )
            await self.stop()
            if await self.ready_messages() == 0:
                return
        raise AssertionError("recon's alert queue never drained")


async def _is_zero(count: Awaitable[int]) -> bool:
    return (await count) == 0


@pytest.fixture
async def hub(settings: Settings, tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(settings, tmp_path / "records.ndjson")
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
        await h.publisher.close()
        await infra.delete_broker_names(settings.amqp_prefix, [h.queue])


def payout_alert(
    code: str,
    *,
    severity: str | None = "high",
    message: str | None = None,
    payout_id: str | None = None,
    merchant_id: str | None = None,
    details: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> Envelope:
    """A ``payout.alert`` envelope shaped like services/payout/adapters/store.raise_alert's."""
    alert_id = f"alr_{uuid.uuid4().hex[:20]}"
    data: dict[str, Any] = {
        "alert_id": alert_id,
        "code": code,
        "severity": severity,
        "message": message or f"{code} for {payout_id or merchant_id or alert_id}",
        "payout_id": payout_id,
        "merchant_id": merchant_id,
        "details": details or {},
    }
    return Envelope(
        event_id=event_id or str(uuid.uuid4()),
        event_type="payout.alert",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        producer="payout",
        correlation_id=None,
        causation_id=None,
        aggregate_id=payout_id or alert_id,
        aggregate_version=1,
        data=data,
    )


def new_payout_id() -> str:
    return f"po_{uuid.uuid4().hex[:20]}"
