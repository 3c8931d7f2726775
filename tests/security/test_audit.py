"""Operator and finance actions leave who, when, what and why in tables that refuse UPDATE,
DELETE and TRUNCATE, even from the connection that owns them (an insider with the service's
database credentials cannot rewrite the trail)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from services.kit import db
from tests.security.conftest import Client, payout_body
from tests.support.suite import Suite

pytestmark = pytest.mark.e2e


@pytest.fixture
async def connect(stack: Suite) -> AsyncIterator[Callable[[str], object]]:
    opened: list[asyncpg.Connection] = []

    async def to(service: str) -> asyncpg.Connection:
        dsn = db.service_dsn(stack.spec.database_url, stack.spec.db_prefix, service)
        conn = await asyncpg.connect(dsn)
        opened.append(conn)
        return conn

    yield to
    for conn in opened:
        await conn.close()


async def _refuses_rewrites(conn: asyncpg.Connection, table: str, where: str) -> None:
    for sql in (
        f"UPDATE {table} SET actor = 'someone else' WHERE {where}",
        f"DELETE FROM {table} WHERE {where}",
        f"TRUNCATE {table}",
    ):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(sql)


async def test_operator_actions_are_audited_and_the_trail_cannot_be_rewritten(
    client: Client, connect: Callable[[str], object]
) -> None:
    merchant = await client.merchant()
    status, _ = await client.admin(
        "PUT", f"/admin/merchants/{merchant.id}/limits", {"review_threshold": 1_000}
    )
    assert status == 200
    status, key = await client.admin("POST", f"/admin/merchants/{merchant.id}/keys")
    assert status == 201
    status, _ = await client.admin("DELETE", f"/admin/merchants/{merchant.id}/keys/{key['id']}")
    assert status == 200
    status, payout, _ = await client.call(
        "POST",
        "payout",
        "/v1/payouts",
        json=payout_body(amount=5_000),
        headers={**merchant.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert status in (200, 201, 202) and payout["status"] == "pending_review", payout
    status, approved = await client.admin(
        "POST", f"/admin/payouts/{payout['id']}/approve", {"note": "checked the invoice"}
    )
    assert status == 200, approved
    status, trail = await client.admin("GET", f"/admin/payouts/{payout['id']}/audit")
    assert status == 200, trail
    approval = [r for r in trail["data"] if "approve" in r["action"]]
    assert approval, trail
    assert approval[0]["actor"] and approval[0]["created_at"]
    assert "checked the invoice" in str(approval[0]["detail"]), approval

    conn = await connect("payout")  # type: ignore[misc]
    actions = {
        r["action"]
        for r in await conn.fetch(
            "SELECT action FROM audit_log WHERE merchant_id = $1", merchant.id
        )
    }
    assert {"merchant_created", "limits_set", "api_key_created", "api_key_revoked"} <= actions
    await _refuses_rewrites(conn, "audit_log", f"merchant_id = '{merchant.id}'")
    assert await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE merchant_id = $1", merchant.id
    ) >= len(actions)


async def test_kill_switch_changes_are_audited_and_the_trail_cannot_be_rewritten(
    client: Client, connect: Callable[[str], object]
) -> None:
    path = "/v1/channels/ch_sec_atlas/kill_switches"
    actor = f"ops-{uuid.uuid4().hex[:6]}"
    for engaged in (True, False):
        status, body, _ = await client.call(
            "PUT",
            "router",
            f"{path}/inquire",
            json={"engaged": engaged, "reason": "bank incident drill", "actor": actor},
            headers=client.service_headers,
        )
        assert status == 200, body
    status, listing, _ = await client.call("GET", "router", path, headers=client.service_headers)
    assert status == 200, listing
    mine = [a for a in listing["audit"] if a["actor"] == actor]
    assert [a["engaged"] for a in mine] in ([True, False], [False, True]), mine
    assert all(a["reason"] == "bank incident drill" and a["changed_at"] for a in mine)
    conn = await connect("router")  # type: ignore[misc]
    await _refuses_rewrites(conn, "kill_switch_audit", f"actor = '{actor}'")


async def test_the_break_resolution_trail_refuses_truncate(
    connect: Callable[[str], object],
) -> None:
    conn = await connect("recon")  # type: ignore[misc]
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await conn.execute("TRUNCATE recon_break_audit CASCADE")
