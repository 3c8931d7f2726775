"""A transfer is recorded when the bank receives it: ``processing`` until it executes, never a
404 in between, executed once whatever the repeats, finished after a restart from the outcome
drawn at receipt."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.kit import db
from tests.banksim.conftest import ADMIN_HEADERS, BANK_HEADERS, banksim_env, transfer
from tests.banksim.test_bank_api import behave, inquire, journal, post, ref
from tests.support import infra
from tests.support.processes import ServiceProcess, free_port
from tests.support.waiting import wait_until


async def processing_rows(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str
) -> list[dict[str, Any]]:
    async with http.get(
        f"{sim.url}/admin/banks/{bank}/executed",
        params={"status": "processing"},
        headers=ADMIN_HEADERS,
    ) as resp:
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["transfers"])


async def usage(sim: ServiceProcess, bank: str) -> int:
    conn = await asyncpg.connect(
        db.service_dsn(infra.database_url(), sim.env["DB_NAME_PREFIX"], "banksim")
    )
    try:
        return int(
            await conn.fetchval(
                "SELECT COALESCE(sum(used_minor), 0) FROM bank_daily_usage WHERE bank = $1", bank
            )
        )
    finally:
        await conn.close()


async def test_an_inquiry_during_processing_answers_processing_then_paid(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    await behave(http, banksim, "processor", "normal", processing_delay_ms=1500)
    reference = ref()
    try:
        sent = asyncio.create_task(post(http, banksim, "processor", transfer(reference, 1234)))

        async def seen_processing() -> dict[str, Any]:
            status, body = await inquire(http, banksim, "processor", reference)
            assert status in (200, 404), body
            return body if status == 200 else {}

        # The row is committed at receipt: the inquiry finds it long before it executes.
        during = await wait_until(seen_processing, timeout_s=5, message="the received transfer")
        assert during["status"] == "processing", during
        assert (during["executed_at"], during["failure_code"]) == (None, None)
        assert during["bank_reference"]
        assert not sent.done(), "the transfer answers only once executed"
        assert [t["reference"] for t in await processing_rows(http, banksim, "processor")] == [
            reference
        ]
        assert reference not in {t["reference"] for t in await journal(http, banksim, "processor")}
        status, paid = await sent
    finally:
        await behave(http, banksim, "processor", "normal")
    assert (status, paid["status"]) == (200, "paid")
    assert paid["bank_reference"] == during["bank_reference"]
    status, after = await inquire(http, banksim, "processor", reference)
    assert (status, after) == (200, paid)
    rows = [t for t in await journal(http, banksim, "processor") if t["reference"] == reference]
    assert [(t["status"], t["amount_minor"]) for t in rows] == [("paid", 1234)]
    assert await processing_rows(http, banksim, "processor") == []


async def test_concurrent_repeats_during_processing_answer_processing_and_execute_once(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    await behave(http, banksim, "repeatproc", "normal", processing_delay_ms=1000)
    reference = ref()
    try:
        first = asyncio.create_task(post(http, banksim, "repeatproc", transfer(reference, 555)))
        await wait_until(
            lambda: processing_rows(http, banksim, "repeatproc"), message="the first receipt"
        )
        repeats = await asyncio.gather(
            *(post(http, banksim, "repeatproc", transfer(reference, 555)) for _ in range(20))
        )
        status, paid = await first
    finally:
        await behave(http, banksim, "repeatproc", "normal")
    assert {(s, a["status"]) for s, a in repeats} == {(200, "processing")}
    assert {a["bank_reference"] for _, a in repeats} == {paid["bank_reference"]}
    assert (status, paid["status"]) == (200, "paid")
    rows = [t for t in await journal(http, banksim, "repeatproc") if t["reference"] == reference]
    assert len(rows) == 1 and rows[0]["status"] == "paid"
    assert await usage(banksim, "repeatproc") == 555, "the daily limit counted one execution"
    # A repeat after execution returns the outcome.
    assert await post(http, banksim, "repeatproc", transfer(reference, 555)) == (200, paid)


@pytest.fixture
def fresh(
    run_id: str, banksim_paths: tuple[Path, Path], tmp_path: Path
) -> Iterator[dict[str, str]]:
    config, _ = banksim_paths
    # A graceful stop drains requests for 1 s only: less than the processing time.
    yield banksim_env(
        f"{run_id}_proc{uuid.uuid4().hex[:4]}",
        config,
        tmp_path / "drop",
        0,
        BANKSIM_SHUTDOWN_TIMEOUT_S="1",
    )


async def stored_status(env: dict[str, str], reference: str) -> str:
    conn = await asyncpg.connect(
        db.service_dsn(infra.database_url(), env["DB_NAME_PREFIX"], "banksim")
    )
    try:
        return str(
            await conn.fetchval("SELECT status FROM bank_transfer WHERE reference = $1", reference)
        )
    finally:
        await conn.close()


def start(env: dict[str, str]) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        "banksim-processing", "services.banksim", {**env, "BANKSIM_PORT": str(port)}, port
    ).start()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
async def test_a_restart_finishes_processing_transfers_from_the_outcome_drawn_at_receipt(
    fresh: dict[str, str], stop: int
) -> None:
    reference = ref()
    first = start(fresh)
    try:
        async with aiohttp.ClientSession() as http:
            await behave(http, first, "restartproc", "normal", processing_delay_ms=2500)
            with pytest.raises(TimeoutError):  # the caller gives up; the bank has it
                async with http.post(
                    f"{first.url}/banks/restartproc/transfers",
                    json=transfer(reference, 4321),
                    headers=BANK_HEADERS,
                    timeout=aiohttp.ClientTimeout(total=0.5),
                ) as resp:
                    await resp.read()
            status, during = await inquire(http, first, "restartproc", reference)
            assert (status, during["status"]) == (200, "processing")
        first.signal(stop)
        assert first.proc is not None and first.proc.wait(timeout=15) is not None
    finally:
        first.stop()
    assert await stored_status(fresh, reference) == "processing", "stopped before executing"

    second = start(fresh)
    try:
        async with aiohttp.ClientSession() as http:
            # A bank that would now refuse everything still finishes what it had received with
            # the outcome drawn at receipt.
            await behave(http, second, "restartproc", "normal", success_rate=0.0)
            status, still = await inquire(http, second, "restartproc", reference)
            assert status == 200 and still["status"] in ("processing", "paid"), still

            async def finished() -> dict[str, Any]:
                status, body = await inquire(http, second, "restartproc", reference)
                assert status == 200, body
                return body if body["status"] != "processing" else {}

            done = await wait_until(finished, timeout_s=15, message="the stuck transfer")
            assert (done["status"], done["failure_code"]) == ("paid", None)
            assert done["bank_reference"] == during["bank_reference"]
            rows = await journal(http, second, "restartproc")
            assert [(t["reference"], t["status"], t["amount_minor"]) for t in rows] == [
                (reference, "paid", 4321)
            ]
            assert await processing_rows(http, second, "restartproc") == []
            assert await post(http, second, "restartproc", transfer(reference, 4321)) == (
                200,
                done,
            )
            await behave(http, second, "restartproc", "normal")
        assert await usage(second, "restartproc") == 4321
        assert "bank_transfer_finished_late" in second.log_path.read_text(errors="replace")
    finally:
        second.stop()
