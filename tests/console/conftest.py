"""Console harness: the recon app in-process on a real port (PostgreSQL, RabbitMQ), the real
router and payout processes beside it, reconciliation days seeded through the recon service's
own upload-and-run use case, and the OS Chromium driven by Playwright (never downloaded).

Everything here is session-scoped and shares one event loop, so the browser starts once.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from services.kit import db
from services.recon.adapters import columnar
from services.recon.adapters.records import FileRecords, RecordsFile
from services.recon.app import create_app
from services.recon.console.keys import console_settings_key
from services.recon.console.settings import from_env as console_from_env
from services.recon.domain.rules import load_rules
from services.recon.settings import from_env
from tests.recon.daygen import generate, statement_csv
from tests.support import infra
from tests.support.processes import ARTIFACTS, ServiceProcess, free_port

FINANCE_KEY = "console-finance-key-0123456789abcdef"
OPERATOR_KEY = "console-operator-key-0123456789abcdef"
ADMIN_KEY = "console-payout-admin-key-0123456789"
SERVICE_TOKEN = "console-service-token-0123456789"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHANNELS = ("bank_east", "bank_west")
FIRST_DAY = date(2026, 11, 18)
DAYS = 3
# Per generated day: plenty of matches, every break type, > 100 breaks over the session.
COUNTS = {
    "match": 60,
    "bank_reference": 4,
    "amount_date": 4,
    "one_to_many": 2,
    "fee_adjusted": 3,
    "amount_mismatch": 4,
    "fee_mismatch": 3,
    "duplicate_at_bank": 2,
    "missing_in_ledger": 4,
    "missing_at_bank": 5,
    "timing": 2,
    "returned": 2,
    "status_mismatch": 2,
    "ambiguous_match": 2,
}


class DayRecords:
    """Our records per (channel, business day) as NDJSON files, standing in for the router's
    export (the same format): a run of day D reads ``<channel>_<D>.ndjson``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, channel: str, day: date) -> Path:
        return self.directory / f"{channel}_{day.isoformat()}.ndjson"

    async def fetch(self, channel: str, start: date, end: date, dest: Path) -> RecordsFile:
        return await FileRecords(self.path(channel, end - timedelta(days=1))).fetch(
            channel, start, end, dest
        )


@dataclass
class Recon:
    url: str
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    runs: dict[tuple[str, date], str] = field(default_factory=dict)  # (channel, day) → run_id

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {FINANCE_KEY}"}

    async def api(self, method: str, path: str, *, expect: int = 200, **kw: Any) -> Any:
        headers = {**self.auth, **kw.pop("headers", {})}
        async with self.http.request(method, self.url + path, headers=headers, **kw) as resp:
            body = await resp.read()
            assert resp.status == expect, (method, path, resp.status, body[:500])
            if resp.content_type in ("application/json", "application/problem+json"):
                return json.loads(body)
            return body


@pytest.fixture(scope="package")
def recon_dsn(run_id: str) -> str:
    return infra.run(infra.create_service_database(run_id, "recon", scope="console"))


@pytest.fixture(scope="package")
def router(run_id: str, amqp_prefix: str) -> Iterator[ServiceProcess]:
    port = free_port()
    proc = ServiceProcess(
        "router-console",
        "services.router",
        {
            "ROUTER_PORT": str(port),
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": f"{run_id}_console_",
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": f"{amqp_prefix}.console_router",
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "DB_POOL_MAX": "3",  # the database server is shared with other suites
        },
        port,
    )
    proc.start(ready_timeout_s=60)
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def ledger(run_id: str, amqp_prefix: str) -> Iterator[ServiceProcess]:
    port = free_port()
    proc = ServiceProcess(
        "ledger-console",
        "services.ledger",
        {
            "LEDGER_PORT": str(port),
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": f"{run_id}_console_",
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": f"{amqp_prefix}.console_ledger",
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "DB_POOL_MAX": "3",  # the database server is shared with other suites
        },
        port,
    )
    proc.start(ready_timeout_s=60)
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def payout(
    run_id: str, amqp_prefix: str, router: ServiceProcess, ledger: ServiceProcess
) -> Iterator[ServiceProcess]:
    port = free_port()
    proc = ServiceProcess(
        "payout-console",
        "services.payout",
        {
            "PAYOUT_PORT": str(port),
            "DATABASE_URL": infra.database_url(),
            "DB_NAME_PREFIX": f"{run_id}_console_",
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": f"{amqp_prefix}.console_payout",
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "DB_POOL_MAX": "3",  # the database server is shared with other suites
            "ADMIN_API_KEY": ADMIN_KEY,
            "ROUTER_URL": router.url,
            "LEDGER_URL": ledger.url,
        },
        port,
    )
    proc.start(ready_timeout_s=60)
    yield proc
    proc.stop()


@dataclass
class Payouts:
    url: str
    merchant_key: str
    review_ids: list[str]


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def payouts(payout: ServiceProcess, run_id: str) -> Payouts:
    """A merchant made through the payout admin API, and payouts left in manual review. The
    review state comes after a bank outcome stays unknown past a window, which needs the
    whole chain; the rows are written the way the payout service stores that state."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            payout.url + "/admin/merchants",
            json={"name": "Console Test Merchant", "currencies": ["EUR"]},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
            merchant = await resp.json()
    dsn = db.service_dsn(infra.database_url(), f"{run_id}_console_", "payout")
    conn = await asyncpg.connect(dsn)
    ids = [f"po_review_{i}_{uuid.uuid4().hex[:6]}" for i in range(3)]
    try:
        for i, pid in enumerate(ids):
            await conn.execute(
                """INSERT INTO payouts (id, merchant_id, amount_minor, fee_minor, currency,
                       beneficiary_name, beneficiary_account, beneficiary_bank_code, reference,
                       status, channel, attempt_id, failure_code, status_history)
                   VALUES ($1, $2, $3, 25, 'EUR', 'Ada Lovelace', 'DE89370400440532013000',
                       'NORTHDEXX', $4, 'manual_review', 'ch_northbank_eur', $5,
                       'unknown_outcome', '[]')""",
                pid,
                merchant["id"],
                123_456 + i,
                f"ref-{pid}",
                f"att_{pid}",
            )
    finally:
        await conn.close()
    assert merchant["secret_key"], merchant
    return Payouts(payout.url, merchant["secret_key"], ids)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def recon(
    recon_dsn: str,
    run_id: str,
    amqp_prefix: str,
    router: ServiceProcess,
    payout: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Recon]:
    tmp = tmp_path_factory.mktemp("console")
    prefix = f"{amqp_prefix}.console"
    settings = from_env(
        {
            "DATABASE_URL": infra.database_url(),
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": prefix,
            "DB_NAME_PREFIX": f"{run_id}_console_",
            "RECON_DROP_DIR": str(tmp / "drop"),
            "RECON_DATA_DIR": str(tmp / "data"),
            "RECON_DUCKDB_THREADS": "1",
            "RECON_DUCKDB_MEMORY_LIMIT_MB": "256",
            "RECON_FINANCE_KEY": FINANCE_KEY,
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "DB_POOL_MAX": "3",  # the database server is shared with other suites
            "ROUTER_URL": router.url,
        }
    )
    records = DayRecords(tmp / "records")
    rules = load_rules(
        {
            "channels": {
                ch: {"window_days": 2, "one_to_many_group_by": ["currency", "record_date"]}
                for ch in CHANNELS
            }
        }
    )
    app = create_app(settings, rules=rules, records=records, run_intake=False)
    app[console_settings_key] = console_from_env(
        {
            "RECON_OPERATOR_KEY": OPERATOR_KEY,
            "ADMIN_API_KEY": ADMIN_KEY,
            "PAYOUT_URL": payout.url,
            "RECON_CONSOLE_SECRET": "console-session-secret-0123456789abcdef",
        }
    )
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    pool = await db.create_pool(recon_dsn, max_size=4)
    http = aiohttp.ClientSession()
    harness = Recon(str(server.make_url("")).rstrip("/"), pool, http)
    try:
        for c, channel in enumerate(CHANNELS):
            for d in range(DAYS):
                day = FIRST_DAY + timedelta(days=d)
                # Match rates differ per channel and day, so the chart's lines are told apart.
                counts = {**COUNTS, "match": COUNTS["match"] + 25 * c + 15 * d}
                generated = generate(counts, channel=channel, business_date=day, seed=10 * c + d)
                path = records.path(channel, day)
                columnar.write_records(generated.records, path)
                for st in generated.statements:
                    body = await harness.api(
                        "POST",
                        f"/v1/recon/files?channel={channel}&filename={st.statement_id}.csv",
                        data=statement_csv(st),
                        headers={"Content-Type": "text/csv"},
                        expect=201,
                    )
                    assert body["status"] == "accepted" and body["run"], body
                    harness.runs[(channel, day)] = body["run"]["run_id"]
        yield harness
    finally:
        await http.close()
        await pool.close()
        await server.close()
        await infra.delete_broker_names(prefix, [])
        await infra.delete_broker_names(f"{amqp_prefix}.console_router", [])
        await infra.delete_broker_names(f"{amqp_prefix}.console_payout", [])
        await infra.delete_broker_names(f"{amqp_prefix}.console_ledger", [])


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run `python scripts/infra.py` as root or "
        "`sudo apt-get install chromium`"
    )
    from playwright.async_api import async_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


async def sign_in(browser: Any, recon: Recon, key: str, name: str) -> Any:
    """A fresh browser context signed in through the form; returns its page."""
    context = await browser.new_context(
        accept_downloads=True, viewport={"width": 1360, "height": 900}
    )
    page = await context.new_page()
    await page.goto(recon.url + "/")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=key]", key)
    await page.click("button[type=submit]")
    await page.wait_for_selector("nav .who")
    return page


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
