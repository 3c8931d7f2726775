"""The writer's caches are authoritative only while nobody else writes; when a batch fails
anyway, it reloads from the tables and redoes the jobs one by one, so callers still get
exact answers."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from services.ledger.app import create_app
from tests.ledger.conftest import TOKEN, fresh_settings
from tests.ledger.helpers import account, counters, get_account, single, transfers


async def test_a_batch_that_collides_with_a_foreign_row_is_redone_after_reloading(
    run_id: str, granted_dsns: list[str], tag: str
) -> None:
    settings = await fresh_settings(run_id, granted_dsns, "recovery")
    async with TestClient(
        TestServer(create_app(settings)), headers={"X-Service-Token": TOKEN}
    ) as client:
        await account(client, f"{tag}-a")
        await account(client, f"{tag}-b")
        [first] = await transfers(client, single(f"{tag}-0", f"{tag}-a", f"{tag}-b", 1))
        # Behind the writer's back, take the next sequence number (as the service role).
        conn = await asyncpg.connect(settings.app_dsn)
        try:
            await conn.execute(
                """INSERT INTO transfers
                   SELECT seq + 1, id || '-foreign', kind, debit_account_id, credit_account_id,
                          amount_minor, currency, 0, 0, pending_id, timeout_s, expires_at, code,
                          body_hash, created_at, prev_hash, hash
                   FROM transfers WHERE seq = $1""",
                first["seq"],
            )
        finally:
            await conn.close()
        results = await asyncio.gather(
            *(
                transfers(client, single(f"{tag}-{i}", f"{tag}-a", f"{tag}-b", 10))
                for i in range(1, 21)
            )
        )
        assert [r[0]["status"] for r in results] == ["created"] * 20
        seqs = sorted(r[0]["seq"] for r in results)
        assert seqs[0] == first["seq"] + 2, "the colliding sequence number was skipped"
        assert counters(await get_account(client, f"{tag}-b")) == (0, 0, 0, 1 + 20 * 10)
        conn = await asyncpg.connect(settings.owner_dsn)
        try:
            stored = dict(
                await conn.fetch("SELECT id, seq FROM transfers WHERE id LIKE $1", f"{tag}-%")
            )
        finally:
            await conn.close()
        for i, result in enumerate(results, start=1):  # every answer names a committed row
            assert stored[f"{tag}-{i}"] == result[0]["seq"]
        replay = await transfers(client, single(f"{tag}-5", f"{tag}-a", f"{tag}-b", 10))
        assert replay == results[4]
