"""The TCC participant: barrier semantics for each classic anomaly, expiry, and races."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from services.ledger.app import create_app
from tests.ledger.conftest import TOKEN, fresh_settings
from tests.ledger.helpers import account, counters, get_account, single, transfers
from tests.support.waiting import wait_until

Client = TestClient[Any, Any]


async def _funded(client: Client, tag: str, amount: int = 1_000) -> None:
    await account(client, f"{tag}-m", no_overdraft=True)
    await account(client, f"{tag}-f")
    await account(client, f"{tag}-s")
    await account(client, f"{tag}-fee")
    await transfers(client, single(f"{tag}-fund", f"{tag}-f", f"{tag}-m", amount))


def _legs(tag: str, amount: int = 100, fee: int = 0) -> dict[str, Any]:
    legs = [
        {
            "debit_account_id": f"{tag}-m",
            "credit_account_id": f"{tag}-s",
            "amount_minor": amount,
            "currency": "EUR",
        }
    ]
    if fee:
        legs.append({**legs[0], "credit_account_id": f"{tag}-fee", "amount_minor": fee})
    return {"legs": legs}


async def _op(client: Client, tag: str, op: str, branch: str = "b1", **body: Any) -> Any:
    response = await client.post(f"/v1/tcc/{tag}/{branch}/{op}", json=body or None)
    return response.status, await response.json(content_type=None)


async def _barrier_rows(owner: asyncpg.Connection, gid: str) -> list[tuple[str, str]]:
    rows = await owner.fetch("SELECT op, status FROM tcc_barrier WHERE gid = $1 ORDER BY op", gid)
    return [(r["op"], r["status"]) for r in rows]


async def test_try_holds_every_leg_and_confirm_posts_them(client: Client, tag: str) -> None:
    await _funded(client, tag)
    status, tried = await _op(client, tag, "try", **_legs(tag, 300, fee=20))
    assert status == 200 and tried["status"] == "tried" and len(tried["transfer_ids"]) == 2
    assert counters(await get_account(client, f"{tag}-m")) == (320, 0, 0, 1_000)
    status, confirmed = await _op(client, tag, "confirm")
    assert status == 200 and confirmed["status"] == "confirmed"
    assert counters(await get_account(client, f"{tag}-m")) == (0, 320, 0, 1_000)
    assert counters(await get_account(client, f"{tag}-fee")) == (0, 0, 0, 20)


async def test_repeated_try_confirm_and_cancel_have_one_effect_each(
    client: Client, tag: str, owner: asyncpg.Connection
) -> None:
    await _funded(client, tag)
    first = await _op(client, tag, "try", **_legs(tag))
    assert await _op(client, tag, "try", **_legs(tag)) == first
    confirmed = await _op(client, tag, "confirm")
    assert await _op(client, tag, "confirm") == confirmed
    assert counters(await get_account(client, f"{tag}-m")) == (0, 100, 0, 1_000)
    assert await _barrier_rows(owner, tag) == [("confirm", "confirmed"), ("try", "tried")]

    await _funded(client, f"{tag}x")
    await _op(client, f"{tag}x", "try", **_legs(f"{tag}x"))
    cancelled = await _op(client, f"{tag}x", "cancel")
    assert await _op(client, f"{tag}x", "cancel") == cancelled
    assert cancelled[0] == 200 and len(cancelled[1]["transfer_ids"]) == 1
    assert counters(await get_account(client, f"{tag}x-m")) == (0, 0, 0, 1_000)


async def test_cancel_before_try_leaves_tombstone_and_no_transfer(
    client: Client, tag: str, owner: asyncpg.Connection
) -> None:
    await _funded(client, tag)
    status, body = await _op(client, tag, "cancel")
    assert status == 200 and body == {
        "gid": tag,
        "branch_id": "b1",
        "status": "cancelled",
        "transfer_ids": [],
    }
    assert await _barrier_rows(owner, tag) == [("cancel", "cancelled")]
    assert (
        await owner.fetchval("SELECT count(*) FROM transfers WHERE id LIKE $1", f"tcc:{tag}:%") == 0
    )


async def test_try_after_cancel_is_suspended_with_no_effect(
    client: Client, tag: str, owner: asyncpg.Connection
) -> None:
    await _funded(client, tag)
    await _op(client, tag, "cancel")
    status, problem = await _op(client, tag, "try", **_legs(tag))
    assert status == 409 and problem["code"] == "tcc_branch_cancelled"
    assert counters(await get_account(client, f"{tag}-m")) == (0, 0, 0, 1_000)
    assert await _barrier_rows(owner, tag) == [("cancel", "cancelled")]
    status, problem = await _op(client, tag, "confirm")
    assert status == 409 and problem["code"] == "tcc_branch_cancelled"


async def test_rejected_try_is_remembered_cancel_is_a_noop_and_confirm_fails_loudly(
    client: Client, tag: str
) -> None:
    await _funded(client, tag, amount=50)
    status, problem = await _op(client, tag, "try", **_legs(tag, 100))
    assert status == 422 and problem["code"] == "insufficient_funds"
    # Funds arrive later, yet the same branch's try stays rejected: the outcome is remembered.
    await transfers(client, single(f"{tag}-more", f"{tag}-f", f"{tag}-m", 500))
    assert (await _op(client, tag, "try", **_legs(tag, 100)))[1]["code"] == "insufficient_funds"
    status, problem = await _op(client, tag, "confirm")
    assert status == 409 and problem["code"] == "tcc_try_rejected"
    status, body = await _op(client, tag, "cancel")
    assert status == 200 and body["status"] == "cancelled" and body["transfer_ids"] == []
    assert counters(await get_account(client, f"{tag}-m")) == (0, 0, 0, 550)


async def test_cancel_after_confirm_and_confirm_before_try_are_conflicts(
    client: Client, tag: str
) -> None:
    await _funded(client, tag)
    status, problem = await _op(client, tag, "confirm")
    assert status == 409 and problem["code"] == "tcc_branch_not_tried"
    await _op(client, tag, "try", **_legs(tag))
    await _op(client, tag, "confirm")
    status, problem = await _op(client, tag, "cancel")
    assert status == 409 and problem["code"] == "tcc_branch_confirmed"
    assert counters(await get_account(client, f"{tag}-s")) == (0, 0, 0, 100)


async def test_try_repeated_with_other_legs_is_a_conflict(client: Client, tag: str) -> None:
    await _funded(client, tag)
    await _op(client, tag, "try", **_legs(tag, 100))
    status, problem = await _op(client, tag, "try", **_legs(tag, 101))
    assert status == 409 and problem["code"] == "tcc_branch_conflict"
    assert counters(await get_account(client, f"{tag}-m")) == (100, 0, 0, 1_000)


async def test_expiry_appends_a_record_and_never_undoes_a_confirmed_hold(
    client: Client, tag: str, owner: asyncpg.Connection
) -> None:
    await _funded(client, tag)
    await _op(client, tag, "try", "kept", **_legs(tag, 100), timeout_s=1)
    await _op(client, tag, "try", "lapsed", **_legs(tag, 200), timeout_s=1)
    assert (await _op(client, tag, "confirm", "kept"))[0] == 200

    async def lapsed_expired() -> bool:
        kinds = await owner.fetch(
            "SELECT kind FROM transfers WHERE pending_id = $1", f"tcc:{tag}:lapsed:try:0"
        )
        return [k["kind"] for k in kinds] == ["expire"]

    await wait_until(lapsed_expired, timeout_s=10, message="the lapsed hold's expiry record")
    kept = await owner.fetch(
        "SELECT kind FROM transfers WHERE pending_id = $1", f"tcc:{tag}:kept:try:0"
    )
    assert [k["kind"] for k in kept] == ["post"]
    assert counters(await get_account(client, f"{tag}-m")) == (0, 100, 0, 1_000)
    # The expired branch: a late confirm is refused, a cancel succeeds with nothing to void.
    status, problem = await _op(client, tag, "confirm", "lapsed")
    assert status == 409 and problem["code"] == "tcc_hold_expired"
    status, body = await _op(client, tag, "cancel", "lapsed")
    assert status == 200 and body["transfer_ids"] == []


async def test_race_of_100_gids_with_random_interleavings_from_concurrent_clients(
    run_id: str, granted_dsns: list[str], tag: str
) -> None:
    """Each gid gets a random shuffle of try/confirm/cancel calls (with duplicates, and some
    cancels sent before any try), fired from concurrent clients. Whatever the order, a gid
    whose cancel landed has no hold and no posting left; a confirmed gid has exactly one."""
    settings = await fresh_settings(run_id, granted_dsns, "race")
    rng = random.Random(20_261_122)
    async with TestClient(
        TestServer(create_app(settings)), headers={"X-Service-Token": TOKEN}
    ) as client:
        await _funded(client, tag, amount=10**9)
        plans: list[tuple[str, str]] = []
        for g in range(100):
            ops = ["try"] * rng.randint(1, 2) + ["cancel"] * rng.randint(0, 2)
            ops += ["confirm"] * rng.randint(0, 2)
            rng.shuffle(ops)
            if g % 10 == 0:
                ops.insert(0, "cancel")  # cancel-before-try
            plans.extend((f"{tag}g{g}", op) for op in ops)
        rng.shuffle(plans)

        async def call(gid: str, op: str) -> tuple[int, Any]:
            body = _legs(tag, 7) if op == "try" else None
            response = await client.post(f"/v1/tcc/{gid}/b1/{op}", json=body)
            return response.status, await response.json(content_type=None)

        semaphore = asyncio.Semaphore(32)

        async def bounded(gid: str, op: str) -> tuple[int, Any]:
            async with semaphore:
                return await call(gid, op)

        answers = await asyncio.gather(*(bounded(gid, op) for gid, op in plans))
        assert all(status in (200, 409) for status, _ in answers), answers

    conn = await asyncpg.connect(settings.owner_dsn)
    try:
        barriers = await conn.fetch("SELECT gid, op, status FROM tcc_barrier")
        effects = await conn.fetch(
            """SELECT split_part(id, ':', 2) AS gid, kind, count(*) AS n FROM transfers
               WHERE id LIKE 'tcc:%' GROUP BY 1, 2"""
        )
        merchant = await conn.fetchrow(
            "SELECT debits_pending, debits_posted FROM accounts WHERE id = $1", f"{tag}-m"
        )
        verify_ok = await conn.fetchval("SELECT count(*) FROM transfers")  # non-empty
    finally:
        await conn.close()
    ops_by_gid: dict[str, dict[str, str]] = {}
    for b in barriers:
        ops_by_gid.setdefault(b["gid"], {})[b["op"]] = b["status"]
    kinds: dict[str, dict[str, int]] = {}
    for e in effects:
        kinds.setdefault(e["gid"], {})[e["kind"]] = e["n"]
    assert len(ops_by_gid) == 100 and verify_ok > 0
    confirmed = [g for g, ops in ops_by_gid.items() if "confirm" in ops]
    cancelled = [g for g, ops in ops_by_gid.items() if "cancel" in ops]
    assert not set(confirmed) & set(cancelled), "a branch was both confirmed and cancelled"
    for gid in confirmed:
        assert kinds[gid] == {"pending": 1, "post": 1}, (gid, kinds.get(gid))
    for gid in cancelled:
        got = kinds.get(gid, {})
        assert got in ({}, {"pending": 1, "void": 1}), (gid, got)
    open_holds = [g for g, ops in ops_by_gid.items() if set(ops) == {"try"}]
    assert merchant["debits_pending"] == 7 * len(open_holds)
    assert merchant["debits_posted"] == 7 * len(confirmed)
