"""The shared plumbing against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from contracts.wire import Envelope, Model
from services.kit import db, migrations, outbox
from services.kit.amqp import Broker
from services.kit.auth import service_token_middleware
from services.kit.errors import ProblemError, json_response, read_json
from services.kit.logging import _scrub, mask_account
from services.kit.settings import Env, SettingsError
from services.kit.web import base_app
from tests.support import infra
from tests.support.waiting import wait_until

SAMPLE = Path(__file__).parent / "sample_service" / "migrations"


@pytest.fixture
async def sample_dsn(run_id: str) -> str:
    name = f"{run_id}_kit_{uuid.uuid4().hex[:6]}"
    await db.ensure_database(infra.database_url(), name)
    return db.service_dsn(infra.database_url(), f"{run_id}_kit_", name.rsplit("_", 1)[1])


def test_bad_setting_names_the_variable() -> None:
    env = Env({"PORT": "eighty", "AMQP_URL": "http://x"})
    with pytest.raises(SettingsError, match="PORT must be an integer"):
        env.integer("PORT", 1)
    with pytest.raises(SettingsError, match="AMQP_URL must be a URL"):
        env.url("AMQP_URL", None, schemes=("amqp",))
    socket_url = "postgresql://postgres:@/postgres?host=/tmp/pgdata"
    assert Env({"DATABASE_URL": socket_url}).url("DATABASE_URL", None, schemes=("postgresql",))
    with pytest.raises(SettingsError, match="SERVICE_TOKEN is required"):
        env.secret("SERVICE_TOKEN")
    with pytest.raises(SettingsError, match="LIMIT must be <= 5"):
        Env({"LIMIT": "6"}).integer("LIMIT", 1, max_value=5)


def test_logs_mask_account_numbers_and_drop_secrets() -> None:
    scrubbed = _scrub(
        {
            "event": "paid to 12345678901234",
            "account_number": "DE89370400440532013000",
            "authorization": "Bearer sk_live_x",
            "nested": {"secret": "s3cr3t"},
        }
    )
    assert scrubbed["account_number"] == mask_account("DE89370400440532013000")
    assert scrubbed["account_number"].endswith("3000") and "0532" not in scrubbed["account_number"]
    assert scrubbed["authorization"] == "[redacted]"
    assert scrubbed["nested"]["secret"] == "[redacted]"
    assert "12345678901234" not in scrubbed["event"] and scrubbed["event"].endswith("1234")


async def test_migrations_apply_once_under_concurrency_and_refuse_edits(
    sample_dsn: str, tmp_path: Path
) -> None:
    results = await asyncio.gather(*(migrations.apply(sample_dsn, SAMPLE) for _ in range(4)))
    applied = [name for names in results for name in names]
    assert sorted(applied) == ["kit/0001_outbox_inbox.sql", "sample_service/0001_things.sql"]
    assert await migrations.apply(sample_dsn, SAMPLE) == []

    edited = tmp_path / "sample_service" / "migrations"
    edited.mkdir(parents=True)
    (edited / "0001_things.sql").write_text("CREATE TABLE other (id int);")
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        await migrations.apply(sample_dsn, edited)


async def test_outbox_event_reaches_consumer_once_even_when_redelivered(
    sample_dsn: str, amqp_prefix: str
) -> None:
    await migrations.apply(sample_dsn, SAMPLE)
    pool = await db.create_pool(sample_dsn, max_size=4)
    prefix = f"{amqp_prefix}.kit{uuid.uuid4().hex[:4]}"
    broker = Broker(infra.amqp_url(), prefix, delivery_limit=3)
    await broker.connect()
    effects: list[str] = []
    deliveries: list[str] = []

    async def handle(envelope: Envelope) -> None:
        deliveries.append(envelope.event_id)
        async with pool.acquire() as conn, conn.transaction():
            if await outbox.claim_inbox(conn, "counter", envelope.event_id):
                effects.append(envelope.event_id)

    stop = asyncio.Event()
    relay = asyncio.create_task(outbox.relay(pool, broker, stop=stop, poll_interval_s=0.2))
    try:
        await broker.consume("counter", ["thing.#"], handle)
        async with pool.acquire() as conn, conn.transaction():
            env = await outbox.enqueue(
                conn,
                event_type="thing.created",
                producer="test",
                aggregate_id="t1",
                aggregate_version=1,
                data={"n": 1},
            )
        await wait_until(lambda: _async(len(effects) == 1), message="event consumed")
        # A redelivery of the same envelope (at-least-once) has no second effect.
        await broker.publish(env)
        await wait_until(lambda: _async(len(deliveries) == 2), message="redelivery handled")
        assert effects == [env.event_id]
        assert await pool.fetchval("SELECT count(*) FROM inbox") == 1
        count, _age = await outbox.lag(pool)
        assert count == 0
    finally:
        stop.set()
        await relay
        await broker.close()
        await pool.close()
        await infra.delete_broker_names(prefix, [f"{prefix}.counter"])


async def _async(value):  # type: ignore[no-untyped-def]
    return value


class Thing(Model):
    amount_minor: int = msgspec.field()
    currency: str


async def test_bad_input_answers_problem_json_with_stable_codes() -> None:
    async def create(request: web.Request) -> web.Response:
        thing = await read_json(request, Thing)
        if thing.currency != "EUR":
            raise ProblemError(422, "currency_unsupported", "Unsupported currency")
        return json_response({"ok": True}, status=201)

    app = base_app(
        openapi_document={"openapi": "3.1.0"},
        client_max_size=1024,
        middlewares=[service_token_middleware("a-very-long-service-token")],
    )
    app.router.add_post("/things", create)
    async with TestClient(TestServer(app)) as client:
        headers = {"X-Service-Token": "a-very-long-service-token"}
        cases = [
            ({}, b'{"amount_minor": 1, "currency": "EUR"}', 401, "service_token_invalid"),
            (headers, b'{"amount_minor": 1.5, "currency": "EUR"}', 422, "validation_error"),
            (headers, b'{"amount_minor": "1", "currency": "EUR"}', 422, "validation_error"),
            (headers, b'{"amount_minor": 1, "currency": "EUR", "x": 1}', 422, "validation_error"),
            (headers, b'{"amount_minor": 1,', 400, "malformed_json"),
            (headers, b'{"amount_minor": 1, "currency": "USD"}', 422, "currency_unsupported"),
            (headers, b"x" * 4096, 413, "request_too_large"),
        ]
        for hdrs, body, status, code in cases:
            resp = await client.post(
                "/things", data=body, headers={**hdrs, "Content-Type": "application/json"}
            )
            assert resp.status == status, (body[:40], await resp.text())
            assert resp.content_type == "application/problem+json"
            problem = await resp.json()
            assert problem["code"] == code and problem["status"] == status
            assert resp.headers["Request-Id"] == problem["request_id"]
        resp = await client.get("/nowhere", headers=headers)
        assert resp.status == 404 and (await resp.json())["code"] == "not_found"
        resp = await client.get("/healthz")
        assert resp.status == 200
        metrics = await (await client.get("/metrics")).text()
        assert 'route="/things",status="422"' in metrics
        assert 'route="/things",status="401"' in metrics


async def test_pool_talks_to_real_postgres(sample_dsn: str) -> None:
    conn = await asyncpg.connect(sample_dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == db.database_name(sample_dsn)
    finally:
        await conn.close()
