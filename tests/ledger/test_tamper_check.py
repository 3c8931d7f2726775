"""The scheduled tamper check: the ledger verifies its chain on a timer and raises one
``ledger_chain_broken`` alert through its outbox, relay and the broker; recon's alert hub
stores it once however often it repeats. Real apps, real PostgreSQL, real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.kit import db, migrations
from services.ledger.app import create_app
from services.ledger.keys import tamper_check_key
from services.ledger.settings import Settings
from services.ledger.tamper_check import TamperCheck
from services.recon import app as recon_app
from services.recon.adapters.records import FileRecords
from services.recon.domain.rules import load_rules
from services.recon.entrypoints.consumers import PAYOUT_ALERTS_CONSUMER
from services.recon.settings import from_env as recon_env
from tests.ledger.conftest import TOKEN, fresh_settings
from tests.ledger.helpers import account, single, transfers
from tests.support import infra
from tests.support.waiting import wait_until

Client = TestClient[Any, Any]
FINANCE_KEY = "ledger-tamper-finance-key-0123456789"


async def _tamper(settings: Settings, transfer_id: str) -> None:
    """As the owner (a superuser here) with triggers off: what an insider could do."""
    conn = await asyncpg.connect(settings.owner_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE transfers SET amount_minor = amount_minor + 1000 WHERE id = $1",
                transfer_id,
            )
    finally:
        await conn.close()


async def _runs_after(check: TamperCheck, runs: int) -> bool:
    return check.runs > runs


async def _outbox_alerts(settings: Settings) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.owner_dsn)
    try:
        return await conn.fetch(
            "SELECT event_type, payload, published_at FROM outbox"
            " WHERE event_type = 'ledger.alert' ORDER BY id"
        )
    finally:
        await conn.close()


@pytest.fixture
async def recon_hub(
    run_id: str, tmp_path: Path, amqp_prefix: str
) -> AsyncIterator[tuple[Client, str]]:
    """Recon in-process as the alert hub, on its own database and broker prefix."""
    prefix = f"{run_id}_ltamper_"
    database = infra.database_url()
    await db.ensure_database(database, prefix + recon_app.SERVICE)
    await migrations.apply(
        db.service_dsn(database, prefix, recon_app.SERVICE),
        infra.ROOT / "services" / recon_app.SERVICE / "migrations",
    )
    broker_prefix = f"{amqp_prefix}.ltamper{uuid.uuid4().hex[:6]}"
    settings = recon_env(
        {
            "DATABASE_URL": database,
            "DB_NAME_PREFIX": prefix,
            "DB_POOL_MAX": "3",
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": broker_prefix,
            "AMQP_QUEUE_EXPIRES_MS": "120000",
            "RECON_DROP_DIR": str(tmp_path / "drop"),
            "RECON_DATA_DIR": str(tmp_path / "data"),
            "RECON_FINANCE_KEY": FINANCE_KEY,
            "RECON_CHANNELS_FILE": "-",
        }
    )
    app = recon_app.create_app(
        settings,
        rules=load_rules({"channels": {}}),
        records=FileRecords(tmp_path / "records.ndjson"),
        run_intake=False,
    )
    async with TestClient(TestServer(app)) as client:
        yield client, broker_prefix
    await infra.delete_broker_names(broker_prefix, [f"{broker_prefix}.{PAYOUT_ALERTS_CONSUMER}"])


async def _ledger_alerts(recon: Client) -> list[dict[str, Any]]:
    response = await recon.get(
        "/v1/recon/alerts",
        params={"code": "ledger_chain_broken"},
        headers={"Authorization": f"Bearer {FINANCE_KEY}"},
    )
    assert response.status == 200, await response.text()
    return list((await response.json())["alerts"])


async def test_a_tampered_transfer_raises_one_open_critical_alert_in_recon_and_repeats_count_on_it(
    run_id: str, granted_dsns: list[str], tag: str, recon_hub: tuple[Client, str]
) -> None:
    recon, broker_prefix = recon_hub
    settings = await fresh_settings(
        run_id,
        granted_dsns,
        "sched",
        LEDGER_VERIFY_INTERVAL_S="1",
        LEDGER_VERIFY_FULL_EVERY="1",
        AMQP_PREFIX=broker_prefix,
    )
    app = create_app(settings)
    async with TestClient(TestServer(app), headers={"X-Service-Token": TOKEN}) as client:
        check = app[tamper_check_key]
        await account(client, f"{tag}-a")
        await account(client, f"{tag}-b")
        for i in range(6):
            await transfers(client, single(f"{tag}-{i}", f"{tag}-a", f"{tag}-b", 10 + i))
        victim = await (await client.get(f"/v1/transfers/{tag}-3")).json()

        async def clean_check_saw_everything() -> bool:
            report = check.last_report
            return report is not None and report.ok and report.head_seq >= victim["seq"] + 2

        await wait_until(clean_check_saw_everything, timeout_s=20, message="a clean check")
        assert await _outbox_alerts(settings) == [], "an intact chain raised an alert"

        await _tamper(settings, f"{tag}-3")
        alerts = await wait_until(
            lambda: _ledger_alerts(recon), timeout_s=30, message="the alert in recon"
        )
        [alert] = alerts
        assert alert["severity"] == "critical" and alert["status"] == "open"
        assert alert["context"]["source"] == "ledger"
        assert alert["context"]["details"]["seq"] == victim["seq"]
        assert alert["context"]["details"]["transfer_id"] == f"{tag}-3"
        assert f"seq {victim['seq']} id {tag}-3" in alert["message"]

        # Later scheduled checks still see the break but do not raise it again.
        runs = check.runs
        await wait_until(lambda: _runs_after(check, runs + 1), timeout_s=20, message="2 checks")
        assert check.last_report is not None and check.last_report.first_bad_seq == victim["seq"]
        rows = await _outbox_alerts(settings)
        assert len(rows) == 1
        assert json.loads(rows[0]["payload"])["data"]["code"] == "ledger_chain_broken"
        scraped = await (await client.get("/metrics")).text()
        assert "\nledger_verify_ok 0.0\n" in scraped, scraped

    # A restarted ledger finds it again on its start-up check: a repeat of the same alert.
    async with TestClient(TestServer(create_app(settings)), headers={"X-Service-Token": TOKEN}):

        async def counted_twice() -> list[dict[str, Any]]:
            found = await _ledger_alerts(recon)
            return found if found and found[0]["occurrences"] == 2 else []

        [repeated] = await wait_until(counted_twice, timeout_s=30, message="a counted repeat")
        assert repeated["alert_id"] == alert["alert_id"] and repeated["status"] == "open"
    rows = await _outbox_alerts(settings)
    assert len(rows) == 2 and all(r["published_at"] is not None for r in rows)


async def test_an_incremental_check_catches_a_tampered_transfer_appended_since_the_last_one(
    run_id: str, granted_dsns: list[str], tag: str, amqp_prefix: str
) -> None:
    broker_prefix = f"{amqp_prefix}.lincr{uuid.uuid4().hex[:6]}"
    settings = await fresh_settings(
        run_id,
        granted_dsns,
        "incr",
        LEDGER_VERIFY_INTERVAL_S="1",
        LEDGER_VERIFY_FULL_EVERY="10000",
        AMQP_PREFIX=broker_prefix,
    )
    connection = await aio_pika.connect(infra.amqp_url())
    queue_name = f"{broker_prefix}.test_ledger_alerts"
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            f"{broker_prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(queue_name, arguments={"x-expires": 120_000})
        await queue.bind(exchange, "ledger.alert")
        app = create_app(settings)
        async with TestClient(TestServer(app), headers={"X-Service-Token": TOKEN}) as client:
            check = app[tamper_check_key]
            await account(client, f"{tag}-a")
            await account(client, f"{tag}-b")
            await transfers(client, single(f"{tag}-old", f"{tag}-a", f"{tag}-b", 1))

            async def first_clean() -> bool:
                report = check.last_report
                return report is not None and report.ok and report.head_seq >= 1

            await wait_until(first_clean, timeout_s=20, message="the start-up check")
            checked_up_to = check.last_report.head_seq if check.last_report else 0
            for i in range(3):
                await transfers(client, single(f"{tag}-new{i}", f"{tag}-a", f"{tag}-b", 2))
            victim = await (await client.get(f"/v1/transfers/{tag}-new1")).json()
            assert victim["seq"] > checked_up_to
            await _tamper(settings, f"{tag}-new1")

            async def next_message() -> aio_pika.abc.AbstractIncomingMessage | None:
                return await queue.get(no_ack=True, fail=False)

            message = await wait_until(next_message, timeout_s=30, message="ledger.alert")
            assert message is not None
            assert message.routing_key == "ledger.alert"
            data = json.loads(message.body)["data"]
            assert (data["code"], data["severity"]) == ("ledger_chain_broken", "critical")
            assert data["details"] == {
                "seq": victim["seq"],
                "transfer_id": f"{tag}-new1",
                "reason": "hash does not match the transfer's contents",
            }
            # Found by a run that continued from the checkpoint, not by a full pass.
            assert check.full_runs == 1
            runs = check.runs
            await wait_until(lambda: _runs_after(check, runs + 1), timeout_s=20, message="checks")
            assert await queue.get(no_ack=True, fail=False) is None, "the alert was repeated"
    finally:
        await connection.close()
        await infra.delete_broker_names(broker_prefix, [queue_name])


async def test_an_edit_to_the_last_verified_transfer_is_caught_without_a_full_pass(
    run_id: str, granted_dsns: list[str], tag: str
) -> None:
    """The incremental run re-reads its anchor: rewriting the checkpoint's own hash (the
    one link an incremental run would otherwise trust) is reported at that transfer."""
    settings = await fresh_settings(run_id, granted_dsns, "anchor")
    async with TestClient(
        TestServer(create_app(settings)), headers={"X-Service-Token": TOKEN}
    ) as client:
        await account(client, f"{tag}-a")
        await account(client, f"{tag}-b")
        [last] = await transfers(client, single(f"{tag}-0", f"{tag}-a", f"{tag}-b", 3))
        pool = await db.create_pool(settings.app_dsn, max_size=1)
        try:
            check = TamperCheck(pool, full_every=1000)
            assert (await check.run_once()).ok
            assert check.checkpoint is not None and check.checkpoint[0] == last["seq"]
            conn = await asyncpg.connect(settings.owner_dsn)
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL session_replication_role = replica")
                    await conn.execute(
                        "UPDATE transfers SET hash = sha256(hash) WHERE seq = $1", last["seq"]
                    )
            finally:
                await conn.close()
            report = await check.run_once()
            assert check.full_runs == 1
            assert (report.ok, report.first_bad_seq) == (False, last["seq"])
            assert report.reason == "the last verified transfer's hash changed"
        finally:
            await pool.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM outbox",
        "TRUNCATE outbox",
        "UPDATE outbox SET payload = 'x'::bytea",
        "UPDATE outbox SET event_type = 'ledger.other'",
    ],
)
async def test_the_service_role_may_only_append_to_the_outbox_and_mark_it_published(
    settings: Settings, statement: str
) -> None:
    conn = await asyncpg.connect(settings.app_dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE outbox SET published_at = published_at, attempts = attempts WHERE false"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_check_never_alerts_on_an_intact_ledger_under_concurrent_writes(
    run_id: str, granted_dsns: list[str], tag: str
) -> None:
    """Verify reads one snapshot: transfers committing while it runs never look broken."""
    settings = await fresh_settings(run_id, granted_dsns, "busy")
    async with TestClient(
        TestServer(create_app(settings)), headers={"X-Service-Token": TOKEN}
    ) as client:
        await account(client, f"{tag}-a")
        await account(client, f"{tag}-b")
        pool = await db.create_pool(settings.app_dsn, max_size=1)
        try:
            check = TamperCheck(pool, full_every=3)

            async def write(n: int) -> None:
                for i in range(25):
                    await transfers(client, single(f"{tag}-{n}-{i}", f"{tag}-a", f"{tag}-b", 1))

            writers = asyncio.gather(*(write(n) for n in range(4)))
            reports = []
            while not writers.done():
                reports.append(await check.run_once())
            await writers
            reports.append(await check.run_once())
        finally:
            await pool.close()
    assert all(r.ok for r in reports), [r for r in reports if not r.ok]
    assert reports[-1].head_seq == 100 and check.full_runs >= 1
    assert not check.alerted
