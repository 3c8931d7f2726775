"""Never pay twice: lost responses under concurrency, a router killed mid-call, and several
router instances agreeing on a channel's health."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import msgspec

from services.kit import db, migrations
from tests.router.conftest import (
    BANK_KEY,
    BANKS,
    CALLBACK_SECRET,
    DEFAULT_CHANNELS,
    MIGRATIONS,
    SERVICE_TOKEN,
    BankAdmin,
    RouterFactory,
    submission,
    write_yaml,
)
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port
from tests.support.waiting import wait_until

PAYOUTS = 200
CONCURRENCY = 40


async def test_lost_responses_under_concurrency_execute_each_payout_once_or_never(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    # Breakers are made patient: this test is about exactly-once, not about tripping.
    router = await make_router(
        env={
            "ROUTER_BANK_TIMEOUT_MS": "800",
            "ROUTER_BREAKER_CONSECUTIVE_FAULTS": "30",
            "ROUTER_BREAKER_MIN_SAMPLES": "60",
        }
    )
    for bank in BANKS:
        await bank_admin.behave(
            bank,
            "normal",
            lost_response_rate=0.3,
            lost_response_mode="mixed",
            lost_response_delay_ms=5000,
        )
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> dict[str, Any]:
        async with gate:
            return await router.call("POST", "/v1/submissions", json=submission(f"po_lost_{i}"))

    first = await asyncio.gather(*(one(i) for i in range(PAYOUTS)))
    unknown_at_first = sum(1 for v in first if v["status"] == "unknown")
    assert unknown_at_first >= PAYOUTS * 0.15, unknown_at_first  # the chaos really happened
    for bank in BANKS:
        await bank_admin.behave(bank)

    pool = router.service.pool

    async def settled() -> bool:
        pending = await pool.fetchval(
            "SELECT count(*) FROM attempt WHERE status IN ('sending', 'unknown', 'submitted')"
        )
        return pending == 0

    await wait_until(settled, timeout_s=60, interval_s=0.2, message="all attempts resolved")

    truth: Counter[str] = Counter()
    for bank in BANKS:
        for t in await bank_admin.executed(bank):
            if t["status"] == "paid":
                truth[t["reference"]] += 1
    assert all(n == 1 for n in truth.values()), "a reference executed twice"
    rows = await pool.fetch("SELECT payout_id, attempt_id, status FROM attempt")
    by_payout: dict[str, list[Any]] = {}
    for r in rows:
        by_payout.setdefault(r["payout_id"], []).append(r)
    for i in range(PAYOUTS):  # a payout no channel would take was never sent anywhere
        if f"po_lost_{i}" not in by_payout:
            view = await router.call("GET", f"/v1/submissions/po_lost_{i}")
            assert view["status"] == "failed" and view["attempts"] == []
    succeeded = 0
    for payout_id, attempts in by_payout.items():
        executed = [a["attempt_id"] for a in attempts if truth[a["attempt_id"]]]
        assert len(executed) <= 1, (payout_id, executed)  # at most once at the banks
        ours = [a["attempt_id"] for a in attempts if a["status"] == "succeeded"]
        assert ours == executed, (payout_id, ours, executed)  # router agrees with the truth
        succeeded += len(ours)
    assert succeeded >= PAYOUTS * 0.9


async def test_a_router_killed_mid_call_resolves_the_attempt_by_inquiry_after_restart(
    run_id: str, amqp_prefix: str, banksim: ServiceProcess, bank_admin: BankAdmin, tmp_path: Any
) -> None:
    prefix = f"{run_id}_{secrets.token_hex(3)}_"
    await db.ensure_database(infra.database_url(), prefix + "router")
    dsn = db.service_dsn(infra.database_url(), prefix, "router")
    await migrations.apply(dsn, MIGRATIONS)
    channels, rules = tmp_path / "channels.yaml", tmp_path / "rules.yaml"
    write_yaml(channels, {"channels": DEFAULT_CHANNELS})
    write_yaml(
        rules,
        {"rules": [{"id": "n", "merchant_id": "*", "action": "pin", "channels": ["ch_north"]}]},
    )
    port = free_port()
    env = {
        "ROUTER_PORT": str(port),
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": prefix,
        "AMQP_URL": infra.amqp_url(),
        "AMQP_PREFIX": amqp_prefix,
        "SERVICE_TOKEN": SERVICE_TOKEN,
        "BANKSIM_URL": banksim.url,
        "BANKSIM_CLIENT_KEY": BANK_KEY,
        "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
        "ROUTER_CHANNELS_FILE": str(channels),
        "ROUTER_RULES_FILE": str(rules),
        "ROUTER_BANK_TIMEOUT_MS": "5000",
        "ROUTER_INQUIRY_BASE_MS": "200",
        "ROUTER_RECOVERY_POLL_MS": "100",
    }
    router = ServiceProcess("router-crash", "services.router", env, port).start()
    await bank_admin.behave("northbank", "slow", latency_median_ms=2000, latency_p99_ms=2000)
    conn = await asyncpg.connect(dsn)
    try:
        async with aiohttp.ClientSession() as session:
            call = asyncio.create_task(
                session.post(
                    router.url + "/v1/submissions",
                    json=submission("po_crash"),
                    headers={"X-Service-Token": SERVICE_TOKEN},
                )
            )

            async def sending() -> Any:
                return await conn.fetchval(
                    "SELECT attempt_id FROM attempt WHERE payout_id = 'po_crash'"
                    " AND status = 'sending'"
                )

            attempt_id = await wait_until(sending, timeout_s=10, message="attempt committed")
            router.kill()  # SIGKILL while the bank is still working on it
            try:
                await call
            except aiohttp.ClientError:
                pass
        await bank_admin.behave("northbank")
        assert await sending() == attempt_id  # left behind, unresolved

        router = ServiceProcess("router-crash", "services.router", env, port).start()

        async def resolved() -> Any:
            return await conn.fetchval(
                "SELECT status FROM attempt WHERE attempt_id = $1 AND status = 'succeeded'",
                attempt_id,
            )

        await wait_until(resolved, timeout_s=20, message="recovery resolved the attempt")
        count = await conn.fetchval("SELECT count(*) FROM attempt WHERE payout_id = 'po_crash'")
        assert count == 1  # recovery inquired; it never sent again
        executed = [
            t for t in await bank_admin.executed("northbank") if t["reference"] == attempt_id
        ]
        assert len(executed) == 1
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type = 'attempt.resolved'"
        )
        assert events == 1
    finally:
        await conn.close()
        router.stop()


async def test_router_instances_converge_on_a_breaker_opened_by_one_of_them(
    make_router: RouterFactory, bank_admin: BankAdmin
) -> None:
    env = {"ROUTER_BREAKER_CONSECUTIVE_FAULTS": "2", "ROUTER_BREAKER_OPEN_MS": "60000"}
    pin = [{"id": "n", "merchant_id": "*", "action": "prefer", "channels": ["ch_north"]}]
    first = await make_router(env=env, rules=pin, db_key="shared")
    second = await make_router(env=env, rules=pin, db_key="shared")
    assert first.settings.instance_id != second.settings.instance_id
    await bank_admin.behave("northbank", "outage")
    for _ in range(2):
        view = await first.call("POST", "/v1/submissions", json=submission())
        assert view["status"] == "succeeded" and view["channel_id"] != "ch_north"

    async def state(router: Any) -> str:
        channels = (await router.call("GET", "/v1/channels"))["channels"]
        return next(c for c in channels if c["id"] == "ch_north")["health"]["breaker_state"]

    assert await state(first) == "open"
    await wait_until(
        lambda: _is(state(second), "open"), timeout_s=10, message="second instance follows"
    )
    payloads = await first.service.pool.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'channel.health_changed'"
    )
    announced = [msgspec.json.decode(bytes(p["payload"]))["data"] for p in payloads]
    opened = [e for e in announced if e["breaker_state"] == "open"]
    assert opened and opened[0]["channel_id"] == "ch_north"
    assert {e["instance_id"] for e in opened} == {first.settings.instance_id}
    assert opened[0]["reason"] == "consecutive_faults" and opened[0]["success_rate_ppm"] < 1_000_000
    view = await second.call("POST", "/v1/submissions", json=submission())
    assert [a["channel_id"] for a in view["attempts"]] != ["ch_north"]
    assert view["attempts"][0]["channel_id"] != "ch_north"  # no attempt wasted on it


async def _is(value: Any, expected: str) -> bool:
    return (await value) == expected
