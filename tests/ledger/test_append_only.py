"""Append-only is enforced by the database (grants + triggers), and tampering is detected."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from services.ledger.app import create_app
from services.ledger.cli import group
from services.ledger.settings import Settings
from tests.ledger.conftest import TOKEN, fresh_settings
from tests.ledger.helpers import account, single, transfers

Client = TestClient[Any, Any]


async def _seed(client: Client, tag: str) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    await transfers(client, single(f"{tag}-t", f"{tag}-a", f"{tag}-b", 5))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transfers SET amount_minor = amount_minor + 1 WHERE id = '{tag}-t'",
        "DELETE FROM transfers WHERE id = '{tag}-t'",
        "TRUNCATE transfers CASCADE",
        "UPDATE tcc_barrier SET status = 'cancelled'",
        "DELETE FROM rejections",
    ],
)
async def test_the_service_role_cannot_rewrite_history(
    client: Client, tag: str, settings: Settings, statement: str
) -> None:
    await _seed(client, tag)
    conn = await asyncpg.connect(settings.app_dsn)
    try:
        assert await conn.fetchval("SELECT current_user") == settings.app_role
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement.format(tag=tag))
    finally:
        await conn.close()
    amount = await (await client.get(f"/v1/transfers/{tag}-t")).json()
    assert amount["amount_minor"] == 5


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transfers SET amount_minor = amount_minor + 1 WHERE id = '{tag}-t'",
        "DELETE FROM transfers WHERE id = '{tag}-t'",
        "TRUNCATE transfers CASCADE",
        "DELETE FROM accounts WHERE id = '{tag}-a'",
        "UPDATE accounts SET currency = 'USD' WHERE id = '{tag}-a'",
    ],
)
async def test_triggers_refuse_changes_even_for_the_table_owner(
    client: Client, tag: str, owner: asyncpg.Connection, statement: str
) -> None:
    await _seed(client, tag)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"append-only|never|immutable"):
        await owner.execute(statement.format(tag=tag))
    assert await owner.fetchval(f"SELECT amount_minor FROM transfers WHERE id = '{tag}-t'") == 5


async def test_verify_points_at_the_first_tampered_transfer(
    run_id: str, granted_dsns: list[str], tag: str
) -> None:
    settings = await fresh_settings(run_id, granted_dsns, "tamper")
    app = create_app(settings)
    async with TestClient(TestServer(app), headers={"X-Service-Token": TOKEN}) as client:
        await account(client, f"{tag}-a")
        await account(client, f"{tag}-b")
        for i in range(6):
            await transfers(client, single(f"{tag}-{i}", f"{tag}-a", f"{tag}-b", 10 + i))
        clean = await (await client.get("/v1/verify")).json()
        assert clean["ok"] and clean["transfers_checked"] == 6

        victim = await (await client.get(f"/v1/transfers/{tag}-3")).json()
        conn = await asyncpg.connect(settings.owner_dsn)  # superuser, triggers disabled
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "UPDATE transfers SET amount_minor = 999 WHERE id = $1", f"{tag}-3"
                )
        finally:
            await conn.close()

        report = await (await client.get("/v1/verify")).json()
        assert report["ok"] is False
        assert report["first_bad_seq"] == victim["seq"]
        assert report["first_bad_id"] == f"{tag}-3"
        assert "hash" in report["reason"]

    # The CLI runs its own event loop, so it gets its own thread.
    result = await asyncio.to_thread(
        CliRunner().invoke, group, ["verify", "--dsn", settings.owner_dsn]
    )
    assert result.exit_code == 1
    assert f"seq {victim['seq']} id {tag}-3" in result.output


async def test_verify_detects_a_deleted_transfer_as_a_sequence_gap(
    run_id: str, granted_dsns: list[str], tag: str
) -> None:
    settings = await fresh_settings(run_id, granted_dsns, "gap")
    async with TestClient(
        TestServer(create_app(settings)), headers={"X-Service-Token": TOKEN}
    ) as client:
        await account(client, f"{tag}-a")
        await account(client, f"{tag}-b")
        for i in range(3):
            await transfers(client, single(f"{tag}-{i}", f"{tag}-a", f"{tag}-b", 1))
        gone = await (await client.get(f"/v1/transfers/{tag}-1")).json()
        conn = await asyncpg.connect(settings.owner_dsn)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute("DELETE FROM transfers WHERE id = $1", f"{tag}-1")
        finally:
            await conn.close()
        report = await (await client.get("/v1/verify")).json()
    assert report["ok"] is False
    assert report["first_bad_seq"] == gone["seq"] + 1 and "gap" in report["reason"]
    assert report["counters_ok"] is False  # the counters still include the deleted transfer


def test_cli_verify_passes_on_an_intact_ledger(settings: Settings) -> None:
    result = CliRunner().invoke(group, ["verify", "--dsn", settings.owner_dsn])
    assert result.exit_code == 0, result.output
    assert '"ok": true' in result.output
