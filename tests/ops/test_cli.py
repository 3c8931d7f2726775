"""``payments`` against the real processes: status, channels, payouts stuck, webhooks
resend, dlq list and replay, and ``--help`` on every command."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import click
import pytest
from click.testing import CliRunner

from services.cli import main
from tests.ops.conftest import Merchant, admin, cli_env, payments
from tests.support.suite import SERVICE_TOKEN, Suite
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def _commands(
    group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        out.append((*path, name))
        if isinstance(command, click.Group):
            out += _commands(command, ctx, (*path, name))
    return out


def test_every_command_answers_help() -> None:
    runner = CliRunner()
    with click.Context(main) as ctx:
        commands = _commands(main, ctx)
    for wanted in [
        ("status",),
        ("channels",),
        ("payouts", "stuck"),
        ("webhooks", "resend"),
        ("dlq", "list"),
        ("dlq", "replay"),
        ("ledger", "verify"),
        ("recon", "run"),
        ("recon", "parse"),
        ("seed-demo",),
    ]:
        assert wanted in commands, wanted
    for command in [(), *commands]:
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage:" in result.output


def test_status_shows_every_service_ready_with_outboxes_and_queues(ops_suite: Suite) -> None:
    result = payments(ops_suite, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for service in ("payout", "ledger", "router", "recon", "banksim"):
        assert any(line.split()[:2] == [service, "ready"] for line in lines), result.stdout
    prefix = ops_suite.spec.amqp_prefix
    for queue in ("payout.webhooks", "payout.attempt_outcomes", "dead_letters"):
        assert any(line.startswith(f"{prefix}.{queue} ") for line in lines), result.stdout
    assert f"{ops_suite.spec.db_prefix}payout" in result.stdout
    assert "unpublished" in result.stdout


def test_status_exits_non_zero_when_a_service_is_unreachable(ops_suite: Suite) -> None:
    broken = subprocess.run(
        [str(Path(sys.executable).with_name("payments")), "status", "--timeout", "1"],
        # Nothing listens on the discard port.
        env={**cli_env(ops_suite), "RECON_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 1
    assert any(
        line.split()[:2] == ["recon", "unreachable:"] for line in broken.stdout.splitlines()
    ), broken.stdout


def test_channels_table_at_top_level(ops_suite: Suite) -> None:
    result = payments(ops_suite, "channels")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:] if line}
    assert rows["ch_ops_north"][3] == "closed"
    assert rows["ch_ops_atlas"][1] == "atlas"


async def test_payouts_stuck_lists_waiting_and_long_submitted_payouts(
    ops_suite: Suite, merchant: Merchant, session: aiohttp.ClientSession
) -> None:
    bank_admin = {"X-Service-Token": SERVICE_TOKEN}
    behaviour = f"{ops_suite.urls['banksim']}/admin/banks/northbank/behaviour"
    await admin(
        session,
        ops_suite,
        "PUT",
        f"/admin/merchants/{merchant.id}/limits",
        {"review_threshold": 50_000},
    )
    try:
        status, review, _ = await merchant.create(60_000)
        assert status == 201 and review["status"] == "pending_review", review
        # The bank accepts and completes much later: the payout sits in submitted.
        async with session.put(
            behaviour,
            json={
                "mode": "normal",
                "overrides": {
                    "async_rate": 1.0,
                    "async_delay_min_ms": 30_000,
                    "async_delay_max_ms": 30_000,
                },
            },
            headers=bank_admin,
        ) as resp:
            assert resp.status == 200, await resp.text()
        status, slow, _ = await merchant.create(1_500)
        assert status == 201, slow

        async def submitted() -> bool:
            return (await merchant.payout(slow["id"]))["status"] == "submitted"

        await wait_until(submitted, timeout_s=20, message="payout submitted")

        def stuck_ids(older_than_s: str) -> dict[str, dict[str, Any]]:
            result = payments(ops_suite, "payouts", "stuck", "--older-than", older_than_s, "--json")
            rows = [json.loads(line) for line in result.stdout.splitlines()]
            assert result.returncode == (1 if rows else 0), result.stderr
            return {row["id"]: row for row in rows}

        async def listed() -> dict[str, dict[str, Any]] | None:
            rows = stuck_ids("1")
            return rows if slow["id"] in rows else None

        rows = await wait_until(listed, timeout_s=15, interval_s=0.5, message="stuck listed")
        assert rows[review["id"]]["status"] == "pending_review"
        assert rows[slow["id"]]["status"] == "submitted"
        assert rows[slow["id"]]["tx_state"] is not None
        # Recently changed processing/submitted payouts are not stuck yet.
        assert slow["id"] not in stuck_ids("3600")
        table = payments(ops_suite, "payouts", "stuck", "--older-than", "1")
        assert "PAYOUT" in table.stdout and slow["id"] in table.stdout
    finally:
        async with session.put(behaviour, json={"mode": "normal"}, headers=bank_admin) as resp:
            assert resp.status == 200


async def test_webhooks_resend_sends_a_delivered_webhook_again(
    ops_suite: Suite, merchant: Merchant, session: aiohttp.ClientSession
) -> None:
    status, created, _ = await merchant.create(2_500)
    assert status == 201
    await merchant.wait_final(created["id"])

    async def paid_hooks() -> list[dict[str, str]]:
        return merchant.receiver.for_payout(created["id"], "payout.paid")

    await wait_until(paid_hooks, timeout_s=20, message="webhook")

    async def delivered() -> dict[str, Any] | None:
        # The sender records the delivery just after the receiver has answered.
        page = await admin(
            session, ops_suite, "GET", "/admin/webhook_deliveries?status=delivered&limit=100"
        )
        mine = [
            d
            for d in page["data"]
            if d["merchant_id"] == merchant.id and d["event_type"] == "payout.paid"
        ]
        return mine[0] if mine else None

    delivery = await wait_until(delivered, timeout_s=10, message="delivery recorded")
    result = payments(ops_suite, "webhooks", "resend", delivery["id"])
    assert result.returncode == 0, result.stderr
    assert delivery["id"] in result.stdout and "1 delivery(ies) back to pending" in result.stdout

    async def twice() -> bool:
        return len(await paid_hooks()) == 2

    await wait_until(twice, timeout_s=20, message="webhook sent again")
    listed = payments(ops_suite, "webhooks", "list", "--status", "delivered", "--limit", "5")
    assert listed.returncode == 0 and "DELIVERY" in listed.stdout


async def test_dlq_list_shows_poison_messages_and_replay_moves_them_back(
    ops_suite: Suite, merchant: Merchant
) -> None:
    prefix = ops_suite.spec.amqp_prefix
    poison_id = f"ops-poison-{uuid.uuid4().hex[:8]}"
    status, created, _ = await merchant.create(3_100)
    assert status == 201
    paid = await merchant.wait_final(created["id"])
    connection = await aio_pika.connect(ops_suite.spec.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{prefix}.events")
        # Undecodable: every consumer bound to payout.* rejects it to the dead-letter queue.
        await exchange.publish(
            aio_pika.Message(b"{not json", message_id=poison_id), routing_key="payout.created"
        )
        # A valid event that ran out of deliveries in payout.webhooks (as after a long database
        # outage): a fresh event id, so the consumer has not seen it.
        event_id = str(uuid.uuid4())
        envelope = {
            "event_id": event_id,
            "event_type": "payout.paid",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "producer": "payout",
            "correlation_id": "req_ops_dlq",
            "causation_id": None,
            "aggregate_id": created["id"],
            "aggregate_version": 99,
            "data": paid,
        }
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(envelope).encode(),
                message_id=event_id,
                correlation_id="req_ops_dlq",
                headers={
                    "x-death": [
                        {
                            "queue": f"{prefix}.payout.webhooks",
                            "reason": "delivery_limit",
                            "count": 1,
                            "exchange": f"{prefix}.events",
                            "routing-keys": ["payout.paid"],
                        }
                    ]
                },
            ),
            routing_key=f"{prefix}.dead_letters",
        )
    finally:
        await connection.close()

    def listing() -> list[list[str]]:
        result = payments(ops_suite, "dlq", "list")
        assert result.returncode == 0, result.stderr
        return [line.split() for line in result.stdout.splitlines()[2:]]

    async def both_listed() -> list[list[str]] | None:
        rows = listing()
        ids = [row[0] for row in rows]
        return rows if ids.count(poison_id) >= 2 and event_id in ids else None

    rows = await wait_until(both_listed, timeout_s=20, interval_s=0.3, message="dead letters")
    poison = [row for row in rows if row[0] == poison_id]
    assert {row[2] for row in poison} >= {f"{prefix}.payout.webhooks"}
    assert {row[3] for row in poison} == {"rejected"}
    assert listing() == rows, "listing leaves every message in place"

    replay = payments(ops_suite, "dlq", "replay", event_id, "--queue", "payout.webhooks", "--yes")
    assert replay.returncode == 0, replay.stderr
    assert "1 replayed" in replay.stdout, replay.stdout

    async def webhook_of_replayed_event() -> bool:
        return any(event["id"] == event_id for event, _headers in merchant.receiver.received)

    await wait_until(webhook_of_replayed_event, timeout_s=20, message="replayed event delivered")
    ids = [row[0] for row in listing()]
    assert event_id not in ids and ids.count(poison_id) >= 2

    # Replaying the poison sends it back to its queue, where it is rejected again.
    again = payments(ops_suite, "dlq", "replay", poison_id, "--yes")
    assert again.returncode == 0 and "replayed" in again.stdout, again.stdout

    async def died_twice() -> bool:
        return any(row[0] == poison_id and row[4] == "2" for row in listing())

    await wait_until(died_twice, timeout_s=20, interval_s=0.3, message="poison dead again")
