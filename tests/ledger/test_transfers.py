"""Accounts and transfers through the real HTTP API against real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from services.ledger.keys import writer_key
from tests.ledger.helpers import account, counters, get_account, single, transfers

Client = TestClient[Any, Any]


async def test_single_phase_transfer_moves_posted_counters_and_available(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-src")
    await account(client, f"{tag}-dst", no_overdraft=True)
    [result] = await transfers(client, single(f"{tag}-t1", f"{tag}-src", f"{tag}-dst", 1_250))
    assert result["status"] == "created" and result["seq"] > 0
    src, dst = await get_account(client, f"{tag}-src"), await get_account(client, f"{tag}-dst")
    assert counters(src) == (0, 1_250, 0, 0)
    assert counters(dst) == (0, 0, 0, 1_250)
    assert dst["available"] == 1_250 and src["available"] == -1_250


async def test_creating_an_account_twice_is_idempotent_but_another_body_conflicts(
    client: Client, tag: str
) -> None:
    body = {"id": f"{tag}-a", "currency": "EUR", "code": 3}
    first = await client.post("/v1/accounts", json=body)
    again = await client.post("/v1/accounts", json=body)
    other = await client.post("/v1/accounts", json={**body, "currency": "USD"})
    assert (first.status, again.status, other.status) == (201, 200, 409)
    assert (await other.json())["code"] == "account_exists_with_different_body"
    assert (await get_account(client, f"{tag}-a"))["currency"] == "EUR"


async def test_no_overdraft_flag_rejects_and_the_rejection_is_remembered(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-m", no_overdraft=True)
    await account(client, f"{tag}-f")
    await transfers(client, single(f"{tag}-fund", f"{tag}-f", f"{tag}-m", 100))
    [rejected] = await transfers(client, single(f"{tag}-big", f"{tag}-m", f"{tag}-f", 101))
    assert rejected == {
        "index": 0,
        "id": f"{tag}-big",
        "status": "rejected",
        "code": "exceeds_credits",
        "seq": None,
    }
    # Funds arrive, but the same id still answers with its remembered rejection.
    await transfers(client, single(f"{tag}-fund2", f"{tag}-f", f"{tag}-m", 1_000))
    [replayed] = await transfers(client, single(f"{tag}-big", f"{tag}-m", f"{tag}-f", 101))
    assert replayed == rejected
    assert counters(await get_account(client, f"{tag}-m")) == (0, 0, 0, 1_100)


async def test_replay_returns_the_same_result_and_a_different_body_is_a_409(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    transfer = single(f"{tag}-t", f"{tag}-a", f"{tag}-b", 10)
    [first] = await transfers(client, transfer)
    [again] = await transfers(client, transfer)
    assert again == first
    conflict = await transfers(client, {**transfer, "amount_minor": 11}, expect=409)
    assert conflict["code"] == "transfer_id_conflict"
    assert conflict["errors"][0]["id"] == f"{tag}-t"
    assert counters(await get_account(client, f"{tag}-b")) == (0, 0, 0, 10)


async def test_pending_then_partial_post_releases_the_rest(client: Client, tag: str) -> None:
    await account(client, f"{tag}-m", no_overdraft=True)
    await account(client, f"{tag}-f")
    await account(client, f"{tag}-s")
    await transfers(client, single(f"{tag}-fund", f"{tag}-f", f"{tag}-m", 500))
    [hold] = await transfers(
        client, single(f"{tag}-h", f"{tag}-m", f"{tag}-s", 300, kind="pending", timeout_s=3600)
    )
    assert hold["status"] == "created"
    held = await get_account(client, f"{tag}-m")
    assert counters(held) == (300, 0, 0, 500) and held["available"] == 200
    [post] = await transfers(
        client, {"id": f"{tag}-p", "kind": "post", "pending_id": f"{tag}-h", "amount_minor": 120}
    )
    assert post["status"] == "created"
    after = await get_account(client, f"{tag}-m")
    assert counters(after) == (0, 120, 0, 500) and after["available"] == 380
    assert counters(await get_account(client, f"{tag}-s")) == (0, 0, 0, 120)


async def test_a_pending_is_resolved_at_most_once(client: Client, tag: str) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    await transfers(client, single(f"{tag}-h", f"{tag}-a", f"{tag}-b", 50, kind="pending"))
    results = await transfers(
        client,
        {"id": f"{tag}-v", "kind": "void", "pending_id": f"{tag}-h"},
        {"id": f"{tag}-p", "kind": "post", "pending_id": f"{tag}-h"},
        {"id": f"{tag}-v2", "kind": "void", "pending_id": f"{tag}-h"},
    )
    assert [(r["status"], r["code"]) for r in results] == [
        ("created", None),
        ("rejected", "pending_transfer_already_voided"),
        ("rejected", "pending_transfer_already_voided"),
    ]
    assert counters(await get_account(client, f"{tag}-a")) == (0, 0, 0, 0)


async def test_the_database_refuses_a_second_resolution_even_when_code_is_bypassed(
    client: Client, tag: str, settings: Any
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    await transfers(client, single(f"{tag}-h", f"{tag}-a", f"{tag}-b", 50, kind="pending"))
    await transfers(client, {"id": f"{tag}-v", "kind": "void", "pending_id": f"{tag}-h"})
    conn = await asyncpg.connect(settings.app_dsn)  # the service's own role
    try:
        row = await conn.fetchrow(f"SELECT * FROM transfers WHERE id = '{tag}-v'")
        values = dict(row)
        values.update(seq=10**12 + row["seq"], id=f"{tag}-v-again")
        columns = ", ".join(values)
        placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
        try:
            await conn.execute(
                f"INSERT INTO transfers ({columns}) VALUES ({placeholders})", *values.values()
            )
            raise AssertionError("a second resolution of one pending was accepted")
        except asyncpg.UniqueViolationError as exc:
            assert "transfers_pending_resolved_once" in str(exc)
    finally:
        await conn.close()


async def test_linked_transfers_fail_together(client: Client, tag: str) -> None:
    await account(client, f"{tag}-m", no_overdraft=True)
    await account(client, f"{tag}-f")
    await account(client, f"{tag}-x")
    await transfers(client, single(f"{tag}-fund", f"{tag}-f", f"{tag}-m", 100))
    results = await transfers(
        client,
        single(f"{tag}-1", f"{tag}-m", f"{tag}-x", 60, linked=True),
        single(f"{tag}-2", f"{tag}-m", f"{tag}-x", 60),  # together they overdraw
        single(f"{tag}-3", f"{tag}-m", f"{tag}-x", 40),  # independent, fits
    )
    assert [(r["status"], r["code"]) for r in results] == [
        ("rejected", "linked_event_failed"),
        ("rejected", "exceeds_credits"),
        ("created", None),
    ]
    assert counters(await get_account(client, f"{tag}-x")) == (0, 0, 0, 40)
    open_chain = await transfers(client, single(f"{tag}-4", f"{tag}-f", f"{tag}-x", 1, linked=True))
    assert open_chain[0]["code"] == "linked_event_chain_open"


async def test_a_linked_pending_can_be_posted_later_in_the_same_chain(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    results = await transfers(
        client,
        single(f"{tag}-h", f"{tag}-a", f"{tag}-b", 70, kind="pending", linked=True),
        {"id": f"{tag}-p", "kind": "post", "pending_id": f"{tag}-h"},
    )
    assert [r["status"] for r in results] == ["created", "created"]
    assert counters(await get_account(client, f"{tag}-b")) == (0, 0, 0, 70)


async def test_concurrent_requests_on_one_hot_account_are_batched_and_exact(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-hot", no_overdraft=True)
    await account(client, f"{tag}-src")
    await transfers(client, single(f"{tag}-fund", f"{tag}-src", f"{tag}-hot", 150))
    writer = client.server.app[writer_key]
    batches_before = writer.stats.batches
    results = await asyncio.gather(
        *(
            transfers(client, single(f"{tag}-o{i}", f"{tag}-hot", f"{tag}-src", 1))
            for i in range(200)
        )
    )
    statuses = [r[0]["status"] for r in results]
    assert statuses.count("created") == 150 and statuses.count("rejected") == 50
    assert counters(await get_account(client, f"{tag}-hot")) == (0, 150, 0, 150)
    assert writer.stats.batches - batches_before < 200, "requests were not batched"


async def test_history_pages_with_a_cursor_and_balance_as_of_a_point(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-a")
    await account(client, f"{tag}-b")
    seqs = []
    for i in range(5):
        [r] = await transfers(client, single(f"{tag}-{i}", f"{tag}-a", f"{tag}-b", 10 * (i + 1)))
        seqs.append(r["seq"])
    first = await (await client.get(f"/v1/accounts/{tag}-b/transfers?limit=2")).json()
    assert [t["id"] for t in first["transfers"]] == [f"{tag}-0", f"{tag}-1"]
    second = await (
        await client.get(f"/v1/accounts/{tag}-b/transfers?limit=2&cursor={first['next_cursor']}")
    ).json()
    third = await (
        await client.get(f"/v1/accounts/{tag}-b/transfers?limit=2&cursor={second['next_cursor']}")
    ).json()
    assert [t["id"] for t in second["transfers"]] == [f"{tag}-2", f"{tag}-3"]
    assert [t["id"] for t in third["transfers"]] == [f"{tag}-4"] and third["next_cursor"] is None

    balance = await (await client.get(f"/v1/accounts/{tag}-b/balance?as_of_seq={seqs[2]}")).json()
    assert balance["credits_posted"] == 10 + 20 + 30 and balance["as_of_seq"] == seqs[2]
    transfer = await (await client.get(f"/v1/transfers/{tag}-1")).json()
    at = transfer["created_at"]
    by_time = await (await client.get(f"/v1/accounts/{tag}-b/balance", params={"as_of": at})).json()
    assert by_time["credits_posted"] >= 30  # everything committed at or before that instant
    assert by_time["as_of_seq"] >= seqs[1]
    now = await (await client.get(f"/v1/accounts/{tag}-b/balance")).json()
    assert now["credits_posted"] == 150 == (await get_account(client, f"{tag}-b"))["credits_posted"]


async def test_verify_reports_an_intact_chain_and_matching_counters(client: Client) -> None:
    report = await (await client.get("/v1/verify")).json()
    assert report["ok"] is True, report
    assert report["counters_ok"] and report["conservation_ok"]


async def test_a_large_batch_commits_in_order_and_verifies_replays_and_folds_exactly(
    client: Client, tag: str
) -> None:
    await account(client, f"{tag}-src")
    await account(client, f"{tag}-dst", no_overdraft=True)
    size = 1_200
    items = [single(f"{tag}-{i}", f"{tag}-src", f"{tag}-dst", i + 1) for i in range(size)]
    results = await transfers(client, *items)
    assert [r["status"] for r in results] == ["created"] * size
    seqs = [r["seq"] for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + size))
    assert counters(await get_account(client, f"{tag}-dst")) == (0, 0, 0, size * (size + 1) // 2)
    assert await transfers(client, *items) == results
    report = await (await client.get("/v1/verify")).json()
    assert report["ok"], report
