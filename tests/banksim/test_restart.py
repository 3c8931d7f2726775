"""A restarted bank still knows what it executed, how it behaves, and which statements it wrote."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.banksim.conftest import ADMIN_HEADERS, BANK_HEADERS, TEST_BANKS, banksim_env, transfer
from tests.support.processes import ServiceProcess, free_port
from tests.support.waiting import wait_until


@pytest.fixture
def fresh(
    run_id: str, banksim_paths: tuple[Path, Path], tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Its own database and drop directory, with the end-of-day job on from minute 0."""
    config, _ = banksim_paths
    env = banksim_env(
        f"{run_id}_restart{uuid.uuid4().hex[:4]}",
        config,
        tmp_path / "drop",
        0,
        BANKSIM_EOD_ENABLED="true",
        BANKSIM_EOD_MINUTE="0",
    )
    yield env


def start(env: dict[str, str]) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        "banksim-restart", "services.banksim", {**env, "BANKSIM_PORT": str(port)}, port
    ).start()


async def eod_checks(proc: ServiceProcess) -> int:
    lines = proc.log_path.read_text(errors="replace").splitlines()
    return sum(1 for line in lines if '"bank_eod_checked"' in line)


async def test_restart_keeps_the_journal_idempotency_behaviour_and_eod_statements(
    fresh: dict[str, str],
) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    inbox_files = lambda: sorted(  # noqa: E731
        p.name for p in Path(fresh["RECON_DROP_DIR"]).glob("*/inbox/*")
    )
    reference = f"att_{uuid.uuid4().hex[:12]}"
    first = start(fresh)
    try:
        await wait_until(lambda: eod_checks(first), timeout_s=20, message="end-of-day check")
        written = inbox_files()
        expected = {
            f"{bank}_{currency}_{yesterday:%Y%m%d}_001"
            for bank, body in TEST_BANKS.items()
            for currency in body["accounts"]
        }
        assert {name.rsplit(".", 1)[0] for name in written} == expected
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{first.url}/banks/restartbank/transfers",
                json=transfer(reference, 4242),
                headers=BANK_HEADERS,
            ) as resp:
                paid = await resp.json()
                assert resp.status == 200 and paid["status"] == "paid"
            async with http.put(
                f"{first.url}/admin/banks/restartbank/behaviour",
                json={"mode": "slow", "overrides": {"latency_median_ms": 5, "latency_p99_ms": 9}},
                headers=ADMIN_HEADERS,
            ) as resp:
                assert resp.status == 200
        first.signal(signal.SIGTERM)
        assert first.proc is not None and first.proc.wait(timeout=15) == 0
    finally:
        first.stop()

    second = start(fresh)
    try:
        await wait_until(lambda: eod_checks(second), timeout_s=20, message="end-of-day check")
        assert inbox_files() == written, "yesterday's statements are not written twice"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{second.url}/banks/restartbank/transfers",
                json=transfer(reference, 4242),
                headers=BANK_HEADERS,
            ) as resp:
                assert resp.status == 200
                assert await resp.json() == paid
            async with http.get(
                f"{second.url}/admin/banks/restartbank/executed", headers=ADMIN_HEADERS
            ) as resp:
                journal = (await resp.json())["transfers"]
            assert [(t["reference"], t["amount_minor"], t["status"]) for t in journal] == [
                (reference, 4242, "paid")
            ]
            async with http.get(f"{second.url}/admin/banks", headers=ADMIN_HEADERS) as resp:
                banks = {b["bank"]: b for b in (await resp.json())["banks"]}
            assert banks["restartbank"]["behaviour"]["mode"] == "slow"
            assert banks["restartbank"]["overrides"] == {
                "latency_median_ms": 5,
                "latency_p99_ms": 9,
            }
    finally:
        second.stop()
    assert date.fromisoformat(journal[0]["value_date"]) >= yesterday
