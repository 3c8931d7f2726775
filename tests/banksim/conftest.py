"""A real bank simulator process on a throw-away database, with banks made for the tests.

Chaos modes are per bank and global to the process, so each test that switches behaviour owns
its bank in ``TEST_BANKS``; the others share ``steady``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support import infra
from tests.support.processes import ServiceProcess, free_port

CLIENT_KEY = "test-bank-client-key-0123456789"
CALLBACK_SECRET = "test-callback-secret-0123456789"
SERVICE_TOKEN = "test-service-token-0123456789"
BANK_HEADERS = {"X-Bank-Key": CLIENT_KEY}
ADMIN_HEADERS = {"X-Service-Token": SERVICE_TOKEN}
SEED = "7"


def bank(fmt: str = "csv", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bic": "TESTDEFF",
        "statement_format": fmt,
        "accounts": {
            "EUR": {"iban": "DE89370400440532013000", "opening_balance_minor": 1_000_000_00},
            "JPY": {"iban": "DE12500105170648489890", "opening_balance_minor": 5_000_000},
        },
        "fee": {"fixed_minor": 25, "rate_bp": 10},
        "latency_ms": {"median": 2, "p99": 10, "max": 50},
        "success_rate": 1.0,
        "daily_limit_minor": 10**12,
    }
    body.update(changes)
    return body


TEST_BANKS: dict[str, dict[str, Any]] = {
    "steady": bank(),
    "slowish": bank(latency_ms={"median": 150, "p99": 300, "max": 400}),
    "refuser": bank(success_rate=0.0, failure_mix={"rejected": 1, "insufficient_liquidity": 1}),
    "closed": bank(maintenance_windows=["00:00-24:00"]),
    "late": bank(cutoff="00:00", after_cutoff="reject"),
    "nextday": bank(cutoff="00:00", after_cutoff="next_day"),
    "limited": bank(daily_limit_minor=1000),
    "lossy": bank(),
    "ambiguous": bank(),
    "asyncbank": bank(
        async_completion={
            "rate": 1.0,
            "success_rate": 0.5,
            "failure_codes": ["account_closed"],
            "delay_min_ms": 50,
            "delay_max_ms": 300,
        }
    ),
    "switchy": bank(),
    "csvbank": bank("csv"),
    "mtbank": bank("mt940"),
    "camtbank": bank("camt053"),
    "discbank": bank("csv"),
    "restartbank": bank(),
    "processor": bank(),
    "repeatproc": bank(),
    "restartproc": bank(),
    "clibank": bank(),
}


def banksim_env(run_id: str, config: Path, drop: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": infra.database_url(),
        "DB_NAME_PREFIX": f"{run_id}_",
        "SERVICE_TOKEN": SERVICE_TOKEN,
        "BANKSIM_PORT": str(port),
        "BANKSIM_CONFIG": str(config),
        "BANKSIM_CLIENT_KEY": CLIENT_KEY,
        "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
        "BANKSIM_SEED": SEED,
        "RECON_DROP_DIR": str(drop),
        "BANKSIM_EOD_ENABLED": "false",
        "BANKSIM_WORKER_POLL_MS": "20",
        "LOG_LEVEL": "info",
        **extra,
    }


@pytest.fixture(scope="package")
def banksim_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("banksim")
    config = root / "banks.yaml"
    config.write_text(yaml.safe_dump({"banks": TEST_BANKS}))
    return config, root / "drop"


@pytest.fixture(scope="package")
def banksim(run_id: str, banksim_paths: tuple[Path, Path]) -> Iterator[ServiceProcess]:
    config, drop = banksim_paths
    port = free_port()
    proc = ServiceProcess(
        "banksim", "services.banksim", banksim_env(run_id, config, drop, port), port
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def transfer(reference: str, amount_minor: int = 10_000, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": reference,
        "amount_minor": amount_minor,
        "currency": "EUR",
        "beneficiary": {
            "name": "Ada Lovelace",
            "account_number": "DE89370400440532013000",
            "bank_code": "COBADEFF",
        },
    }
    body.update(changes)
    return body
